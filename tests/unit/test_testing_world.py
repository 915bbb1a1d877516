"""The world of ``SagaTestEnv``: services that handle a command after its lag, refuse it past its
deadline, handle one command id once, and keep a ledger of the effects that stand."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from sagas import Saga, branch, call, child, goto, long_running, sleep, step
from sagas.engine import ChildCancel, CommandOut, Decision, Input, SagaState, Start
from sagas.engine import transition as engine_transition
from sagas.testing import Effect, Response, SagaTestEnv, fail, silent, succeed
from sagas.testing import env as env_module

S = timedelta(seconds=1)
MS = timedelta(milliseconds=1)


def one_step(deadline: timedelta | None = 10 * S) -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]](
        "one",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("a", to="a.commands", command="Do-a", compensate=call("Undo-a"), deadline=deadline)
        ],
    )


def after_pivot() -> Saga[dict[str, Any]]:
    """A pivot, then a retryable step whose 5 s deadline bounds each send."""
    return Saga[dict[str, Any]](
        "demo",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("p", to="p.commands", command="Do-p", kind="pivot"),
            step("r", to="r.commands", command="Do-r", kind="retryable", deadline=5 * S),
        ],
    )


def only(env: SagaTestEnv, saga_id: str, command_type: str) -> CommandOut:
    (cmd,) = {c.command_id: c for c in env.commands_for(saga_id) if c.command_type == command_type}
    return next(c for c in env.commands_for(saga_id) if c.command_id == cmd)


# ----------------------------------------------------------------------------- lag and after


def test_a_command_is_handled_after_its_lag_and_answered_after_its_after() -> None:
    env = SagaTestEnv(one_step())
    env.on("Do-a", succeed({"ok": True}, lag=3 * S, after=2 * S))
    env.start("one", "o-1", {})
    env.advance(3 * S - MS)
    assert env.effects() == []  # not handled yet
    env.advance(MS)
    cmd = only(env, "o-1", "Do-a")
    assert env.effects("o-1") == [Effect("o-1", "a", "Do-a", cmd.command_id)]
    assert env.state("o-1").status == "running"  # handled, the reply on its way
    env.advance(2 * S - MS)
    assert env.state("o-1").status == "running"
    env.advance(MS)
    assert env.state("o-1").status == "completed"
    accepted = [e for e in env.journal("o-1") if e.type == "reply_accepted"]
    assert [e.at_ms for e in accepted] == [5_000]


def test_a_service_handles_one_sagas_commands_on_a_topic_in_sending_order() -> None:
    # The step's command takes 3 s to arrive; the saga is cancelled at 1 s and sends the
    # compensation at once. It may not overtake the command: the undo finds the effect to undo.
    env = SagaTestEnv(one_step())
    env.on("Do-a", succeed(lag=3 * S))
    env.on("Undo-a", succeed())
    env.start("one", "o-1", {})
    env.advance(S)
    env.cancel("o-1")
    assert env.command_types("o-1") == ["Do-a", "Undo-a"]
    env.advance(S)
    assert env.effects() == []
    assert env.executions("o-1") == {}  # neither was handled yet
    env.advance(S)
    assert env.effects() == []  # done, then undone
    assert sorted(env.executions("o-1").values()) == [1, 1]
    assert env.state("o-1").status == "cancelled"


# --------------------------------------------------------------------------- late commands


def test_a_command_handled_after_its_deadline_is_refused_without_effect() -> None:
    env = SagaTestEnv(one_step(deadline=2 * S))
    env.on("Do-a", succeed(lag=2 * S + MS))
    env.on("Undo-a", succeed())
    env.start("one", "o-1", {})
    env.advance(timedelta(minutes=1))
    cmd = only(env, "o-1", "Do-a")
    assert cmd.deadline_ms == 2_000
    recorded = env.recorded(cmd.command_id)
    assert recorded is not None
    assert recorded.outcome == "failure"
    assert recorded.payload["error"] == "deadline-passed"
    assert "2000" in recorded.payload["message"]
    assert env.executions("o-1")[cmd.command_id] == 0
    assert env.effects() == []
    replies = [e for e in env.journal("o-1") if e.body.get("command_id") == cmd.command_id]
    assert any(e.body.get("outcome") == "failure" for e in replies if e.type != "command_sent")


def test_a_command_handled_at_its_deadline_runs() -> None:
    env = SagaTestEnv(one_step(deadline=2 * S))
    env.on("Do-a", succeed(lag=2 * S))
    env.start("one", "o-1", {})
    env.advance(3 * S)
    cmd = only(env, "o-1", "Do-a")
    recorded = env.recorded(cmd.command_id)
    assert recorded is not None
    assert recorded.outcome == "success"
    assert env.executions("o-1") == {cmd.command_id: 1}


# ------------------------------------------------------------------------ one id, one handling


def test_a_resend_gets_the_recorded_reply_and_runs_nothing_again() -> None:
    consulted: list[CommandOut] = []

    def do_r(cmd: CommandOut) -> Response:
        consulted.append(cmd)
        return succeed({"n": len(consulted)}, lag=4 * S, after=3 * S)

    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", do_r)
    env.start("demo", "d-1", {})
    # Do-r is handled at 4 s, its reply arrives at 7 s; the 5 s deadline has the saga send it
    # again at about 6 s, handled at 10 s from the record (its own deadline passed by then).
    env.advance(timedelta(minutes=1))
    sends = [c for c in env.commands_for("d-1") if c.command_type == "Do-r"]
    assert [c.send for c in sends] == [1, 2]
    assert len({c.command_id for c in sends}) == 1
    assert len(consulted) == 1
    assert env.executions("d-1")[sends[0].command_id] == 1
    assert [e.step for e in env.effects("d-1")] == ["p", "r"]
    assert env.state("d-1").data["n"] == 1
    replies = [e for e in env.journal("d-1") if e.body.get("command_id") == sends[0].command_id]
    kinds = [(e.type, e.at_ms) for e in replies if e.type in ("reply_accepted", "ignored")]
    resent = sends[1].deadline_ms
    assert resent is not None
    assert kinds == [("reply_accepted", 7_000), ("ignored", resent - 5_000 + 4_000 + 3_000)]


def test_a_resend_before_the_first_reply_arrived_gets_no_reply_of_its_own() -> None:
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", [succeed(after=20 * S), fail("never consulted")])
    env.start("demo", "d-1", {})
    env.advance(timedelta(minutes=1))
    sends = [c for c in env.commands_for("d-1") if c.command_type == "Do-r"]
    assert len(sends) >= 3
    assert len({c.command_id for c in sends}) == 1
    cid = sends[0].command_id
    assert [e.type for e in env.journal("d-1") if e.body.get("command_id") == cid].count(
        "ignored"
    ) == 0
    assert env.state("d-1").status == "completed"
    assert env.executions("d-1")[cid] == 1


def test_a_lost_send_is_scripted_again_when_resent() -> None:
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", [silent(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(timedelta(minutes=1))
    sends = [c for c in env.commands_for("d-1") if c.command_type == "Do-r"]
    assert [c.send for c in sends] == [1, 2]
    assert env.executions("d-1")[sends[0].command_id] == 1
    assert env.state("d-1").status == "completed"


def test_a_duplicate_delivery_of_a_reply_is_delivered_twice() -> None:
    env = SagaTestEnv(one_step())
    env.on("Do-a", Response("success", {}, after=S, duplicate=2 * S))
    env.start("one", "o-1", {})
    env.advance(timedelta(minutes=1))
    cid = only(env, "o-1", "Do-a").command_id
    seen = [(e.type, e.at_ms) for e in env.journal("o-1") if e.body.get("command_id") == cid]
    assert seen[1:] == [("reply_accepted", 1_000), ("ignored", 3_000)]
    assert env.executions("o-1") == {cid: 1}


# ------------------------------------------------------------------------------------ ledger


def three_steps() -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]](
        "three",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("a", to="a.commands", command="Do-a", compensate=call("Undo-a")),
            step("b", to="b.commands", command="Do-b", compensate=call("Undo-b")),
            step("c", to="c.commands", command="Do-c", kind="pivot"),
        ],
    )


def test_the_ledger_keeps_what_completed_and_drops_what_was_undone() -> None:
    env = SagaTestEnv(three_steps())
    for name in "abc":
        env.on(f"Do-{name}", succeed())
    env.on("Undo-a", succeed())
    env.on("Undo-b", fail("cannot"))  # an answered failure undoes nothing
    env.start("three", "t-1", {})
    assert [e.step for e in env.effects("t-1")] == ["a", "b", "c"]
    assert [e.command_type for e in env.effects()] == ["Do-a", "Do-b", "Do-c"]

    env.on("Do-c", fail("no"))
    env.start("three", "t-2", {})
    env.advance(S)  # Undo-b fails and is retried after a back-off, forever
    assert [e.step for e in env.effects("t-2")] == ["a", "b"]
    env.on("Undo-b", succeed())
    env.advance(timedelta(minutes=10))
    assert env.state("t-2").status == "compensated"
    assert env.effects("t-2") == []
    assert [e.saga_id for e in env.effects()] == ["t-1"] * 3


def vm(deadline: timedelta) -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]](
        "vm",
        version=1,
        steps=[
            long_running(
                "create",
                to="cloud.commands",
                start=call("CreateVm"),
                status=call("GetVm"),
                cancel=call("CancelVm"),
                every=10 * S,
                done=lambda r: r["state"] == "running",
                failed=lambda r: r["state"] == "error",
                cancelled=lambda r: r["state"] == "deleted",
                deadline=deadline,
                checks=2,
                compensate=call("DeleteVm"),
            )
        ],
    )


@pytest.mark.parametrize(
    ("status", "cancel", "standing"),
    [
        ("running", None, ["create"]),  # done: the operation stands
        ("error", None, []),  # failed on its own: gone
        ("creating", succeed(), []),  # cancelled on the deadline
        ("creating", fail("busy"), ["create"]),  # the cancel failed: still there
    ],
)
def test_a_long_running_operation_stands_from_its_start_until_cancelled_or_failed(
    status: str, cancel: Response | None, standing: list[str]
) -> None:
    env = SagaTestEnv(vm(deadline=timedelta(seconds=25)))
    env.on("CreateVm", succeed({"state": "creating"}))
    env.on("GetVm", succeed({"state": status}))
    env.on("CancelVm", cancel or silent())
    env.on("DeleteVm", fail("no delete in this world"))
    env.start("vm", "v-1", {})
    assert [(e.step, e.command_type) for e in env.effects("v-1")] == [("create", "CreateVm")]
    env.advance(timedelta(minutes=5))
    assert [e.step for e in env.effects("v-1")] == standing


def op_twice() -> Saga[dict[str, Any]]:
    """A long-running operation run twice by a loop."""
    return Saga[dict[str, Any]](
        "twice",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            long_running(
                "op",
                to="ops",
                start=call("StartOp"),
                status=call("GetOp"),
                cancel=call("CancelOp"),
                every=S,
                done=lambda r: r["state"] == "done",
                failed=lambda r: r["state"] == "failed",
                cancelled=lambda r: r["state"] == "cancelled",
                deadline=5 * S,
                compensate=call("UndoOp"),
                merge=lambda d, r: {**d, "n": d.get("n", 0) + ("state" in r)},  # status replies
            ),
            branch("again", lambda d: d["n"] < 2, then=[goto("op")]),
        ],
    )


def test_a_cancel_ends_the_latest_operation_only_if_it_started() -> None:
    env = SagaTestEnv(op_twice())
    env.on("StartOp", [succeed(), silent()])  # the second start is lost
    env.on("GetOp", [succeed({"state": "done"}), succeed({"state": "cancelled"})])
    env.on("CancelOp", succeed())
    env.on("UndoOp", fail("not now"))
    env.start("twice", "t-1", {})
    env.advance(timedelta(minutes=1))
    assert env.state("t-1").status == "compensating"  # undoing the first, which stands
    cancels = [c for c in env.commands_for("t-1") if c.command_type == "CancelOp"]
    assert env.executions("t-1")[cancels[0].command_id] == 1
    first = next(c for c in env.commands_for("t-1") if c.command_type == "StartOp")
    assert [e.command_id for e in env.effects("t-1")] == [first.command_id]


def test_a_failed_operation_takes_only_its_own_effect_away() -> None:
    env = SagaTestEnv(op_twice())
    env.on("StartOp", succeed())
    env.on("GetOp", [succeed({"state": "done"}), succeed({"state": "failed"})])
    env.on("UndoOp", fail("not now"))
    env.start("twice", "t-1", {})
    env.advance(2 * S)
    starts = [c.command_id for c in env.commands_for("t-1") if c.command_type == "StartOp"]
    assert len(starts) == 2
    assert [e.command_id for e in env.effects("t-1")] == starts[:1]  # the first one stands


def parent_and_child() -> tuple[Saga[dict[str, Any]], Saga[dict[str, Any]]]:
    kid = Saga[dict[str, Any]](
        "kid",
        version=1,
        deadline=timedelta(minutes=5),
        steps=[
            step("k1", to="k.commands", command="Do-k1", compensate=call("Undo-k1")),
            sleep("nap", timedelta(minutes=1)),
        ],
    )
    parent = Saga[dict[str, Any]](
        "parent",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            child(
                "spawn", saga="kid", input=lambda d: {}, compensate=call("UndoKid", to="kid.cmds")
            ),
            step("later", to="l.commands", command="Do-later", compensate=call("Undo-later")),
        ],
    )
    return parent, kid


def test_a_child_steps_compensation_undoes_the_childs_effects() -> None:
    parent, kid = parent_and_child()
    env = SagaTestEnv(parent, kid)
    env.on("Do-k1", succeed())
    env.on("Do-later", fail("no"))
    env.on("UndoKid", succeed())
    env.start("parent", "p-1", {})
    env.advance(30 * S)
    (kid_id,) = [s for s in env.saga_ids() if s != "p-1"]
    assert [e.saga_id for e in env.effects()] == [kid_id]
    env.advance(timedelta(minutes=2))
    assert env.state(kid_id).status == "completed"
    assert env.state("p-1").status == "compensated"
    undo = only(env, "p-1", "UndoKid")
    assert env_module.purpose_of(undo) == "undo"
    assert env.effects() == []


# --------------------------------------------------------------------- inputs the env routes


def test_a_child_cancel_in_a_decision_reaches_the_child_as_a_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent, kid = parent_and_child()
    env = SagaTestEnv(parent, kid)
    env.on("Do-k1", succeed())
    env.start("parent", "p-1", {})
    (kid_id,) = [s for s in env.saga_ids() if s != "p-1"]

    def transition(program: Any, state: SagaState | None, inp: Input, now: int, **kw: Any) -> Any:
        decision: Decision = engine_transition(program, state, inp, now, **kw)
        if inp.saga_id == "p-1":  # a made-up engine that cancels the child on any input
            order = ChildCancel("kid", kid_id, "the parent says so")
            return dataclasses.replace(decision, child_cancels=[order])
        return decision

    monkeypatch.setattr(env_module, "transition", transition)
    env.signal("p-1", "anything")
    cancels = [e for e in env.journal(kid_id) if "the parent says so" in str(e.body)]
    assert cancels
    assert cancels[0].at_ms == env.now_ms


def test_settle_and_jump_reach_the_engine() -> None:
    env = SagaTestEnv(one_step())
    env.on("Do-a", succeed())
    env.start("one", "o-1", {})
    env.settle("o-1", True, by="ops", reason="checked")
    assert env.journal("o-1")[-1].body["input"] == "settle"  # nothing in doubt: ignored

    nap = Saga[dict[str, Any]](
        "nap",
        version=1,
        steps=[
            step("b", to="b", command="B", kind="pivot", deadline=10 * S),
            sleep("z", 5 * S),
        ],
    )
    env = SagaTestEnv(nap)
    env.on("B", succeed(lag=3 * S, after=S))
    env.start("nap", "n-1", {})
    env.jump(timedelta(minutes=1))  # the worker was down; the service was not
    b = only(env, "n-1", "B")
    assert env.recorded(b.command_id) == succeed(lag=3 * S, after=S)  # handled at 3 s, in time
    env.advance(5 * S)
    done = [e for e in env.journal("n-1") if e.type == "step_completed"]
    assert [(e.body["step"], e.at_ms) for e in done] == [("b", 60_000), ("z", 65_000)]
    assert env.state("n-1").status == "completed"


def test_records_between_sagas_take_their_transit_and_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent, kid = parent_and_child()
    transits = iter([3 * S, 0 * S, 0 * S, 0 * S])
    env = SagaTestEnv(parent, kid, transit=lambda: next(transits))
    env.on("Do-k1", succeed())
    env.start("parent", "p-1", {})
    kid_id = "p-1/spawn/1"
    assert env.saga_ids() == ["p-1"]  # the child's start is on its way

    def transition(program: Any, state: SagaState | None, inp: Input, now: int, **kw: Any) -> Any:
        decision: Decision = engine_transition(program, state, inp, now, **kw)
        if inp.saga_id == "p-1" and not isinstance(inp, Start):  # cancel it on any input
            order = ChildCancel("kid", kid_id, "the parent says so")
            return dataclasses.replace(decision, child_cancels=[order])
        return decision

    monkeypatch.setattr(env_module, "transition", transition)
    env.advance(S)
    env.signal("p-1", "anything")  # its cancel takes no time, yet comes after the start
    env.advance(2 * S)
    journal = env.journal(kid_id)
    assert (journal[0].type, journal[0].at_ms) == ("started", 3_000)
    cancelled = [e for e in journal if "the parent says so" in str(e.body)]
    assert cancelled
    assert cancelled[0].at_ms == 3_000
