"""Bounded state on the real broker: a finished saga leaves the state topic and the worker's
memory when its retention runs out, through a timer that survives a restart."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from sagas.app import App
from sagas.dsl import Saga, call, step
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.runtime import start_runtime

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka


def _app(ns: str, retention: timedelta | None) -> App:
    def everything(data: Any) -> dict[str, Any]:
        return dict(data)

    saga = Saga[dict[str, Any]](
        "order",
        1,
        deadline=timedelta(minutes=1),
        retention=retention,
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit",
                 payload=everything, compensate=call("ReleaseCredit", everything)),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=everything, kind="pivot"),
        ],
    )  # fmt: skip
    return App(ns, [saga.compile()], partitions=2)


def _state_records(bootstrap: str, topic: str, saga_id: str) -> list[bytes | None]:
    return [v for k, v in read_all(bootstrap, topic) if k == saga_id.encode()]


def _expired(bootstrap: str, app: App, saga_id: str) -> list[Any]:
    journal = app.topics("order").journal
    events = [e for _, v in read_all(bootstrap, journal) for e in SERDE.decode_events(v)[0]]
    return [e for e in events if e.saga_id == saga_id and e.type == "expired"]


def test_a_finished_saga_is_removed_after_its_retention_even_across_a_restart(
    bootstrap: str, unique: str
) -> None:
    app = _app(unique, timedelta(seconds=4))
    settings = KafkaSettings(bootstrap)
    rt = start_runtime(app, settings)
    try:
        first = rt.client.start("order", {})
        second = rt.client.start("order", {})
        assert rt.wait_terminal("order", first).status == "completed"
        assert rt.wait_terminal("order", second).status == "completed"
        rt.wait_until(lambda: rt.client.status("order", first) is None, timeout=30)
    finally:
        rt.shutdown()
    assert len(_expired(bootstrap, app, first)) == 1
    assert _state_records(bootstrap, app.topics("order").state, first)[-1] is None  # tombstone

    # A saga that finished just before the worker stopped expires on the next worker's watch.
    rt = start_runtime(app, settings, worker_id="w2")
    try:
        third = rt.client.start("order", {})
        assert rt.wait_terminal("order", third).status == "completed"
    finally:
        rt.shutdown()
    time.sleep(5)  # its retention runs out while no worker runs
    rt = start_runtime(app, settings, worker_id="w3")
    try:
        rt.wait_until(lambda: len(_expired(bootstrap, app, third)) == 1, timeout=30)
        assert rt.client.status("order", third) is None
    finally:
        rt.shutdown()
    assert _state_records(bootstrap, app.topics("order").state, third)[-1] is None


def test_retention_none_keeps_finished_sagas(bootstrap: str, unique: str) -> None:
    app = _app(unique, None)
    rt = start_runtime(app, KafkaSettings(bootstrap))
    try:
        sid = rt.client.start("order", {})
        assert rt.wait_terminal("order", sid).status == "completed"
        time.sleep(2)
        assert rt.client.status("order", sid) is not None
    finally:
        rt.shutdown()
    assert _expired(bootstrap, app, sid) == []
