"""The Kafka loop of a participant: commands in, replies out, once per command id.

1. Take up to ``max_batch`` commands (``read_committed``, group ``<group>``).
2. For each: if its command id has a recorded reply, send that reply again; otherwise run its
   handler (see :meth:`sagas.participants.Participant.execute`). Unreadable records go to
   ``<group>.dlq`` with the reason in their headers.
3. In ONE transaction: the replies, the records handlers sent, a record of each new reply in
   ``<group>.<topic>.replies`` (partition = the command's partition, key = command id) and the
   consumed offsets. Only after the commit do the new replies count as recorded; after an abort
   the consumer seeks back and the batch is handled again.

Handlers run before the transaction begins, so a slow handler never holds one open. On assignment
the recorded replies of each new partition are read from its replies partition, after the group's
committed offsets are stable (a predecessor's transaction is decided).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from sagas.errors import ConfigurationError, DecodeError
from sagas.runtime.kafka_errors import read_to_end
from sagas.runtime.topics import TopicSpec, create_missing, partition_count
from sagas.runtime.transactions import Transactions, changelog_reader, input_consumer
from sagas.wire import OutRecord, dead_letter_headers, header_dict

if TYPE_CHECKING:
    from sagas.participants import Participant

__all__ = ["ParticipantLoop", "RecordedReply"]

log = logging.getLogger(__name__)

_NONE = "none"  # the outcome recorded for a handler that returned NO_REPLY


@dataclass(frozen=True)
class RecordedReply:
    """A reply as recorded in the replies topic (``None``: the handler sent none)."""

    reply: OutRecord | None

    def to_record(self, topic: str, command_id: str, partition: int) -> OutRecord:
        """The replies-topic record: key = command id, value = the reply's value, headers =
        the reply's plus ``reply-to`` (or ``outcome: none``)."""
        if self.reply is None:
            headers: list[tuple[str, str | bytes | None]] = [("outcome", _NONE.encode())]
            return OutRecord(topic, command_id.encode(), b"", headers)
        reply_to = ("reply-to", self.reply.topic.encode())
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
        if h.get("outcome") == _NONE:
            return cls(None)
        if "reply-to" not in h or "saga-id" not in h:
            raise DecodeError("a recorded reply without reply-to or saga-id", record=msg.value())
        headers = [(k, v) for k, v in pairs if k != "reply-to"]
        return cls(OutRecord(h["reply-to"], h["saga-id"].encode(), msg.value() or b"", headers))


@dataclass
class _Batch:
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    out: list[OutRecord] = field(default_factory=list)
    recorded: dict[tuple[str, int], dict[str, RecordedReply]] = field(default_factory=dict)
    dlq: list[tuple[Message, str]] = field(default_factory=list)
    handled: int = 0
    replayed: int = 0


