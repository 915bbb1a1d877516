"""The Kafka loop of a participant: commands in, replies out, once per command id.

It is the participant side of :class:`~sagas.runtime.loop.TransactionalLoop`:

1. Take up to ``max_batch`` commands (``read_committed``, group ``<group>``).
2. For each: if its command id has a recorded reply, send that reply again; otherwise run its
   handler (see :meth:`sagas.participants.Participant.execute`). Records that are not commands,
   and commands whose ``reply-to`` is not an existing saga inbox, go to ``<group>.dlq`` with the
   reason in their headers.
3. In ONE transaction: the replies, the records handlers sent, a record of each new reply in
   ``<group>.<topic>.replies`` (partition = the command's partition, key = command id) and the
   consumed offsets. Only after the commit do the new replies count as recorded; after an abort
   the consumer seeks back and the batch is handled again (a record that made it abort is
   dead-lettered instead: see the loop's poison isolation).

Handlers run before the transaction begins, so a slow handler never holds one open. On assignment
the recorded replies of each new partition are read from its replies partition, after the group's
committed offsets are stable (a predecessor's transaction is decided), and, when the group has
committed there before, its end offset is noted: a command below it may have reached the previous
owner's handler, so it is never refused as late (see
:meth:`sagas.participants.Participant.execute`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from confluent_kafka import Message, TopicPartition
from confluent_kafka.admin import AdminClient

from sagas.engine.ids import public_command_id
from sagas.errors import ConfigurationError, DecodeError
from sagas.observe.logs import saga_fields
from sagas.participants import Executed, Job
from sagas.participants.checks import check_start
from sagas.protocol import (
    COMMAND_ID,
    COMMAND_TYPE,
    OUTCOME,
    REPLY_TO,
    SAGA_ID,
    SAGA_TYPE,
    participant_transactional_id,
)
from sagas.runtime.loop import Batch, Position, TransactionalLoop, position
from sagas.runtime.topics import TopicSpec, create_missing, partition_count
from sagas.wire import OutRecord, header_dict

if TYPE_CHECKING:
    from sagas.participants import Participant

__all__ = ["ParticipantLoop", "RecordedReply"]

log = logging.getLogger(__name__)

_NONE = "none"  # the outcome recorded for a handler that returned NO_REPLY

_ADMIT_POLL = 0.005
"""How long async handlers run between two looks for new commands to admit (seconds)."""


@dataclass(frozen=True)
class RecordedReply:
    """A reply as recorded in the replies topic (``None``: the handler sent none)."""

    reply: OutRecord | None

    def to_record(self, topic: str, command_id: str, partition: int) -> OutRecord:
        """The replies-topic record: key = command id, value = the reply's value, headers =
        the reply's plus ``reply-to`` (or ``outcome: none``)."""
        if self.reply is None:
            headers: list[tuple[str, str | bytes | None]] = [(OUTCOME, _NONE.encode())]
            return OutRecord(topic, command_id.encode(), b"", headers)
        reply_to = (REPLY_TO, self.reply.topic.encode())
        return OutRecord(
            topic, command_id.encode(), self.reply.value, [*self.reply.headers, reply_to]
        )

    @classmethod
    def from_message(cls, msg: Message) -> RecordedReply:
        """Read one replies-topic record back.

        Raises:
            DecodeError: the record was not written by a participant.
        """
        raw = msg.headers() or []
        pairs: list[tuple[str, str | bytes | None]] = (
            list(raw.items()) if isinstance(raw, dict) else list(raw)
        )
        h = header_dict(pairs)
        if h.get(OUTCOME) == _NONE:
            return cls(None)
        if REPLY_TO not in h or SAGA_ID not in h:
            raise DecodeError("a recorded reply without reply-to or saga-id", record=msg.value())
        headers = [(k, v) for k, v in pairs if k != REPLY_TO]
        return cls(OutRecord(h[REPLY_TO], h[SAGA_ID].encode(), msg.value() or b"", headers))


@dataclass(frozen=True)
class _Pending:
    """A command whose ``async def`` handler runs with the batch's others."""

    where: Position
    headers: dict[str, str]
    job: Job


