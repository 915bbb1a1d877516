"""Review findings on the world's books change: each test is a minimal input sequence that the
engine gets wrong today, with the expected behaviour in its docstring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from sagas import Saga, branch, call, child, goto, long_running, parallel, step
from sagas.dsl import Node
from sagas.engine import Resume, Terminate, fold
from sagas.testing import SagaTestEnv, fail, silent, succeed

S = timedelta(seconds=1)


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    if kw.get("kind", "compensatable") == "compensatable":
        kw.setdefault("compensate", call(f"Undo-{name}"))
    return step(name, to=f"{name}.commands", command=f"Do-{name}", **kw)


def saga(*steps: Node[dict[str, Any]], name: str = "demo", **kw: Any) -> Saga[dict[str, Any]]:
    kw.setdefault("deadline", 100 * S)
    return Saga[dict[str, Any]](name, version=1, steps=steps, **kw)


def lr(name: str = "op", kind: str = "compensatable", **kw: Any) -> Node[dict[str, Any]]:
    return long_running(
        name,
        to="op.commands",
        start=call("Start"),
        status=call("Status"),
        cancel=call("Cancel"),
        every=S,
        done=lambda r: r.get("state") == "done",
        failed=lambda r: r.get("state") == "failed",
        cancelled=lambda r: r.get("state") == "gone",
        compensate=None if kind == "pivot" else call("Undo-op"),
        kind=kind,
        **kw,
    )


def folds(env: SagaTestEnv, saga_id: str) -> None:
    assert fold(None, env.journal(saga_id)) == env.state(saga_id)


def test_a_first_wins_race_in_a_loop_is_refused_by_the_compiler() -> None:
    """A loop running a first-wins race would undo, with one round's losers, what earlier
    rounds kept (a compensation undoes everything its step did): the compiler refuses it."""
    from sagas.errors import DefinitionError

    with pytest.raises(DefinitionError, match="first-wins parallel cannot be inside a loop"):
        saga(
            s("count"),
            parallel("race", [s("a")], [s("b")], join="first"),
            branch("again", lambda d: d["n"] < 2, then=[goto("count")]),
        ).compile()


def test_a_resumed_first_wins_race_undoes_only_its_new_rounds_losers() -> None:
    """A failed saga resumed at a first-wins parallel races again: what its losing branch did
    in the first round (and won) stands; only the new round's losers are undone."""
    env = SagaTestEnv(
        saga(
            parallel("race", [s("a")], [s("b")], join="first"),
            s("p", kind="pivot"),
            s("r", kind="retryable", deadline=S),
        )
    )
    rounds = {"a": 0}

    def do_a(_: Any) -> Any:
        rounds["a"] += 1
        return succeed(after=(0 if rounds["a"] == 1 else 5) * S)

    env.on("Do-a", do_a)  # round 1: a wins; round 2: a loses, late
    env.on("Undo-a", succeed())
    env.on("Do-b", succeed(after=S))
    env.on("Undo-b", succeed())
    env.on("Do-p", succeed())
    env.on("Do-r", [fail("broken"), succeed()])
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "failed"
    assert env.state("d-1").completed == ("a", "p")  # b lost round 1 and was undone
    env._push(env.now_ms, "demo", Resume("d-1", "race", "ops"))
    env.run_until_idle()
    state = env.state("d-1")
    # round 2: b wins, a (in flight) is undone; round 1's a is not touched
    unwound = [e.body["queue"] for e in env.journal("d-1") if e.type == "unwinding"]
    assert unwound == [["b"], ["a"]]
    assert state.completed.count("a") == 1
    folds(env, "d-1")


def test_a_pivot_operation_whose_status_says_failed_while_verifying_its_cancel_compensates() -> (
    None
):
    """A long-running pivot is polling when a cancel comes: it is cancelled and verified. Its
    status then says the operation *failed* (``failed(reply)`` is true: it did not take
    effect, as the polling phase treats it). Expected: that is a definitive answer: the pivot
    was not done, the saga compensates (ends ``cancelled``, ``Undo-a`` sent). Today the
    verifying phase only recognises ``cancelled``/``done``: the saga goes ``in-doubt`` and
    polls forever (600 status polls in 10 minutes), although the answer is known."""
    env = SagaTestEnv(saga(s("a"), lr("op", kind="pivot", deadline=30 * S)))
    env.on("Do-a", succeed())
    env.on("Undo-a", succeed())
    env.on("Start", succeed())
    env.on("Cancel", succeed())
    env.on("Status", succeed({"state": "failed"}))
    env.start("demo", "d-1", {})
    env.cancel("d-1", "stop")
    env.run_until_idle(limit=timedelta(minutes=10))
    state = env.state("d-1")
    assert state.status == "cancelled", (state.status, state.tokens)
    assert "Undo-a" in env.command_types("d-1")
    folds(env, "d-1")


