"""The client on the real broker: idempotent start, result, status and list from the workers'
query endpoints, the fallback to the state topic, and the asyncio client."""

from __future__ import annotations

import asyncio
import collections
import json
import urllib.request

import pytest

from sagas.async_client import AsyncSagaClient
from sagas.client import SagaClient
from sagas.errors import SagaFailedError
from sagas.protocol import DEFINITION_PREFIX, workers_topic
from sagas.serde import Serde
from tests.support.kafka import read_all
from tests.support.runtime import Running

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka


def test_a_second_start_with_the_same_id_starts_nothing_new(rt: Running, bootstrap: str) -> None:
    sid = rt.client.start("order", {"behaviour": {}}, saga_id="order-42")
    assert rt.client.start("order", {"behaviour": {"ReserveCredit": "fail"}}, saga_id=sid) == sid
    assert rt.client.result("order", sid, timeout=60)["ScheduleShipment_done"] is True
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReserveStock", "ScheduleShipment"]
    journal = [
        e
        for _, v in read_all(bootstrap, rt.app.topics("order").journal)
        for e in SERDE.decode_events(v)[0]
    ]
    assert [e.type for e in journal if e.saga_id == sid].count("started") == 1


def test_result_returns_the_saga_data_or_raises_why_it_failed(rt: Running) -> None:
    ok = rt.client.start("order", {"order": "o-7", "behaviour": {}})
    bad = rt.client.start("order", {"behaviour": {"ReserveStock": "fail"}})
    data = rt.client.result("order", ok, timeout=60)
    assert data["order"] == "o-7"
    assert data["ReserveCredit_done"] is True
    assert data["ScheduleShipment_done"] is True
    with pytest.raises(SagaFailedError) as failed:
        rt.client.result("order", bad, timeout=60)
    assert failed.value.status == "compensated"


def test_status_and_list_come_from_the_owning_workers_query_endpoint(
    rt: Running, bootstrap: str
) -> None:
    plans = {"ok": {}, "fail": {"ScheduleShipment": "fail"}}
    ids = {
        rt.client.start("order", {"behaviour": plans[kind]}): kind
        for kind in ["ok"] * 8 + ["fail"] * 4
    }
    for sid in ids:
        rt.wait_terminal("order", sid)

    owners = {  # the owner records (definition records live there too)
        k: SERDE.decode_payload(v)
        for k, v in read_all(bootstrap, workers_topic(rt.app.namespace))
        if not k.startswith(DEFINITION_PREFIX)
    }
    assert {k.decode() for k in owners} >= {f"order/{p}" for p in range(rt.app.partitions)}
    url = next(iter(owners.values()))["url"]
    sid = next(iter(ids))
    with urllib.request.urlopen(f"{url}/sagas/order/{sid}", timeout=5) as response:
        body = json.loads(response.read())
    assert body["state"]["saga_id"] == sid
    assert body["state"]["status"] == rt.client.status("order", sid).status

    completed = rt.client.list("order", status="completed", limit=1000)
    compensated = rt.client.list("order", status="compensated", limit=1000)
    assert {s.saga_id for s in completed} == {s for s, k in ids.items() if k == "ok"}
    assert {s.saga_id for s in compensated} == {s for s, k in ids.items() if k == "fail"}
    newest_first = [s.updated_ms for s in rt.client.list("order", limit=1000)]
    assert newest_first == sorted(newest_first, reverse=True)
    assert len(rt.client.list("order", limit=5)) == 5
    assert rt.client.status("order", "no-such-saga") is None


def test_without_a_worker_the_client_reads_the_state_topic(rt: Running) -> None:
    sids = [rt.client.start("order", {"behaviour": {}}) for _ in range(5)]
    for sid in sids:
        rt.wait_terminal("order", sid)
    rt.shutdown()  # no worker answers any more: the owners' URLs refuse connections
    client = SagaClient(rt.settings, rt.app.namespace, http_timeout=0.5)
    try:
        assert all(client.status("order", sid).status == "completed" for sid in sids)
        listed = client.list("order", status="completed", limit=100)
        assert {s.saga_id for s in listed} == set(sids)
        assert client.status("order", "no-such-saga") is None
    finally:
        client.close()


def test_the_asyncio_client_starts_waits_and_lists(rt: Running) -> None:
    async def scenario() -> tuple[dict[str, object], collections.Counter[str]]:
        client = AsyncSagaClient(rt.settings, rt.app.namespace)
        try:
            sids = await asyncio.gather(
                *(client.start("order", {"n": n, "behaviour": {}}) for n in range(4))
            )
            results = await asyncio.gather(*(client.result("order", s, timeout=60) for s in sids))
            listed = await client.list("order", limit=100)
            return results[0], collections.Counter(s.status for s in listed)
        finally:
            await client.close()

    first, statuses = asyncio.run(scenario())
    assert first["ScheduleShipment_done"] is True
    assert statuses == {"completed": 4}
