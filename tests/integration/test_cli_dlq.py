"""``sagas dlq list | replay`` on the real broker, run as a user runs it (the installed ``sagas``
from the folder that holds their app)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from sagas.engine.model import Start
from sagas.partitioning import partition_for
from sagas.serde import Serde
from sagas.wire import input_record
from tests.support.cli import Ops

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka


def test_a_misplaced_start_is_listed_then_replayed_once(ops: Ops) -> None:
    inbox = f"{ops.ns}.ship.inbox"
    rec = input_record(inbox, Start("d-1", {"to": "cy"}), SERDE)
    wrong = 1 - partition_for(b"d-1", 2)
    producer = Producer({"bootstrap.servers": ops.bootstrap})
    producer.produce(inbox, key=rec.key, value=rec.value, headers=rec.headers, partition=wrong)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while not (letters := ops.json("dlq", "list", "ship", "--saga", "d-1")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    [letter] = letters
    assert letter["reason_class"] == "misplaced input"
    assert letter["source"][:2] == [inbox, wrong]
    assert not letter["replayed"]
    table = ops.ok("dlq", "list", "ship", "--reason", "misplaced")
    assert "misplaced input" in table
    assert "d-1" in table
    assert "choose what to replay" in ops.error("dlq", "replay", "ship")
    assert ops.json("dlq", "replay", "ship", "--saga", "d-1") == {
        "replayed": [letter["offset"]],
        "skipped": [],
        "refused": [],
    }
    ops.until("ship", "d-1", "completed")  # back in its partition, it started
    again = ops.json("dlq", "replay", "ship", "--reason", "misplaced")
    assert again == {"replayed": [], "skipped": [letter["offset"]], "refused": []}
    assert ops.json("dlq", "list", "ship", "--saga", "d-1")[0]["replayed"]
    assert "does not exist" in ops.error("dlq", "list", "--group", f"{ops.ns}.nobody")
