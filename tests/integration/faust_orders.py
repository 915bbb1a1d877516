"""A Faust app that runs the saga worker as a service and starts sagas from an agent.

``python faust_orders.py worker``, configured by ``SAGAS_TEST_NS``, ``SAGAS_TEST_PARTS``,
``SAGAS_TEST_DATADIR`` and ``KAFKA_BOOTSTRAP_SERVERS``. The agent over ``<ns>.orders`` starts
an order saga per event (key = saga id, value = JSON data), awaits its end, records the outcome
in a table and writes it to ``<ns>.results``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust

from sagas.async_client import AsyncSagaClient
from sagas.errors import SagaFailedError
from sagas.faust import SagaWorkerService
from sagas.settings import KafkaSettings
from tests.support.sagas_under_test import make_app

NS = os.environ.get("SAGAS_TEST_NS", "test")
settings = KafkaSettings()
PARTS = int(os.environ.get("SAGAS_TEST_PARTS", "3"))
sagas_app = make_app(NS, partitions=PARTS)

app = faust.App(
    f"{NS}.orders-app",
    broker=f"kafka://{settings.bootstrap_servers}",
    datadir=os.environ.get("SAGAS_TEST_DATADIR", "/tmp/sagas-faust-orders"),
    web_enabled=False,
    topic_replication_factor=1,
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
)
worker = SagaWorkerService(sagas_app, settings, query_host="127.0.0.1").attach(app)
client = AsyncSagaClient(settings, NS)
orders = app.topic(f"{NS}.orders", key_type=bytes, value_type=bytes, value_serializer="raw")
results = app.topic(f"{NS}.results", key_type=bytes, value_type=bytes, value_serializer="raw")
outcomes = app.Table("outcomes", key_type=bytes, value_type=bytes, partitions=PARTS)


@app.agent(orders, concurrency=20)
async def start_orders(stream: Any) -> None:
    """Start an order saga per event and await its end, without blocking the event loop."""
    async for event in stream.events():
        saga_id = event.key.decode()
        data = json.loads(event.value)
        await client.start("order", data, saga_id=saga_id)
        try:
            await client.result("order", saga_id, timeout=120)
            outcome = b"completed"
        except SagaFailedError as exc:
            outcome = f"failed: {exc}".encode()
        outcomes[event.key] = outcome
        await results.send(key=event.key, value=outcome)


if __name__ == "__main__":
    faust.Worker(app, loglevel="info").execute_from_commandline()
