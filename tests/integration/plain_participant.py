"""A saga participant written with a plain Kafka client and the .avsc files, nothing of ``sagas``.

It stands for a participant in another language: everything it knows of kafka-sagas is the wire
contract of the README and ``schemas/sagas.Payload.avsc``. It must import nothing from ``sagas``
(a test parses this file to check), only confluent_kafka, fastavro and the standard library.

- Commands arrive keyed by saga id with the headers ``saga-id``, ``saga-type``, ``command-id``,
  ``command-type``, ``attempt``, ``reply-to`` and ``deadline``; header values are UTF-8.
- Values are ``sagas.Payload`` in Avro's single-object encoding: ``C3 01``, the schema's CRC-64-AVRO
  fingerprint (8 bytes, little-endian), then the Avro body; ``Payload.json`` is one JSON object.
- The reply goes to ``reply-to``, keyed by saga id, with the headers ``saga-id``, ``command-id``
  and ``outcome`` (``success``, ``failure``, ``retryable-failure``); its value is a Payload whose
  JSON carries ``error`` on a failure. The partitioner is ``murmur2_random``, the Java client's.
- Deduplicate on ``command-id``: a command seen again is answered with the reply it got.
- Refuse a command that reaches it after its ``deadline`` (epoch ms): a ``failure`` with
  ``error = "deadline-passed"``, without running the handler, unless a handler may have run it
  before (a record below the partition's end offset when this consumer was assigned it).

Delivery here is at least once: the reply is flushed before the command's offset is committed.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PAYLOAD_SCHEMA = json.loads((SCHEMAS / "sagas.Payload.avsc").read_text())
PAYLOAD = parse_schema(PAYLOAD_SCHEMA)
HEADER = b"\xc3\x01" + bytes.fromhex(
    fingerprint(to_parsing_canonical_form(PAYLOAD_SCHEMA), "CRC-64-AVRO")
)

# (command type, payload, headers) -> (outcome, reply payload), or None to stay silent.
Handler = Callable[[str, dict[str, Any], dict[str, str]], tuple[str, dict[str, Any]] | None]


def decode_payload(value: bytes) -> dict[str, Any]:
    """A command's payload; only records written with this exact Payload schema are read."""
    if value[: len(HEADER)] != HEADER:
        raise ValueError(f"not a sagas.Payload in single-object encoding: {value[:10].hex()}")
    record = schemaless_reader(io.BytesIO(value[len(HEADER) :]), PAYLOAD, None)
    payload = json.loads(record["json"])
    if not isinstance(payload, dict):
        raise TypeError("a payload is one JSON object")
    return payload


def encode_payload(payload: dict[str, Any]) -> bytes:
    """A reply's value."""
    out = io.BytesIO()
    out.write(HEADER)
    schemaless_writer(out, PAYLOAD, {"json": json.dumps(payload)})
    return out.getvalue()


class PlainParticipant:
    """Serve the commands of ``topics`` with ``handler`` until :meth:`stop`."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], handler: Handler) -> None:
        self.handler = handler
        # (saga id, command type, attempt, payload) of every command handled
        self.received: list[tuple[str, str, int, dict[str, Any]]] = []
        self._replies: dict[str, tuple[str, dict[str, Any]] | None] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 1,
            }
        )
        self._fresh_from: dict[tuple[str, int], int] = {}  # (topic, partition) -> end offset
        self._consumer.subscribe(topics, on_assign=self._assigned)
        self._thread = threading.Thread(target=self._run, name=f"plain-{group}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msg = self._consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                self._handle(msg)
                self._producer.flush(30)
                self._consumer.commit(message=msg, asynchronous=False)
        finally:
            self._consumer.close()

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:  # a record below the end may have reached a handler before
            _, end = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            self._fresh_from[(tp.topic, tp.partition)] = end

    def _handle(self, msg: Any) -> None:
        headers = {k: v.decode("utf-8") for k, v in msg.headers() or [] if v is not None}
        command_id = headers["command-id"]
        deadline = int(headers["deadline"]) if "deadline" in headers else None
        first_delivery = msg.offset() >= self._fresh_from.get((msg.topic(), msg.partition()), 0)
        late = deadline is not None and deadline < time.time() * 1000 and first_delivery
        if command_id not in self._replies and late:  # the saga decides on this refusal
            self._replies[command_id] = ("failure", {"error": "deadline-passed"})
        if command_id not in self._replies:  # a command seen again gets the same reply
            command_type, payload = headers["command-type"], decode_payload(msg.value())
            self.received.append(
                (headers["saga-id"], command_type, int(headers["attempt"]), payload)
            )
            self._replies[command_id] = self.handler(command_type, payload, headers)
        reply = self._replies[command_id]
        if reply is None:
            return
        outcome, payload = reply
        self._producer.produce(
            headers["reply-to"],
            key=headers["saga-id"].encode(),
            value=encode_payload(payload),
            headers=[
                ("saga-id", headers["saga-id"].encode()),
                ("command-id", command_id.encode()),
                ("outcome", outcome.encode()),
            ],
        )

    def stop(self) -> None:
        """Stop consuming, leave the group and flush what is pending."""
        self._stop.set()
        self._thread.join(30)
        self._producer.flush(30)
