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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from confluent_kafka import Message, TopicPartition

from sagas.app import App
from sagas.dsl.program import Program
from sagas.engine import stuck_decision, transition
from sagas.engine.model import Decision, Input, JournalEvent, SagaState, TimerFired
from sagas.errors import DecodeError, PayloadSchemaError, UnknownVersionError
from sagas.observe.logs import saga_fields
from sagas.protocol import inbox_check
from sagas.runtime.loop import Batch, LoopMetrics, Position, TransactionalLoop, position
from sagas.runtime.observe import Observer
from sagas.runtime.store import EXPIRE, PartitionStore
from sagas.settings import KafkaSettings
from sagas.wire import (
    OutRecord,
    StateSummary,
    decision_records,
    decode_input,
    read_summary,
    summary_header,
)

__all__ = ["SagaWorker", "WorkerMetrics"]

log = logging.getLogger(__name__)


@dataclass
class WorkerMetrics:
    """Counters of one saga type's worker, since it started."""

    inputs: int = 0
    timers_fired: int = 0
    commands: int = 0
    rejected_inputs: int = 0
    """Inputs not where their saga lives (key or partition wrong): dead-lettered."""
    ignored_inputs: int = 0
    """Inputs the engine ignored (a reply to no pending command, a start of an existing saga)."""
    parked_sagas: int = 0
    expired_sagas: int = 0
    """Finished sagas removed when their retention ran out."""
    restored_sagas: int = 0
    restore_seconds: float = 0.0
    owned_partitions: list[int] = field(default_factory=list)
    loop: LoopMetrics = field(default_factory=LoopMetrics)

    @property
    def transactions(self) -> int:
        """Committed transactions."""
        return self.loop.transactions

    @property
    def aborted_transactions(self) -> int:
        """Aborted transactions."""
        return self.loop.aborted_transactions

    @property
    def dead_lettered(self) -> int:
        """Records sent to the dead-letter topic."""
        return self.loop.dead_lettered


TimerSource = tuple[str, str, str]
"""The source of a timer's outputs: ``("timer", saga id, timer id)``."""


