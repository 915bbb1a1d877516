"""sagas.long_running_adapter: the handlers of a long-running operation, alone and driving the
engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sagas import Saga, call, step
from sagas.dsl import long_running
from sagas.engine.model import CommandOut
from sagas.errors import CommandFailed, ConfigurationError
from sagas.long_running_adapter import (
    OperationCommands,
    Operations,
    OperationStatus,
    is_cancelled,
    is_failed,
    is_ready,
    operation_key,
)
from sagas.participants import NO_REPLY, CommandContext
from sagas.testing import Response, SagaTestEnv, silent


def ctx(command_id: str, command_type: str = "X", attempt: int = 1) -> CommandContext:
    saga_id = command_id.rsplit(":", 3)[0]
    return CommandContext(saga_id, "vm", command_id, command_type, attempt, None, "vm.inbox")


@dataclass
class FakeCloud:
    """An external API with a clock: operations become ready ``boot_ms`` after they start."""

    now: Callable[[], int]
    boot_ms: int | None = 1000  # None: never ready
    cancel_ms: int = 200
    started: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    cancels: dict[str, int] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)

    def start(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("start", key))
        self.started.setdefault(key, self.now())  # idempotent on the key
        return {"vm_id": f"vm-{len(self.started)}"}

    def status(self, key: str, payload: dict[str, Any]) -> OperationStatus | None:
        self.calls.append(("status", key))
        if key not in self.started:
            return None
        now = self.now()
        ready_at = None if self.boot_ms is None else self.started[key] + self.boot_ms
        cancel_at = self.cancels.get(key)
        if key in self.released:
            return OperationStatus("cancelled")
        if (
            cancel_at is not None
            and now >= cancel_at
            and (ready_at is None or cancel_at < ready_at)
        ):
            return OperationStatus("cancelled")
        if ready_at is not None and now >= ready_at:
            return OperationStatus("ready", {"ip": "10.0.0.1"})
        return OperationStatus("cancelling" if cancel_at is not None else "running")

    def cancel(self, key: str, payload: dict[str, Any]) -> None:
        self.calls.append(("cancel", key))
        self.cancels.setdefault(key, self.now() + self.cancel_ms)

    def release(self, key: str, payload: dict[str, Any]) -> None:
        self.calls.append(("release", key))
        self.released.add(key)


# ------------------------------------------------------------------------------ the pieces


def test_the_operation_key_is_the_same_for_every_command_of_one_block() -> None:
    ids = ["a:b:c:alloc:start:1", "a:b:c:alloc:start:3", "a:b:c:alloc:status:7",
           "a:b:c:alloc:cancel:1", "a:b:c:alloc:undo:2"]  # fmt: skip
    assert {operation_key(ctx(i)) for i in ids} == {"a:b:c:alloc"}


@pytest.mark.parametrize("command_id", ["s1:reserve:1", "s1:alloc:child:1", "nocolons"])
def test_a_command_id_not_from_a_long_running_block_has_no_key(command_id: str) -> None:
    with pytest.raises(ConfigurationError, match="key= function"):
        operation_key(ctx(command_id))


def test_the_status_reply_and_the_predicates() -> None:
    assert OperationStatus("ready", {"ip": "x", "state": "ignored"}).reply() == {
        "ip": "x",
        "state": "ready",
    }
    table = {
        "running": (False, False, False),
        "cancelling": (False, False, False),
        "ready": (True, False, False),
        "failed": (False, True, True),
        "cancelled": (False, False, True),
        "missing": (False, True, True),
    }
    for state, expected in table.items():
        reply = {"state": state}
        assert (is_ready(reply), is_failed(reply), is_cancelled(reply)) == expected, state


def test_start_passes_the_key_and_replies_with_it() -> None:
    cloud = FakeCloud(now=lambda: 0)
    ops = Operations(start=cloud.start, status=cloud.status, cancel=cloud.cancel)
    first = ops.handle_start({"name": "a"}, ctx("s1:alloc:start:1"))
    again = ops.handle_start({"name": "a"}, ctx("s1:alloc:start:2", attempt=2))
    assert first == again == {"operation": "s1:alloc", "vm_id": "vm-1"}
    assert list(cloud.started) == ["s1:alloc"]


def test_start_may_leave_the_reply_for_later() -> None:
    ops = Operations(start=lambda k, p: NO_REPLY, status=lambda k, p: None, cancel=print)
    assert ops.handle_start({}, ctx("s1:alloc:start:1")) is NO_REPLY


def test_status_of_an_unknown_operation_is_missing() -> None:
    cloud = FakeCloud(now=lambda: 0)
    ops = Operations(start=cloud.start, status=cloud.status, cancel=cloud.cancel)
    assert ops.handle_status({}, ctx("s1:alloc:status:1")) == {"state": "missing"}
    ops.handle_start({}, ctx("s1:alloc:start:1"))
    assert ops.handle_status({}, ctx("s1:alloc:status:2")) == {"state": "running"}


def test_a_custom_key_replaces_the_command_id() -> None:
    cloud = FakeCloud(now=lambda: 0)
    ops = Operations(
        start=cloud.start, status=cloud.status, cancel=cloud.cancel, key=lambda p, c: p["name"]
    )
    ops.handle_start({"name": "web-1"}, ctx("s1:alloc:start:1"))
    assert list(cloud.started) == ["web-1"]


def test_cancel_retries_transient_errors_then_gives_up() -> None:
    errors: list[Exception] = [OSError("503"), CommandFailed("busy", retryable=True)]
    slept: list[float] = []

    def flaky(key: str, payload: dict[str, Any]) -> None:
        if errors:
            raise errors.pop(0)

    ops = Operations(start=print, status=print, cancel=flaky, sleep=slept.append)
    assert ops.handle_cancel({}, ctx("s1:alloc:cancel:1"))["cancel_requested"] is True
    assert slept == [0.2, 0.4]

    def down(key: str, payload: dict[str, Any]) -> None:
        raise OSError("down")

    ops = Operations(start=print, status=print, cancel=down, cancel_attempts=2, sleep=slept.append)
    with pytest.raises(OSError, match="down"):
        ops.handle_cancel({}, ctx("s1:alloc:cancel:1"))


def test_cancel_does_not_retry_a_refusal() -> None:
    calls: list[str] = []

    def refuse(key: str, payload: dict[str, Any]) -> None:
        calls.append(key)
        raise CommandFailed("locked", error="Locked")

    ops = Operations(start=print, status=print, cancel=refuse, sleep=lambda s: None)
    with pytest.raises(CommandFailed):
        ops.handle_cancel({}, ctx("s1:alloc:cancel:1"))
    assert calls == ["s1:alloc"]


def _block(compensate: bool = True) -> Any:
    return long_running(
        "alloc", to="cloud", start=call("Create"), status=call("Get"),
        cancel=call("Delete", to="cloud.admin"), every=timedelta(seconds=1), done=is_ready,
        compensate=call("Release") if compensate else None,
    )  # fmt: skip


class Recorder:
    """Stands in for a Participant: records what ``handler`` registers."""

    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], Any] = {}

    def handler(self, topic: str, command_type: str) -> Callable[[Any], Any]:
        def register(fn: Any) -> Any:
            self.handlers[(topic, command_type)] = fn
            return fn

        return register


def test_register_reads_the_commands_off_the_block() -> None:
    commands = OperationCommands.of(_block())
    assert commands == OperationCommands(
        "cloud", "Create", "Get", "Delete", "Release", {"Delete": "cloud.admin"}
    )
    cloud = FakeCloud(now=lambda: 0)
    ops = Operations(
        start=cloud.start, status=cloud.status, cancel=cloud.cancel, release=cloud.release
    )
    participant = Recorder()
    ops.register(participant, commands)  # type: ignore[arg-type]
    assert participant.handlers == {
        ("cloud", "Create"): ops.handle_start,
        ("cloud", "Get"): ops.handle_status,
        ("cloud.admin", "Delete"): ops.handle_cancel,
        ("cloud", "Release"): ops.handle_release,
    }
    without = Operations(start=cloud.start, status=cloud.status, cancel=cloud.cancel)
    with pytest.raises(ConfigurationError, match="release= function"):
        without.register(Recorder(), commands)  # type: ignore[arg-type]
    without.register(Recorder(), OperationCommands.of(_block(compensate=False)))  # type: ignore[arg-type]


# ------------------------------------------------------------------- driving the real engine


def _bridge(env: SagaTestEnv, ops: Operations) -> Callable[[CommandOut], Response]:
    """Answer the engine's commands with the Operations handlers, as a Participant would."""
    handlers = {
        "Create": ops.handle_start,
        "Get": ops.handle_status,
        "Delete": ops.handle_cancel,
        "Release": ops.handle_release,
    }

    def respond(cmd: CommandOut) -> Response:
        context = CommandContext(
            cmd.saga_id, cmd.saga_type, cmd.command_id, cmd.command_type, cmd.attempt,
            cmd.deadline_ms, "inbox",
        )  # fmt: skip
        try:
            payload = handlers[cmd.command_type](dict(cmd.payload), context)
        except CommandFailed as exc:
            outcome = "retryable-failure" if exc.retryable else "failure"
            return Response(outcome, {"error": exc.error})
        return silent() if payload is NO_REPLY else Response("success", payload)

    return respond


