"""Commands for participants on the real broker, as a saga worker writes them, and their replies."""

from __future__ import annotations

import collections
import time
from typing import Any

from sagas.engine.model import CommandOut
from sagas.serde import Serde
from sagas.wire import command_record
from tests.support.kafka import read_all

SERDE = Serde()
"""The encodings these records are read and written with."""


def send_commands(bootstrap: str, commands: list[CommandOut], reply_to: str) -> None:
    """Produce commands as a saga worker would (plain idempotent producer)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for cmd in commands:
        rec = command_record(cmd, reply_to, serde=SERDE)
        producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
    assert producer.flush(30) == 0


def command(topic: str, saga_id: str, n: int, command_type: str, **payload: Any) -> CommandOut:
    return CommandOut(
        topic=topic,
        saga_id=saga_id,
        saga_type="billing",
        step="charge",
        command_id=f"{saga_id}:charge:{n}",
        command_type=command_type,
        payload=payload,
        attempt=n,
        deadline_ms=None,
    )


def replies_by_command(bootstrap: str, topic: str, expect: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for _key, value, headers in read_all(bootstrap, topic, expect=expect, with_headers=True):
        out[headers["command-id"]].append(
            {"outcome": headers["outcome"], "payload": SERDE.decode_payload(value)}
        )
    return out


def wait_for(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
