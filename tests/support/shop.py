"""A small shop app and its services, for the observing tests (metrics, traces, the UI)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sagas import Saga, call, step
from sagas.app import App
from sagas.client import SagaClient
from sagas.errors import CommandFailed
from sagas.participants import NO_REPLY, CommandContext, Participant
from sagas.settings import KafkaSettings


def _all(data: Any) -> dict[str, Any]:
    return dict(data)


def shop_app(ns: str) -> App:
    """Reserve (compensated by Release), then charge (the pivot, 2 s deadline). The data's
    ``charge`` says what the payment service does: ``ok``, ``fail`` or ``silent`` (the saga
    goes in-doubt; :func:`settle_silent_pivot` settles it as not done)."""
    saga = Saga(
        "shop",
        version=1,
        deadline=timedelta(minutes=5),
        steps=[
            step("reserve", to=f"{ns}.stock", command="Reserve", payload=_all,
                 compensate=call("Release", _all)),
            step("charge", to=f"{ns}.pay", command="Charge", payload=_all, kind="pivot",
                 deadline=timedelta(seconds=2)),
        ],
    ).compile()  # fmt: skip
    return App(ns, [saga], partitions=2)


def shop_services(settings: KafkaSettings, ns: str, observer: Any = None) -> Participant:
    """The stock and payment services of :func:`shop_app`."""
    participant = Participant(settings, f"{ns}.services", observer=observer)

    def stock(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        return {"reserved": ctx.command_type == "Reserve"}

    def pay(payload: dict[str, Any], ctx: CommandContext) -> Any:
        how = payload.get("charge", "ok")
        if how == "fail":
            raise CommandFailed("card declined", error="declined")
        if how == "silent":
            return NO_REPLY
        return {"charged": True}

    participant.handler(f"{ns}.stock", "Reserve")(stock)
    participant.handler(f"{ns}.stock", "Release")(stock)
    participant.handler(f"{ns}.pay", "Charge")(pay)
    return participant


def wait_ended(client: SagaClient, saga_type: str, saga_id: str, timeout: float = 60) -> str:
    """The saga's final status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.status(saga_type, saga_id)
        if state is not None and state.terminal:
            return state.status
        time.sleep(0.3)
    raise AssertionError(f"saga {saga_id} did not end in {timeout}s")


def settle_silent_pivot(client: SagaClient, saga_id: str, timeout: float = 60) -> None:
    """The payment service never answers the pivot: once the saga is in-doubt (its deadline
    passed, the command is being resent), an operator settles it as not done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.status("shop", saga_id)
        if state is not None and state.status == "in-doubt":
            client.settle("shop", saga_id, done=False, reason="no charge at the bank", by="ops")
            return
        time.sleep(0.2)
    raise AssertionError(f"saga {saga_id} did not go in-doubt in {timeout}s")
