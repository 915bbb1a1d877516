"""The order reference app: an order saga (credit, stock, shipment) and its three participants.

Run the worker with ``sagas worker processors.orders:app`` and the participants with
``python -m processors.orders --failure-rate 0.1 --latency-ms 20``. ``make demo`` runs both.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict

from sagas import Retry, Saga, call, step
from sagas.app import App
from sagas.errors import CommandFailed
from sagas.participants import CommandContext, Participant
from sagas.settings import KafkaSettings

NAMESPACE = "shop"


class Order(TypedDict, total=False):
    order_id: str
    customer: str
    total: float
    items: list[str]


def _order_ref(d: Order) -> dict[str, Any]:
    return {
        "order_id": d["order_id"],
        "customer": d["customer"],
        "total": d["total"],
        "items": d["items"],
    }


def make_saga(ns: str = NAMESPACE) -> Saga[Order]:
    """The order saga, its command topics under ``ns``."""
    return Saga[Order](
        "order",
        version=1,
        deadline=timedelta(minutes=5),
        steps=[
            step("reserve-credit", to=f"{ns}.credit.commands", command="ReserveCredit",
                 payload=_order_ref, compensate=call("ReleaseCredit", _order_ref),
                 deadline=timedelta(seconds=30)),
            step("reserve-stock", to=f"{ns}.stock.commands", command="ReserveStock",
                 payload=_order_ref, compensate=call("ReleaseStock", _order_ref),
                 deadline=timedelta(seconds=30),
                 retry=Retry(max_attempts=3, initial=timedelta(milliseconds=200))),
            step("schedule-shipment", to=f"{ns}.shipping.commands", command="ScheduleShipment",
                 payload=_order_ref, kind="pivot", deadline=timedelta(seconds=30)),
        ],
    )  # fmt: skip


def make_app(ns: str = NAMESPACE) -> App:
    """The app a worker runs, under namespace ``ns``."""
    return App(ns, [make_saga(ns).compile()], partitions=6)


order_saga = make_saga()
app = make_app()


@dataclass
class Books:
    """What the participants hold: reservations per order, and what was shipped."""

    credit: set[str] = field(default_factory=set)
    stock: set[str] = field(default_factory=set)
    shipped: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def balanced(self) -> list[str]:
        """Problems: reservations neither released nor confirmed by a shipment."""
        with self.lock:
            dangling_credit = self.credit - self.shipped
            dangling_stock = self.stock - self.shipped
        return [f"credit still reserved for {o}" for o in sorted(dangling_credit)] + [
            f"stock still reserved for {o}" for o in sorted(dangling_stock)
        ]


def participants(
    settings: KafkaSettings,
    *,
    failure_rate: float,
    latency_ms: int,
    seed: int = 1,
    namespace: str = NAMESPACE,
) -> tuple[Participant, Books]:
    """The credit, stock and shipping services. Each fails ``failure_rate`` of new requests."""
    books = Books()
    rng = random.Random(seed)
    ns = namespace
    service = Participant(settings, f"{ns}.services")

    def pause() -> None:
        if latency_ms:
            time.sleep(rng.uniform(0, latency_ms) / 1000)

    def reserve(book: set[str], what: str) -> Any:
        def handle(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            pause()
            order = payload["order_id"]
            with books.lock:
                if order in book:  # a redelivered command: same answer, no second effect
                    return {f"{what}_reserved": True}
                if rng.random() < failure_rate:
                    raise CommandFailed(f"no {what} for {order}", error=f"No{what.title()}")
                book.add(order)
            return {f"{what}_reserved": True}

        return handle

    def release(book: set[str]) -> Any:
        def handle(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            pause()
            with books.lock:
                book.discard(payload["order_id"])
            return {}

        return handle

    def ship(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        pause()
        order = payload["order_id"]
        with books.lock:
            if order not in books.shipped and rng.random() < failure_rate:
                raise CommandFailed(f"no carrier for {order}", error="NoCarrier")
            books.shipped.add(order)
        return {"shipment_id": f"ship-{order}"}

    service.handler(f"{ns}.credit.commands", "ReserveCredit")(reserve(books.credit, "credit"))
    service.handler(f"{ns}.credit.commands", "ReleaseCredit")(release(books.credit))
    service.handler(f"{ns}.stock.commands", "ReserveStock")(reserve(books.stock, "stock"))
    service.handler(f"{ns}.stock.commands", "ReleaseStock")(release(books.stock))
    service.handler(f"{ns}.shipping.commands", "ScheduleShipment")(ship)
    return service, books


def main() -> None:
    """Run the participants until Ctrl-C."""
    parser = argparse.ArgumentParser(description="the order app's participants")
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    service, _ = participants(
        KafkaSettings().with_env(), failure_rate=args.failure_rate, latency_ms=args.latency_ms
    )
    stop = threading.Event()
    try:
        service.run(stop)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":
    main()
