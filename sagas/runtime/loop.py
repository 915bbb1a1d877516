"""One consume-transform-produce loop in Kafka transactions, for the saga worker and participants.

The loop owns the Kafka side; its user (:class:`LoopHooks`: the worker, a participant) owns the
meaning of the records. Each round:

1. poll the first record (waiting at most ``hooks.wait_seconds()``), then drain what the client
   already fetched, up to ``max_batch``; skip partition-EOF events and partitions not owned;
2. ``hooks.handle(batch, msg)`` for each record: the hook adds the records it wants written, each
   tagged with its *source* (the input's position, or another key such as a timer), or
   dead-letters the record; ``hooks.finish(batch)`` adds what depends on the whole batch;
3. in ONE transaction: the outputs, the dead letters and the consumed offsets
   (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447); commit, then
   ``hooks.committed(batch)``. No transaction is open while the consumer polls, so a rebalance
   finds nothing to finish.

On abort, the consumer seeks back to the batch's first offsets and ``hooks.aborted(batch)`` undoes
what the hook staged, so the batch is handled again.

**Poison isolation.** No record may fail a transaction twice. Every output is produced with a
delivery callback that knows its source; when a produce fails for a reason tied to the record
(too large, an unknown or invalid topic, not authorised, not encodable), its source is marked as
poison and the batch is handled again without it: a poisoned input is dead-lettered instead, in a
form that can be written (without its value when it is too large; as its source position and the
reason alone when even that fails). A source that is not an input (a timer) goes to
``hooks.poisoned``. A failure not tied to a record (the broker went away) retries the whole batch.
Partitions never wait on each other's poison: it costs one aborted transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sagas.errors import ConfigurationError
from sagas.kafka_io import ChangelogReader
from sagas.protocol import DLQ_VALUE_DROPPED, dead_letter_headers
from sagas.runtime.observe import Observer, Observers, partitions_text
from sagas.runtime.transactions import Transactions, changelog_reader, input_consumer
from sagas.settings import KafkaSettings
from sagas.wire import OutRecord

__all__ = [
    "DLQ_VALUE_LIMIT",
    "Batch",
    "DeadLetter",
    "LoopHooks",
    "LoopMetrics",
    "Output",
    "Position",
    "TransactionalLoop",
    "position",
    "record_tied",
    "safe_observer",
]

log = logging.getLogger(__name__)

Position = tuple[str, int, int]
"""Where a consumed record sits: topic, partition, offset."""

Source = Hashable
"""What an output was written for: an input's :data:`Position`, or a key of the hook's own."""

# Errors of one record that no retry can mend: the record must be isolated.
_RECORD_TIED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._INVALID_ARG,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
    }
)

QUIET_REASONS = ("unknown-definition-version",)
"""Dead-letter reasons logged at debug level: their cause is logged once elsewhere."""

# A dead letter bigger than this goes without its value: the broker's default message limit is
# 1 MiB, and a dead letter must never fail for its size.
DLQ_VALUE_LIMIT = 900_000


def record_tied(err: KafkaError) -> bool:
    """Whether a produce error belongs to the record itself (retrying cannot help)."""
    return err.code() in _RECORD_TIED


def position(msg: Message) -> Position:
    """The topic, partition and offset of a consumed record (always set on one)."""
    p, offset = msg.partition(), msg.offset()
    return str(msg.topic()), -1 if p is None else p, -1 if offset is None else offset


@dataclass(frozen=True)
class Output:
    """A record to write in the batch's transaction, and what it was written for."""

    record: OutRecord
    source: Source
    partition: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A consumed record on its way to a dead-letter topic.

    ``level`` says how much of it goes: 0 all of it, 1 without its value, 2 only where it came
    from and why (the headers ``dlq-*``).
    """

    msg: Message
    reason: str
    level: int = 0

    def record(self, topic: str) -> OutRecord:
        """The dead-letter record: the source's key, value and headers as far as ``level``
        allows, plus the ``dlq-*`` headers (reason, source topic, partition and offset)."""
        where = position(self.msg)
        key, value = self.msg.key(), self.msg.value()
        size = len(key or b"") + len(value or b"")
        level = self.level
        if level == 0 and size > DLQ_VALUE_LIMIT:
            level = 1
        if level >= 2:
            return OutRecord(topic, b"", b"", dead_letter_headers(None, self.reason, *where))
        headers = dead_letter_headers(self.msg.headers(), self.reason, *where)
        if level == 1:
            headers.append((DLQ_VALUE_DROPPED, f"{len(value or b'')} bytes".encode()))
            return OutRecord(topic, key or b"", b"", headers)
        return OutRecord(topic, key or b"", value or b"", headers)


@dataclass
class Batch:
    """What one transaction writes, and the offsets it consumes.

    Hooks subclass it to carry what they stage and must undo on abort.
    """

    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    taken: int = 0
    """Records consumed into this batch (events included)."""

    def write(self, record: OutRecord, source: Source, partition: int | None = None) -> None:
        """Add a record to write for ``source``."""
        self.outputs.append(Output(record, source, partition))

    def dead_letter(self, msg: Message, reason: str, level: int = 0) -> None:
        """Send a consumed record to the dead-letter topic instead of handling it."""
        self.dead_letters.append(DeadLetter(msg, reason, level))

    def empty(self) -> bool:
        """Whether there is nothing to commit."""
        return not (self.next_offsets or self.outputs or self.dead_letters)


B = TypeVar("B", bound=Batch)


class LoopHooks(Protocol[B]):
    """What a user of :class:`TransactionalLoop` supplies. Every method runs on the loop's
    thread."""

    name: str
    """What to call this loop in logs (its consumer group)."""

    dlq: str
    """The dead-letter topic."""

    def new_batch(self) -> B:
        """An empty batch."""

    def wait_seconds(self) -> float:
        """Longest wait for the next record (e.g. until a timer is due)."""

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions were assigned; their committed offsets are stable (restore them now)."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions left this process (revoked or lost)."""

    def owns(self, topic: str, partition: int) -> bool:
        """Whether records of this partition are to be handled (false once revoked)."""

    def handle(self, batch: B, msg: Message) -> None:
        """Handle one record: add its outputs with its position as source, or dead-letter it."""

    def finish(self, batch: B) -> None:
        """Add what depends on the whole batch (the worker's due timers and snapshots); it may
        take more records into it first (:meth:`TransactionalLoop.take_more`)."""

    def committed(self, batch: B) -> None:
        """The batch committed: make what it staged visible."""

    def aborted(self, batch: B) -> None:
        """The batch aborted: drop what it staged (the consumer is rewound already)."""

    def poisoned(self, source: Source, reason: str) -> None:
        """An output of a source that is not an input cannot be written (see the module doc)."""


