"""One request, one command id: a command sent again because its participant was silent keeps its
id (so its idempotency key); only an answered failure starts a new request with a new id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sagas
from sagas import Saga, call, step
from sagas.engine import CommandOut, fold, public_command_id
from sagas.testing import SagaTestEnv, fail, retryable_fail, silent, succeed
from tests.support.examples import vm_saga

S = timedelta(seconds=1)


def after_pivot(**kw: Any) -> Saga[dict[str, Any]]:
    """A pivot, then a retryable step whose deadline (5 s) bounds each send."""
    return Saga[dict[str, Any]](
        "demo",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("p", to="p.commands", command="Do-p", kind="pivot"),
            step("r", to="r.commands", command="Do-r", kind="retryable", deadline=5 * S, **kw),
        ],
    )


def of_type(env: SagaTestEnv, saga_id: str, command_type: str) -> list[CommandOut]:
    return [c for c in env.commands_for(saga_id) if c.command_type == command_type]


def assert_folds(env: SagaTestEnv, saga: Saga[Any], saga_id: str) -> None:
    assert fold(sagas.compile(saga), env.journal(saga_id)) == env.state(saga_id)


def test_a_timed_out_attempt_is_sent_again_with_the_same_id() -> None:
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", [silent(), silent(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(timedelta(minutes=1))
    sends = of_type(env, "d-1", "Do-r")
    assert len({c.command_id for c in sends}) == 1
    assert [(c.attempt, c.send) for c in sends] == [(1, 1), (1, 2), (1, 3)]
    assert public_command_id(sends[0].command_id) == "d-1:r:1"
    # each send is bounded by the step's deadline again
    assert [c.deadline_ms for c in sends] == [
        e.at_ms + 5_000 for e in env.journal("d-1") if e.body.get("command_type") == "Do-r"
    ]
    assert env.state("d-1").status == "completed"
    assert not [e for e in env.journal("d-1") if e.type == "attempt_expired"]
    assert_folds(env, after_pivot(), "d-1")


def test_a_failure_reply_then_retry_has_a_new_id() -> None:
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", [retryable_fail(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(timedelta(minutes=1))
    sends = of_type(env, "d-1", "Do-r")
    assert [public_command_id(c.command_id) for c in sends] == ["d-1:r:1", "d-1:r:2"]
    assert [(c.attempt, c.send) for c in sends] == [(1, 1), (2, 1)]
    assert env.state("d-1").status == "completed"


def test_a_late_reply_to_the_first_send_completes_the_step() -> None:
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    # The first send's reply comes after the 5 s deadline, while the resend waits for a back-off.
    env.on("Do-r", [succeed({"late": True}, after=5500 * timedelta(milliseconds=1)), silent()])
    env.start("demo", "d-1", {})
    env.advance(timedelta(minutes=1))
    state = env.state("d-1")
    assert state.status == "completed"
    assert state.data["late"] is True
    assert [e.type for e in env.journal("d-1")].count("ignored") == 0
    assert state.timers == {}

    # the same, when the reply comes after the resend went out
    env = SagaTestEnv(after_pivot())
    env.on("Do-p", succeed())
    env.on("Do-r", [succeed({"late": True}, after=20 * S), silent()])
    env.start("demo", "d-2", {})
    env.advance(timedelta(minutes=1))
    assert len(of_type(env, "d-2", "Do-r")) >= 2
    assert env.state("d-2").status == "completed"
    assert_folds(env, after_pivot(), "d-2")


def undo_saga() -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]](
        "undo",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("a", to="a.commands", command="Do-a", compensate=call("Undo-a"), deadline=10 * S),
            step("b", to="b.commands", command="Do-b", compensate=call("Undo-b")),
        ],
    )


def test_a_compensation_whose_participant_is_silent_goes_again_as_the_same_request() -> None:
    env = SagaTestEnv(undo_saga())
    env.on("Do-a", succeed())
    env.on("Do-b", fail())
    env.on("Undo-a", [silent(), silent(), fail(), succeed()])
    env.start("undo", "u-1", {})
    env.advance(timedelta(hours=1))
    undos = of_type(env, "u-1", "Undo-a")
    assert [public_command_id(c.command_id) for c in undos] == ["u-1:a:undo:1"] * 3 + [
        "u-1:a:undo:2"
    ]
    assert [c.send for c in undos] == [1, 2, 3, 1]
    assert env.state("u-1").status == "compensated"
    assert_folds(env, undo_saga(), "u-1")


def test_a_late_reply_to_a_compensation_sent_again_is_accepted() -> None:
    env = SagaTestEnv(undo_saga())
    env.on("Do-a", succeed())
    env.on("Do-b", fail())
    env.on("Undo-a", [succeed(after=15 * S), silent()])
    env.start("undo", "u-1", {})
    env.advance(timedelta(hours=1))
    undos = of_type(env, "u-1", "Undo-a")
    assert len(undos) == 2
    assert undos[0].command_id == undos[1].command_id
    accepted = [e for e in env.journal("u-1") if e.type == "reply_accepted"]
    assert accepted[-1].body["command_id"] == undos[0].command_id
    assert env.state("u-1").status == "compensated"


def vm_env(cancels: list[Any]) -> SagaTestEnv:
    env = SagaTestEnv(vm_saga)
    env.on("CreateVm", succeed({"state": "creating"}))
    env.on("DeleteVm", cancels)

    def status(cmd: CommandOut) -> Any:
        answered = [e for e in env.journal("v-1") if e.type == "reply_accepted"]
        cancelled = any(":cancel:" in e.body["command_id"] for e in answered)
        return succeed({"state": "deleted" if cancelled else "creating"})

    env.on("GetVm", status)
    env.start("provision-vm", "v-1", {"name": "web-1", "size": "small"})
    env.advance(timedelta(days=1))
    assert env.state("v-1").status == "compensated"
    assert fold(sagas.compile(vm_saga), env.journal("v-1")) == env.state("v-1")
    return env


def test_a_cancel_without_reply_is_sent_again_with_the_same_id() -> None:
    cancels = of_type(vm_env([silent(), succeed()]), "v-1", "DeleteVm")
    assert [public_command_id(c.command_id) for c in cancels] == ["v-1:create-vm:cancel:1"] * 2
    assert [c.send for c in cancels] == [1, 2]


def test_a_failed_cancel_is_sent_again_with_a_new_id() -> None:
    cancels = of_type(vm_env([fail("Busy"), succeed()]), "v-1", "DeleteVm")
    assert [public_command_id(c.command_id) for c in cancels] == [
        "v-1:create-vm:cancel:1",
        "v-1:create-vm:cancel:2",
    ]


def test_a_late_reply_to_the_first_cancel_is_accepted() -> None:
    env = vm_env([succeed(after=45 * S), silent()])
    cancels = of_type(env, "v-1", "DeleteVm")
    assert len(cancels) == 2
    assert cancels[0].command_id == cancels[1].command_id
    ignored = [e for e in env.journal("v-1") if e.type == "ignored"]
    assert ignored == []