class ParticipantLoop:
    """Runs one :class:`~sagas.participants.Participant` on Kafka (see the module docstring)."""

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.settings = participant.settings
        self.group = participant.group
        self.replies: dict[tuple[str, int], dict[str, RecordedReply]] = {}
        self._consumer: Consumer | None = None
        self._restorer: Consumer | None = None

    # ------------------------------------------------------------------------- topics

    def ensure_topics(self) -> None:
        """Create missing command, replies and DLQ topics; check replies match commands.

        Raises:
            ConfigurationError: a replies topic's partition count differs from its command
                topic's (a reply would be looked up in the wrong partition).
        """
        p = self.participant
        admin = AdminClient(self.settings.client_config())
        metadata = create_missing(admin, [TopicSpec(t, p.partitions) for t in p.topics])
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

    # ------------------------------------------------------------------------- rebalance

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        consumer.committed(partitions, timeout=120)  # waits until the offsets are stable
        for tp in partitions:
            self.replies[(tp.topic, tp.partition)] = self._restore(tp.topic, tp.partition)
        log.info("%s: assigned %s", self.group, [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.replies.pop((tp.topic, tp.partition), None)

    def _restore(self, topic: str, partition: int) -> dict[str, RecordedReply]:
        if self._restorer is None:
            raise RuntimeError("the participant is not running")
        recorded: dict[str, RecordedReply] = {}
        source = self.participant.replies_topic(topic)
        for msg in read_to_end(self._restorer, source, partition):
            key = msg.key()
            if key is None:
                continue
            try:
                recorded[key.decode()] = RecordedReply.from_message(msg)
            except (DecodeError, UnicodeDecodeError) as exc:
                log.error("%s[%d]@%d skipped: %s", source, partition, msg.offset(), exc)
        return recorded

    # ------------------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        """Handle commands until ``stop`` is set."""
        p = self.participant
        self.ensure_topics()
        txn = Transactions(self.settings, f"{self.group}.{p.instance_id}", owner=self.group)
        self._consumer = consumer = input_consumer(
            self.settings, self.group, **{"client.id": f"{self.group}-{p.instance_id}"}
        )
        self._restorer = changelog_reader(self.settings, self.group)
        consumer.subscribe(
            p.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not stop.is_set():
                first = consumer.poll(0.2)
                if first is None:
                    continue
                msgs = [first, *consumer.consume(p.max_batch - 1, 0)]
                batch = self._handle(msgs)
                if batch.next_offsets:
                    self._commit(txn, consumer, batch)
        finally:
            consumer.close()
            self._restorer.close()
            txn.close()

    def _handle(self, msgs: list[Message]) -> _Batch:
        batch = _Batch()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error: %s", self.group, err)
                continue
            topic, partition, offset = str(msg.topic()), msg.partition(), msg.offset()
            if partition is None or offset is None:
                continue
            where = (topic, partition)
            batch.first_offsets.setdefault(where, offset)
            batch.next_offsets[where] = offset + 1
            if where in self.replies:
                self._handle_one(batch, msg, where)
        return batch

    def _handle_one(self, batch: _Batch, msg: Message, where: tuple[str, int]) -> None:
        try:
            headers = header_dict(msg.headers())  # parsed once, here and for the handler
        except DecodeError as exc:
            batch.dlq.append((msg, f"not a command: {exc}"))
            return
        command_id = headers.get("command-id", "")
        staged = batch.recorded.setdefault(where, {})
        known = staged.get(command_id) or self.replies[where].get(command_id)
        if known is not None:
            batch.replayed += 1
            log.info(
                "%s: command %s seen before; its recorded reply goes again", where[0], command_id
            )
            if known.reply is not None:
                batch.out.append(known.reply)
            return
        try:
            executed = self.participant.execute(where[0], msg.value(), headers)
        except DecodeError as exc:
            batch.dlq.append((msg, f"not a command: {exc}"))
            return
        batch.handled += 1
        batch.out.extend(executed.effects)
        if executed.reply is not None:
            batch.out.append(executed.reply)
        staged[executed.command_id] = RecordedReply(executed.reply)

    def _commit(self, txn: Transactions, consumer: Consumer, batch: _Batch) -> None:
        p = self.participant
        try:
            txn.begin()
            for rec in batch.out:
                txn.produce(rec.topic, rec.key, rec.value, headers=rec.headers)
            for (topic, partition), recorded in batch.recorded.items():
                for command_id, reply in recorded.items():
                    rec = reply.to_record(p.replies_topic(topic), command_id, partition)
                    txn.produce(
                        rec.topic, rec.key, rec.value, partition=partition, headers=rec.headers
                    )
            for msg, reason in batch.dlq:
                headers = dead_letter_headers(
                    msg.headers(), reason, str(msg.topic()), msg.partition() or 0, msg.offset() or 0
                )
                txn.produce(p.dlq, msg.key(), msg.value(), headers=headers)
                log.warning(
                    "%s[%d]@%d -> %s: %s", msg.topic(), msg.partition(), msg.offset(), p.dlq, reason
                )
            offsets = [TopicPartition(t, n, o) for (t, n), o in batch.next_offsets.items()]
            txn.commit(offsets, consumer.consumer_group_metadata())
        except KafkaException as exc:
            log.warning(
                "%s: transaction aborted, the batch will be handled again: %s", self.group, exc
            )
            txn.abort(exc)
            for (topic, partition), offset in batch.first_offsets.items():
                if (topic, partition) in self.replies:
                    consumer.seek(TopicPartition(topic, partition, offset))
            return
        for where, recorded in batch.recorded.items():
            if where in self.replies:
                self.replies[where].update(recorded)
        p.handled += batch.handled
        p.replayed += batch.replayed
