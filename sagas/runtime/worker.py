"""The worker: runs one saga type's engine over Kafka, exactly once.

One loop per saga type, on one thread:

1. take the next records of the inbox (a consumer in group ``<ns>.<saga>.workers``,
   ``read_committed``) and the timers now due in the owned partitions;
2. in ONE Kafka transaction: feed each to :func:`sagas.engine.transition`, produce the commands,
   child starts and parent replies it decided, the journal events, the new snapshot of every
   touched saga (to the state partition numbered like its inbox partition), and the consumed
   offsets (``send_offsets_to_transaction`` with the consumer's current group metadata, KIP-447);
3. commit. Only then does the local store take the new snapshots. If the transaction aborts, the
   staged snapshots are dropped, the consumer seeks back to the batch's first offsets and the taken
   timers go back into the index: the store always equals the committed changelog.

No transaction is ever open while the consumer polls, so a rebalance (which runs inside poll)
finds nothing to finish: revoked and lost partitions alike just leave the store. Newly assigned
partitions are restored from the ``state`` topic after the group's committed offsets are known to
be stable (a predecessor's pending transaction has committed or aborted), so a snapshot and the
offset it belongs with always arrive together.

Batching: the loop blocks on ``poll`` for the first record (or until the next timer is due, at
most ``idle_wait``), then drains what the client already fetched, up to ``max_batch``. Idle, a
record is processed as soon as it arrives; under load, one transaction carries up to ``max_batch``
inputs and its cost is shared by all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from sagas.app import App
from sagas.dsl.program import Program
from sagas.engine import transition
from sagas.engine.model import Decision, Input, JournalEvent, SagaState, TimerFired
from sagas.errors import DecodeError, PayloadSchemaError, UnknownVersionError
from sagas.runtime.config import KafkaSettings
from sagas.runtime.kafka_errors import read_to_end
from sagas.runtime.store import PartitionStore
from sagas.runtime.transactions import Transactions, changelog_reader, input_consumer
from sagas.serde import configure
from sagas.serde.records import decode_state, encode_event, encode_state
from sagas.wire import (
    OutRecord,
    child_start_record,
    command_record,
    dead_letter_headers,
    decode_input,
    parent_reply_record,
)

__all__ = ["SagaWorker", "WorkerMetrics"]

log = logging.getLogger(__name__)


@dataclass
class WorkerMetrics:
    """Counters of one saga type's worker, since it started."""

    inputs: int = 0
    timers_fired: int = 0
    commands: int = 0
    transactions: int = 0
    aborted_transactions: int = 0
    dead_lettered: int = 0
    parked_sagas: int = 0
    restored_sagas: int = 0
    restore_seconds: float = 0.0
    owned_partitions: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """What one transaction will write, and what to undo if it aborts."""

    staged: dict[str, tuple[int, SagaState]] = field(default_factory=dict)
    records: list[OutRecord] = field(default_factory=list)
    journal: list[tuple[JournalEvent, int]] = field(default_factory=list)
    dlq: list[tuple[Message, str]] = field(default_factory=list)
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    timers: dict[int, list[TimerFired]] = field(default_factory=dict)
    parked: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.next_offsets or self.timers)


def _position(msg: Message) -> tuple[int, int]:
    """Partition and offset of a consumed record (always set on one)."""
    p, offset = msg.partition(), msg.offset()
    if p is None or offset is None:
        raise DecodeError("a consumed record without partition or offset", record=msg)
    return p, offset


def _now_ms() -> int:
    return int(time.time() * 1000)


