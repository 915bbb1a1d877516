"""A second deployment in a namespace, on the real broker: one with another partition count or
another definition of the same saga type and version is refused with one line naming both; one
whose only change is a function's code joins, and the sagas it shares complete."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NotRequired, TypedDict

import pytest

from sagas.app import App
from sagas.client import SagaClient
from sagas.dsl import Saga, call, step
from sagas.errors import ConfigurationError, InputRefusedError
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import Worker, WorkerHandle
from sagas.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def _order(ns: str, *, extra_step: bool = False, payload: Any = dict) -> Any:
    steps = [
        step("reserve", to=f"{ns}.stock", command="Reserve", payload=payload,
             compensate=call("Release", dict)),
        step("ship", to=f"{ns}.ship", command="Ship", payload=dict, kind="pivot"),
    ]  # fmt: skip
    if extra_step:
        steps.insert(1, step("bill", to=f"{ns}.stock", command="Bill", payload=dict,
                             compensate=call("Refund", dict)))  # fmt: skip
    return Saga[dict[str, Any]]("order", 1, deadline=timedelta(minutes=5), steps=steps).compile()


@pytest.fixture
def first(bootstrap: str, unique: str) -> Iterator[WorkerHandle]:
    app = App(unique, [_order(unique)], partitions=2)
    handle = Worker(app, KafkaSettings(bootstrap), worker_id="w1").start()
    yield handle
    handle.stop()


def test_another_partition_count_is_refused(
    first: WorkerHandle, bootstrap: str, unique: str
) -> None:
    other = App(unique, [_order(unique)], partitions=3)
    with pytest.raises(ConfigurationError) as refused:
        Worker(other, KafkaSettings(bootstrap), worker_id="w2").start()
    said = str(refused.value)
    assert f"{unique}.order.inbox has 2 partitions but this app says partitions=3" in said
    assert "its own namespace" in said


def test_another_definition_of_the_same_version_is_refused_naming_both(
    first: WorkerHandle, bootstrap: str, unique: str
) -> None:
    ours = _order(unique)
    changed = _order(unique, extra_step=True)
    assert changed.fingerprint != ours.fingerprint
    other = App(unique, [changed], partitions=2)
    with pytest.raises(ConfigurationError) as refused:
        Worker(other, KafkaSettings(bootstrap), worker_id="w2").start()
    said = str(refused.value)
    assert f"saga 'order' version 1 here is not the one running in namespace {unique!r}" in said
    assert (
        f"fingerprint {changed.fingerprint} here, {ours.fingerprint} recorded by worker 'w1'"
        in said
    )
    assert "running: w1@" in said
    assert "give this one version=2" in said


def test_a_fix_to_a_function_only_joins_and_the_sagas_complete(
    first: WorkerHandle, bootstrap: str, unique: str
) -> None:
    fixed = _order(unique, payload=lambda d: {**d, "fixed": True})
    assert fixed.fingerprint == _order(unique).fingerprint
    settings = KafkaSettings(bootstrap)
    second = Worker(App(unique, [fixed], partitions=2), settings, worker_id="w2").start()
    services = Participant(settings, f"{unique}.services", create_topics=True)
    for command in ("Reserve", "Release", "Ship"):
        services.handler(f"{unique}.ship" if command == "Ship" else f"{unique}.stock", command)(_ok)
    thread, stop = services.start()
    client = SagaClient(settings, unique)
    try:
        ids = [client.start("order", {"n": i}) for i in range(6)]
        for sid in ids:
            assert client.result("order", sid, timeout=90)["n"] in range(6)
    finally:
        client.close()
        stop.set()
        thread.join(30)
        second.stop()


def _ok(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    return {}


class Order(TypedDict):
    customer: str
    total: float
    items: list[str]
    address: NotRequired[str]


def test_a_start_whose_data_does_not_fit_the_sagas_type_is_refused_before_it_is_written(
    bootstrap: str, unique: str
) -> None:
    typed = Saga[Order](
        "typed",
        1,
        deadline=timedelta(minutes=5),
        steps=[step("ship", to=f"{unique}.ship", command="Ship", payload=dict, kind="pivot")],
    ).compile()
    settings = KafkaSettings(bootstrap)
    handle = Worker(App(unique, [typed], partitions=2), settings, worker_id="w1").start()
    client = SagaClient(settings, unique)
    try:
        with pytest.raises(InputRefusedError) as refused:
            client.start("typed", {"customer": "c-1", "total": "99"}, saga_id="t-1")
        assert str(refused.value) == (
            "the data does not fit typed v1's Order: data has no 'items' (list[str]), which it "
            "requires; data.total is the string '99', not float. Nothing was written"
        )
        assert client.status("typed", "t-1") is None
        sid = client.start("typed", {"customer": "c-1", "total": 99, "items": []}, wait="accepted")
        assert client.status("typed", sid) is not None
    finally:
        client.close()
        handle.stop()
