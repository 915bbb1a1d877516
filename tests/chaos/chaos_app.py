"""The chaos scenario's sagas and participant, as a user's module.

The scenario copies this file into a folder of its own and runs ``sagas worker chaos_app:app`` and
``sagas participant chaos_app:participant`` there. Configured by environment: ``CHAOS_NS`` (the
namespace), ``CHAOS_PARTITIONS`` and ``CHAOS_LEDGER`` (the folder of the external ledgers).

Every command's payload is the saga's data; ``behaviour`` says what a command does:
``{"ScheduleShipment": "fail"}`` fails it, ``"silent"`` does the work but never replies,
``"retry:1"`` answers the first attempt with a retryable failure, ``"slow:1500"`` does the work
at once and answers 1.5 s later.

The sagas that test the world's books beside the orders: ``tight_order`` (a 2 s saga deadline
that a slow pivot outlives), ``race`` (credit and stock race in a first-wins parallel, the loser
undone) and ``parent`` (reserves credit, runs a ``hold`` child saga that reserves stock and
sleeps; an operator cancels some parents while the child runs). Each executed command makes two
effects: a record in ``<ns>.effects`` written with ``ctx.send`` (in the transaction of the reply),
and a line in this process's external ledger, keyed by ``ctx.idempotency_key`` as an external API
would take it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sagas.app import App
from sagas.dsl import Retry, Saga, call, child, parallel, sleep, step
from sagas.dsl.program import Program
from sagas.errors import CommandFailed
from sagas.participants import NO_REPLY, CommandContext, Participant
from sagas.settings import KafkaSettings

SERVICES = {
    "credit": ["ReserveCredit", "ReleaseCredit"],
    "stock": ["ReserveStock", "ReleaseStock", "ReleaseHold"],
    "shipping": ["ScheduleShipment"],
}
UNDO = {"reserve_credit": "ReleaseCredit", "reserve_stock": "ReleaseStock"}


def _all(data: Any) -> dict[str, Any]:
    return dict(data)


def order_saga(ns: str, name: str, step_deadline: timedelta) -> Program:
    """Reserve credit and stock (both compensatable), then schedule the shipment (the pivot)."""
    retry = Retry(max_attempts=4, initial=timedelta(milliseconds=500), multiplier=2.0, jitter=0.0)
    return Saga(
        name, 1, deadline=timedelta(minutes=30),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=_all,
                 compensate=call("ReleaseCredit", _all), deadline=step_deadline, retry=retry),
            step("reserve_stock", to=f"{ns}.stock", command="ReserveStock", payload=_all,
                 compensate=call("ReleaseStock", _all), deadline=step_deadline, retry=retry),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot", deadline=step_deadline, retry=retry),
        ],
    ).compile()  # fmt: skip


def tight_order(ns: str) -> Program:
    """The order with a 2 s saga deadline and no step deadlines: a slow pivot is in flight
    when it passes."""
    return Saga[dict[str, Any]](
        "tight_order", 1, deadline=timedelta(seconds=2),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=_all,
                 compensate=call("ReleaseCredit", _all)),
            step("reserve_stock", to=f"{ns}.stock", command="ReserveStock", payload=_all,
                 compensate=call("ReleaseStock", _all)),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def race_saga(ns: str) -> Program:
    """Credit and stock race (first wins; the loser is undone), then the shipment."""
    return Saga[dict[str, Any]](
        "race", 1, deadline=timedelta(minutes=30),
        steps=[
            parallel(
                "reserve",
                [step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit",
                      payload=_all, compensate=call("ReleaseCredit", _all))],
                [step("reserve_stock", to=f"{ns}.stock", command="ReserveStock",
                      payload=_all, compensate=call("ReleaseStock", _all))],
                join="first",
            ),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def parent_saga(ns: str) -> Program:
    """Reserve credit, then a ``hold`` child saga (undone by ``ReleaseHold``), then ship."""
    return Saga[dict[str, Any]](
        "parent", 1, deadline=timedelta(minutes=30),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=_all,
                 compensate=call("ReleaseCredit", _all)),
            child("hold", saga="hold", input=_all,
                  compensate=call("ReleaseHold", _all, to=f"{ns}.stock")),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=_all, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def hold_saga(ns: str) -> Program:
    """The child: reserve stock, then hold it for a while."""
    return Saga[dict[str, Any]](
        "hold", 1, deadline=timedelta(minutes=30),
        steps=[
            step("reserve_stock", to=f"{ns}.stock", command="ReserveStock", payload=_all,
                 compensate=call("ReleaseStock", _all)),
            sleep("hold", timedelta(seconds=2)),
        ],
    ).compile()  # fmt: skip


def make_app(ns: str, partitions: int) -> App:
    """``order`` (60 s step deadlines), ``quick_order`` (3 s ones), and the world's books
    sagas ``tight_order``, ``race``, ``parent`` and ``hold``."""
    return App(
        ns,
        [
            order_saga(ns, "order", timedelta(seconds=60)),
            order_saga(ns, "quick_order", timedelta(seconds=3)),
            tight_order(ns),
            race_saga(ns),
            parent_saga(ns),
            hold_saga(ns),
        ],
        partitions=partitions,
    )


class ExternalLedger:
    """The world outside Kafka: one JSON line per call, with the idempotency key it came with."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None  # opened at the first call: workers import this module too
        self._lock = threading.Lock()

    def call(self, ctx: CommandContext) -> None:
        """Record one call of the external API (one write: a line is never torn)."""
        line = json.dumps(
            {
                "key": ctx.idempotency_key,
                "saga_id": ctx.saga_id,
                "saga_type": ctx.saga_type,
                "type": ctx.command_type,
                "command_id": ctx.command_id,
                "at_ms": int(time.time() * 1000),
            }
        )
        with self._lock:
            if self._fd is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / f"external-{os.getpid()}.jsonl"
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(self._fd, (line + "\n").encode())


def make_participant(ns: str, ledger: ExternalLedger) -> Participant:
    """The credit, stock and shipping services in one participant."""
    part = Participant(KafkaSettings(), f"{ns}.participants", max_batch=50)
    effects = f"{ns}.effects"

    def handle(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        behaviour = payload.get("behaviour", {}).get(ctx.command_type, "ok")
        if behaviour == "fail":
            raise CommandFailed(f"{ctx.command_type} refused", error="refused")
        if behaviour.startswith("retry:") and ctx.attempt <= int(behaviour.split(":")[1]):
            raise CommandFailed("try again", error="busy", retryable=True)
        ledger.call(ctx)
        ctx.send(effects, {"command_id": ctx.command_id, "type": ctx.command_type})
        if behaviour == "silent":
            return NO_REPLY
        if behaviour.startswith("slow:"):  # done, but the answer comes late
            time.sleep(int(behaviour.split(":")[1]) / 1000)
        return {f"{ctx.command_type}_done": True}

    for service, commands in SERVICES.items():
        for command in commands:
            part.handler(f"{ns}.{service}", command)(handle)
    return part


if "CHAOS_NS" in os.environ:  # run by `sagas worker` or `sagas participant`
    app = make_app(os.environ["CHAOS_NS"], int(os.environ.get("CHAOS_PARTITIONS", "6")))
    participant = make_participant(
        os.environ["CHAOS_NS"], ExternalLedger(Path(os.environ.get("CHAOS_LEDGER", "ledger")))
    )