@dataclass
class _Batch(Batch):
    """A worker batch: the snapshots to write once the batch is handled, and what to undo."""

    staged: dict[str, tuple[int, SagaState | None, Position | TimerSource]] = field(
        default_factory=dict
    )
    """The newest state of each saga the batch touched (``None``: expired, to be removed)."""
    encoded: dict[str, bytes] = field(default_factory=dict)
    """The snapshots as written, by saga id (what the store keeps once the batch commits)."""
    events: list[JournalEvent] = field(default_factory=list)
    timers: dict[int, list[TimerFired]] = field(default_factory=dict)
    parked: set[str] = field(default_factory=set)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SagaWorker:
    """Runs every saga of one type whose inbox partitions this process is assigned.

    It is the saga side of :class:`~sagas.runtime.loop.TransactionalLoop`: it restores the
    state partitions it is given, checks and decodes each input, feeds it and the due timers to
    the engine, and writes the commands, journal events and snapshots the engine decided.

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
        static_membership: join as a static group member (``group.instance.id`` = the worker
            id, the default), so a worker restarted with its id takes its partitions back at
            once instead of after the session timeout; ``False``: a dynamic member.
        observer: told of transactions, restores, timers and each committed batch's events.
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
        observer: Observer | None = None,
        static_membership: bool = True,
    ) -> None:
        self.app = app
        self.saga_type = saga_type
        self.topics = app.topics(saga_type)
        self.name = self.topics.group
        self.dlq = self.topics.dlq
        self.settings = settings
        self.worker_id = worker_id
        self.idle_wait = idle_wait
        self.clock_ms = clock_ms
        self.report_every = 10.0
        self.stores: dict[int, PartitionStore] = {}
        self._parked_noted: set[str] = set()
        """Parked sagas whose ``parked`` journal event this worker wrote."""
        self._parked_seen: set[str] = set()
        """Parked sagas this worker has met (counted and logged once each, across restores)."""
        self.inbox_partitions = 0
        """The inbox topic's real partition count (read at each assignment)."""
        self.loop: TransactionalLoop[_Batch] = TransactionalLoop(
            self,
            settings,
            group=self.topics.group,
            transactional_id=self.topics.transactional_id(worker_id),
            topics=[self.topics.inbox],
            max_batch=max_batch,
            consumer_options={
                "max.poll.interval.ms": 600000,
                **(consumer_options or {}),
            },
            instance_id=worker_id if static_membership else None,
            observer=observer,
        )
        self.observer = self.loop.observer
        self.metrics = WorkerMetrics(loop=self.loop.metrics)
        self.on_assigned: Callable[[str, list[int]], None] | None = None
        """Called with the saga type and partitions once they are restored (e.g. to advertise)."""
        app.latest(saga_type)  # fails early on an unknown saga type
        self.serde = app.serde.with_registry(settings.schema_registry_url)
        self.serde.connect()  # a registry that is down or refuses a schema stops us here

    # ------------------------------------------------------------------------- rebalance

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Restore the state partitions numbered like the assigned inbox partitions."""
        meta = self.loop.consumer.list_topics(self.topics.inbox, timeout=30)
        topic = meta.topics.get(self.topics.inbox)
        if topic is not None and topic.partitions:
            self.inbox_partitions = len(topic.partitions)
        numbers = sorted(tp.partition for tp in partitions)
        for p in numbers:
            self.stores[p] = self._restore(p)
        self.metrics.owned_partitions = sorted(self.stores)
        if self.on_assigned is not None:
            self.on_assigned(self.saga_type, numbers)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the sagas of partitions that left this worker."""
        for tp in partitions:
            self.stores.pop(tp.partition, None)
        self.metrics.owned_partitions = sorted(self.stores)

    def owns(self, topic: str, partition: int) -> bool:
        """Whether this worker holds the partition's sagas."""
        return partition in self.stores

    def _restore(self, partition: int) -> PartitionStore:
        """Read the state partition from the start to the end of committed data."""
        started = time.monotonic()
        store = PartitionStore(partition, self.serde.decode_state, retention=self._retention)
        count = 0
        known = frozenset(self.app.versions(self.saga_type))
        for msg in self.loop.restorer.read(self.topics.state, partition):
            count += 1
            self._restore_record(store, msg, known)
        elapsed = time.monotonic() - started
        self.observer.restored(self.name, partition, records=len(store), seconds=elapsed)
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

    def _retention(self, version: int) -> int | None:
        """How long a finished saga of this version is kept (ms; ``None``: forever)."""
        try:
            return self.app.program(self.saga_type, version).retention_ms
        except UnknownVersionError:
            return None

    def _restore_record(self, store: PartitionStore, msg: Message, known: frozenset[int]) -> None:
        """Store one changelog record: by its summary header, or decoded when it has none;
        ``known``: the definition versions this worker runs (others are parked)."""
        key, value = msg.key(), msg.value()
        if value is None:
            if key is not None:
                store.delete(key.decode())
            return
        summary = read_summary(msg.headers()) if key is not None else None
        if summary is not None and key is not None:
            saga_id = key.decode()
        else:  # written by an older release: decode it for its summary
            try:
                state = self.serde.decode_state(value)
            except DecodeError as exc:
                log.error(
                    "%s[%d]@%d: unreadable snapshot skipped (it stays in the topic): %s",
                    self.topics.state,
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                return
            saga_id, summary = state.saga_id, StateSummary.of(state)
        parked = summary.version not in known
        if parked and saga_id not in self._parked_seen:
            self._parked_seen.add(saga_id)
            self.metrics.parked_sagas = len(self._parked_seen)
            log.warning(
                "%s: saga %s is parked: %s; deploy that version, then `sagas resume %s %s`",
                self.saga_type,
                saga_id,
                UnknownVersionError(
                    self.saga_type, summary.version, self.app.versions(self.saga_type)
                ),
                self.saga_type,
                saga_id,
            )
        store.put_encoded(saga_id, value, summary, parked=parked)

    # ------------------------------------------------------------------------- the loop

    def run(self, stop: Event) -> None:
        """Process until ``stop`` is set; then finish the batch in flight and leave the group.

        Raises:
            BrokerError: a fatal Kafka error (e.g. another live worker uses this ``worker_id``).
        """
        self.loop.open()
        next_report = time.monotonic() + self.report_every
        try:
            while not stop.is_set():
                self.loop.run_once()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.report_every
                    log.debug(
                        "%s: %d inputs, %d commands, %d transactions, %d dead letters",
                        self.topics.group,
                        self.metrics.inputs,
                        self.metrics.commands,
                        self.metrics.transactions,
                        self.metrics.dead_lettered,
                    )
        finally:
            self.close()

    def run_once(self) -> None:
        """Take one batch of inputs and due timers and process it in one transaction."""
        self.loop.run_once()

    def close(self) -> None:
        """Leave the group and release the clients."""
        self.loop.close()
        self.stores.clear()

    def wait_seconds(self) -> float:
        """Until the next timer is due, at most ``idle_wait``."""
        dues = [d for s in self.stores.values() if (d := s.next_due()) is not None]
        if not dues:
            return self.idle_wait
        return max(0.0, min(self.idle_wait, (min(dues) - self.clock_ms()) / 1000))

    def new_batch(self) -> _Batch:
        """An empty worker batch."""
        return _Batch()

    def handle(self, batch: _Batch, msg: Message) -> None:
        """Check that an inbox record belongs where it is, decode it and apply it."""
        where = position(msg)
        self.metrics.inputs += 1
        try:
            inp = decode_input(msg.key(), msg.value(), msg.headers(), self.serde)
        except DecodeError as exc:
            self._refuse(batch, msg, None, f"undecodable input: {exc}")
            return
        wrong = inbox_check(msg.key(), inp.saga_id, where[1], self.inbox_partitions)
        if wrong is not None:
            self.metrics.rejected_inputs += 1
            self._refuse(batch, msg, inp, f"misplaced input: {wrong}")
            return
        self._apply(batch, where[1], inp, self.clock_ms(), msg)

    def _refuse(self, batch: _Batch, msg: Message, inp: Input | None, reason: str) -> None:
        """Dead-letter an input, and journal ``refused`` for its saga id when it has one, so
        the client that sent it (``start(wait=...)``) and the saga's history say so."""
        batch.dead_letter(msg, reason)
        key = msg.key()
        saga_id = (
            inp.saga_id if inp is not None else (key.decode("utf-8", "replace") if key else "")
        )
        if not saga_id:
            return
        topic, partition, offset = position(msg)
        kind = type(inp).__name__.lower() if inp is not None else "unknown"
        body = {"input": kind, "reason": reason, "record": f"{topic}[{partition}]@{offset}"}
        event = JournalEvent("refused", saga_id, self.clock_ms(), body)
        self._journal(batch, [event], self.app.latest(self.saga_type).version, position(msg))

    def finish(self, batch: _Batch) -> None:
        """Fire the due timers of caught-up partitions, then write the batch's snapshots."""
        now = self.clock_ms()
        for p, store in self.stores.items():
            due = store.next_due()
            if due is None or due > now or not self._caught_up(p, batch):
                continue  # none due, or inputs already in the inbox come first
            timers = store.pop_due(now, self.loop.max_batch)
            if timers:
                batch.timers[p] = timers
                for timer in timers:
                    self._apply(batch, p, timer, now, None)
        for saga_id, (partition, state, source) in batch.staged.items():
            if state is None:
                record = OutRecord(self.topics.state, saga_id.encode(), None, [])
            else:
                value = batch.encoded[saga_id] = self.serde.encode_state(state)
                record = OutRecord(
                    self.topics.state, saga_id.encode(), value, [summary_header(state)]
                )
            batch.write(record, source, partition)

    def _caught_up(self, partition: int, batch: _Batch) -> bool:
        """Whether this batch reaches the end of the inbox partition as last fetched.

        Timers of a partition fire only then: after downtime, the replies and signals that
        arrived before a deadline are in the inbox backlog, and they must be applied before
        the deadline's timer, or a saga would time out on a reply that came in time.
        """
        consumer = self.loop.consumer
        tp = TopicPartition(self.topics.inbox, partition)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0:
            return False  # nothing fetched yet: the backlog is unknown
        position_ = batch.next_offsets.get((self.topics.inbox, partition))
        if position_ is None:
            current = consumer.position([tp])[0].offset
            if current is None or current < 0:  # nothing consumed yet: only an empty inbox
                start = self.loop.committed_start.get((self.topics.inbox, partition), -1)
                return high in (0, start)
            position_ = current
        return position_ >= high

    def _current(self, batch: _Batch, partition: int, saga_id: str) -> SagaState | None:
        staged = batch.staged.get(saga_id)
        if staged is not None:
            return staged[1]
        return self.stores[partition].get(saga_id)

    def _apply(
        self, batch: _Batch, partition: int, inp: Input, now: int, msg: Message | None
    ) -> None:
        source: Position | TimerSource = (
            position(msg) if msg is not None else ("timer", inp.saga_id, _timer_id(inp))
        )
        state = self._current(batch, partition, inp.saga_id)
        if isinstance(inp, TimerFired) and inp.timer_id == EXPIRE:
            self._expire(batch, partition, state, now, source)
            return
        if isinstance(inp, TimerFired):
            self.metrics.timers_fired += 1
            self.observer.timer_fired(self.saga_type, lateness_ms=now - inp.due_ms)
        try:
            program = self._program_for(state, inp)
        except UnknownVersionError as exc:
            version = state.version if state else 0
            if inp.saga_id not in self._parked_noted | batch.parked:  # journaled once per saga
                event = JournalEvent("parked", inp.saga_id, now, {"reason": str(exc)})
                self._journal(batch, [event], version, source)
            if msg is not None:
                batch.dead_letter(msg, f"unknown-definition-version: {exc}")
            batch.parked.add(inp.saga_id)
            return
        try:  # the saga's own code raising makes it stuck, holding the input
            decision = transition(program, state, inp, now, entropy=os.urandom(16))
        except Exception as exc:  # the engine's own defect: the record is kept aside
            log.exception(
                "%s: transition of saga %s failed",
                self.saga_type,
                inp.saga_id,
                extra=saga_fields(inp.saga_id, self.saga_type),
            )
            if msg is not None:
                batch.dead_letter(msg, f"transition failed: {exc!r}")
            return
        try:
            records = decision_records(self.app, program, decision, self.serde)
        except PayloadSchemaError as exc:  # the payload builder and its schema disagree
            decision = stuck_decision(program, state, inp, now, exc)
            records = decision_records(self.app, program, decision, self.serde)
        self._note_stuck(decision)
        for rec in records:
            batch.write(rec, source)
        self.metrics.commands += len(decision.commands)
        for event in decision.events:
            if event.type == "ignored":
                self.metrics.ignored_inputs += 1
        if decision.events:
            batch.events.extend(decision.events)
            self._journal(batch, decision.events, program.version, source)
        if decision.state is not None:
            batch.staged[decision.state.saga_id] = (partition, decision.state, source)

    def _note_stuck(self, decision: Decision) -> None:
        """Log, once per error, a saga its own code stopped (the journal has the frames)."""
        for event in decision.events:
            if event.type == "stuck":
                b = event.body
                log.error(
                    "%s: saga %s is stuck at step %s: %s; fix the code, deploy it, then "
                    "`sagas resume %s %s` (or cancel it)",
                    self.saga_type,
                    event.saga_id,
                    b["step"] or "(start)",
                    b["message"],
                    self.saga_type,
                    event.saga_id,
                    extra=saga_fields(event.saga_id, self.saga_type),
                )

    def _expire(
        self,
        batch: _Batch,
        partition: int,
        state: SagaState | None,
        now: int,
        source: Position | TimerSource,
    ) -> None:
        """A finished saga's retention ran out: journal it and remove its snapshot."""
        if state is None or not state.terminal:
            return
        retention = self._retention(state.version)
        event = JournalEvent("expired", state.saga_id, now, {"retention_ms": retention})
        self._journal(batch, [event], state.version, source)
        batch.events.append(event)
        batch.staged[state.saga_id] = (partition, None, source)
        self.metrics.expired_sagas += 1

    def _journal(
        self,
        batch: _Batch,
        events: Sequence[JournalEvent],
        version: int,
        source: Position | TimerSource,
    ) -> None:
        """One journal record for the events of one transition of one saga."""
        value = self.serde.encode_events(events, self.saga_type, version)
        key = events[0].saga_id.encode()
        batch.write(OutRecord(self.topics.journal, key, value, []), source)

    def _program_for(self, state: SagaState | None, inp: Input) -> Program:
        if state is None:
            return self.app.latest(self.saga_type)
        return self.app.program(self.saga_type, state.version)

    # ------------------------------------------------------------------------- outcomes

    def committed(self, batch: _Batch) -> None:
        """The batch's snapshots become the store's."""
        if batch.events:
            self.observer.saga_events(self.saga_type, batch.events)
        for saga_id, (partition, state, _) in batch.staged.items():
            store = self.stores.get(partition)
            if store is None:
                continue
            if state is None:
                store.delete(saga_id)
            else:
                store.put(state, batch.encoded[saga_id])
        self._parked_noted |= batch.parked
        self._parked_seen |= batch.parked
        self.metrics.parked_sagas = len(self._parked_seen)
        for saga_id in batch.parked:
            for store in self.stores.values():
                if saga_id in store:
                    store.parked.add(saga_id)

    def aborted(self, batch: _Batch) -> None:
        """Drop the staged snapshots; the taken timers go back into the index."""
        for p, timers in batch.timers.items():
            if p in self.stores:
                self.stores[p].restore_timers(timers)

    def poisoned(self, source: object, reason: str) -> None:
        """A timer's outputs cannot be written: drop the firing for this worker's life."""
        if isinstance(source, tuple) and len(source) == 3 and source[0] == "timer":
            _, saga_id, timer_id = source
            for store in self.stores.values():
                if saga_id in store:
                    store.parked.add(saga_id)
            log.error(
                "%s: saga %s: timer %s cannot fire (%s); the saga is parked on this worker "
                "until it restarts",
                self.saga_type,
                saga_id,
                timer_id,
                reason,
            )


def _timer_id(inp: Input) -> str:
    return inp.timer_id if isinstance(inp, TimerFired) else type(inp).__name__
