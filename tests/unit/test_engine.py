"""The engine, construct by construct, driven through sagas.testing and transition()."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

import sagas
from sagas import (
    Retry,
    Saga,
    branch,
    call,
    child,
    goto,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.dsl import Node
from sagas.engine import (
    Cancel,
    CommandOut,
    JournalEvent,
    Reply,
    SagaState,
    Signal,
    Start,
    TimerFired,
    fold,
    public_command_id,
    transition,
)
from sagas.engine.ids import command_id, new_secret
from sagas.testing import SagaTestEnv, fail, retryable_fail, silent, succeed
from tests.support.examples import order_saga, vm_saga

H = timedelta(hours=1)
S = timedelta(seconds=1)
ORDER = {"customer": "ada", "total": 30.0, "items": ["book"], "address": "1 Main St"}


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    kw.setdefault("compensate", call(f"Undo-{name}"))
    return step(name, to=f"{name}.commands", command=f"Do-{name}", **kw)


def saga(*steps: Node[dict[str, Any]], name: str = "demo", **kw: Any) -> Saga[dict[str, Any]]:
    kw.setdefault("deadline", H)
    return Saga[dict[str, Any]](name, version=1, steps=steps, **kw)


def env_for(*defs: Saga[dict[str, Any]], ok: tuple[str, ...] = ()) -> SagaTestEnv:
    env = SagaTestEnv(*defs)
    for name in ok:
        env.on(f"Do-{name}", succeed({name: True}))
        env.on(f"Undo-{name}", succeed())
    return env


def ids(commands: list[CommandOut]) -> list[str]:
    """The commands' ids without their secret tags."""
    return [public_command_id(c.command_id) for c in commands]


def real_id(env: SagaTestEnv, public: str) -> str:
    """The full id of the command whose id without its tag is ``public``."""
    return next(c.command_id for c in env.commands if public_command_id(c.command_id) == public)


def assert_vm_folds(env: SagaTestEnv, saga_id: str) -> None:
    assert fold(sagas.compile(vm_saga), env.journal(saga_id)) == env.state(saga_id)


def assert_folds(env: SagaTestEnv, saga_id: str) -> None:
    program = sagas.compile(order_saga)
    assert fold(program, env.journal(saga_id)) == env.state(saga_id)


# ----------------------------------------------------------------------------------- the order saga


def order_env() -> SagaTestEnv:
    env = SagaTestEnv(order_saga)
    env.on("ReserveCredit", succeed({"credit_id": "c-1"}))
    env.on("ReserveStock", succeed())
    env.on("ScheduleShipment", succeed({"shipment_id": "s-1"}))
    env.on("ReleaseCredit", succeed())
    env.on("ReleaseStock", succeed())
    return env


def test_order_completes_and_merges_replies() -> None:
    env = order_env()
    state = env.start("order", "o-1", ORDER)
    assert state is not None
    assert state.status == "completed"
    assert state.terminal
    assert state.data["shipment_id"] == "s-1"
    assert state.data["credit_id"] == "c-1"
    assert state.version == 1
    assert state.saga_type == "order"
    assert ids(env.commands) == [
        "o-1:reserve-credit:1",
        "o-1:reserve-stock:1",
        "o-1:schedule-shipment:1",
    ]
    first = env.commands[0]
    assert first.payload == {"customer": "ada", "amount": 30.0}
    assert first.topic == "credit.commands"
    assert first.deadline_ms == 3_600_000
    assert state.completed == ("reserve-credit", "reserve-stock", "schedule-shipment")
    assert_folds(env, "o-1")


def test_pivot_failure_compensates_in_reverse_order() -> None:
    env = order_env()
    env.on("ScheduleShipment", fail("NoCarrier"))
    env.start("order", "o-1", ORDER)
    assert env.command_types("o-1")[3:] == ["ReleaseStock", "ReleaseCredit"]
    assert ids(env.commands)[3] == "o-1:reserve-stock:undo:1"
    state = env.state("o-1")
    assert state.status == "compensated"
    assert state.reason == "ScheduleShipment failed: NoCarrier"
    assert_folds(env, "o-1")


