"""Sagas and simulated participants for the runtime's tests.

Every command's payload is the saga's data, and the participant reads ``behaviour`` from it:
``{"ScheduleShipment": "fail"}`` fails that command, ``"silent"`` never replies, ``"retry:2"``
answers the first two attempts with a retryable failure. The namespace comes from
``SAGAS_TEST_NS`` when a worker runs in its own process (``sagas worker``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from sagas.app import App
from sagas.dsl import Retry, Saga, call, long_running, step, wait_signal
from sagas.dsl.program import Program
from sagas.errors import CommandFailed
from sagas.participants import NO_REPLY, CommandContext, Participant
from sagas.settings import KafkaSettings


def _all(data: Any) -> dict[str, Any]:
    return dict(data)


def order_saga(
    ns: str,
    *,
    name: str = "order",
    step_deadline: timedelta = timedelta(seconds=60),
    version: int = 1,
) -> Program:
    """Reserve credit, reserve stock (compensatable), schedule shipment (the pivot)."""
    retry = Retry(max_attempts=4, initial=timedelta(milliseconds=500), multiplier=2.0, jitter=0.0)
    return Saga(
        name, version, deadline=timedelta(minutes=10),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=_all,
                 compensate=call("ReleaseCredit", _all), deadline=step_deadline, retry=retry),
            step("reserve_stock", to=f"{ns}.stock", command="ReserveStock", payload=_all,
                 compensate=call("ReleaseStock", _all), deadline=step_deadline, retry=retry),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot", deadline=step_deadline, retry=retry),
        ],
    ).compile()  # fmt: skip


def approval_saga(ns: str) -> Program:
    """Reserve credit, wait for an approval signal (10 s), then ship."""
    return Saga(
        "approval", 1, deadline=timedelta(minutes=10),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=_all,
                 compensate=call("ReleaseCredit", _all)),
            wait_signal("approved", timeout=timedelta(seconds=10)),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def vm_saga(ns: str) -> Program:
    """The long-running operation: allocate a VM, poll it, cancel and verify on the deadline."""
    return Saga(
        "vm", 1,
        steps=[
            long_running(
                "allocate", to=f"{ns}.cloud", start=call("Allocate", _all),
                status=call("Status", _all), cancel=call("CancelAllocate", _all),
                every=timedelta(milliseconds=300), deadline=timedelta(seconds=2),
                done=lambda r: r.get("state") == "ready",
                failed=lambda r: r.get("state") == "error",
                cancelled=lambda r: r.get("state") == "cancelled",
                compensate=call("Release", _all),
            ),
        ],
    ).compile()  # fmt: skip


def make_app(ns: str, *, partitions: int = 3) -> App:
    """The app every runtime test runs."""
    programs = [
        order_saga(ns),
        order_saga(ns, name="quick_order", step_deadline=timedelta(seconds=3)),
        approval_saga(ns),
        vm_saga(ns),
    ]
    return App(ns, programs, partitions=partitions)


if "SAGAS_TEST_NS" in os.environ:  # a worker process started by a test
    app = make_app(os.environ["SAGAS_TEST_NS"], partitions=int(os.environ["SAGAS_TEST_PARTS"]))


@dataclass(frozen=True)
class Handled:
    """One command a simulated participant received."""

    saga_id: str
    command_type: str
    command_id: str
    attempt: int
    at: float


class Participants:
    """Simulated credit, stock, shipping and cloud services, recording every command."""

    COMMANDS: ClassVar[dict[str, list[str]]] = {
        "credit": ["ReserveCredit", "ReleaseCredit"],
        "stock": ["ReserveStock", "ReleaseStock"],
        "shipping": ["ScheduleShipment"],
        "cloud": ["Allocate", "Status", "CancelAllocate", "Release"],
    }

    def __init__(self, settings: KafkaSettings, ns: str) -> None:
        self.handled: list[Handled] = []
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self.participant = Participant(settings, f"{ns}.participants", create_topics=True)
        for service, commands in self.COMMANDS.items():
            for command in commands:
                self.participant.handler(f"{ns}.{service}", command)(self._handle)
        self._thread, self._stop = self.participant.start()

    def _handle(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        with self._lock:
            self.handled.append(
                Handled(
                    ctx.saga_id, ctx.command_type, ctx.command_id, ctx.attempt, time.monotonic()
                )
            )
        behaviour = payload.get("behaviour", {}).get(ctx.command_type, "ok")
        if ctx.command_type == "CancelAllocate":
            self._cancelled.add(ctx.saga_id)
        if ctx.command_type == "Status":
            if ctx.saga_id in self._cancelled:
                return {"state": "cancelled"}
            return {"state": "ready" if behaviour == "ok" else "pending"}
        if behaviour == "fail":
            raise CommandFailed(f"{ctx.command_type} refused", error="refused")
        if behaviour == "silent":
            return NO_REPLY
        if behaviour.startswith("retry:") and ctx.attempt <= int(behaviour.split(":")[1]):
            raise CommandFailed("try again", error="busy", retryable=True)
        return {f"{ctx.command_type}_done": True}

    def commands_of(self, saga_id: str) -> list[str]:
        """The command types a saga sent, in the order they were handled."""
        with self._lock:
            return [h.command_type for h in self.handled if h.saga_id == saga_id]

    def stop(self) -> None:
        """Stop the participant thread."""
        self._stop.set()
        self._thread.join(30)
