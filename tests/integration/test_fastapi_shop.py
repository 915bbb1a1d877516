"""The FastAPI example on the real broker: its lifespan runs the worker and the client; an order
POSTed is taken by a worker, its events stream until it ends, and the participants' world holds
the order; a second POST of the same id is refused with 409 and the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from processors.fastapi_shop import make_api
from processors.orders import Books, participants
from sagas.settings import KafkaSettings

pytestmark = pytest.mark.kafka


@pytest.fixture
def world(bootstrap: str, unique: str) -> Iterator[tuple[TestClient, Books]]:
    settings = KafkaSettings(bootstrap)
    service, books = participants(settings, failure_rate=0.0, latency_ms=0, namespace=unique)
    service.create_topics = True
    thread, stop = service.start()
    try:
        with TestClient(make_api(unique, settings)) as client:
            yield client, books
    finally:
        stop.set()
        thread.join(30)


def test_an_order_is_started_streamed_to_its_end_and_refused_twice(
    world: tuple[TestClient, Books],
) -> None:
    api, books = world
    order = {"customer": "ada", "total": 30.0, "items": ["book"]}
    started = api.post("/orders/o-1", json=order)
    assert started.status_code == 202, started.text
    assert started.json() == {"order": "o-1"}
    kinds: list[str] = []
    with api.stream("GET", "/orders/o-1/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
            if line.startswith("data: ") and kinds[-1] in ("finished", "status"):
                end = json.loads(line.removeprefix("data: "))
                break
    assert end.get("outcome", end.get("status")) == "completed", (kinds, end)
    assert api.get("/orders/o-1").json()["status"] == "completed"
    held = ("o-1" in books.credit, "o-1" in books.stock, "o-1" in books.shipped)
    assert held == (True, True, True)  # the world holds the order, not only the engine
    again = api.post("/orders/o-1", json=order)
    assert again.status_code == 409
    assert "'o-1' of type 'order' already exists (completed)" in again.json()["detail"]
    assert api.get("/orders/nope").status_code == 404
