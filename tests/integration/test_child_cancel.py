"""A parent's cancel reaches its running child on the real broker: the child type's inbox gets a
``cancel`` input, the child ends cancelled, and the parent ends once it has."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sagas.app import App
from sagas.dsl import Saga, call, child, wait_signal
from sagas.participants import CommandContext, Participant
from sagas.settings import KafkaSettings
from tests.support.runtime import Running, start_runtime

pytestmark = pytest.mark.kafka


def _app(ns: str) -> App:
    hold = Saga[dict[str, Any]](
        "hold",
        1,
        deadline=timedelta(minutes=5),
        steps=[wait_signal("go", timeout=timedelta(minutes=2))],
    ).compile()
    trip = Saga[dict[str, Any]](
        "trip",
        1,
        deadline=timedelta(minutes=5),
        steps=[child("hold", saga="hold", input=dict, compensate=call("Unhold", to=f"{ns}.svc"))],
    ).compile()
    return App(ns, [trip, hold], partitions=2)


@pytest.fixture
def trips(bootstrap: str, unique: str) -> Iterator[tuple[Running, list[str]]]:
    settings = KafkaSettings(bootstrap)
    rt = start_runtime(_app(unique), settings)
    undone: list[str] = []
    svc = Participant(settings, f"{unique}.svc")

    @svc.handler(f"{unique}.svc", "Unhold")
    def unhold(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        undone.append(ctx.saga_id)
        return {}

    thread, stop = svc.start()
    yield rt, undone
    stop.set()
    thread.join(30)
    rt.shutdown()


def test_cancelling_a_parent_cancels_its_running_child(
    trips: tuple[Running, list[str]],
) -> None:
    rt, undone = trips
    pid = rt.client.start("trip", {"who": "ann"})
    deadline = time.monotonic() + 60
    while not (children := rt.client.list("hold")):
        assert time.monotonic() < deadline, rt.client.status("trip", pid)
        time.sleep(0.3)
    [kid] = children
    assert kid.parent is not None
    assert kid.parent.saga_id == pid
    assert kid.status == "running"

    rt.client.cancel("trip", pid, "customer left")
    kid_end = rt.wait_terminal("hold", kid.saga_id)
    assert kid_end.status == "cancelled"
    assert kid_end.reason is not None
    assert "customer left" in kid_end.reason
    parent_end = rt.wait_terminal("trip", pid)
    assert parent_end.status == "cancelled"
    [asked] = [e for e in rt.client.history("trip", pid).entries if e.event == "child_cancelled"]
    assert (asked.body["child_type"], asked.body["child_id"]) == ("hold", kid.saga_id)
    assert undone == []  # the child never completed: nothing for the child step to undo
