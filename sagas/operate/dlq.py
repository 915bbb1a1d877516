"""Dead letters: list them by reason, saga and time; replay chosen ones to their source topic.

A dead-letter topic is a saga type's ``<ns>.<saga>.dlq`` or a participant group's ``<group>.dlq``.
Each record carries its source's key, value and headers plus ``dlq-reason``, ``dlq-source-topic``,
``dlq-source-partition`` and ``dlq-source-offset``; one too large or unwritable as it was keeps
only its key and headers (``dlq-value-dropped``) or only where it came from: those cannot be
replayed, since what they held is gone.

Replay writes the record back to its source topic (partitioned by its key, as the worker and
participants expect; the source partition when it has no key) without the ``dlq-*`` headers, and
records ``<source topic>/<partition>/<offset>`` in the compacted topic ``<dlq>.replayed`` in the
same Kafka transaction. A letter found there is not replayed again, so a replay is idempotent,
across crashes too; two replays of one DLQ at once fence each other (one transactional id).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sagas.errors import ConfigurationError
from sagas.kafka_io import kafka_errors, translate
from sagas.operate._io import partitions_of, read_range, reader
from sagas.protocol import (
    DLQ_HEADERS,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_VALUE_DROPPED,
    SAGA_ID,
    replayed_topic,
    replayer_transactional_id,
)
from sagas.settings import KafkaSettings
from sagas.wire import header_dict

__all__ = [
    "PARKED",
    "DeadLetter",
    "ReplayReport",
    "list_dead_letters",
    "replay",
    "select",
]

PARKED = "unknown-definition-version"
"""The reason class of inputs of a saga whose definition version the worker lacked."""


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic.

    Attributes:
        dlq: the dead-letter topic; ``partition``, ``offset``: where it sits there.
        at_ms: when it was dead-lettered (record timestamp, epoch ms).
        reason: ``dlq-reason``; ``reason_class``: its part before the first ``:``.
        saga_id: the ``saga-id`` header, else the key.
        source: where it came from (topic, partition, offset); ``None`` when unknown.
        value_dropped: its value was not kept (it cannot be replayed).
        replayed: it was replayed already.
    """

    dlq: str
    partition: int
    offset: int
    at_ms: int
    reason: str
    saga_id: str | None
    source: tuple[str, int, int] | None
    value_dropped: bool
    replayed: bool
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def reason_class(self) -> str:
        """The reason's first part, e.g. ``unknown-definition-version`` or ``undecodable input``."""
        return self.reason.split(":", 1)[0].strip()

    @property
    def replayable(self) -> bool:
        """It can be replayed: its value was kept, its source is known, not replayed yet."""
        return not self.value_dropped and self.source is not None and not self.replayed

    @property
    def source_key(self) -> str | None:
        """``topic/partition/offset`` of its source (its key in the replayed topic)."""
        return "/".join(map(str, self.source)) if self.source else None

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives (without key and value bytes)."""
        return {
            "dlq": self.dlq,
            "partition": self.partition,
            "offset": self.offset,
            "at_ms": self.at_ms,
            "reason": self.reason,
            "reason_class": self.reason_class,
            "saga_id": self.saga_id,
            "source": list(self.source) if self.source else None,
            "value_dropped": self.value_dropped,
            "replayed": self.replayed,
        }


def _letter(msg: Any, replayed: set[str]) -> DeadLetter:
    raw = [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in msg.headers() or []]
    h = header_dict([(k, v) for k, v in raw])
    source: tuple[str, int, int] | None = None
    try:
        source = (
            h[DLQ_SOURCE_TOPIC],
            int(h[DLQ_SOURCE_PARTITION]),
            int(h[DLQ_SOURCE_OFFSET]),
        )
    except (KeyError, ValueError):
        source = None
    key = msg.key()
    saga_id = h.get(SAGA_ID) or (key.decode("utf-8", "replace") if key else None)
    letter = DeadLetter(
        dlq=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        at_ms=msg.timestamp()[1],
        reason=h.get(DLQ_REASON, ""),
        saga_id=saga_id,
        source=source,
        value_dropped=DLQ_VALUE_DROPPED in h or not msg.value(),
        replayed=False,
        key=key,
        value=msg.value(),
        headers=tuple(raw),
    )
    if letter.source_key in replayed:
        return DeadLetter(**{**letter.__dict__, "replayed": True})
    return letter


def _read_replayed(settings: KafkaSettings, dlq: str) -> set[str]:
    """The source keys replayed from ``dlq`` so far."""
    topic = replayed_topic(dlq)
    consumer = reader(settings)
    try:
        if topic not in consumer.list_topics(timeout=30).topics:
            return set()
        done: set[str] = set()
        for p in range(partitions_of(consumer, topic, "replayed dead letters")):
            for msg in read_range(consumer, topic, p, 0):
                if msg.key() is not None and msg.value():
                    done.add(msg.key().decode())  # type: ignore[union-attr]
        return done
    finally:
        consumer.close()


def list_dead_letters(
    settings: KafkaSettings,
    dlq: str,
    *,
    saga_id: str | None = None,
    reason: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> list[DeadLetter]:
    """The dead letters of ``dlq``, oldest first, filtered by saga id, reason prefix and time,
    each marked ``replayed`` if it was.

    Raises:
        ConfigurationError: ``dlq`` does not exist.
        BrokerError: it could not be read.
    """
    replayed = _read_replayed(settings, dlq)
    consumer = reader(settings)
    letters: list[DeadLetter] = []
    try:
        for p in range(partitions_of(consumer, dlq, "dead letters")):
            for msg in read_range(consumer, dlq, p, 0):
                letter = _letter(msg, replayed)
                letters.append(letter)
    finally:
        consumer.close()
    chosen = select(letters, saga_id=saga_id, reason=reason)
    return [
        d
        for d in chosen
        if (since_ms is None or d.at_ms >= since_ms) and (until_ms is None or d.at_ms < until_ms)
    ]


def select(
    letters: Iterable[DeadLetter],
    *,
    saga_id: str | None = None,
    reason: str | None = None,
    offsets: Sequence[int] = (),
) -> list[DeadLetter]:
    """The letters of one saga, whose reason starts with ``reason``, at these DLQ offsets."""
    return [
        d
        for d in letters
        if (saga_id is None or d.saga_id == saga_id)
        and (reason is None or d.reason.startswith(reason))
        and (not offsets or d.offset in offsets)
    ]


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did: letters written back, skipped (already replayed), refused (no value or
    no source), each as DLQ offsets."""

    replayed: list[int]
    skipped: list[int]
    refused: list[int]

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {"replayed": self.replayed, "skipped": self.skipped, "refused": self.refused}


