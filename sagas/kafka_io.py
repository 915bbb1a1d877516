"""Translate confluent-kafka errors into kafka-sagas errors at the boundary, keeping the cause;
and the small reading helpers that need that translation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from sagas.errors import BrokerError, BrokerUnavailableError

__all__ = ["is_transient", "kafka_errors", "read_to_end", "translate", "watermarks"]

_UNAVAILABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
# Errors that pass once metadata settles (a topic just created, a leader moving, a broker back).
_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
}


def is_transient(err: object) -> bool:
    """True for a KafkaError that retrying the same call may cure."""
    return isinstance(err, KafkaError) and (err.retriable() or err.code() in _TRANSIENT)


def translate(exc: KafkaException, doing: str) -> BrokerError:
    """The kafka-sagas error for a confluent-kafka exception raised while ``doing`` something."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return BrokerError(f"{doing}: {exc}")
    if err.code() in _UNAVAILABLE:
        return BrokerUnavailableError(
            f"{doing}: no Kafka broker answers ({err.str()}); check bootstrap.servers "
            "(KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers) and that the broker runs"
        )
    return BrokerError(f"{doing}: {err.str()}", retryable=err.retriable(), fatal=err.fatal())


@contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Re-raise any ``KafkaException`` inside the block as a :class:`BrokerError`."""
    try:
        yield
    except KafkaException as exc:
        raise translate(exc, doing) from exc


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """A partition's low and high offsets, retried while its leader moves (e.g. after creation).

    Raises:
        BrokerError: a non-retriable error, or no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not is_transient(err) or time.monotonic() > deadline:
                raise translate(exc, f"reading the offsets of {tp.topic}[{tp.partition}]") from exc
            time.sleep(0.2)


def read_to_end(consumer: Consumer, topic: str, partition: int) -> Iterator[Message]:
    """Every record of one partition, from its start to the end of its committed data.

    ``consumer`` must have ``enable.partition.eof`` set (and ``read_committed`` for a changelog).

    Raises:
        BrokerError: the partition could not be read.
    """
    tp = TopicPartition(topic, partition)
    low, high = watermarks(consumer, tp, 60)
    if high <= low:
        return
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    try:
        while True:
            for msg in consumer.consume(5000, 0.05):  # returns at EOF within 50 ms
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() == KafkaError._PARTITION_EOF:
                    return
                else:
                    raise translate(KafkaException(err), f"reading {topic}[{partition}]")
    finally:
        consumer.unassign()
