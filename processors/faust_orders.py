"""The order reference app on Faust: one process serves the participants, runs the worker and
starts an order saga per event of ``shop.orders``.

``python -m processors.faust_orders worker`` (Faust's CLI). Environment:
``KAFKA_BOOTSTRAP_SERVERS``, ``ORDERS_FAILURE_RATE`` (default 0.1), ``ORDERS_LATENCY_MS``
(default 20), ``FAUST_DATADIR`` (default ``./faust-data``), ``ORDERS_NAMESPACE`` (default
``shop``). Events of ``<namespace>.orders``: key = order id, value = the order as JSON
(``customer``, ``total``, ``items``); outcomes go to ``<namespace>.order-outcomes``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust

from processors.orders import NAMESPACE, make_app, participants
from sagas.async_client import AsyncSagaClient
from sagas.errors import SagaFailedError
from sagas.faust import FaustParticipant, SagaWorkerService
from sagas.settings import KafkaSettings

settings = KafkaSettings().with_env()
ns = os.environ.get("ORDERS_NAMESPACE", NAMESPACE)
faust_app = faust.App(
    f"{ns}.faust-orders",
    broker=f"kafka://{settings.bootstrap_servers}",
    datadir=os.environ.get("FAUST_DATADIR", "faust-data"),
    web_enabled=False,
)
service, books = participants(
    settings,
    failure_rate=float(os.environ.get("ORDERS_FAILURE_RATE", "0.1")),
    latency_ms=int(os.environ.get("ORDERS_LATENCY_MS", "20")),
    namespace=ns,
)
FaustParticipant(faust_app, service, partitions=6)  # the app's command topics have 6
SagaWorkerService(make_app(ns), settings).attach(faust_app)

client = AsyncSagaClient(settings, ns)
orders = faust_app.topic(
    f"{ns}.orders", key_type=bytes, value_type=bytes, value_serializer="raw", partitions=6
)
outcomes = faust_app.topic(
    f"{ns}.order-outcomes", key_type=bytes, value_type=bytes, value_serializer="raw"
)


@faust_app.agent(orders, concurrency=20)
async def place_orders(stream: Any) -> None:
    """Start the order saga of each event (saga id = order id) and publish how it ended."""
    async for event in stream.events():
        order_id = event.key.decode()
        await client.start(
            "order", {"order_id": order_id, **json.loads(event.value)}, saga_id=order_id
        )
        try:
            await client.result("order", order_id, timeout=600)
            outcome = "completed"
        except SagaFailedError as exc:
            outcome = str(exc)
        await outcomes.send(key=event.key, value=outcome.encode())


if __name__ == "__main__":
    faust_app.main()
