"""The Faust participant's own read of its command partitions: committed records, in order.

Faust is not trusted with which records to handle, only with when to look. Two things it does
would otherwise lose or invent commands:

* its consumer reads ``read_uncommitted`` outside its exactly-once mode, so it delivers commands
  of worker transactions that later abort (a command the saga never sent);
* its stream drops records it took in while a rebalance was under way, and seeks back only to a
  committed offset above 0 (aiokafka's ``seek_to_committed``), so a partition its group had not
  committed yet loses them for the life of the process.

So each record Faust delivers is a signal: "this partition has data up to here". A
:class:`CommittedCommands` reader, a plain ``read_committed`` confluent-kafka consumer assigned
to the same partitions, returns every committed record from the participant's next unanswered
offset up to that point, waiting while the transaction that holds it is undecided.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sagas.errors import BrokerError
from sagas.kafka_io import translate, watermarks
from sagas.settings import KafkaSettings

__all__ = ["CommittedCommands", "offset_of"]

log = logging.getLogger(__name__)

_PAUSE_AT = 5000
"""Records buffered for one partition before its fetching pauses (others are being read)."""


def offset_of(msg: Message) -> int:
    """A consumed record's offset (a record, not an event, always has one)."""
    offset = msg.offset()
    if offset is None:
        raise ValueError("a record without an offset")
    return offset


class CommittedCommands:
    """Committed records of the command partitions, read in order from a given offset.

    Not thread-safe: one caller at a time (the participant serialises its handling).

    Args:
        settings: Kafka settings of the reader's consumer.
        group: a group id for the consumer (it commits nothing and joins no group).
        undecided_timeout: how long to wait for a transaction to be decided before giving up.
    """

    def __init__(
        self, settings: KafkaSettings, group: str, *, undecided_timeout: float = 120.0
    ) -> None:
        self.undecided_timeout = undecided_timeout
        self._consumer = Consumer(
            settings.client_config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 100,
                }
            )
        )
        self._next: dict[tuple[str, int], int] = {}  # the fetch position of each assigned one
        self._buffered: dict[tuple[str, int], deque[Message]] = {}
        self._eof: dict[tuple[str, int], int] = {}  # the last end of partition seen
        self._paused: set[tuple[str, int]] = set()
        self._to_forget: deque[tuple[str, int]] = deque()

    def through(self, topic: str, partition: int, start: int, end: int) -> list[Message]:
        """Every committed record of the partition with ``start <= offset <= end``, in order.

        Returns once the reader has passed ``end``: a record above it, or the partition's end
        (for committed data) beyond it. An ``end`` in a transaction still open is waited for.

        Raises:
            BrokerError: the partition could not be read, or a transaction at or below ``end``
                stayed undecided for ``undecided_timeout`` seconds.
        """
        self._forget_now()
        where = (topic, partition)
        if self._next.get(where) != start:
            self._assign(where, start)
        buffered = self._buffered[where]
        found: list[Message] = []
        waiting_since = time.monotonic()
        while True:
            while buffered and offset_of(buffered[0]) <= end:
                found.append(buffered.popleft())
            if buffered or self._eof.get(where, -1) > end:
                break
            if time.monotonic() - waiting_since > self.undecided_timeout:
                raise BrokerError(
                    f"reading {topic}[{partition}]: offset {end} stayed undecided for "
                    f"{self.undecided_timeout:.0f} s; a producer that dies mid-transaction has "
                    "it aborted after its transaction.timeout.ms: check the command's writer",
                    retryable=True,
                )
            self._fetch()
        if found:
            self._next[where] = offset_of(found[-1]) + 1
        self._next[where] = max(self._next[where], end + 1)
        if where in self._paused and len(buffered) < _PAUSE_AT // 2:
            self._consumer.resume([TopicPartition(topic, partition)])
            self._paused.discard(where)
        return found

    def end(self, topic: str, partition: int) -> int:
        """The partition's high watermark (its next offset to be written)."""
        self._forget_now()
        return watermarks(self._consumer, TopicPartition(topic, partition), 30)[1]

    def forget(self, topic: str, partition: int) -> None:
        """Stop reading a partition (it left this participant).

        Safe to call from another thread: it takes effect at the next call of this reader.
        """
        self._to_forget.append((topic, partition))

    def close(self) -> None:
        """Release the consumer."""
        self._consumer.close()

    # ------------------------------------------------------------------------- internals

    def _forget_now(self) -> None:
        while self._to_forget:
            self._unassign(self._to_forget.popleft())

    def _unassign(self, where: tuple[str, int]) -> None:
        if self._next.pop(where, None) is not None:
            self._consumer.incremental_unassign([TopicPartition(*where)])
        self._buffered.pop(where, None)
        self._eof.pop(where, None)
        self._paused.discard(where)

    def _assign(self, where: tuple[str, int], start: int) -> None:
        """(Re)start reading a partition at ``start``."""
        topic, partition = where
        self._unassign(where)
        self._consumer.incremental_assign([TopicPartition(topic, partition, start)])
        self._next[where] = start
        self._buffered[where] = deque()
        self._eof.pop(where, None)
        self._paused.discard(where)

    def _fetch(self) -> None:
        """Take what the consumer has, into each partition's buffer."""
        for msg in self._consumer.consume(500, 0.2):
            where = (msg.topic() or "", msg.partition() or 0)
            if where not in self._buffered:
                continue  # a partition forgotten since
            err = msg.error()
            if err is None:
                buffered = self._buffered[where]
                buffered.append(msg)
                self._eof.pop(where, None)
                if len(buffered) >= _PAUSE_AT and where not in self._paused:
                    self._consumer.pause([TopicPartition(*where)])
                    self._paused.add(where)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof[where] = msg.offset() or 0
            else:
                raise translate(KafkaException(err), f"reading {where[0]}[{where[1]}]")