def test_a_day_long_deadline_expires_in_milliseconds() -> None:
    env = order_env()
    env.on("ReserveStock", silent())
    env.start("order", "o-1", ORDER)
    env.advance(timedelta(days=1))
    assert env.state("o-1").status == "compensated"
    assert env.state("o-1").reason == "the saga deadline passed"
    # ReserveStock got no reply: it may have reserved, so it is released too, newest first.
    assert env.command_types("o-1") == [
        "ReserveCredit",
        "ReserveStock",
        "ReleaseStock",
        "ReleaseCredit",
    ]
    assert ids(env.commands)[-1] == "o-1:reserve-credit:undo:1"
    assert env.now_ms == 86_400_000


def test_cancel_before_and_after_the_pivot() -> None:
    # A cancel while the pivot's command is in flight waits for the pivot's answer.
    env = order_env()
    env.on("ScheduleShipment", silent())
    env.start("order", "o-1", ORDER)
    env.cancel("o-1", "customer changed their mind")
    assert env.state("o-1").status == "running"
    assert env.journal("o-1")[-1].type == "pivot_awaited"
    pivot = real_id(env, "o-1:schedule-shipment:1")
    env.reply(pivot, "failure", {"error": "deadline-passed"})  # not done: the cancel goes on
    assert env.state("o-1").status == "cancelled"
    assert env.command_types("o-1")[-2:] == ["ReleaseStock", "ReleaseCredit"]

    env = order_env()
    env.on("ScheduleShipment", silent())
    env.start("order", "o-3", ORDER)
    env.cancel("o-3", "customer changed their mind")
    env.reply(real_id(env, "o-3:schedule-shipment:1"), "success", {"shipment_id": "s-3"})
    assert env.state("o-3").status == "completed"  # done: the cancel is refused
    refused = [e for e in env.journal("o-3") if e.type == "cancel_refused"]
    assert "customer changed their mind" in refused[0].body["reason"]
    assert "ReleaseCredit" not in env.command_types("o-3")

    env = order_env()
    env.start("order", "o-2", ORDER)
    env.cancel("o-2")  # already completed
    assert env.journal("o-2")[-1].body["reason"] == "the saga already ended completed"

    env = SagaTestEnv(saga(s("p", kind="pivot"), s("r", kind="retryable", deadline=H)))
    env.on("Do-p", succeed())
    env.start("demo", "d-1", {})
    env.cancel("d-1", "too late")
    last = env.journal("d-1")[-1]
    assert last.type == "ignored"
    assert last.body["reason"] == "refused: the saga passed its pivot 'p' and cannot be undone"
    assert env.state("d-1").status == "running"


# --------------------------------------------------------------------------------------- retries


def test_retries_back_off_exponentially_with_deterministic_jitter() -> None:
    retry = Retry(max_attempts=4, initial=S, multiplier=2.0, cap=timedelta(seconds=3), jitter=0.1)
    env = env_for(saga(s("a", retry=retry)))
    env.on("Do-a", [retryable_fail(), retryable_fail(), retryable_fail(), succeed()])
    env.start("demo", "d-1", {})
    dues = [e.body["due_ms"] for e in env.journal("d-1") if e.body.get("key") == "a:retry"]
    assert len(dues) == 1
    assert 900 <= dues[0] <= 1100
    env.advance(timedelta(minutes=1))
    # Each answered failure starts a new request, with a new id.
    assert ids(env.commands) == ["d-1:a:1", "d-1:a:2", "d-1:a:3", "d-1:a:4"]
    assert env.state("d-1").status == "completed"
    delays = [retry.delay_ms(n, 42, "k") for n in (1, 2, 3, 4)]
    assert delays == [retry.delay_ms(n, 42, "k") for n in (1, 2, 3, 4)]  # deterministic
    assert all(d <= 3000 for d in delays)
    assert 1800 <= delays[1] <= 2200


def test_max_attempts_and_non_retryable_errors() -> None:
    env = env_for(saga(s("a"), s("b", retry=Retry(max_attempts=2))), ok=("a",))
    env.on("Do-b", retryable_fail())
    env.start("demo", "d-1", {})
    env.advance(H)
    assert env.state("d-1").reason == "Do-b failed: unavailable; gave up after 2 attempts"
    assert env.command_types("d-1") == ["Do-a", "Do-b", "Do-b", "Undo-a"]

    env = env_for(saga(s("a"), s("b", retry=Retry(non_retryable=("Fraud",)))), ok=("a",))
    env.on("Do-b", retryable_fail("Fraud"))
    env.start("demo", "d-2", {})
    assert env.command_types("d-2") == ["Do-a", "Do-b", "Undo-a"]
    assert env.state("d-2").status == "compensated"


