"""The world's books balance on the real broker: what the services' ledgers hold at the end.

Each test runs real workers and real participants (``sagas.participants.Participant``, which
refuses a command that reaches it after its deadline) over services that do what they are told
and answer late. The assertions are on the ledgers, the world, not only on what the engine
says it sent: a compensated or cancelled saga leaves nothing; a completed one keeps its path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sagas import App, Saga, SagaClient, call, child, parallel, step
from sagas.dsl import Node
from sagas.engine import SagaState
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

S = timedelta(seconds=1)


@dataclass
class Ledger:
    """The world: effects standing per (saga id, step), and how often each key ran."""

    effects: set[tuple[str, str]] = field(default_factory=set)
    ran: set[tuple[str, str]] = field(default_factory=set)
    runs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, saga_id: str) -> set[str]:
        with self.lock:
            return {name for sid, name in self.effects if sid == saga_id}


def _s(ns: str, name: str, **kw: Any) -> Node[dict[str, Any]]:
    if kw.get("kind", "compensatable") == "compensatable":
        kw.setdefault("compensate", call(f"Undo-{name}", dict))
    return step(name, to=f"{ns}.svc.{name}", command=f"Do-{name}", payload=dict, **kw)


def _app(ns: str) -> App:
    after = {"kind": "retryable", "deadline": 5 * S}
    sagas = [
        Saga[dict[str, Any]](  # 1 and 1b: the saga deadline passes while the pivot is in flight
            "deadline", 1, deadline=3 * S,
            steps=[_s(ns, "a"), _s(ns, "p", kind="pivot"), _s(ns, "r", **after)],
        ),
        Saga[dict[str, Any]](  # 2: the pivot's own deadline passes, its command lands later
            "stepdl", 1, deadline=timedelta(minutes=5),
            steps=[_s(ns, "a2"), _s(ns, "p2", kind="pivot", deadline=S), _s(ns, "r2", **after)],
        ),
        Saga[dict[str, Any]](  # 3: a cancel arrives while the pivot is in flight
            "cancel", 1, deadline=timedelta(minutes=5),
            steps=[_s(ns, "a3"), _s(ns, "p3", kind="pivot"), _s(ns, "r3", **after)],
        ),
        Saga[dict[str, Any]](  # 4: the losing branch of a first-wins race lands after the winner
            "race", 1, deadline=timedelta(minutes=5),
            steps=[
                parallel("first", [_s(ns, "slow")], [_s(ns, "fast")], join="first"),
                _s(ns, "after"),
            ],
        ),
        Saga[dict[str, Any]](  # 5: the parent is cancelled while its child runs
            "parent", 1, deadline=timedelta(minutes=5),
            steps=[
                _s(ns, "a5"),
                child("kid", saga="kid", input=dict,
                      compensate=call("UndoKid", dict, to=f"{ns}.svc.kid")),
            ],
        ),
        Saga[dict[str, Any]]("kid", 1, deadline=timedelta(minutes=5),
                             steps=[_s(ns, "k1"), _s(ns, "k2")]),
    ]  # fmt: skip
    return App(ns, [s.compile() for s in sagas], partitions=2)


SLOW = {"p": 4.5, "p2": 2.5, "p3": 3.0, "slow": 2.0, "k2": 3.0}
"""Seconds a service takes to answer, after it did the work (the work is done at once)."""


class World:
    """The app on the broker: one worker, one participant per service, a client, a ledger."""

    def __init__(self, bootstrap: str, ns: str, *, down: tuple[str, ...] = ()) -> None:
        self.ns = ns
        self.settings = KafkaSettings(bootstrap)
        self.app = _app(ns)
        ensure_topics(self.app, self.settings)
        self.ledger = Ledger()
        self.client = SagaClient(self.settings, ns)
        self._stops: list[tuple[threading.Thread, threading.Event]] = []
        self.slow = dict(SLOW)
        stop = threading.Event()
        worker = threading.Thread(
            target=run_worker,
            args=(self.app, self.settings),
            kwargs={"worker_id": f"{ns}-w", "stop": stop, "install_signal_handlers": False},
            daemon=True,
        )
        worker.start()
        self._stops.append((worker, stop))
        quick = ["a", "r", "a2", "r2", "a3", "r3", "fast", "after", "a5", "k1", "kid"]
        self.serve(*quick)
        for name in SLOW:  # a participant each: a slow handler holds up its participant
            if name not in down:
                self.serve(name)

    def serve(self, *names: str) -> None:
        """Start a participant for the services ``names``."""
        p = Participant(self.settings, f"{self.ns}.svc-{names[0]}")
        for name in names:
            self._handle(p, name)
        self._stops.append(p.start())

    def _handle(self, p: Participant, name: str) -> None:
        topic = f"{self.ns}.svc.{name}"

        def do(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            with self.ledger.lock:
                self.ledger.effects.add((ctx.saga_id, name))
                self.ledger.ran.add((ctx.saga_id, name))
                key = ctx.idempotency_key
                self.ledger.runs[key] = self.ledger.runs.get(key, 0) + 1
            time.sleep(payload.get(f"sleep_{name}", self.slow.get(name, 0.0)))  # answered late
            return {name: True}

        def undo(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            with self.ledger.lock:
                self.ledger.effects.discard((ctx.saga_id, name))
            return {}

        def undo_kid(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            with self.ledger.lock:  # undo everything the child saga did
                kid = f"{ctx.saga_id}/kid/"
                self.ledger.effects = {e for e in self.ledger.effects if not e[0].startswith(kid)}
            return {}

        if name == "kid":
            p.handler(topic, "UndoKid")(undo_kid)
        else:
            p.handler(topic, f"Do-{name}")(do)
            p.handler(topic, f"Undo-{name}")(undo)

    def wait(self, saga_type: str, saga_id: str, timeout: float = 90.0) -> SagaState:
        end = time.monotonic() + timeout
        state = None
        while time.monotonic() < end:
            state = self.client.status(saga_type, saga_id)
            if state is not None and state.terminal:
                return state
            time.sleep(0.2)
        raise AssertionError(f"{saga_id} did not end in {timeout}s: {state}")

    def wait_for(self, saga_id: str, effect: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.ledger.lock:
                if (saga_id, effect) in self.ledger.ran:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{saga_id}'s {effect} never ran")

    def journal(self, saga_type: str, saga_id: str) -> list[str]:
        return [e.event for e in self.client.history(saga_type, saga_id).entries]

    def close(self) -> None:
        for _, stop in self._stops:
            stop.set()
        for thread, _ in self._stops:
            thread.join(30)
        self.client.close()


@pytest.fixture(scope="module")
def world(kafka: Any) -> Iterator[World]:
    w = World(kafka.bootstrap_servers, f"books{int(time.time() * 1000) % 10**9}")
    yield w
    w.close()


def test_a_pivot_in_flight_at_the_saga_deadline_takes_the_saga_forward(world: World) -> None:
    sid = world.client.start("deadline", {})
    state = world.wait("deadline", sid)
    assert state.status == "completed", state.reason
    assert world.ledger.of(sid) == {"a", "p", "r"}
    assert "pivot_awaited" in world.journal("deadline", sid)


def test_the_pivot_deadline_passes_and_the_command_lands_later(world: World) -> None:
    sid = world.client.start("stepdl", {})
    state = world.wait("stepdl", sid)
    assert state.status == "completed", state.reason
    assert world.ledger.of(sid) == {"a2", "p2", "r2"}


def test_a_cancel_while_the_pivot_is_in_flight_is_refused_when_it_took_effect(
    world: World,
) -> None:
    sid = world.client.start("cancel", {})
    world.wait_for(sid, "p3")
    world.client.cancel("cancel", sid, "changed my mind")
    state = world.wait("cancel", sid)
    assert state.status == "completed", state.reason
    assert world.ledger.of(sid) == {"a3", "p3", "r3"}
    assert "cancel_refused" in world.journal("cancel", sid)


def test_a_first_wins_loser_that_lands_late_is_undone(world: World) -> None:
    sid = world.client.start("race", {})
    state = world.wait("race", sid)
    assert state.status == "completed", state.reason
    world.wait_for(sid, "slow")  # the loser's command did reach its service
    assert world.ledger.of(sid) == {"fast", "after"}


def test_a_cancelled_parent_cancels_its_child_and_the_world_is_empty(world: World) -> None:
    sid = world.client.start("parent", {})
    kid = f"{sid}/kid/1"
    world.wait_for(kid, "k2")  # the child runs, its second step in flight
    world.client.cancel("parent", sid, "stop everything")
    assert world.wait("parent", sid).status == "cancelled"
    assert world.wait("kid", kid).status == "cancelled"
    assert world.ledger.of(sid) == set()
    assert world.ledger.of(kid) == set()


def test_a_pivot_that_reaches_its_participant_too_late_is_refused_and_undone(
    bootstrap: str,
) -> None:
    """The pivot's participant is busy (one slow command holds it) past another saga's
    deadline: that saga is in doubt and resends the same command; the participant reaches it
    late and refuses it (deadline-passed), so the saga compensates and leaves nothing, while
    the slow one, done, completes."""
    world = World(bootstrap, f"late{int(time.time() * 1000) % 10**9}")
    try:
        slow = world.client.start("deadline", {"sleep_p": 7.0})
        world.wait_for(slow, "p")  # its handler holds the participant for 7 s
        late = world.client.start("deadline", {})
        end = time.monotonic() + 30
        status = None
        while time.monotonic() < end and status != "in-doubt":
            st = world.client.status("deadline", late)
            status = st.status if st else None
            time.sleep(0.2)
        assert status == "in-doubt"
        state = world.wait("deadline", late)
        assert state.status == "compensated", state.reason
        assert "deadline-passed" in (state.reason or "")
        assert world.ledger.of(late) == set()
        assert world.wait("deadline", slow).status == "completed"
        assert world.ledger.of(slow) == {"a", "p", "r"}
        assert all(n == 1 for n in world.ledger.runs.values())
    finally:
        world.close()
