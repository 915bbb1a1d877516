"""Kafka clients for the operator tools: a committed-data reader, and topic metadata."""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from sagas.errors import ConfigurationError
from sagas.kafka_io import kafka_errors, translate, watermarks
from sagas.protocol import private_group
from sagas.settings import KafkaSettings

__all__ = ["offset_at", "partitions_of", "read_range", "reader"]


def reader(settings: KafkaSettings) -> Consumer:
    """A consumer for assigned partitions, ``read_committed``, that never commits."""
    return Consumer(
        settings.client_config(
            **{
                "group.id": private_group("operate"),
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
    )


def partitions_of(consumer: Consumer, topic: str, what: str) -> int:
    """The real partition count of ``topic``.

    Raises:
        ConfigurationError: the topic does not exist; ``what`` says what it holds.
    """
    with kafka_errors(f"reading the metadata of {topic}"):
        meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or not meta.partitions or meta.error is not None:
        raise ConfigurationError(
            f"topic {topic} ({what}) does not exist; check the name and --namespace"
        )
    return len(meta.partitions)


def read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int | None = None
) -> Iterator[Message]:
    """The committed records of one partition from offset ``start`` (before ``end``, default:
    to the end of its committed data).

    Raises:
        BrokerError: the partition could not be read.
    """
    tp = TopicPartition(topic, partition)
    low, high = watermarks(consumer, tp, 30)
    stop = high if end is None or end < 0 else min(end, high)
    start = max(start, low)
    if start >= stop:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    try:
        while True:
            for msg in consumer.consume(5000, 0.1):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    raise translate(KafkaException(err), f"reading {topic}[{partition}]")
                offset = msg.offset() or 0
                if offset >= stop:
                    return
                yield msg
                if offset + 1 >= stop:
                    return
    finally:
        consumer.unassign()


def offset_at(consumer: Consumer, topic: str, partition: int, at_ms: int) -> int:
    """The first offset of the partition whose timestamp is at or after ``at_ms`` (the high
    watermark when none is).

    Raises:
        BrokerError: the broker did not answer.
    """
    with kafka_errors(f"finding offsets by time in {topic}[{partition}]"):
        [found] = consumer.offsets_for_times([TopicPartition(topic, partition, at_ms)], 30)
    if found.offset is None or found.offset < 0 or found.offset == OFFSET_END:
        return watermarks(consumer, TopicPartition(topic, partition), 30)[1]
    return int(found.offset)