class SagaWorker:
    """Runs every saga of one type whose inbox partitions this process is assigned.

    Args:
        app: the application (namespace and compiled programs).
        saga_type: the saga type to run.
        settings: Kafka connection settings.
        worker_id: stable per worker process across restarts; part of the ``transactional.id``,
            so that a restarted worker aborts what its previous life left open. Two live workers
            must not share one.
        max_batch: most inputs per transaction.
        idle_wait: longest wait for input when no timer is due sooner (seconds).
        clock_ms: the wall clock, epoch milliseconds.
    """

    def __init__(
        self,
        app: App,
        saga_type: str,
        settings: KafkaSettings,
        *,
        worker_id: str,
        max_batch: int = 1000,
        idle_wait: float = 0.2,
        clock_ms: Callable[[], int] = _now_ms,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.saga_type = saga_type
        self.topics = app.topics(saga_type)
        self.settings = settings
        self.worker_id = worker_id
        self.max_batch = max_batch
        self.idle_wait = idle_wait
        self.clock_ms = clock_ms
        self.metrics = WorkerMetrics()
        self.report_every = 10.0
        self._committed_start: dict[int, int] = {}
        self.offsets_timeout = 20.0
        self.stores: dict[int, PartitionStore] = {}
        self._consumer_options = consumer_options or {}
        self._consumer: Consumer | None = None
        self._txn: Transactions | None = None
        self._restorer: Consumer | None = None
        self.on_assigned: Callable[[str, list[int]], None] | None = None
        """Called with the saga type and partitions once they are restored (e.g. to advertise)."""
        app.latest(saga_type)  # fails early on an unknown saga type
        configure(settings)  # the schema registry, when one is set

    # ------------------------------------------------------------------------- clients

    def _make_clients(self) -> None:
        group = self.topics.group
        self._consumer = input_consumer(
            self.settings,
            group,
            **{"max.poll.interval.ms": 600000, **self._consumer_options},
        )
        self._restorer = changelog_reader(self.settings, group)
        self._txn = Transactions(
            self.settings,
            f"{self.topics.group}.{self.worker_id}",
            owner=self.topics.group,
            offsets_timeout=self.offsets_timeout,
        )

    def _clients(self) -> tuple[Transactions, Consumer]:
        if self._txn is None or self._consumer is None:
            raise RuntimeError("the worker is not running (call run())")
        return self._txn, self._consumer

    # ------------------------------------------------------------------------- rebalance

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        numbers = sorted(tp.partition for tp in partitions)
        # Wait until the offsets are stable: a predecessor's transaction is decided.
        for tp in consumer.committed(partitions, timeout=120):
            self._committed_start[tp.partition] = tp.offset
        for p in numbers:
            self.stores[p] = self._restore(p)
        self.metrics.owned_partitions = sorted(self.stores)
        log.info("%s: assigned partitions %s", self.topics.group, numbers)
        if self.on_assigned is not None:
            self.on_assigned(self.saga_type, numbers)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.stores.pop(tp.partition, None)
        self.metrics.owned_partitions = sorted(self.stores)
        if partitions:
            log.info(
                "%s: partitions %s left this worker",
                self.topics.group,
                sorted(tp.partition for tp in partitions),
            )

    def _restore(self, partition: int) -> PartitionStore:
        """Read the state partition from the start to the end of committed data."""
        if self._restorer is None:
            raise RuntimeError("the worker is not running (call run())")
        started = time.monotonic()
        store = PartitionStore(partition)
        count = 0
        for msg in read_to_end(self._restorer, self.topics.state, partition):
            count += 1
            self._restore_record(store, msg)
        elapsed = time.monotonic() - started
        self.metrics.restored_sagas += len(store)
        self.metrics.restore_seconds += elapsed
        log.info(
            "%s: restored partition %d: %d sagas from %d records in %.3fs",
            self.topics.state,
            partition,
            len(store),
            count,
            elapsed,
        )
        return store

    def _restore_record(self, store: PartitionStore, msg: Message) -> None:
        key = msg.key()
        if msg.value() is None:
            if key is not None:
                store.delete(key.decode())
            return
        try:
            state = decode_state(msg.value())
        except DecodeError as exc:
            log.error(
                "%s[%d]@%d: unreadable snapshot skipped (it stays in the topic): %s",
                self.topics.state,
                msg.partition(),
                msg.offset(),
                exc,
            )
            return
        parked = state.version not in self.app.versions(self.saga_type)
        if parked and state.saga_id not in store.parked:
            self.metrics.parked_sagas += 1
            log.warning(
                "%s",
                UnknownVersionError(
                    self.saga_type, state.version, self.app.versions(self.saga_type)
                ),
            )
        store.put(state, parked=parked)

    # ------------------------------------------------------------------------- the loop

    def run(self, stop: Event) -> None:
        """Process until ``stop`` is set; then finish the batch in flight and leave the group.

        Raises:
            BrokerError: a fatal Kafka error (e.g. another live worker uses this ``worker_id``).
        """
        self._make_clients()
        _, consumer = self._clients()
        consumer.subscribe(
            [self.topics.inbox],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        next_report = time.monotonic() + self.report_every
        try:
            while not stop.is_set():
                self.run_once()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.report_every
                    log.info("%s: %s", self.topics.group, self.metrics)
        finally:
            self.close()

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
        self.stores.clear()

    def _wait_seconds(self, now: int) -> float:
        dues = [d for s in self.stores.values() if (d := s.next_due()) is not None]
        if not dues:
            return self.idle_wait
        return max(0.0, min(self.idle_wait, (min(dues) - now) / 1000))

    def run_once(self) -> None:
        """Take one batch of inputs and due timers and process it in one transaction."""
        _, consumer = self._clients()
        first = consumer.poll(self._wait_seconds(self.clock_ms()))
        messages: list[Message] = []
        if first is not None:
            messages.append(first)
            if self.max_batch > 1:
                messages.extend(consumer.consume(self.max_batch - 1, 0))
        batch = _Batch()
        now = self.clock_ms()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error: %s", self.topics.inbox, err)
                continue
            p, offset = _position(msg)
            batch.first_offsets.setdefault(p, offset)
            batch.next_offsets[p] = offset + 1
            if p not in self.stores:  # revoked meanwhile; the next owner reads it
                continue
            self._handle_record(batch, msg, now)
        for p, store in self.stores.items():
            due = store.next_due()
            if due is None or due > now or not self._caught_up(consumer, p, batch):
                continue  # none due, or inputs already in the inbox come first
            timers = store.pop_due(now, self.max_batch)
            if timers:
                batch.timers[p] = timers
                for timer in timers:
                    self._apply(batch, p, timer, now, None)
        if not batch.empty():
            self._commit(batch)

    def _caught_up(self, consumer: Consumer, partition: int, batch: _Batch) -> bool:
        """Whether this batch reaches the end of the inbox partition as last fetched.

        Timers of a partition fire only then: after downtime, the replies and signals that
        arrived before a deadline are in the inbox backlog, and they must be applied before
        the deadline's timer, or a saga would time out on a reply that came in time.
        """
        tp = TopicPartition(self.topics.inbox, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0:
            return False  # nothing fetched yet: the backlog is unknown
        position = batch.next_offsets.get(partition)
        if position is None:
            current = consumer.position([tp])[0].offset
            if current is None or current < 0:  # nothing consumed yet: only an empty inbox
                return high == 0 or high == self._committed_start.get(partition, -1)
            position = current
        return position >= high

    def _handle_record(self, batch: _Batch, msg: Message, now: int) -> None:
        p, _ = _position(msg)
        self.metrics.inputs += 1
        try:
            inp = decode_input(msg.key(), msg.value(), msg.headers())
        except DecodeError as exc:
            batch.dlq.append((msg, f"undecodable input: {exc}"))
            return
        self._apply(batch, p, inp, now, msg)

    def _current(self, batch: _Batch, partition: int, saga_id: str) -> SagaState | None:
        staged = batch.staged.get(saga_id)
        if staged is not None:
            return staged[1]
        return self.stores[partition].states.get(saga_id)

    def _apply(
        self, batch: _Batch, partition: int, inp: Input, now: int, msg: Message | None
    ) -> None:
        state = self._current(batch, partition, inp.saga_id)
        if isinstance(inp, TimerFired):
            self.metrics.timers_fired += 1
        try:
            program = self._program_for(state, inp)
        except UnknownVersionError as exc:
            event = JournalEvent("parked", inp.saga_id, now, {"reason": str(exc)})
            batch.journal.append((event, state.version if state else 0))
            if msg is not None:
                batch.dlq.append((msg, f"unknown-definition-version: {exc}"))
            batch.parked.add(inp.saga_id)
            return
        try:
            decision = transition(program, state, inp, now)
        except Exception as exc:  # a bug in user code (a payload builder) must not stop the loop
            log.exception("%s: transition of saga %s failed", self.saga_type, inp.saga_id)
            if msg is not None:
                batch.dlq.append((msg, f"transition failed: {exc!r}"))
            return
        try:
            self._collect(batch, partition, program, decision)
        except PayloadSchemaError as exc:  # the payload builder and its schema disagree
            log.error("%s: saga %s: %s", self.saga_type, inp.saga_id, exc)
            if msg is not None:
                batch.dlq.append((msg, f"payload does not fit its schema: {exc}"))

    def _program_for(self, state: SagaState | None, inp: Input) -> Program:
        if state is None:
            return self.app.latest(self.saga_type)
        return self.app.program(self.saga_type, state.version)

    def _collect(self, batch: _Batch, partition: int, program: Program, decision: Decision) -> None:
        """Add a decision to the batch: all of it, or (when it cannot be encoded) nothing.

        Raises:
            PayloadSchemaError: a command payload does not fit its schema.
        """
        reply_to = self.topics.inbox
        records = [
            command_record(cmd, reply_to, self.app.payload_schema(program, cmd.command_type))
            for cmd in decision.commands
        ]
        records += [
            child_start_record(child, self.app.topics(child.saga_type).inbox)
            for child in decision.children
        ]
        records += [
            parent_reply_record(reply, self.app.topics(reply.parent.saga_type).inbox)
            for reply in decision.parent_replies
        ]
        batch.records.extend(records)
        self.metrics.commands += len(decision.commands)
        for event in decision.events:
            batch.journal.append((event, program.version))
        if decision.state is not None:
            batch.staged[decision.state.saga_id] = (partition, decision.state)

    # ------------------------------------------------------------------------- transactions

    def _write(self, batch: _Batch) -> None:
        produce = self._clients()[0].produce
        for rec in batch.records:
            produce(rec.topic, rec.key, rec.value, headers=rec.headers)
        for event, version in batch.journal:
            produce(
                self.topics.journal,
                event.saga_id.encode(),
                encode_event(event, self.saga_type, version),
            )
        for saga_id, (partition, state) in batch.staged.items():
            produce(self.topics.state, saga_id.encode(), encode_state(state), partition=partition)
        for msg, reason in batch.dlq:
            p, offset = _position(msg)
            headers = dead_letter_headers(msg.headers(), reason, str(msg.topic()), p, offset)
            produce(self.topics.dlq, msg.key(), msg.value(), headers=headers)
            log.warning(
                "%s[%d]@%d -> %s: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                self.topics.dlq,
                reason,
            )

    def _commit(self, batch: _Batch) -> None:
        txn, consumer = self._clients()
        try:
            txn.begin()
            self._write(batch)
            offsets = [
                TopicPartition(self.topics.inbox, p, o) for p, o in batch.next_offsets.items()
            ]
            txn.commit(offsets, consumer.consumer_group_metadata())
        except KafkaException as exc:
            log.warning(
                "%s: transaction aborted, batch will be retried: %s", self.topics.group, exc
            )
            self._abort(batch, exc)
            return
        self.metrics.transactions += 1
        self.metrics.dead_lettered += len(batch.dlq)
        for partition, state in batch.staged.values():
            store = self.stores.get(partition)
            if store is not None:
                store.put(state)
        for saga_id in batch.parked:
            for store in self.stores.values():
                if saga_id in store.states:
                    store.parked.add(saga_id)

    def _abort(self, batch: _Batch, cause: KafkaException) -> None:
        """Abort (or, after a fatal error, replace the producer) and rewind to the batch's start."""
        txn, consumer = self._clients()
        self.metrics.aborted_transactions += 1
        txn.abort(cause)
        for p, offset in batch.first_offsets.items():
            if p in self.stores:
                consumer.seek(TopicPartition(self.topics.inbox, p, offset))
        for p, timers in batch.timers.items():
            if p in self.stores:
                self.stores[p].restore_timers(timers)
