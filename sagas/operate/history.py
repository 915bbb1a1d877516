"""One saga's history from its journal, without reading the whole journal.

The journal ``<ns>.<saga>.journal`` is keyed by saga id, so a saga's events sit in one partition
(murmur2 over the topic's real partition count), in time order. Its snapshot says when it started
and when it last changed (``started_ms``, ``updated_ms``); the broker's time index
(``offsets_for_times``) turns those into offsets. History reads only that window of that one
partition, widened by a slack for clock skew and for the time a transaction takes to commit. Its
cost grows with the traffic of one partition during the saga's life, not with the journal's size.

Rejected: remembering the journal offset in the snapshot. The offset of a record written in a
transaction is known only after the transaction is sent, and the snapshot is in that same
transaction; the time index gives the same bound for free.

Inputs ignored after the saga's last change (a late duplicate reply) do not move ``updated_ms``:
they show when the window reaches them (``until_ms``). A saga whose snapshot is gone (finished,
then removed after its retention: a journal event ``expired``) is found by the time window the
caller gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sagas.engine.ids import public_command_id
from sagas.engine.model import JournalEvent
from sagas.errors import ConfigurationError, DecodeError
from sagas.operate._io import offset_at, partitions_of, read_range, reader
from sagas.partitioning import partition_for
from sagas.protocol import TopicNames
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings

__all__ = ["DEFAULT_SLACK_MS", "History", "HistoryEntry", "read_history"]

DEFAULT_SLACK_MS = 60_000
"""How far before the start and after the last change the window reaches (clock skew between
hosts, transaction time)."""

_SECRET_KEYS = frozenset({"secret"})


@dataclass(frozen=True)
class HistoryEntry:
    """One journal event as a timeline row.

    Attributes:
        at_ms: when it happened (the engine's clock, epoch ms).
        event: the event type (see :mod:`sagas.engine.evolve`).
        step: the block it concerns, or the timer (``<step>:<kind>:<n>``), if any.
        attempt: the request number of a command, if any.
        command_id: the command it concerns, without its tag.
        outcome: a reply's outcome, or a saga's outcome or final status.
        reason: why (a failure, an ignored input, a termination...).
        body: the event's other fields, secrets removed.
        offset: the offset of its journal record (the events of one transition share one).
    """

    at_ms: int
    event: str
    step: str | None
    attempt: int | None
    command_id: str | None
    outcome: str | None
    reason: str | None
    body: dict[str, Any]
    offset: int

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {
            "at_ms": self.at_ms,
            "event": self.event,
            "step": self.step,
            "attempt": self.attempt,
            "command_id": self.command_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "body": self.body,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class History:
    """A saga's timeline and how it was found.

    Attributes:
        saga_type: its type.
        saga_id: its id.
        entries: its events, oldest first.
        topic: the journal topic.
        partition: the journal partition holding it.
        window_ms: the time window read (from, to).
        offsets: the offsets read (first, end).
        scanned: records read (of every saga in that partition and window).
        expired: the saga finished and its state was removed after its retention.
    """

    saga_type: str
    saga_id: str
    topic: str
    partition: int
    window_ms: tuple[int, int]
    offsets: tuple[int, int]
    scanned: int
    entries: list[HistoryEntry] = field(default_factory=list)

    @property
    def expired(self) -> bool:
        """The saga's retention ran out: its state is gone, its journal remains."""
        return any(e.event == "expired" for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {
            "saga_type": self.saga_type,
            "saga_id": self.saga_id,
            "topic": self.topic,
            "partition": self.partition,
            "window_ms": list(self.window_ms),
            "offsets": list(self.offsets),
            "scanned": self.scanned,
            "expired": self.expired,
            "events": [e.to_dict() for e in self.entries],
        }


def _public(value: Any) -> Any:
    """An event body for people: no secret, command ids without their tags."""
    if isinstance(value, dict):
        return {
            k: (public_command_id(v) if k == "command_id" and isinstance(v, str) else _public(v))
            for k, v in value.items()
            if k not in _SECRET_KEYS
        }
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def entry(event: JournalEvent, offset: int) -> HistoryEntry:
    """A journal event as a timeline row (secrets removed)."""
    body = _public(event.body)
    outcome = body.get("outcome") or body.get("status")
    if event.type == "settled" and isinstance(body.get("done"), bool):
        outcome = "done" if body["done"] else "not-done"  # the operator's answer
    reason = body.get("reason") or body.get("message")  # a stuck saga's error
    attempt = body.get("attempt")
    return HistoryEntry(
        at_ms=event.at_ms,
        event=event.type,
        step=body.get("step") or body.get("timer_id"),
        attempt=int(attempt) if isinstance(attempt, int) else None,
        command_id=body.get("command_id"),
        outcome=str(outcome) if outcome is not None else None,
        reason=str(reason) if reason is not None else None,
        body=body,
        offset=offset,
    )


def read_history(
    settings: KafkaSettings,
    namespace: str,
    saga_type: str,
    saga_id: str,
    *,
    started_ms: int | None = None,
    updated_ms: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    slack_ms: int = DEFAULT_SLACK_MS,
    serde: Serde | None = None,
) -> History:
    """Every journal event of one saga, oldest first, read from one journal partition between
    ``since_ms`` (default: ``started_ms`` less the slack) and ``until_ms`` (default:
    ``updated_ms`` plus the slack; without either, the end of the journal).

    Give ``started_ms``/``updated_ms`` from the saga's snapshot (``client.status``); for a saga
    whose snapshot is gone, give the time window to search.

    Raises:
        ConfigurationError: neither the snapshot's times nor ``since_ms`` are given, or the
            journal topic does not exist.
        BrokerError: the journal could not be read.
    """
    start = (
        since_ms
        if since_ms is not None
        else (started_ms - slack_ms if started_ms is not None else None)
    )
    if start is None:
        raise ConfigurationError(
            f"no time to search saga {saga_id!r} from: give its snapshot's times, or the time "
            "it started (since)"
        )
    end = (
        until_ms
        if until_ms is not None
        else (updated_ms + slack_ms if updated_ms is not None else None)
    )
    serde = serde or Serde.for_settings(settings)
    topic = TopicNames(namespace, saga_type).journal
    consumer = reader(settings)
    try:
        partition = partition_for(saga_id.encode(), partitions_of(consumer, topic, "the journal"))
        first = offset_at(consumer, topic, partition, max(0, start))
        stop = offset_at(consumer, topic, partition, end) if end is not None else None
        key = saga_id.encode()
        entries: list[HistoryEntry] = []
        scanned = 0
        last = first
        for msg in read_range(consumer, topic, partition, first, stop):
            scanned += 1
            offset = msg.offset() or 0
            last = offset + 1
            if msg.key() != key:
                continue
            try:
                events, _, _ = serde.decode_events(msg.value())
            except DecodeError as exc:
                events = [
                    JournalEvent("unreadable", saga_id, msg.timestamp()[1], {"reason": str(exc)})
                ]
            entries.extend(entry(event, offset) for event in events)
    finally:
        consumer.close()
    return History(
        saga_type=saga_type,
        saga_id=saga_id,
        topic=topic,
        partition=partition,
        window_ms=(start, end if end is not None else int(time.time() * 1000)),
        offsets=(first, stop if stop is not None else last),
        scanned=scanned,
        entries=entries,
    )
