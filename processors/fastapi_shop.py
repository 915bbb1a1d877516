"""Sagas inside a FastAPI service: the worker and the client live in the app's lifespan.

``POST /orders`` starts an order saga and answers once a worker took it (202, or 409 with the
reason it was refused); ``GET /orders/{id}`` is its status; ``GET /orders/{id}/events`` streams
its journal as server-sent events, pushed from the committed journal, until it ends.

Run it with ``uvicorn processors.fastapi_shop:api`` (``pip install fastapi uvicorn``) beside
``python -m processors.orders`` (the participants), with ``KAFKA_BOOTSTRAP_SERVERS`` set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from processors.orders import NAMESPACE, make_app
from sagas import AsyncSagaClient, InputRefusedError, KafkaSettings, Worker
from sagas.engine.model import JournalEvent
from sagas.operate.history import entry

ENDS = {"finished", "stuck"}


def make_api(namespace: str = NAMESPACE, settings: KafkaSettings | None = None) -> FastAPI:
    """The service: its worker runs the order saga of ``namespace`` while the app is up."""
    settings = settings or KafkaSettings()
    app = make_app(namespace)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = await asyncio.to_thread(Worker(app, settings, worker_id="api-1").start)
        state["client"] = AsyncSagaClient(settings, namespace)
        try:
            yield
        finally:
            await state["client"].close()
            await asyncio.to_thread(worker.stop)

    api = FastAPI(title="shop", lifespan=lifespan)

    @api.post("/orders/{order_id}", status_code=202)
    async def start_order(order_id: str, order: dict[str, Any]) -> dict[str, str]:
        client: AsyncSagaClient = state["client"]
        try:
            await client.start("order", {**order, "order_id": order_id}, saga_id=order_id,
                               wait="accepted")  # fmt: skip
        except InputRefusedError as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"order": order_id}

    @api.get("/orders/{order_id}")
    async def order_status(order_id: str) -> dict[str, Any]:
        found = await state["client"].status("order", order_id)
        if found is None:
            raise HTTPException(404, f"no order {order_id}")
        return {"status": found.status, "reason": found.reason, "data": found.data}

    @api.get("/orders/{order_id}/events")
    async def order_events(order_id: str) -> StreamingResponse:
        client: AsyncSagaClient = state["client"]
        return StreamingResponse(_events(client, order_id), media_type="text/event-stream")

    return api


async def _events(client: AsyncSagaClient, order_id: str) -> AsyncIterator[str]:
    """The order's journal events as server-sent events, from now until it ends; an order that
    already ended sends its status once."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[JournalEvent] = asyncio.Queue()

    def hand_over(event: JournalEvent) -> None:  # on the client's reader thread
        loop.call_soon_threadsafe(events.put_nowait, event)

    stop = await asyncio.to_thread(client.sync.journal().watch, "order", order_id, hand_over)
    try:
        now = await client.status("order", order_id)
        if now is not None and (now.terminal or now.status == "stuck"):
            yield _sse("status", {"status": now.status, "reason": now.reason})
            return
        while True:
            event = await events.get()
            row = entry(event, -1).to_dict()  # for people: no secret, ids without their tag
            yield _sse(event.type, {k: v for k, v in row.items() if v is not None})
            if event.type in ENDS:
                return
    finally:
        stop()


def _sse(kind: str, body: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(body, default=str)}\n\n"


api = make_api()