def _run(boot_ms: int | None, *, later_step_fails: bool = False) -> tuple[SagaTestEnv, FakeCloud]:
    saga = Saga(
        "vm", 1, deadline=timedelta(seconds=5),
        steps=[
            long_running("alloc", to="cloud", start=call("Create"), status=call("Get"),
                         cancel=call("Delete"), every=timedelta(milliseconds=500),
                         done=is_ready, failed=is_failed, cancelled=is_cancelled,
                         compensate=call("Release")),
            step("dns", to="dns", command="Register", kind="pivot",
                 deadline=timedelta(seconds=5)),
        ],
    )  # fmt: skip
    env = SagaTestEnv(saga)
    cloud = FakeCloud(now=lambda: env.now_ms, boot_ms=boot_ms, cancel_ms=300)
    ops = Operations(
        start=cloud.start, status=cloud.status, cancel=cloud.cancel, release=cloud.release
    )
    responder = _bridge(env, ops)
    for command in ("Create", "Get", "Delete", "Release"):
        env.on(command, responder)
    env.on("Register", Response("failure" if later_step_fails else "success", {"error": "taken"}))
    env.start("vm", "s1", {"name": "web"})
    env.advance(timedelta(seconds=30))
    return env, cloud


def test_engine_a_vm_that_boots_in_time_completes_and_is_kept() -> None:
    env, cloud = _run(boot_ms=1200)
    state = env.state("s1")
    assert state.status == "completed"
    assert state.data["ip"] == "10.0.0.1"
    assert state.data["operation"] == "s1:alloc"
    assert cloud.released == set()
    assert [c for c, _ in cloud.calls] == ["start", "status", "status", "status"]


def test_engine_a_hung_vm_is_cancelled_at_the_deadline_and_the_cancel_confirmed() -> None:
    env, cloud = _run(boot_ms=None)
    state = env.state("s1")
    assert state.status == "compensated"
    assert state.reason == "the saga deadline passed"
    assert "cancel" in [c for c, _ in cloud.calls]
    assert cloud.status("s1:alloc", {}) == OperationStatus("cancelled")
    assert cloud.released == set()
    assert env.command_types("s1")[-2:] == ["Delete", "Get"]  # confirmed by the first check


def test_engine_a_vm_that_boots_while_being_cancelled_is_released() -> None:
    env, cloud = _run(boot_ms=5100)  # ready 100 ms after the deadline, before the cancel lands
    state = env.state("s1")
    assert state.status == "compensated"
    assert cloud.released == {"s1:alloc"}
    assert env.command_types("s1")[-1] == "Release"


def test_engine_a_later_failure_releases_the_vm() -> None:
    env, cloud = _run(boot_ms=600, later_step_fails=True)
    assert env.state("s1").status == "compensated"
    assert cloud.released == {"s1:alloc"}
    assert "cancel" not in [c for c, _ in cloud.calls]
