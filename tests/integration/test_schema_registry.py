"""A saga end to end with a schema registry: every record on every topic is in Confluent's format.

The registry is :mod:`tests.support.registry`, a test double of the Confluent REST API (not the real
server). The settings come from ``SAGAS_SCHEMA_REGISTRY_URL``; the worker, the client and the
participants each build their serde from their settings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sagas.protocol import TopicNames
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.registry import RegistryDouble
from tests.support.runtime import Running, start_runtime
from tests.support.sagas_under_test import make_app

pytestmark = pytest.mark.kafka


@pytest.fixture
def registry() -> Iterator[RegistryDouble]:
    with RegistryDouble() as double:
        yield double


@pytest.fixture
def rt(bootstrap: str, unique: str, registry: RegistryDouble) -> Iterator[Running]:
    settings = KafkaSettings(bootstrap).with_env({"SAGAS_SCHEMA_REGISTRY_URL": registry.url})
    running = start_runtime(make_app(unique, partitions=2), settings)
    try:
        yield running
    finally:
        running.shutdown()


def _ids(values: list[bytes]) -> set[int]:
    assert values
    assert all(v[0] == 0 for v in values), [v[:5].hex() for v in values if v[0] != 0]
    return {int.from_bytes(v[1:5], "big") for v in values}


def test_a_saga_runs_with_every_record_in_the_registry_format(
    rt: Running, registry: RegistryDouble, bootstrap: str
) -> None:
    sid = rt.client.start("order", {"order": "o-1", "behaviour": {"ScheduleShipment": "fail"}})
    state = rt.wait_terminal("order", sid)
    assert state.status == "compensated"
    assert rt.participants.commands_of(sid) == [
        "ReserveCredit",
        "ReserveStock",
        "ScheduleShipment",
        "ReleaseStock",
        "ReleaseCredit",
    ]
    ids = {name: registry.subjects[name][-1] for name in registry.subjects}
    serde = Serde(registry.url)  # a reader of its own that knows the registry
    topics = TopicNames(rt.app.namespace, "order")

    inbox = [v for _, v in read_all(bootstrap, topics.inbox)]  # start and the five replies
    assert len(inbox) == 6
    assert _ids(inbox) == {ids["sagas.Payload"]}
    assert serde.decode_payload(inbox[0]) == {
        "order": "o-1",
        "behaviour": {"ScheduleShipment": "fail"},
    }

    commands = [v for _, v in read_all(bootstrap, f"{rt.app.namespace}.credit")]
    assert _ids(commands) == {ids["sagas.Payload"]}

    snapshots = [v for k, v in read_all(bootstrap, topics.state) if k == sid.encode()]
    assert _ids(snapshots) == {ids["sagas.SagaState"]}
    assert serde.decode_state(snapshots[-1]).public_dict() == state.public_dict()

    journal = [v for _, v in read_all(bootstrap, topics.journal)]
    assert _ids(journal) == {ids["sagas.Transition"]}
    assert {e.saga_id for v in journal for e in serde.decode_events(v)[0]} == {sid}
