"""Small helpers for tests that talk to the real broker."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, name: str, partitions: int = 1, **config: str) -> None:
    """Create a topic and wait until it exists."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
    futures[name].result(timeout=30)


def tx_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    """A transactional producer with its transactions initialised."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "partitioner": "murmur2_random",
            "transaction.timeout.ms": 10000,
            **extra,
        }
    )
    producer.init_transactions(30)
    return producer


def read_all(
    bootstrap: str,
    topic: str,
    *,
    committed_only: bool = True,
    expect: int | None = None,
    timeout: float = 20.0,
    with_headers: bool = False,
) -> list[Any]:
    """Every (key, value) of a topic from the start to its end, in partition order.

    With ``with_headers``, (key, value, headers as a dict of str) triples.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    records: list[Any] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    if len(at_eof) == len(partitions) and (
                        expect is None or len(records) >= expect
                    ):
                        break
                    continue
                raise RuntimeError(msg.error())
            at_eof.discard(msg.partition())
            if with_headers:
                headers = {
                    k: v.decode("utf-8", "replace")
                    for k, v in (msg.headers() or [])
                    if v is not None
                }
                records.append((msg.key(), msg.value(), headers))
            else:
                records.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return records
