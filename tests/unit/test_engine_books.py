"""The world's books balance in the engine: what a deadline, a cancel, a first-wins race or a
parent's end does to work in flight, driven through :class:`SagaTestEnv` with late replies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import sagas
from sagas import Saga, call, child, long_running, parallel, step
from sagas.dsl import Node
from sagas.engine import fold, public_command_id
from sagas.errors import DefinitionError
from sagas.testing import SagaTestEnv, silent, succeed

S = timedelta(seconds=1)


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    if kw.get("kind", "compensatable") == "compensatable":
        kw.setdefault("compensate", call(f"Undo-{name}"))
    return step(name, to=f"{name}.commands", command=f"Do-{name}", **kw)


def saga(*steps: Node[dict[str, Any]], name: str = "demo", **kw: Any) -> Saga[dict[str, Any]]:
    kw.setdefault("deadline", 10 * S)
    return Saga[dict[str, Any]](name, version=1, steps=steps, **kw)


def cid(env: SagaTestEnv, public: str) -> str:
    return next(c.command_id for c in env.commands if public_command_id(c.command_id) == public)


def folds(env: SagaTestEnv, saga_id: str) -> None:
    assert fold(None, env.journal(saga_id)) == env.state(saga_id)


def pivot_env(**pivot: Any) -> SagaTestEnv:
    env = SagaTestEnv(
        saga(s("a"), s("p", kind="pivot", **pivot), s("r", kind="retryable", deadline=S))
    )
    env.on("Do-a", succeed())
    env.on("Undo-a", succeed())
    env.on("Do-p", silent())
    env.on("Do-r", succeed())
    return env


@pytest.mark.parametrize("pivot_deadline", [None, 2 * S])
def test_a_pivot_in_flight_at_a_deadline_is_awaited_and_its_late_success_goes_forward(
    pivot_deadline: timedelta | None,
) -> None:
    env = pivot_env(deadline=pivot_deadline)
    env.start("demo", "d-1", {})
    env.advance(13 * S)
    state = env.state("d-1")
    assert state.status == "in-doubt"
    assert state.tokens["p"].phase == "in-doubt"
    sent = [c for c in env.commands_for("d-1") if c.command_type == "Do-p"]
    assert len(sent) >= 2
    assert {c.command_id for c in sent} == {sent[0].command_id}  # the same request, resent
    deadline = 10_000 if pivot_deadline is None else 2_000
    assert {c.deadline_ms for c in sent} == {deadline}  # every resend keeps it
    env.reply(cid(env, "d-1:p:1"), "success", {"done": True})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    assert env.command_types("d-1").count("Undo-a") == 0
    folds(env, "d-1")


def test_a_late_pivot_refused_by_its_participant_compensates() -> None:
    env = pivot_env()
    env.start("demo", "d-1", {})
    env.advance(11 * S)
    env.reply(cid(env, "d-1:p:1"), "failure", {"error": "deadline-passed"})
    assert env.state("d-1").status == "compensated"
    assert env.command_types("d-1")[-1] == "Undo-a"
    assert "the saga deadline passed" in (env.state("d-1").reason or "")
    folds(env, "d-1")


@pytest.mark.parametrize("done", [True, False])
def test_an_operator_settles_an_in_doubt_pivot(done: bool) -> None:
    env = pivot_env()
    env.start("demo", "d-1", {})
    env.advance(11 * S)
    env._push(env.now_ms, "demo", sagas.engine.Settle("d-1", done, "ops", "checked the DNS"))
    env._drain(env.now_ms)
    env.run_until_idle()
    assert env.state("d-1").status == ("completed" if done else "compensated")
    settled = [e for e in env.journal("d-1") if e.type == "settled"]
    assert settled[0].body == {"step": "p", "done": done, "by": "ops", "reason": "checked the DNS"}
    folds(env, "d-1")


def test_a_cancel_while_the_pivot_is_in_flight_waits_for_its_answer() -> None:
    env = pivot_env()
    env.start("demo", "d-1", {})
    env.cancel("d-1", "changed my mind")
    assert env.state("d-1").status == "running"
    env.cancel("d-1", "again")
    assert env.journal("d-1")[-1].type == "ignored"
    env.reply(cid(env, "d-1:p:1"), "failure", {"error": "deadline-passed"})
    assert env.state("d-1").status == "cancelled"
    assert env.command_types("d-1")[-1] == "Undo-a"


def test_a_first_wins_loser_that_lands_late_is_undone_before_the_join() -> None:
    env = SagaTestEnv(saga(parallel("race", [s("a")], [s("b"), s("c")], join="first"), s("d")))
    env.on("Do-a", succeed(after=3 * S))
    env.on("Undo-a", succeed())
    for name in "bcd":
        env.on(f"Do-{name}", succeed())
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    # b and c win at once; a (in flight) is undone before d runs, and its late reply is ignored
    assert env.command_types("d-1") == ["Do-a", "Do-b", "Do-c", "Undo-a", "Do-d"]
    assert env.state("d-1").completed == ("b", "c", "d")  # a's undo took it off the books
    folds(env, "d-1")


def test_a_first_wins_branch_that_failed_is_undone_when_another_wins() -> None:
    env = SagaTestEnv(
        saga(parallel("race", [s("a"), s("x")], [s("b", deadline=2 * S)], join="first"))
    )
    env.on("Do-a", succeed())
    env.on("Undo-a", succeed())
    env.on("Do-x", succeed(after=5 * S))  # x wins late
    env.on("Do-b", silent())  # b times out: it may have been done
    env.on("Undo-b", succeed())
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    assert env.command_types("d-1") == ["Do-a", "Do-b", "Do-x", "Undo-b"]


def test_a_cancelled_parent_cancels_its_child_and_waits_for_it() -> None:
    kid = saga(s("k1"), s("k2"), name="kid", deadline=timedelta(minutes=5))
    parent = saga(
        s("a"),
        child("c", saga="kid", input=lambda d: {}, compensate=call("UndoKid", to="kid.commands")),
        name="parent",
    )
    env = SagaTestEnv(parent, kid)
    for name in ("a", "k1"):
        env.on(f"Do-{name}", succeed())
        env.on(f"Undo-{name}", succeed())
    env.on("Do-k2", succeed(after=5 * S))
    env.on("Undo-k2", succeed())
    env.start("parent", "p-1", {})
    assert env.state("p-1/c/1").status == "running"
    env.cancel("p-1", "stop")
    env.run_until_idle()
    assert env.state("p-1/c/1").status == "cancelled"
    assert env.command_types("p-1/c/1") == ["Do-k1", "Do-k2", "Undo-k2", "Undo-k1"]
    assert env.state("p-1").status == "cancelled"
    assert env.command_types("p-1") == ["Do-a", "Undo-a"]  # the child was undone by itself
    types = [e.type for e in env.journal("p-1")]
    assert types.index("child_cancelled") < types.index("finished")
    folds(env, "p-1")


def test_parent_close_abandon_leaves_the_child_running() -> None:
    kid = saga(s("k1"), name="kid")
    parent = saga(
        s("a"),
        child(
            "c",
            saga="kid",
            input=lambda d: {},
            compensate=call("UndoKid", to="kid.commands"),
            parent_close="abandon",
        ),
        name="parent",
    )
    env = SagaTestEnv(parent, kid)
    env.on("Do-a", succeed())
    env.on("Undo-a", succeed())
    env.on("Do-k1", succeed(after=5 * S))
    env.start("parent", "p-1", {})
    env.cancel("p-1", "stop")
    assert env.state("p-1").status == "cancelled"
    env.run_until_idle()
    assert env.state("p-1/c/1").status == "completed"


def test_a_long_running_start_backing_off_at_its_deadline_is_cancelled_unless_nothing_started() -> (
    None
):
    def lr(kind: str = "compensatable") -> Node[dict[str, Any]]:
        return long_running(
            "op", to="op.commands", start=call("Start"), status=call("Status"),
            cancel=call("Cancel"), every=S, done=lambda r: r.get("state") == "done",
            cancelled=lambda r: r.get("state") == "gone", deadline=3 * S,
            compensate=call("Undo-op"),
            retry=sagas.Retry(max_attempts=None, initial=10 * S, cap=10 * S),
        )  # fmt: skip

    payloads: list[tuple[dict[str, Any], bool]] = [({}, True), ({"started": False}, False)]
    for payload, cancelled in payloads:
        env = SagaTestEnv(saga(s("a"), lr()))
        env.on("Do-a", succeed())
        env.on("Undo-a", succeed())
        env.on("Start", sagas.testing.Response("retryable-failure", {"error": "busy", **payload}))
        env.on("Cancel", succeed())
        env.on("Status", succeed({"state": "gone"}))
        env.start("demo", "d-1", {})
        env.run_until_idle()
        assert env.state("d-1").status == "compensated"
        assert ("Cancel" in env.command_types("d-1")) is cancelled


def test_the_compiler_refuses_what_a_first_wins_branch_cannot_undo() -> None:
    with pytest.raises(DefinitionError, match="must be undoable"):
        sagas.compile(
            saga(
                s("p", kind="pivot"),
                parallel(
                    "race",
                    [s("a", kind="retryable", deadline=S)],
                    [s("b", kind="retryable", deadline=S)],
                    join="first",
                ),
            )
        )


def test_a_retryable_step_refused_as_late_is_retried_not_failed() -> None:
    env = SagaTestEnv(saga(s("p", kind="pivot"), s("r", kind="retryable", deadline=S)))
    env.on("Do-p", succeed())
    env.on("Do-r", [sagas.testing.fail("deadline-passed"), succeed()])
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    assert env.command_types("d-1") == ["Do-p", "Do-r", "Do-r"]


def test_a_losing_operation_whose_cancel_is_never_confirmed_is_undone() -> None:
    op = long_running(
        "op", to="op.commands", start=call("Start"), status=call("Status"), cancel=call("Cancel"),
        every=S, done=lambda r: r.get("state") == "done", checks=1, compensate=call("Undo-op"),
    )  # fmt: skip
    env = SagaTestEnv(saga(parallel("race", [s("a")], [op], join="first")))
    env.on("Do-a", succeed(after=S))
    env.on("Start", succeed())
    env.on("Status", succeed({"state": "running"}))  # never done, never cancelled
    env.on("Cancel", succeed())
    env.on("Undo-op", succeed())
    env.start("demo", "d-1", {})
    env.run_until_idle()
    assert env.state("d-1").status == "completed"
    assert env.command_types("d-1")[-1] == "Undo-op"


def test_an_operator_is_told_to_settle_the_child_when_the_pivot_is_a_child_saga() -> None:
    from sagas.errors import ConfigurationError
    from sagas.operate.control import settle_input

    kid = saga(s("k1"), name="kid")
    parent = saga(
        s("a"), child("c", saga="kid", input=lambda d: {}, kind="pivot", deadline=S), name="parent"
    )
    env = SagaTestEnv(parent, kid)
    env.on("Do-a", succeed())
    env.on("Do-k1", silent())
    env.start("parent", "p-1", {})
    env.advance(2 * S)
    assert env.state("p-1").status == "in-doubt"
    with pytest.raises(ConfigurationError, match="the child saga p-1/c/1, whose end decides"):
        settle_input(env.state("p-1"), done=True, by="ops", reason="looked")
