"""Review findings on the world's books change: each test is a minimal input sequence that the
engine gets wrong today, with the expected behaviour in its docstring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sagas import Saga, branch, call, child, goto, long_running, parallel, sleep, step
from sagas.dsl import Node
from sagas.engine import Terminate, fold
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


def test_a_first_wins_race_in_a_loop_does_not_undo_an_earlier_rounds_winner() -> None:
    """A loop runs a first-wins race twice. Round 1: ``a`` wins (``b`` is undone). Round 2:
    branch 0 only sleeps (``a`` does not run), and ``b`` wins. Expected: round 2 undoes only
    what round 2's losing branch did (nothing: a sleep), so round 1's winner ``a`` stands and
    stays in ``completed``. Today ``_unwind`` takes every ``completed`` entry inside the losing
    branch, from any round, and sends ``Undo-a`` for round 1's winner (and the ``unwinding``
    event removes it from ``completed``, so a later compensation would forget it)."""
    env = SagaTestEnv(
        saga(
            s("count"),
            parallel(
                "race",
                [
                    branch(
                        "round",
                        lambda d: d["n"] == 1,
                        then=[s("a")],
                        otherwise=[sleep("z", 10 * S)],
                    )
                ],
                [s("b")],
                join="first",
            ),
            branch("again", lambda d: d["n"] < 2, then=[goto("count")]),
        )
    )
    rounds = {"count": 0, "b": 0}

    def count(_: Any) -> Any:
        rounds["count"] += 1
        return succeed({"n": rounds["count"]})

    def do_b(_: Any) -> Any:
        rounds["b"] += 1
        return succeed(after=(5 if rounds["b"] == 1 else 1) * S)

    env.on("Do-count", count)
    env.on("Undo-count", succeed())
    env.on("Do-a", succeed(after=S))
    env.on("Undo-a", succeed())
    env.on("Do-b", do_b)
    env.on("Undo-b", succeed())
    env.start("demo", "d-1", {})
    env.run_until_idle()
    state = env.state("d-1")
    assert state.status == "completed"
    # round 1: a wins, b undone; round 2: b wins, nothing of branch 0 ran
    assert env.command_types("d-1").count("Undo-a") == 0, env.command_types("d-1")
    assert "a" in state.completed
    assert any(e.step == "a" for e in env.effects("d-1"))
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


def test_a_child_saga_terminated_by_an_operator_is_undone_by_its_parent_like_a_failed_one() -> (
    None
):
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
