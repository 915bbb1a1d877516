"""A participant as a Faust agent: the same handlers, each command id handled once.

Faust consumes at least once: after a crash it delivers again what it had not committed. So the
agent keeps two records of its work and writes its outputs in a Kafka transaction of its own:

1. **Recorded replies**, a Faust table (changelog-backed, partition = the command's partition,
   key = command id). A new command's handler runs, then its reply and effects are recorded
   there, and the changelog write is awaited *before* anything is sent.
2. **Answered offsets**: the reply, the records the handler sent with ``ctx.send`` and the
   command's next offset, committed to the consumer group ``<group>.answered``, go in ONE
   confluent-kafka transaction (``transactional.id`` ``<group>.faust.<instance id>``).

For each command record: offset below the answered offset → its transaction committed, skip it;
command id recorded → send what was recorded (the reply and effects when this very record was
recorded but its transaction did not commit; the reply alone for a re-sent command), handler not
run; else run the handler. So Kafka effects and replies are exactly once; the handler runs again
only when the process died between its return and the changelog write.

Rejected: writing the table's changelog inside the transaction. Faust reads changelogs
``read_uncommitted`` outside its exactly-once mode (it would restore aborted replies), and its
recovery waits for an offset past the last data record, which a commit marker never reaches.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from sagas.errors import ConfigurationError, DecodeError
from sagas.faust._recorded import Recorded
from sagas.participants import Participant
from sagas.runtime.topics import TopicSpec, create_missing, partition_count
from sagas.runtime.transactions import Transactions
from sagas.wire import OutRecord, dead_letter_headers, header_dict

__all__ = ["FaustParticipant"]

log = logging.getLogger(__name__)


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
        partitions: partition count of the command topics (created when missing) and of the
            table; default ``participant.partitions``.
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
        self.answered_group = f"{participant.group}.answered"
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
        self._txn: Transactions | None = None
        self._offsets: Consumer | None = None
        self._setup = asyncio.Lock()
        app.agent(self.channel, name=f"sagas-participant-{participant.group}")(self._agent)
        app.on_partitions_revoked.connect(self._on_revoked)

    def ensure_topics(self) -> None:
        """Create the missing command topics and the DLQ; check the existing command topics.

        Raises:
            ConfigurationError: a command topic's partition count differs from ``partitions``.
        """
        admin = AdminClient(self.participant.settings.client_config())
        names = [*self.participant.topics, self.participant.dlq]
        metadata = create_missing(admin, [TopicSpec(n, self.partitions) for n in names])
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

    # ------------------------------------------------------------------------- internals

    async def _agent(self, stream: Any) -> None:
        await self._start()
        try:
            async for event in stream.events():
                await self._handle(event.message)
        finally:
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
        tid = f"{p.group}.faust.{p.instance_id}"
        self._txn = Transactions(p.settings, tid, owner=p.group)

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for tp in args[0] if args else ():
            self._answered.pop((tp.topic, tp.partition), None)

    async def _handle(self, msg: Any) -> None:
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        answered = await self._answered_offset(topic, partition)
        if offset < answered:  # answered in a committed transaction: a redelivery after a crash
            log.debug("%s[%d]@%d: answered already (up to %d)", topic, partition, offset, answered)
            return
        out, kind = await self._outputs(msg)
        await asyncio.to_thread(self._commit, out, TopicPartition(topic, partition, offset + 1))
        self._answered[(topic, partition)] = offset + 1
        log.debug("%s[%d]@%d: %s, %d records sent", topic, partition, offset, kind, len(out))
        if kind == "replayed":
            self.replayed += 1
        elif kind == "handled":
            self.handled += 1

    async def _outputs(self, msg: Any) -> tuple[list[OutRecord], str]:
        """What to send for one record, and where it came from: ``handled``, ``replayed`` (the
        recorded replies) or ``dead`` (a dead letter)."""
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        try:
            command_id = header_dict(msg.headers).get("command-id")
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
                self.participant.execute, topic, msg.value, msg.headers
            )
        except DecodeError as exc:
            return self._dead_letter(msg, str(exc)), "dead"
        recorded = Recorded((topic, partition, offset), executed.reply, executed.effects)
        self.table[executed.command_id.encode()] = recorded.encode()
        await self.app.producer.flush()  # recorded before anything is sent
        return _records(recorded), "handled"

    def _dead_letter(self, msg: Any, reason: str) -> list[OutRecord]:
        log.error("%s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
        headers = dead_letter_headers(msg.headers, reason, msg.topic, msg.partition, msg.offset)
        return [OutRecord(self.participant.dlq, msg.key or b"", msg.value or b"", headers)]

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