def _ensure_replayed_topic(settings: KafkaSettings, dlq: str) -> None:
    admin = AdminClient(settings.client_config())
    topic = replayed_topic(dlq)
    with kafka_errors("listing topics"):
        meta = admin.list_topics(timeout=30)
    if topic in meta.topics:
        return
    replication = min(3, max(1, len(meta.brokers)))
    new = NewTopic(topic, 1, replication, config={"cleanup.policy": "compact"})
    for name, future in admin.create_topics([new], request_timeout=30).items():
        try:
            future.result(30)
        except KafkaException as exc:
            if "already exists" not in str(exc) and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise translate(exc, f"creating {name}") from exc


def replay(
    settings: KafkaSettings,
    letters: Sequence[DeadLetter],
    *,
    progress: Callable[[DeadLetter], None] | None = None,
    batch: int = 200,
) -> ReplayReport:
    """Write ``letters`` back to their source topics without their ``dlq-*`` headers, each with
    its record in ``<dlq>.replayed`` in the same transaction (``batch`` letters per
    transaction); skip letters replayed before (as
    the replayed topic says now, not only as listed) and refuse those without a value.

    Raises:
        ConfigurationError: the letters come from several dead-letter topics.
        BrokerError: a write failed (what was committed before stays replayed, once).
    """
    dlqs = {d.dlq for d in letters}
    if len(dlqs) > 1:
        raise ConfigurationError(f"replay one dead-letter topic at a time, not {sorted(dlqs)}")
    if not letters:
        return ReplayReport([], [], [])
    [dlq] = dlqs
    _ensure_replayed_topic(settings, dlq)
    done = _read_replayed(settings, dlq)
    producer = Producer(
        settings.client_config(
            **{
                "transactional.id": replayer_transactional_id(dlq),
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
            }
        )
    )
    report = ReplayReport([], [], [])
    todo: list[DeadLetter] = []
    for letter in letters:
        if letter.value_dropped or letter.source is None:
            report.refused.append(letter.offset)
        elif letter.replayed or letter.source_key in done:
            report.skipped.append(letter.offset)
        else:
            todo.append(letter)
            continue
        if progress is not None:
            progress(letter)
    try:
        with kafka_errors(f"replaying {dlq}"):
            producer.init_transactions(30)
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                _write_back(producer, chunk)
                for letter in chunk:
                    report.replayed.append(letter.offset)
                    if progress is not None:
                        progress(letter)
    finally:
        producer.flush(30)
    return report


def _write_back(producer: Producer, letters: Sequence[DeadLetter]) -> None:
    """Letters to their sources and their marks to the replayed topic, in one transaction."""
    producer.begin_transaction()
    try:
        for letter in letters:
            assert letter.source is not None  # checked by the caller
            topic, partition, offset = letter.source
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in letter.headers if k not in DLQ_HEADERS
            ]
            where: dict[str, Any] = {} if letter.key else {"partition": partition}
            mark = {"dlq_offset": letter.offset, "replayed_ms": int(time.time() * 1000)}
            producer.produce(topic, key=letter.key, value=letter.value, headers=headers, **where)
            producer.produce(
                replayed_topic(letter.dlq),
                key=f"{topic}/{partition}/{offset}".encode(),
                value=json.dumps(mark).encode(),
            )
        producer.commit_transaction(30)
    except KafkaException:
        producer.abort_transaction(30)
        raise
