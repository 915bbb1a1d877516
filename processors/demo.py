"""``make demo``: bring a broker up and run the reference sagas end to end."""

from __future__ import annotations

import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processors.broker import broker_for_demo


def transactional_round_trip(bootstrap: str) -> None:
    """Write records in a committed and an aborted transaction; read back only the committed."""
    topic = f"sagas-demo-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-tx"})
    producer.init_transactions(30)
    for value, commit in ((b"committed", True), (b"aborted", False)):
        producer.begin_transaction()
        producer.produce(topic, value=value)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not seen:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            seen.append(msg.value())
    consumer.close()
    if seen != [b"committed"]:
        raise SystemExit(f"transaction round trip failed: read {seen!r}")
    print(f"transactional round trip on {topic}: read {seen!r}, the aborted record stayed hidden")


def main() -> int:
    """Run the demo; return the exit code."""
    with broker_for_demo() as bootstrap:
        transactional_round_trip(bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