@dataclass
class LoopMetrics:
    """Counters of one loop since it started."""

    transactions: int = 0
    aborted_transactions: int = 0
    dead_lettered: int = 0
    isolated: int = 0
    """Records isolated as poison after a produce failed because of them."""
    unwritable: int = 0
    """Poison records that could not be dead-lettered in any form (skipped, logged with their
    position: they stay in their topic)."""


def safe_observer(observer: Observer | None) -> Observer:
    """An observer whose failures are logged, never raised into the loop (none: a no-op)."""
    if observer is None:
        return Observer()
    return observer if isinstance(observer, Observers) else Observers([observer])


class _ConsumerReplacedError(Exception):
    """The consumer failed fatally and was replaced: the batch is dropped, not committed."""


class _RecordFailedError(Exception):
    """A produce failed at once for a reason tied to its record."""


class TransactionalLoop(Generic[B]):
    """Runs :class:`LoopHooks` over ``topics`` (see the module docstring).

    Args:
        hooks: what the records mean.
        settings: Kafka connection settings.
        group: the consumer group.
        transactional_id: stable per process across restarts, never shared by two live ones.
        topics: the topics to consume.
        max_batch: most records per transaction.
        consumer_options: extra consumer configuration.
        instance_id: join as a static group member with this id (see
            :func:`~sagas.runtime.transactions.input_consumer`); stable across restarts of one
            process, never shared by two live ones.
        offsets_timeout: longest wait for ``send_offsets_to_transaction`` (seconds). It takes
            milliseconds when the coordinator answers; after a broker restart librdkafka may
            leave it waiting on a stale coordinator (confluentinc/librdkafka#5511), and a new
            producer (under 1 s) is the quickest way out.
        observer: told of transactions, dead letters, isolated records and partitions.
    """

    def __init__(
        self,
        hooks: LoopHooks[B],
        settings: KafkaSettings,
        *,
        group: str,
        transactional_id: str,
        topics: Iterable[str],
        max_batch: int,
        consumer_options: dict[str, Any] | None = None,
        instance_id: str | None = None,
        offsets_timeout: float = 2.0,
        observer: Observer | None = None,
    ) -> None:
        self.hooks = hooks
        self.observer = safe_observer(observer)
        self.settings = settings
        self.group = group
        self.transactional_id = transactional_id
        self.topics = list(topics)
        self.max_batch = max(1, max_batch)
        self.consumer_options = consumer_options or {}
        self.instance_id = instance_id
        self.offsets_timeout = offsets_timeout
        self.metrics = LoopMetrics()
        self.committed_start: dict[tuple[str, int], int] = {}
        """The group's committed offset of each partition when it was assigned."""
        self._poison: dict[Position, tuple[int, str]] = {}
        self._replaced: list[float] = []
        self._consumer: Consumer | None = None
        self._restorer: ChangelogReader | None = None
        self._txn: Transactions | None = None

    # ------------------------------------------------------------------------- clients

    @property
    def consumer(self) -> Consumer:
        """The input consumer (while running)."""
        if self._consumer is None:
            raise RuntimeError(f"{self.group}: the loop is not running")
        return self._consumer

    @property
    def restorer(self) -> ChangelogReader:
        """A consumer that reads changelog partitions to their end (while running)."""
        if self._restorer is None:
            raise RuntimeError(f"{self.group}: the loop is not running")
        return self._restorer

    @property
    def transactions(self) -> Transactions:
        """The transactional producer (while running)."""
        if self._txn is None:
            raise RuntimeError(f"{self.group}: the loop is not running")
        return self._txn

    def open(self) -> None:
        """Create the clients and subscribe."""
        self._restorer = changelog_reader(self.settings, self.group)
        self._txn = Transactions(
            self.settings,
            self.transactional_id,
            owner=self.group,
            offsets_timeout=self.offsets_timeout,
        )
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer = input_consumer(
            self.settings, self.group, instance_id=self.instance_id, **self.consumer_options
        )
        self._consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _replace_consumer(self, err: KafkaError) -> None:
        """A fatal consumer error (e.g. a static member fenced after a broker restart): drop
        what this process owned and join the group again with a new consumer. Nothing is lost:
        no transaction is open while polling, and the new assignment restores from Kafka.

        Raises:
            ConfigurationError: the consumer failed this way more than 5 times in a minute
                (a static member: another live process uses the same instance id).
        """
        now = time.monotonic()
        self._replaced = [t for t in self._replaced if now - t < 60] + [now]
        if len(self._replaced) > 5:
            why = (
                f"another live process uses the instance id {self.instance_id!r}: give each its "
                "own (--worker-id, --instance-id)"
                if self.instance_id
                else "see the errors before this one"
            )
            raise ConfigurationError(
                f"{self.group}: the consumer keeps failing fatally ({err.str()}); {why}"
            )
        log.warning("%s: the consumer failed (%s); joining the group again", self.group, err)
        old, self._consumer = self._consumer, None
        if old is not None:
            try:
                owned = list(old.assignment())
            except KafkaException:
                owned = []
            if owned:
                self._on_revoke(old, owned)
            try:
                old.close()
            except (KafkaException, RuntimeError) as exc:
                log.info("%s: the failed consumer did not close cleanly: %s", self.group, exc)
        self._subscribe()

    def close(self) -> None:
        """Leave the group and release the clients."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._restorer is not None:
            self._restorer.close()
            self._restorer = None
        if self._txn is not None:
            self._txn.close()
            self._txn = None

    def run(self, stop: threading.Event) -> None:
        """Open, run rounds until ``stop`` is set, then close (the batch in flight commits)."""
        self.open()
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self.close()

    # ------------------------------------------------------------------------- rebalance

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        # Waits until the offsets are stable: a predecessor's transaction is decided.
        for tp in consumer.committed(partitions, timeout=120):
            self.committed_start[(tp.topic, tp.partition)] = tp.offset
        self.hooks.assigned(partitions)
        new = {(tp.topic, tp.partition) for tp in partitions}
        self.observer.partitions(self.group, sorted(new | set(self._owned(consumer))))
        log.info("%s: assigned partitions %s", self.group, partitions_text(sorted(new)))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        self.hooks.revoked(partitions)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._poison = {p: v for p, v in self._poison.items() if p[:2] not in gone}
        self.observer.partitions(self.group, [tp for tp in self._owned(consumer) if tp not in gone])
        log.info("%s: %s left this process", self.group, partitions_text(sorted(gone)))

    def _owned(self, consumer: Consumer) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in consumer.assignment())

    # ------------------------------------------------------------------------- a round

    def run_once(self) -> None:
        """Take one batch and commit it in one transaction."""
        consumer = self.consumer
        first = consumer.poll(self.hooks.wait_seconds())
        messages: list[Message] = []
        if first is not None:
            messages.append(first)
            if self.max_batch > 1:
                messages.extend(consumer.consume(self.max_batch - 1, 0))
        batch = self.hooks.new_batch()
        try:
            self._take(batch, messages)
            self.hooks.finish(batch)
        except _ConsumerReplacedError:
            return  # the new consumer's assignment reads the batch again
        if not batch.empty():
            self._commit(batch)

    def take_more(self, batch: B) -> int:
        """Handle the records the consumer holds now, without waiting, up to ``max_batch`` in
        the batch; return how many were taken. For a hook's :meth:`LoopHooks.finish` that keeps
        its batch open while its handlers run (a participant's ``async def`` handlers)."""
        room = self.max_batch - batch.taken
        if room <= 0:
            return 0
        messages = self.consumer.consume(room, 0)
        self._take(batch, messages)
        return len(messages)

    def _take(self, batch: B, messages: list[Message]) -> None:
        """Add consumed records to the batch (``hooks.handle`` each one it is to handle).

        Raises:
            _ConsumerReplacedError: the consumer failed fatally and was replaced.
        """
        for msg in messages:
            batch.taken += 1
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL:
                    self._replace_consumer(err)
                    raise _ConsumerReplacedError
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error: %s", self.group, err)
                continue
            where = position(msg)
            tp = where[:2]
            batch.first_offsets.setdefault(tp, where[2])
            batch.next_offsets[tp] = where[2] + 1
            if not self.hooks.owns(*tp):  # revoked meanwhile; the next owner reads it
                continue
            poison = self._poison.get(where)
            if poison is not None:
                self._dead_letter_poison(batch, msg, *poison)
                continue
            self.hooks.handle(batch, msg)

    def _dead_letter_poison(self, batch: B, msg: Message, level: int, reason: str) -> None:
        if level <= 2:
            batch.dead_letter(msg, reason, level)
            return
        self.metrics.unwritable += 1
        topic, partition, offset = position(msg)
        log.error(
            "%s[%d]@%d cannot be dead-lettered in any form (%s); skipped, it stays in its topic",
            topic,
            partition,
            offset,
            reason,
        )

    # ------------------------------------------------------------------------- transactions

    def _produce(self, out: Output, failures: dict[Source, str]) -> None:
        rec = out.record

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None and record_tied(err):
                failures.setdefault(out.source, f"cannot write to {rec.topic}: {err.str()}")

        try:
            self.transactions.produce(
                rec.topic,
                rec.key or None,
                rec.value,
                partition=out.partition,
                headers=rec.headers,
                on_delivery=delivered,
            )
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and record_tied(err):
                failures[out.source] = f"cannot write to {rec.topic}: {err.str()}"
                raise _RecordFailedError from exc
            raise
        except (TypeError, ValueError) as exc:  # not encodable as a Kafka record
            failures[out.source] = f"cannot write to {rec.topic}: {exc}"
            raise _RecordFailedError from exc

    def _commit(self, batch: B) -> None:
        txn = self.transactions
        failures: dict[Source, str] = {}
        started = time.monotonic()
        inputs = sum(n - batch.first_offsets[tp] for tp, n in batch.next_offsets.items())
        try:
            txn.begin()
            for out in batch.outputs:
                self._produce(out, failures)
            for letter in batch.dead_letters:
                self._produce(Output(letter.record(self.hooks.dlq), position(letter.msg)), failures)
            offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
            txn.commit(offsets, self.consumer.consumer_group_metadata())
        except (KafkaException, _RecordFailedError) as exc:
            self.observer.transaction(
                self.group, committed=False, seconds=time.monotonic() - started, inputs=inputs
            )
            self._abort(batch, exc, failures)
            return
        self.observer.transaction(
            self.group, committed=True, seconds=time.monotonic() - started, inputs=inputs
        )
        self.metrics.transactions += 1
        self.metrics.dead_lettered += len(batch.dead_letters)
        for letter in batch.dead_letters:
            self._poison.pop(position(letter.msg), None)
            self.observer.dead_lettered(self.group, self.hooks.dlq, letter.reason)
            # An input of a parked saga is expected: the worker said once that it is parked.
            quiet = letter.reason.startswith(QUIET_REASONS)
            where = "%s[%d]@%d -> %s: %s"
            level = logging.DEBUG if quiet else logging.WARNING
            log.log(level, where, *position(letter.msg), self.hooks.dlq, letter.reason)
        self.hooks.committed(batch)

    def _abort(self, batch: B, exc: Exception, failures: dict[Source, str]) -> None:
        """Abort, rewind to the batch's start, and isolate the records that caused it."""
        self.metrics.aborted_transactions += 1
        cause = exc if isinstance(exc, KafkaException) else exc.__cause__
        kafka_cause = (
            cause
            if isinstance(cause, KafkaException)
            else KafkaException(KafkaError(KafkaError._FAIL, str(exc)))
        )
        self.transactions.abort(kafka_cause)
        consumer = self.consumer
        for (topic, partition), offset in batch.first_offsets.items():
            if self.hooks.owns(topic, partition):
                consumer.seek(TopicPartition(topic, partition, offset))
        self.hooks.aborted(batch)
        if not failures:
            log.warning("%s: transaction aborted, the batch goes again: %s", self.group, exc)
            time.sleep(0.1)
            return
        letters = {position(d.msg): d for d in batch.dead_letters}
        for source, reason in failures.items():
            self.metrics.isolated += 1
            self.observer.isolated(self.group, reason)
            if isinstance(source, tuple) and len(source) == 3 and source[:2] in batch.next_offsets:
                letter = letters.get(source)
                level = 0 if letter is None else letter.level + 1
                self._poison[source] = (level, reason)
                log.warning(
                    "%s[%d]@%d isolated: %s; it goes to %s", *source, reason, self.hooks.dlq
                )
            else:
                self.hooks.poisoned(source, reason)
