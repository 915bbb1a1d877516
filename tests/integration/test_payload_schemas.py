"""A saga whose command and reply payloads are the user's own Avro records, on the real broker."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

import sagas
from sagas import Saga, step
from sagas.app import App
from sagas.client import SagaClient
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.serde.payloads import avro_schema
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all

pytestmark = pytest.mark.kafka


@dataclass
class BookRoom:
    guest: str
    nights: int
    breakfast: bool = False


@dataclass
class RoomBooked:
    room: str
    price: float


def test_typed_commands_and_replies_travel_as_their_own_avro_records(
    bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.hotel"
    saga = Saga[dict[str, Any]](
        "trip",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step(
                "book",
                to=topic,
                command="BookRoom",
                payload=lambda d: {"guest": d["guest"], "nights": d["nights"]},
                payload_schema=BookRoom,
                reply_schema=RoomBooked,
                kind="pivot",
            ),
        ],
    )
    app = App(unique, [sagas.compile(saga)], partitions=2)
    settings = KafkaSettings(bootstrap)
    ensure_topics(app, settings)
    seen: list[BookRoom] = []
    hotel = Participant(settings, f"{unique}.hotel-service")

    @hotel.handler(topic, "BookRoom", payload_schema=BookRoom, reply_schema=RoomBooked)
    def book(payload: BookRoom, ctx: CommandContext) -> RoomBooked:
        seen.append(payload)
        return RoomBooked(room=f"{payload.guest}-101", price=80.0 * payload.nights)

    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker,
        args=(app, settings),
        kwargs={"stop": stop, "install_signal_handlers": False, "worker_id": "w"},
        daemon=True,
    )
    worker.start()
    thread, stop_hotel = hotel.start()
    client = SagaClient(settings, app.namespace)
    try:
        sid = client.start("trip", {"guest": "ada", "nights": 2})
        data = client.result("trip", sid, timeout=60)
    finally:
        stop.set()
        stop_hotel.set()
        worker.join(30)
        thread.join(30)
        client.close()
    assert seen == [BookRoom("ada", 2, False)]
    assert data["room"] == "ada-101"
    assert data["price"] == 160.0

    # On the wire: the command is a BookRoom record, readable with nothing but its schema.
    schema = avro_schema(BookRoom)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    [(_, value)] = read_all(bootstrap, topic)
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == fp
    body = schemaless_reader(io.BytesIO(value[10:]), parse_schema(schema), None)
    assert body == {"guest": "ada", "nights": 2, "breakfast": False}