def test_a_settle_does_not_override_a_pivot_child_that_was_already_told_to_cancel() -> None:
    """A pivot child saga passes its step deadline: the parent goes ``in-doubt`` and cancels the
    child (``child_cancelled``), which starts compensating itself. An operator then settles the
    parent ``done``. Expected: a child pivot's end decides (the README: "child pivots are
    cancelled and their end decides"), so the settle is ignored (or at least the parent does not
    go forward on work its child is undoing). Today the settle is accepted: the parent runs
    past its pivot and completes while the child ends ``cancelled`` with all its work undone,
    and the child's ``failure`` reply is then ignored ("the saga already ended completed")."""
    kid = saga(s("k1"), s("k2"), name="kid", deadline=60 * S)
    parent = saga(
        s("a"),
        child("c", saga="kid", input=lambda d: {}, kind="pivot", deadline=2 * S),
        s("r", kind="retryable", deadline=S),
        name="parent",
        deadline=60 * S,
    )
    env = SagaTestEnv(parent, kid)
    for name in ("a", "k1"):
        env.on(f"Do-{name}", succeed())
        env.on(f"Undo-{name}", succeed(after=5 * S))
    env.on("Do-k2", succeed(after=10 * S))
    env.on("Undo-k2", succeed(after=5 * S))
    env.on("Do-r", succeed())
    env.start("parent", "p-1", {})
    env.advance(3 * S)
    assert env.state("p-1").status == "in-doubt"
    assert env.state("p-1/c/1").status == "compensating"  # the cancel reached it
    env.settle("p-1", True)
    env.run_until_idle()
    assert env.state("p-1/c/1").status == "cancelled"
    assert env.state("p-1").status != "completed", "the parent went on past a pivot that was undone"
    folds(env, "p-1")


def test_a_saga_draining_an_unanswered_retryable_command_does_not_wait_forever() -> None:
    """After the pivot, a join-all runs two retryable steps: ``r1`` fails (``failure``) and the
    saga fails (compensating, outcome ``failed``); ``r2``'s command is in flight and its
    participant never answers (a lost send). Expected: the saga still ends (``failed``), or at
    least keeps something pending that can move it (``r2``'s deadline and resends of the same
    command). Today ``_abandon`` puts ``r2`` in phase ``draining`` after clearing its timers:
    the saga stays ``compensating`` forever with no timer, and the environment is idle."""
    env = SagaTestEnv(
        saga(
            s("a"),
            s("p", kind="pivot"),
            parallel(
                "after",
                [s("r1", kind="retryable", deadline=2 * S)],
                [s("r2", kind="retryable", deadline=2 * S)],
            ),
        )
    )
    env.on("Do-a", succeed())
    env.on("Do-p", succeed())
    env.on("Do-r1", fail("boom", after=S))
    env.on("Do-r2", silent())
    env.start("demo", "d-1", {})
    env.run_until_idle(limit=timedelta(hours=2))
    state = env.state("d-1")
    stuck = not state.terminal and not state.timers
    assert not stuck, (state.status, state.tokens, env.idle)
    folds(env, "d-1")


def test_a_child_saga_terminated_by_an_operator_is_undone_by_its_parent_like_a_failed_one() -> None:
    """A parent's compensatable child step runs a child saga; ``k1`` is done and ``k2`` in
    flight when an operator terminates the child (a terminated saga compensates nothing: its
    work stays done). The parent gets ``failure`` with ``status: terminated`` and compensates.
    Expected: like a child that ended ``failed``, a terminated child may have left work
    standing, so the child step's compensation (``UndoKid``) runs and the parent's books
    balance. Today only ``status == "failed"`` counts as partly done: the parent ends
    ``compensated`` without ``UndoKid`` and the child's ``k1`` effect stands."""
    kid = saga(s("k1"), s("k2"), name="kid", deadline=60 * S)
    parent = saga(
        s("a"),
        child("c", saga="kid", input=lambda d: {}, compensate=call("UndoKid", to="kid.commands")),
        name="parent",
    )
    env = SagaTestEnv(parent, kid)
    for name in ("a", "k1"):
        env.on(f"Do-{name}", succeed())
        env.on(f"Undo-{name}", succeed())
    env.on("Do-k2", silent())
    env.on("UndoKid", succeed())
    env.start("parent", "p-1", {})
    env._push(env.now_ms, "kid", Terminate("p-1/c/1", "ops", "stuck"))
    env._drain(env.now_ms)
    env.run_until_idle()
    assert env.state("p-1/c/1").status == "terminated"
    assert env.state("p-1").status in ("compensated", "failed")
    undone = "UndoKid" in env.command_types("p-1")
    assert undone or env.state("p-1").status == "failed", env.effects()
    folds(env, "p-1")
