"""Translate confluent-kafka errors into kafka-sagas errors at the boundary, keeping the cause;
and the small reading helpers that need that translation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from sagas.errors import BrokerError, BrokerUnavailableError

if TYPE_CHECKING:
    from sagas.settings import KafkaSettings
    from sagas.wire import OutRecord

__all__ = [
    "INPUT_PRODUCER",
    "ChangelogReader",
    "is_transient",
    "kafka_errors",
    "no_broker",
    "produce_and_wait",
    "read_to_end",
    "translate",
    "watermarks",
]

log = logging.getLogger(__name__)

INPUT_PRODUCER: dict[str, Any] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "linger.ms": 1,
}
"""The producer options of whoever writes saga inputs (clients, operators)."""

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


def no_broker(settings: KafkaSettings) -> BrokerUnavailableError:
    """The error for "no broker answered within the connect timeout": the address, and what to
    do."""
    return BrokerUnavailableError(
        f"no Kafka broker answers at {settings.bootstrap_servers} within "
        f"{settings.connect_timeout:g} s; check the address (--bootstrap-servers or "
        "KAFKA_BOOTSTRAP_SERVERS) and that the broker runs, or wait longer with "
        "--connect-timeout / SAGAS_CONNECT_TIMEOUT"
    )


def _unavailable(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and err.code() in (*_UNAVAILABLE, KafkaError._TIMED_OUT)


@contextmanager
def kafka_errors(doing: str, settings: KafkaSettings | None = None) -> Iterator[None]:
    """Re-raise any ``KafkaException`` inside the block as a :class:`BrokerError` (with
    ``settings``, "no broker answers" as :func:`no_broker` says it)."""
    try:
        yield
    except KafkaException as exc:
        if settings is not None and _unavailable(exc):
            raise no_broker(settings) from exc
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


def read_to_end(
    consumer: Consumer,
    topic: str,
    partition: int,
    *,
    through: int | None = None,
    timeout: float = 120.0,
) -> Iterator[Message]:
    """Every committed record of one partition, from its start to its end.

    The end is the last stable offset as the read begins: records of transactions still open
    then (or committed but with their markers not yet written) are left out. A reader that
    must see everything written before it started (a restore right after its own commit, or
    after a crashed writer) passes ``through``: the partition's high watermark, read with
    ``read_uncommitted`` (:class:`ChangelogReader` does this). The read then goes on until every
    offset below it is decided (committed records delivered, aborted ones skipped), for at
    most ``timeout`` seconds.

    ``consumer`` must have ``enable.partition.eof`` set (and ``read_committed`` for a changelog).

    Raises:
        BrokerError: the partition could not be read, or a transaction in it stayed undecided
            for ``timeout`` seconds.
    """
    tp = TopicPartition(topic, partition)
    low, high = watermarks(consumer, tp, 60)
    if max(high, through or 0) <= low:
        return
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    waiting_at: int | None = None  # an EOF short of ``through``: a transaction is undecided
    waiting_since = 0.0
    try:
        while True:
            for msg in consumer.consume(5000, 0.05):  # returns at EOF within 50 ms
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise translate(KafkaException(err), f"reading {topic}[{partition}]")
                elif through is None or (msg.offset() or 0) >= through:
                    return
                else:
                    if waiting_at is None:
                        waiting_since = time.monotonic()
                        log.info(
                            "%s[%d]: waiting for the transactions below offset %d to be decided",
                            topic,
                            partition,
                            through,
                        )
                    waiting_at = msg.offset() or 0
            if waiting_at is not None and time.monotonic() - waiting_since > timeout:
                raise BrokerError(
                    f"reading {topic}[{partition}]: a transaction at offset {waiting_at} stayed "
                    f"undecided for {timeout:.0f} s (the high watermark is {through}); a "
                    "producer that dies mid-transaction has it aborted after its "
                    "transaction.timeout.ms: check the producers writing this topic",
                    retryable=True,
                )
    finally:
        consumer.unassign()


class ChangelogReader:
    """Reads a changelog partition through everything written to it before the read began.

    A restore must not stop at the last stable offset: right after a transaction commits, its
    markers are still being written, so the group's committed input offset can already include
    a batch whose snapshots the partition does not yet show as committed. Restoring to that
    offset would roll the sagas back behind input that is never read again. So the read goes
    through the high watermark of a ``read_uncommitted`` probe, until the transactions below it
    are decided.
    """

    def __init__(self, restorer: Consumer, probe: Consumer) -> None:
        self.restorer = restorer
        self.probe = probe

    def read(self, topic: str, partition: int, *, timeout: float = 120.0) -> Iterator[Message]:
        """Every committed record of the partition written before this call."""
        _, high = watermarks(self.probe, TopicPartition(topic, partition), 60)
        return read_to_end(self.restorer, topic, partition, through=high, timeout=timeout)

    def close(self) -> None:
        """Close both consumers."""
        self.restorer.close()
        self.probe.close()


def produce_and_wait(
    producer: Producer,
    rec: OutRecord,
    timeout: float = 30.0,
    *,
    settings: KafkaSettings | None = None,
) -> None:
    """Write ``rec`` and wait until Kafka acknowledges it.

    With the producer's ``settings``, a record still unacknowledged after their connect timeout
    while no broker answers is dropped from the producer's queue (it was never sent) and
    :func:`no_broker` is raised.

    Raises:
        BrokerUnavailableError: with ``settings``, no broker answered within the connect timeout.
        BrokerError: it was not acknowledged (retryable).
    """
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            errors.append(err)

    with kafka_errors(f"sending to {rec.topic}"):
        producer.produce(
            rec.topic, key=rec.key, value=rec.value, headers=rec.headers, on_delivery=on_delivery
        )
        first = min(timeout, settings.connect_timeout) if settings is not None else timeout
        remaining = producer.flush(first)
        if remaining and settings is not None and not errors:
            if not _answers(producer):
                producer.purge(in_queue=True, in_flight=False)
                producer.flush(0)
                raise no_broker(settings)
            remaining = producer.flush(max(0.0, timeout - first))
    if errors or remaining:
        reason = errors[0].str() if errors else f"not acknowledged within {timeout:g} s"
        raise BrokerError(f"could not write to {rec.topic}: {reason}", retryable=True)


def _answers(producer: Producer) -> bool:
    """Whether a broker answers the producer's metadata request within a second."""
    try:
        producer.list_topics(timeout=1.0)
    except KafkaException as exc:
        return not _unavailable(exc)
    return True