def test_retriable_step_after_pivot_retries_until_success() -> None:
    env = env_for(
        saga(s("p", kind="pivot"), s("r", kind="retryable", deadline=timedelta(seconds=5)))
    )
    env.on("Do-p", succeed())
    env.on("Do-r", [silent(), retryable_fail(), fail(), silent(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(H)
    types = env.command_types("d-1")
    assert env.state("d-1").status == "failed"  # a non-retryable failure after the pivot
    assert types == ["Do-p", "Do-r", "Do-r", "Do-r"]
    env = env_for(
        saga(s("p", kind="pivot"), s("r", kind="retryable", deadline=timedelta(seconds=5)))
    )
    env.on("Do-p", succeed())
    env.on("Do-r", [silent(), retryable_fail(), silent(), succeed()])
    env.start("demo", "d-2", {})
    env.advance(H)
    assert env.state("d-2").status == "completed"
    # A timed-out attempt goes again as the same request; an answered failure starts a new one.
    assert ids(env.commands_for("d-2")) == ["d-2:p:1", "d-2:r:1", "d-2:r:1", "d-2:r:2", "d-2:r:2"]
    assert [c.send for c in env.commands_for("d-2")] == [1, 1, 2, 1, 2]
    assert [c.attempt for c in env.commands_for("d-2")] == [1, 1, 1, 2, 2]


def test_compensation_failures_are_retried_until_success() -> None:
    env = env_for(saga(s("a", deadline=timedelta(seconds=10)), s("b")), ok=())
    env.on("Do-a", succeed())
    env.on("Do-b", fail())
    env.on("Undo-a", [fail(), retryable_fail(), silent(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(H)
    undos = [c for c in env.commands_for("d-1") if c.command_type == "Undo-a"]
    # Failures start new requests; the silent one goes again under its own id.
    assert ids(undos) == ["d-1:a:undo:1", "d-1:a:undo:2", "d-1:a:undo:3", "d-1:a:undo:3"]
    assert env.state("d-1").status == "compensated"


# ------------------------------------------------------------------- long-running operation


VM = {"name": "web-1", "size": "small"}


def vm_env() -> SagaTestEnv:
    env = SagaTestEnv(vm_saga)
    env.on("CreateVm", succeed({"state": "creating"}))
    env.on("DeleteVm", succeed())
    return env


def test_long_running_polls_until_done() -> None:
    env = vm_env()
    env.on("GetVm", [succeed({"state": "creating"}), succeed({"state": "running"})])
    env.start("provision-vm", "v-1", VM)
    env.advance(timedelta(minutes=2))
    state = env.state("v-1")
    assert state.status == "completed"
    assert state.data["state"] == "running"
    assert env.command_types("v-1") == ["CreateVm", "GetVm", "GetVm"]
    assert [e.at_ms for e in env.journal("v-1") if e.type == "command_sent"] == [0, 30_000, 60_000]


def test_long_running_failure_on_its_own() -> None:
    env = vm_env()
    env.on("GetVm", succeed({"state": "error"}))
    env.start("provision-vm", "v-1", VM)
    env.advance(H)
    assert env.state("v-1").status == "compensated"
    assert env.command_types("v-1") == ["CreateVm", "GetVm"]


def test_long_running_deadline_cancels_verifies_then_compensates() -> None:
    env = vm_env()
    verified = {"n": 0}

    def status(cmd: Any) -> Any:
        if "DeleteVm" not in env.command_types("v-1"):
            return succeed({"state": "creating"})
        verified["n"] += 1
        return succeed({"state": "deleting" if verified["n"] < 3 else "deleted"})

    env.on("GetVm", status)
    env.start("provision-vm", "v-1", VM)
    env.advance(timedelta(days=1))
    types = env.command_types("v-1")
    assert types[0] == "CreateVm"
    assert types.count("DeleteVm") == 1
    assert types[types.index("DeleteVm") :] == ["DeleteVm", "GetVm", "GetVm", "GetVm"]
    state = env.state("v-1")
    assert state.status == "compensated"
    assert "passed its deadline" in (state.reason or "")


@pytest.mark.parametrize("first_cancel", [silent(), fail("Busy"), retryable_fail("Busy")])
def test_a_cancel_that_fails_or_gets_no_reply_is_sent_again(first_cancel: Any) -> None:
    env = vm_env()
    env.on("DeleteVm", [first_cancel, succeed()])

    def status(cmd: Any) -> Any:
        cancels = env.command_types("v-1").count("DeleteVm")
        return succeed({"state": "deleted" if cancels >= 2 else "creating"})

    env.on("GetVm", status)
    env.start("provision-vm", "v-1", VM)
    env.advance(timedelta(days=1))
    types = env.command_types("v-1")
    assert types.count("DeleteVm") == 2
    assert types[-3:] == ["DeleteVm", "DeleteVm", "GetVm"]
    state = env.state("v-1")
    assert state.status == "compensated"
    assert_vm_folds(env, "v-1")


def test_a_cancel_never_answered_ends_in_a_verdict_not_a_stuck_saga() -> None:
    env = vm_env()
    env.on("DeleteVm", silent())
    env.on("GetVm", succeed({"state": "creating"}))
    env.start("provision-vm", "v-1", VM)
    env.advance(timedelta(days=1))
    state = env.state("v-1")
    assert state.status == "failed"
    assert "not confirmed" in (state.reason or "")
    assert env.command_types("v-1").count("DeleteVm") == 10  # ``checks`` tries, then verify


def test_long_running_cancellation_not_confirmed_fails_the_saga() -> None:
    env = vm_env()
    env.on("GetVm", succeed({"state": "stuck"}))
    env.start("provision-vm", "v-1", VM)
    env.advance(timedelta(days=1))
    state = env.state("v-1")
    assert state.status == "failed"
    assert "not confirmed after 10 status checks" in (state.reason or "")


def test_long_running_done_while_cancelling_is_compensated() -> None:
    env = vm_env()
    env.on("CreateVm", succeed({"state": "creating"}, after=timedelta(minutes=11)))
    env.on("GetVm", succeed({"state": "running"}))
    env.start("provision-vm", "v-1", VM)
    env.advance(H)
    types = env.command_types("v-1")
    assert types == ["CreateVm", "DeleteVm", "GetVm", "DeleteVm"]
    assert ids(env.commands_for("v-1"))[-1] == "v-1:create-vm:undo:1"
    assert env.state("v-1").status == "compensated"


# ---------------------------------------------------------------------------- signals, sleep, flow


def test_signal_wait_receives_signal_and_merges_it() -> None:
    env = env_for(saga(s("a"), wait_signal("approve", timeout=H), s("b")), ok=("a", "b"))
    env.start("demo", "d-1", {})
    assert env.state("d-1").status == "running"
    env.signal("d-1", "approve", {"by": "bob"})
    assert env.state("d-1").status == "completed"
    assert env.state("d-1").data["by"] == "bob"


def test_signal_before_the_wait_is_kept() -> None:
    env = env_for(saga(sleep("nap", S), wait_signal("go", timeout=H)))
    env.start("demo", "d-1", {})
    env.signal("d-1", "go")
    assert env.state("d-1").signals == (("go", {}),)
    env.advance(S)
    assert env.state("d-1").status == "completed"
    assert env.state("d-1").signals == ()


def test_signal_timeout_compensates() -> None:
    env = env_for(saga(s("a"), wait_signal("approve", timeout=H), deadline=2 * H), ok=("a",))
    env.start("demo", "d-1", {})
    env.advance(H - S)
    assert env.state("d-1").status == "running"
    env.advance(S)
    assert env.state("d-1").status == "compensated"
    assert "did not arrive" in (env.state("d-1").reason or "")
    assert env.command_types("d-1") == ["Do-a", "Undo-a"]


def test_durable_sleep() -> None:
    env = env_for(saga(s("a"), sleep("nap", timedelta(minutes=5)), s("b")), ok=("a", "b"))
    env.start("demo", "d-1", {})
    assert env.state("d-1").timers == {"@saga:deadline:1": 3_600_000, "nap:sleep:1": 300_000}
    env.advance(timedelta(minutes=4))
    assert env.command_types("d-1") == ["Do-a"]
    env.advance(timedelta(minutes=1))
    assert env.command_types("d-1") == ["Do-a", "Do-b"]
    assert env.state("d-1").status == "completed"


def test_parallel_all_joins_and_fails_as_one() -> None:
    d = saga(parallel("both", [s("a"), s("b")], [s("c")]), s("d"))
    env = env_for(d, ok=("a", "b", "c", "d"))
    env.start("demo", "d-1", {})
    assert env.command_types("d-1") == ["Do-a", "Do-c", "Do-b", "Do-d"]
    assert env.state("d-1").status == "completed"

    env = env_for(d, ok=("a", "c"))
    env.on("Do-b", fail())
    env.start("demo", "d-2", {})
    assert env.command_types("d-2") == ["Do-a", "Do-c", "Do-b", "Undo-c", "Undo-a"]
    assert env.state("d-2").status == "compensated"


def test_parallel_first_to_succeed() -> None:
    d = saga(parallel("race", [s("a")], [s("b")], join="first"), s("c"))
    env = env_for(d, ok=("b", "c"))
    env.on("Do-a", silent())
    env.on("Undo-a", succeed())
    env.start("demo", "d-1", {})
    state = env.state("d-1")
    assert state.status == "completed"
    assert state.completed == ("b", "c")
    # the loser's command got no reply: it may have been done, so it is undone before the join
    assert env.command_types("d-1") == ["Do-a", "Do-b", "Undo-a", "Do-c"]
    env.reply(real_id(env, "d-1:a:1"))  # the loser's late reply is ignored
    assert env.journal("d-1")[-1].type == "ignored"

    env = env_for(d)
    env.on("Do-a", fail())
    env.on("Do-b", fail())
    env.start("demo", "d-2", {})
    assert env.state("d-2").status == "compensated"
    assert "every branch of 'race' failed" in (env.state("d-2").reason or "")


def test_branch_on_data_and_a_loop() -> None:
    d = saga(
        branch("big", lambda d: d["total"] > 100, then=[s("review")], otherwise=[s("auto")]),
        s("poll", merge=lambda d, r: {**d, "n": d.get("n", 0) + 1}),
        branch("again", lambda d: d["n"] < 3, then=[sleep("wait", S), goto("poll")]),
    )
    env = env_for(d, ok=("review", "auto", "poll"))
    env.start("demo", "d-1", {"total": 500})
    env.advance(H)
    assert env.command_types("d-1") == ["Do-review", "Do-poll", "Do-poll", "Do-poll"]
    assert ids(env.commands_for("d-1"))[1:] == [
        "d-1:poll:1",
        "d-1:poll:2",
        "d-1:poll:3",
    ]
    env.start("demo", "d-2", {"total": 5})
    assert env.command_types("d-2")[0] == "Do-auto"


def test_child_saga_merges_result_and_failure_compensates() -> None:
    kid = saga(s("k"), name="kid")
    parent = saga(
        s("a"),
        child("sub", saga="kid", input=lambda d: {"from": "parent"}, merge="kid",
              compensate=call("UndoSub", to="kid.commands")),
    )  # fmt: skip
    env = env_for(parent, kid, ok=("a", "k"))
    env.start("demo", "p-1", {})
    state = env.state("p-1")
    assert state.status == "completed"
    assert state.data["kid"] == {"from": "parent", "k": True}
    assert env.state("p-1/sub/1").parent is not None

    env = env_for(parent, kid, ok=("a",))
    env.on("Do-k", fail())
    env.on("Undo-k", succeed())
    env.start("demo", "p-2", {})
    assert env.state("p-2/sub/1").status == "compensated"
    assert env.state("p-2").status == "compensated"
    assert env.command_types("p-2") == ["Do-a", "Undo-a"]


def test_merge_under_a_key() -> None:
    env = env_for(saga(s("a", merge="credit")))
    env.on("Do-a", succeed({"id": 7}))
    env.start("demo", "d-1", {"x": 1})
    assert env.state("d-1").data == {"x": 1, "credit": {"id": 7}}


def test_payload_must_be_json() -> None:
    env = env_for(saga(s("a", payload=lambda d: {"when": object()})))
    state = env.start("demo", "d-1", {})
    assert state is not None
    assert state.status == "stuck"
    assert state.stuck is not None
    assert state.stuck["error"] == "TypeError"
    assert "not JSON" in state.stuck["message"]


# ------------------------------------------------------------------------------- ignored inputs


PROGRAM = sagas.compile(saga(s("a", deadline=timedelta(seconds=10)), s("b")))


def run(*steps: tuple[Any, int]) -> tuple[SagaState | None, list[JournalEvent]]:
    state: SagaState | None = None
    events: list[JournalEvent] = []
    for inp, now in steps:
        decision = transition(PROGRAM, state, inp, now)
        events += decision.events
        state = decision.state
        assert fold(PROGRAM, events) == state
    return state, events


def test_unknown_saga_reply_is_recorded_and_ignored() -> None:
    decision = transition(PROGRAM, None, Reply("nope", "nope:a:1", "success", {}), 5)
    assert decision.state is None
    assert decision.commands == []
    assert [e.type for e in decision.events] == ["ignored"]
    assert decision.events[0].body["reason"] == "no saga with this id"


def tagged(readable: str) -> str:
    """The id the engine gives command ``readable`` of a saga started without entropy."""
    return command_id(readable, new_secret(None, readable.split(":", maxsplit=1)[0]))


def test_duplicate_late_and_old_replies_are_ignored() -> None:
    ok = Reply("d", tagged("d:a:1"), "success", {})
    state, events = run((Start("d", {}), 0), (ok, 1), (ok, 2))
    assert events[-1].type == "ignored"
    assert state is not None
    assert state.pending == {tagged("d:b:1"): "b"}
    decision = transition(PROGRAM, state, Reply("d", tagged("d:a:0"), "success", {}), 3)
    assert decision.state == state
    assert decision.commands == []


def test_timers_never_fire_early_and_unknown_timers_are_ignored() -> None:
    state, _ = run((Start("d", {}), 0))
    assert state is not None
    early = transition(PROGRAM, state, TimerFired("d", "a:deadline:1", 10_000), 9_999)
    assert early.state == state
    assert early.events[0].body["reason"] == "the timer is not due until 10000"
    unknown = transition(PROGRAM, state, TimerFired("d", "zzz:deadline:1", 0), 20_000)
    assert unknown.events[0].body["reason"] == "the timer is not pending"
    due = transition(PROGRAM, state, TimerFired("d", "a:deadline:1", 10_000), 10_000)
    assert due.state is not None
    assert due.state.status == "compensating"  # Do-a got no reply: it may have happened
    assert [c.command_type for c in due.commands] == ["Undo-a"]


def test_start_is_idempotent_and_records_the_version() -> None:
    state, events = run((Start("d", {"x": 1}), 0), (Start("d", {"x": 2}), 1))
    assert state is not None
    assert state.version == 1
    assert state.data == {"x": 1}
    assert events[-1].body["reason"] == "the saga already exists (start is idempotent)"
    assert state.seed == transition(PROGRAM, None, Start("d", {}), 0).state.seed  # type: ignore[union-attr]


def test_signals_and_cancels_after_the_end_are_ignored() -> None:
    state, _ = run(
        (Start("d", {}), 0),
        (Cancel("d", "stop"), 1),
        (Reply("d", tagged("d:a:undo:1"), "success", {}), 2),
        (Signal("d", "x", {}), 3),
        (Cancel("d", "again"), 4),
    )
    assert state is not None
    assert state.status == "cancelled"
    assert state.reason == "cancelled: stop"


def test_state_and_events_round_trip_through_json() -> None:
    env = order_env()
    env.on("ReserveStock", retryable_fail())
    env.start("order", "o-1", ORDER)
    state = env.state("o-1")
    assert SagaState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    for event in env.journal("o-1"):
        assert JournalEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_guide_testing_example() -> None:
    env = SagaTestEnv(order_saga)
    env.on("ReserveCredit", succeed({"credit_id": "c-1"}))
    env.on("ReserveStock", [retryable_fail(), fail("OutOfStock")])
    env.on("ReleaseCredit", succeed())
    env.start("order", "o-1", {"customer": "ada", "total": 30.0, "items": ["book"]})
    env.advance(timedelta(minutes=1))
    assert env.state("o-1").status == "compensated"
    assert env.command_types("o-1") == [
        "ReserveCredit",
        "ReserveStock",
        "ReserveStock",
        "ReleaseCredit",
    ]


def test_run_until_idle_and_unknown_types() -> None:
    env = env_for(saga(s("a")))
    with pytest.raises(sagas.ConfigurationError, match="unknown saga type"):
        env.start("nope", "x", {})
    env = env_for(
        saga(
            s("a", deadline=H), sleep("nap", timedelta(days=3)), s("b", deadline=H), deadline=None
        ),
        ok=("a", "b"),
    )
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    assert env.now_ms == 3 * 86_400_000
