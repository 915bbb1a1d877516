"""A participant as a Faust agent: the same handlers, each command id handled once.

Faust consumes at least once: after a crash it delivers again what it had not committed. So the
agent keeps two records of its work and writes its outputs in a Kafka transaction of its own:

1. **Recorded replies**, a Faust table (changelog-backed, partition = the command's partition,
   key = command id). A new command's handler runs, then its reply and effects are recorded
   there, and the changelog write is awaited *before* anything is sent.
2. **Answered offsets**: the reply, the records the handler sent with ``ctx.send`` and the
   command's next offset, committed to the consumer group ``<group>.answered``, go in ONE
   confluent-kafka transaction (``transactional.id`` ``<group>.faust.<instance id>``).

Which records are handled is not left to Faust (see :mod:`sagas.faust._committed`: its consumer
reads uncommitted commands, and its stream can drop records taken in during a rebalance). A record
Faust delivers only says "this partition has data up to here": the participant's own
``read_committed`` reader then returns every committed record from the answered offset up to that
one, in order, and a sweep every second catches up a partition Faust has gone quiet on.

For each committed command record: offset below the answered offset → its transaction committed,
skip it; command id recorded → send what was recorded (the reply and effects when this very record
was recorded but its transaction did not commit; the reply alone for a re-sent command), handler
not run; else run the handler. So Kafka effects and replies are exactly once; the handler runs
again only when the process died between its return and the changelog write.

Rejected: writing the table's changelog inside the transaction. Faust reads changelogs
``read_uncommitted`` outside its exactly-once mode (it would restore aborted replies), and its
recovery waits for an offset past the last data record, which a commit marker never reaches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from sagas.errors import BrokerError, ConfigurationError, DecodeError
from sagas.faust._committed import CommittedCommands, offset_of
from sagas.faust._recorded import Recorded
from sagas.participants import Participant
from sagas.participants.checks import check_start
from sagas.protocol import (
    COMMAND_ID,
    dead_letter_headers,
    faust_answered_group,
    faust_reader_group,
    faust_transactional_id,
)
from sagas.runtime.topics import TopicSpec, create_missing, partition_count
from sagas.runtime.transactions import Transactions
from sagas.wire import OutRecord, header_dict

__all__ = ["FaustParticipant"]

log = logging.getLogger(__name__)

_QUIET = 2.0
"""Seconds without a record from Faust after which the sweep reads a partition itself."""


class FaustParticipant:
    """Serve a :class:`~sagas.participants.Participant`'s handlers from a Faust app.

    Register the handlers first, then wrap: one agent over all the participant's command topics
    and one table of recorded replies are added to ``app``; they start and stop with it.

    Args:
        app: the Faust app (its ``id`` is the consumer group that reads the commands).
        participant: the handlers, the Kafka settings of the transactional producer, the
            ``group`` that names ``<group>.answered`` and ``<group>.dlq``, and ``instance_id``
            (keep it stable across restarts: a restarted instance then aborts what its previous
            life left open at once, instead of after 10 s).
        partitions: partition count of the command topics (created when missing and
            ``participant.create_topics``) and of the table; default ``participant.partitions``.
        table: the table's name (its changelog is ``<app id>-<table>-changelog``).

    Raises:
        ConfigurationError: the participant has no handlers.
    """

    def __init__(
        self,
        app: faust.App,
        participant: Participant,
        *,
        partitions: int | None = None,
        table: str = "sagas-recorded-replies",
    ) -> None:
        if not participant.topics:
            raise ConfigurationError(
                "the participant has no handlers; register them before FaustParticipant(...)"
            )
        self.app = app
        self.participant = participant
        self.partitions = partitions or participant.partitions
        self.answered_group = faust_answered_group(participant.group)
        self.handled = 0
        """Commands whose handler ran (counted once their transaction committed)."""
        self.replayed = 0
        """Commands answered from the recorded replies, their handler not run."""
        self.table = app.Table(table, key_type=bytes, value_type=bytes, partitions=self.partitions)
        self.channel = app.topic(
            *participant.topics,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.partitions,
        )
        self._answered: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], float] = {}  # when Faust last gave a record
        self._txn: Transactions | None = None
        self._offsets: Consumer | None = None
        self._reader: CommittedCommands | None = None
        self._setup = asyncio.Lock()
        self._handling = asyncio.Lock()  # the agent and the sweep take turns
        app.agent(self.channel, name=f"sagas-participant-{participant.group}")(self._agent)
        app.timer(1.0, name=f"sagas-participant-sweep-{participant.group}")(self._sweep)
        app.on_partitions_revoked.connect(self._on_revoked)

    def ensure_topics(self) -> None:
        """Check the command topics as a participant does (they exist, or are created with
        ``participant.create_topics``; no consumer group but the Faust app's reads them: see
        :mod:`sagas.participants.checks`), create the DLQ, and check the partition counts.

        Raises:
            ConfigurationError: a command topic is missing, read by another group, or its
                partition count differs from ``partitions``.
        """
        p = self.participant
        admin = AdminClient(p.settings.client_config())
        own = {str(self.app.conf.id), p.group, self.answered_group, faust_reader_group(p.group)}
        metadata = check_start(admin, p, partitions=self.partitions, own=own)
        create_missing(admin, [TopicSpec(p.dlq, self.partitions)])
        for topic in self.participant.topics:
            count = partition_count(metadata.topics, topic)
            if count != self.partitions:
                raise ConfigurationError(
                    f"command topic {topic!r} has {count} partitions, the Faust participant "
                    f"{self.partitions}; pass FaustParticipant(..., partitions={count})"
                )

    def close(self) -> None:
        """Release the Kafka clients (done when the agent stops)."""
        if self._txn is not None:
            self._txn.close()
            self._txn = None
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------------- internals

    async def _agent(self, stream: Any) -> None:
        await self._start()
        try:
            async for event in stream.events():
                await self._handle(event.message)
        finally:
            async with self._handling:  # not while the sweep reads
                await asyncio.to_thread(self.close)

    async def _start(self) -> None:
        async with self._setup:
            if self._txn is None:
                await asyncio.to_thread(self._start_clients)

    def _start_clients(self) -> None:
        self.ensure_topics()
        p = self.participant
        self._offsets = Consumer(
            p.settings.client_config(
                **{
                    "group.id": self.answered_group,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        tid = faust_transactional_id(p.group, p.instance_id)
        self._txn = Transactions(p.settings, tid, owner=p.group)
        self._reader = CommittedCommands(p.settings, faust_reader_group(p.group))

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for tp in args[0] if args else ():
            where = (tp.topic, tp.partition)
            self._answered.pop(where, None)
            self._delivered.pop(where, None)
            if self._reader is not None:
                self._reader.forget(*where)

    async def _handle(self, msg: Any) -> None:
        """Faust delivered ``msg``: answer every committed command of its partition up to it."""
        where = (msg.topic, msg.partition)
        self._delivered[where] = time.monotonic()
        async with self._handling:
            await self._catch_up(msg.topic, msg.partition, msg.offset)

    async def _sweep(self) -> None:
        """Look at the partitions Faust has been quiet on: committed commands left unanswered
        there (records Faust dropped) are asked of Faust again, with a seek.

        The records must come through Faust: a table write goes to the partition of the event
        being processed, and only Faust's stream has one.
        """
        if self.app.rebalancing or not self.app.flow_control.is_active():
            return
        topics = set(self.participant.topics)
        now = time.monotonic()
        for tp in sorted(self.app.consumer.assignment()):
            where = (tp.topic, tp.partition)
            if tp.topic not in topics or now - self._delivered.get(where, 0.0) < _QUIET:
                continue
            async with self._handling:
                try:
                    await self._sweep_one(tp, now)
                except (BrokerError, KafkaException) as exc:  # the next round tries again
                    log.warning("%s[%d]: the sweep could not read: %s", *where, exc)

    async def _sweep_one(self, tp: Any, now: float) -> None:
        """Sweep one partition (the caller holds ``_handling``)."""
        reader, where = self._reader, (tp.topic, tp.partition)
        if reader is None:  # stopped
            return
        end = await asyncio.to_thread(reader.end, *where)
        answered = await self._answered_offset(*where)
        if end <= answered:
            return
        waiting = await asyncio.to_thread(reader.through, *where, answered, end - 1)
        if not waiting:  # markers and aborted records only
            self._answered[where] = end
            return
        log.warning(
            "%s[%d]: Faust has not delivered the commands from offset %d on; asking again",
            *where,
            offset_of(waiting[0]),
        )
        self._delivered[where] = now
        await self.app.consumer.seek(tp, offset_of(waiting[0]))

    async def _catch_up(self, topic: str, partition: int, through: int) -> None:
        """Answer the committed commands of one partition from its answered offset to
        ``through`` (the caller holds ``_handling``)."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("the Faust participant is not started")
        answered = await self._answered_offset(topic, partition)
        if through < answered:  # answered in a committed transaction: a redelivery after a crash
            log.debug("%s[%d]@%d: answered already (up to %d)", topic, partition, through, answered)
            return
        records = await asyncio.to_thread(reader.through, topic, partition, answered, through)
        for record in records:
            offset = offset_of(record)
            out, kind = await self._outputs(topic, partition, offset, record)
            await asyncio.to_thread(self._commit, out, TopicPartition(topic, partition, offset + 1))
            self._answered[(topic, partition)] = offset + 1
            log.debug("%s[%d]@%d: %s, %d records sent", topic, partition, offset, kind, len(out))
            if kind == "replayed":
                self.replayed += 1
            elif kind == "handled":
                self.handled += 1
        # Nothing committed is left up to ``through`` (an aborted command or a marker).
        self._answered[(topic, partition)] = through + 1

    async def _outputs(
        self, topic: str, partition: int, offset: int, msg: Message
    ) -> tuple[list[OutRecord], str]:
        """What to send for one record, and where it came from: ``handled``, ``replayed`` (the
        recorded replies) or ``dead`` (a dead letter)."""
        try:
            command_id = header_dict(msg.headers()).get(COMMAND_ID)
        except DecodeError as exc:
            return self._dead_letter(msg, str(exc)), "dead"
        if command_id is not None:
            known = self.table.get(command_id.encode())
            if known is not None:
                recorded = Recorded.decode(known)
                if recorded.source == (topic, partition, offset):
                    return _records(recorded), "replayed"  # recorded, but its transaction aborted
                return [] if recorded.reply is None else [recorded.reply], "replayed"
        try:
            executed = await asyncio.to_thread(
                self.participant.execute, topic, msg.value(), msg.headers()
            )
        except DecodeError as exc:
            return self._dead_letter(msg, str(exc)), "dead"
        recorded = Recorded((topic, partition, offset), executed.reply, executed.effects)
        self.table[executed.command_id.encode()] = recorded.encode()
        await self.app.producer.flush()  # recorded before anything is sent
        return _records(recorded), "handled"

    def _dead_letter(self, msg: Message, reason: str) -> list[OutRecord]:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        log.error("%s[%d]@%d: %s", topic, partition, offset, reason)
        headers = dead_letter_headers(msg.headers(), reason, topic, partition, offset)
        return [OutRecord(self.participant.dlq, msg.key() or b"", msg.value() or b"", headers)]

    def _commit(self, records: list[OutRecord], next_offset: TopicPartition) -> None:
        """Send ``records`` and answer up to ``next_offset`` in one transaction; after an
        abort, try again."""
        txn, offsets = self._txn, self._offsets
        if txn is None or offsets is None:
            raise RuntimeError("the Faust participant is not started")
        while True:
            txn.begin()
            try:
                for rec in records:
                    txn.produce(rec.topic, rec.key, rec.value, headers=rec.headers)
                txn.commit([next_offset], offsets.consumer_group_metadata())
                return
            except KafkaException as exc:
                log.warning("transaction of %s aborted (%s); sending again", next_offset, exc)
                txn.abort(exc)

    async def _answered_offset(self, topic: str, partition: int) -> int:
        where = (topic, partition)
        if where not in self._answered:
            self._answered[where] = await asyncio.to_thread(self._read_answered, topic, partition)
        return self._answered[where]

    def _read_answered(self, topic: str, partition: int) -> int:
        """The committed answered offset (waits while a transaction that holds one is open)."""
        if self._offsets is None:
            raise RuntimeError("the Faust participant is not started")
        [tp] = self._offsets.committed([TopicPartition(topic, partition)], timeout=60)
        return max(tp.offset, 0)


def _records(recorded: Recorded) -> list[OutRecord]:
    return [*recorded.effects, *([recorded.reply] if recorded.reply is not None else [])]