class _Running:
    """``async def`` handlers running on an event loop: at most ``limit`` at once, the
    commands of one saga one after the other, in the order they were added."""

    def __init__(self, limit: int) -> None:
        self.gate = asyncio.Semaphore(limit)
        self.pending: list[_Pending] = []
        self.ids: set[tuple[tuple[str, int], str]] = set()
        """(partition, command id) of :attr:`pending`."""
        self.last: dict[str, asyncio.Task[tuple[Executed, float]]] = {}
        """Each saga's latest task (its next command waits for it)."""
        self.tasks: list[asyncio.Task[tuple[Executed, float]]] = []

    async def add(self, pending: _Pending) -> None:
        """Start a command's handler (after its saga's earlier ones)."""
        self.pending.append(pending)
        self.ids.add((pending.where[:2], pending.job.ctx.command_id))
        saga_id = pending.job.ctx.saga_id
        task = asyncio.ensure_future(self._run(pending.job, self.last.get(saga_id)))
        self.last[saga_id] = task
        self.tasks.append(task)

    def holds(self, saga_id: str) -> bool:
        """Whether a command of this saga is among them."""
        return saga_id in self.last

    async def _run(
        self, job: Job, after: asyncio.Task[tuple[Executed, float]] | None
    ) -> tuple[Executed, float]:
        if after is not None:
            await asyncio.wait([after])
        async with self.gate:
            started = time.monotonic()
            executed = await job.run()
            return executed, time.monotonic() - started

    async def first_done(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a handler to end; whether one has."""
        if any(t.done() for t in self.tasks):
            return True
        done, _ = await asyncio.wait(self.tasks, timeout=seconds, return_when="FIRST_COMPLETED")
        return bool(done)


@dataclass
class _Batch(Batch):
    recorded: dict[tuple[str, int], dict[str, RecordedReply]] = field(default_factory=dict)
    handled: int = 0
    replayed: int = 0
    running: _Running | None = None
    """The batch's ``async def`` handlers, started, not yet staged."""


class ParticipantLoop:
    """Runs one :class:`~sagas.participants.Participant` on Kafka (see the module docstring)."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.settings = participant.settings
        self.group = self.name = participant.group
        self.dlq = participant.dlq
        self.replies: dict[tuple[str, int], dict[str, RecordedReply]] = {}
        self.loop: TransactionalLoop[_Batch] = TransactionalLoop(
            self,
            self.settings,
            group=self.group,
            transactional_id=participant_transactional_id(self.group, participant.instance_id),
            topics=participant.topics,
            max_batch=participant.max_batch,
            consumer_options={
                "client.id": f"{self.group}-{participant.instance_id}",
            },
            # Static membership only with an id the user made stable: a random one would leave
            # a ghost member holding partitions until it times out.
            instance_id=(
                participant.instance_id
                if participant.static_membership and participant.stable_instance
                else None
            ),
            observer=participant.observer,
        )
        self.observer = self.loop.observer
        self._unrecorded: dict[tuple[str, int], dict[str, Executed]] = {}
        """Results of handlers whose transaction has not committed yet, by partition and command
        id: after an abort they are written again instead of running the handler again."""
        self._known_topics: set[str] = set()
        self._topics_read_at = 0.0
        self._fresh_from: dict[tuple[str, int], int] = {}
        """Per partition, its end offset when it was assigned here: a command below it may
        have reached a handler of the partition's previous owner."""

    # ------------------------------------------------------------------------- topics

    def ensure_topics(self) -> None:
        """Check the command topics (they exist, no other group reads them; see
        :mod:`sagas.participants.checks`), create missing replies and DLQ topics, and check
        the replies topics match the command topics.

        Raises:
            ConfigurationError: a command topic is missing (and not to be created) or read by
                another consumer group, or a replies topic's partition count differs from its
                command topic's (a reply would be looked up in the wrong partition).
        """
        p = self.participant
        admin = AdminClient(self.settings.client_config())
        metadata = check_start(admin, p, partitions=p.partitions, own={p.group})
        retention = str(int(p.replies_retention / timedelta(milliseconds=1)))
        specs = [
            TopicSpec(
                p.replies_topic(t),
                partition_count(metadata.topics, t),
                (
                    ("cleanup.policy", "compact,delete"),
                    ("retention.ms", retention),
                    ("min.compaction.lag.ms", "0"),
                ),
            )
            for t in p.topics
        ]
        metadata = create_missing(admin, [*specs, TopicSpec(p.dlq, 1)])
        for spec in specs:
            actual = partition_count(metadata.topics, spec.name)
            if actual != spec.partitions:
                raise ConfigurationError(
                    f"{spec.name} has {actual} partitions but its command topic has "
                    f"{spec.partitions}; the replies of partition N live in partition N. Give it "
                    f"{spec.partitions} (kafka-topics --alter --topic {spec.name} --partitions "
                    f"{spec.partitions}), or delete it to forget the recorded replies"
                )

    def _topic_exists(self, topic: str) -> bool:
        """Whether ``topic`` exists (from a cached topic list, read again at most every 5 s).

        Asking for all topics never creates one, unlike asking for the one topic."""
        if topic in self._known_topics:
            return True
        now = time.monotonic()
        if now - self._topics_read_at >= 5.0:
            self._topics_read_at = now
            self._known_topics = set(self.loop.consumer.list_topics(timeout=10).topics)
        return topic in self._known_topics

    # ------------------------------------------------------------------------- rebalance

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Read the recorded replies of each new partition."""
        for tp in partitions:
            self.replies[(tp.topic, tp.partition)] = self._restore(tp.topic, tp.partition)
            self._fresh_from[(tp.topic, tp.partition)] = self._maybe_seen_below(tp)

    def _maybe_seen_below(self, tp: TopicPartition) -> int:
        """The offset below which a command may have reached a previous owner's handler: the
        partition's end when the group has committed an offset for it (it had an owner), else
        0 (no instance of the group has answered anything there)."""
        where = TopicPartition(tp.topic, tp.partition)
        committed = self.loop.consumer.committed([where], timeout=10)[0].offset
        if committed < 0:  # OFFSET_INVALID: never committed
            return 0
        _, end = self.loop.consumer.get_watermark_offsets(where, timeout=10, cached=False)
        return int(end)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the recorded replies of partitions that left."""
        for tp in partitions:
            self.replies.pop((tp.topic, tp.partition), None)
            self._unrecorded.pop((tp.topic, tp.partition), None)
            self._fresh_from.pop((tp.topic, tp.partition), None)

    def owns(self, topic: str, partition: int) -> bool:
        """Whether the partition's recorded replies are here."""
        return (topic, partition) in self.replies

    def _restore(self, topic: str, partition: int) -> dict[str, RecordedReply]:
        started = time.monotonic()
        recorded: dict[str, RecordedReply] = {}
        source = self.participant.replies_topic(topic)
        for msg in self.loop.restorer.read(source, partition):
            key = msg.key()
            if key is None:
                continue
            try:
                recorded[key.decode()] = RecordedReply.from_message(msg)
            except (DecodeError, UnicodeDecodeError) as exc:
                log.error("%s[%d]@%d skipped: %s", source, partition, msg.offset(), exc)
        elapsed = time.monotonic() - started
        self.observer.restored(self.name, partition, records=len(recorded), seconds=elapsed)
        return recorded

    # ------------------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        """Handle commands until ``stop`` is set."""
        self.ensure_topics()
        self.observer.serving(self.group, "participant")
        self.loop.run(stop)

    def new_batch(self) -> _Batch:
        """An empty participant batch."""
        return _Batch()

    def wait_seconds(self) -> float:
        """Participants have no timers: wait up to 0.2 s for a command."""
        return 0.2

    def handle(self, batch: _Batch, msg: Message) -> None:
        """Answer one command: from its recorded reply, or by running its handler."""
        where = position(msg)
        tp = where[:2]
        try:
            headers = header_dict(msg.headers())  # parsed once, here and for the handler
        except DecodeError as exc:
            batch.dead_letter(msg, f"not a command: {exc}")
            return
        command_id = headers.get(COMMAND_ID, "")
        if batch.running and (tp, command_id) in batch.running.ids:  # its first copy's answer
            self._flush(batch)
        staged = batch.recorded.setdefault(tp, {})
        known = staged.get(command_id) or self.replies[tp].get(command_id)
        if known is not None:
            batch.replayed += 1
            self.observer.command_replayed(self.group, headers.get(COMMAND_TYPE, ""))
            fields = saga_fields(
                headers.get(SAGA_ID, ""), headers.get(SAGA_TYPE, ""), None, command_id
            )
            log.info(
                "%s: command %s seen before; its recorded reply goes again",
                tp[0],
                public_command_id(command_id),
                extra=fields,
            )
            if known.reply is not None:
                batch.write(known.reply, where)
            return
        reply_to = headers.get(REPLY_TO, "")
        allowed = self.participant.reply_to.fullmatch(reply_to)
        if allowed and not self._topic_exists(reply_to):  # not allowed: execute says why
            batch.dead_letter(msg, f"reply-to {reply_to[:300]!r} is not an existing topic")
            return
        executed = self._unrecorded.get(tp, {}).get(command_id)
        if executed is not None:  # handled before an aborted transaction: not run again
            self._record(batch, where, executed)
            return
        started = time.monotonic()
        try:
            seen_before = (msg.offset() or 0) < self._fresh_from.get(tp, 0)
            job = self.participant.prepare(tp[0], msg.value(), headers, seen_before=seen_before)
        except DecodeError as exc:
            batch.dead_letter(msg, f"not a command: {exc}")
            return
        saga_id = headers.get(SAGA_ID, "")
        if isinstance(job, Job) and job.asynchronous:
            if batch.running is None:
                batch.running = _Running(self.participant.max_concurrency)
            pending = _Pending(where, headers, job)
            self.participant.event_loop().run_until_complete(batch.running.add(pending))
            return
        if batch.running is not None and batch.running.holds(saga_id):
            self._flush(batch)  # its saga's earlier commands come first
        executed = job if isinstance(job, Executed) else self.participant.run_job(job)
        self._handled(batch, where, headers, executed, time.monotonic() - started)

    def _handled(
        self,
        batch: _Batch,
        where: Position,
        headers: dict[str, str],
        executed: Executed,
        seconds: float,
    ) -> None:
        """Stage a command's answer (kept until committed) and report it."""
        self._unrecorded.setdefault(where[:2], {})[executed.command_id] = executed
        outcome = "none"
        if executed.reply is not None:
            outcome = header_dict(executed.reply.headers).get(OUTCOME, "")
        command_type = headers.get(COMMAND_TYPE, "")
        self.observer.command_handled(
            self.group, command_type, outcome=outcome, seconds=seconds, headers=headers
        )
        if executed.reply is not None and outcome in ("failure", "retryable-failure"):
            try:
                answer = self.participant.serde.decode_payload(executed.reply.value)
            except DecodeError:
                answer = {}
            self.observer.command_failed(
                self.group,
                command_type,
                outcome=outcome,
                error=str(answer.get("error", outcome)),
                message=str(answer.get("message", "")),
                headers=headers,
            )
        batch.handled += 1
        self._record(batch, where, executed)

    def _flush(self, batch: _Batch) -> None:
        """Wait for the batch's ``async def`` handlers, then stage their answers in the order
        of their commands."""
        running, batch.running = batch.running, None
        if running is None:
            return
        loop = self.participant.event_loop()
        done = loop.run_until_complete(asyncio.gather(*running.tasks))
        for pending, (executed, seconds) in zip(running.pending, done, strict=True):
            self._handled(batch, pending.where, pending.headers, executed, seconds)

    def _record(self, batch: _Batch, where: Position, executed: Executed) -> None:
        """Add a handled command's effects, reply and recorded reply to the batch."""
        tp = where[:2]
        for effect in executed.effects:
            batch.write(effect, where)
        if executed.reply is not None:
            batch.write(executed.reply, where)
        recorded = RecordedReply(executed.reply)
        batch.recorded.setdefault(tp, {})[executed.command_id] = recorded
        replies = self.participant.replies_topic(tp[0])
        batch.write(recorded.to_record(replies, executed.command_id, tp[1]), where, tp[1])

    def finish(self, batch: _Batch) -> None:
        """While the batch's first ``async def`` handler runs, commands that arrive join the
        batch (up to ``max_batch``) and their handlers start at once; then wait for them all
        (see :meth:`_flush`)."""
        loop = self.participant.event_loop()
        while batch.running is not None and batch.taken < self.loop.max_batch:
            if loop.run_until_complete(batch.running.first_done(_ADMIT_POLL)):
                break
            self.loop.take_more(batch)
        self._flush(batch)

    def committed(self, batch: _Batch) -> None:
        """The batch's replies count as recorded."""
        for where, recorded in batch.recorded.items():
            if where in self.replies:
                self.replies[where].update(recorded)
            unrecorded = self._unrecorded.get(where, {})
            for command_id in recorded:
                unrecorded.pop(command_id, None)
        self.participant.handled += batch.handled
        self.participant.replayed += batch.replayed

    def aborted(self, batch: _Batch) -> None:
        """Nothing was recorded: the batch is handled again, but handlers that ran keep their
        result (:attr:`_unrecorded`): the same command id is the same request, and running it
        again would only repeat its external effects."""

    def poisoned(self, source: object, reason: str) -> None:
        """Every output of a participant comes from a command (never called)."""
        log.error("%s: %s: %s", self.group, source, reason)
