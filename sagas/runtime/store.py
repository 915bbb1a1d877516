"""The worker's local state: one store per owned partition, restored from the changelog.

A :class:`PartitionStore` holds every saga of one inbox partition as its committed snapshot's
encoded bytes (the changelog value) and a small summary: status, version, last update and pending
timers (:class:`~sagas.wire.StateSummary`). A saga is decoded only when it is needed (a batch
touches it, a status query names it). Due timers are a heap with lazy deletion: an entry is valid
while the saga's summary still holds that timer at that due time. Nothing here talks to Kafka;
the worker fills and drains it.
"""

from __future__ import annotations

import heapq
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sagas.engine.model import TERMINAL, SagaState, TimerFired
from sagas.errors import DecodeError
from sagas.wire import StateSummary

EXPIRE = "@expire"
"""The timer id of a finished saga's retention running out (kept by the store, not the saga)."""

__all__ = ["EXPIRE", "PartitionStore", "StoredSaga"]

log = logging.getLogger(__name__)

_Entry = tuple[int, str, str]
"""A heap entry: (due ms, saga id, timer id)."""


class StoredSaga:
    """One saga as the store keeps it: the encoded snapshot and what the index needs of it.

    ``timers`` is flat (``id, due, id, due...``) and timer ids are interned: with its key and
    its heap entry, a saga with one pending timer costs its snapshot's bytes and ~350 more.
    """

    __slots__ = ("status", "timers", "updated_ms", "value", "version")

    def __init__(self, value: bytes, summary: StateSummary) -> None:
        self.value = value
        self.status: str = sys.intern(summary.status)
        self.version = summary.version
        self.updated_ms = summary.updated_ms
        timers = summary.timers
        if len(timers) == 2:  # the common case: the saga's deadline
            timers = (sys.intern(str(timers[0])), timers[1])
        elif timers:
            timers = tuple(sys.intern(x) if isinstance(x, str) else x for x in timers)
        self.timers: tuple[str | int, ...] = timers

    @property
    def terminal(self) -> bool:
        """The saga has ended."""
        return self.status in TERMINAL

    def timer_items(self) -> list[tuple[str, int]]:
        """(timer id, due ms) of each pending timer."""
        t = self.timers
        return cast("list[tuple[str, int]]", list(zip(t[::2], t[1::2], strict=True)))


def _no_retention(version: int) -> int | None:
    return None


@dataclass
class PartitionStore:
    """Snapshots and due timers of the sagas of one partition.

    Attributes:
        partition: the inbox (and state) partition number.
        decode: turns a snapshot's bytes into its state (raises :class:`DecodeError`).
        parked: saga ids whose definition version this worker lacks (their timers are not run).
        retention: how long a finished saga of a version is kept (ms, ``None``: forever); its
            expiry is due ``updated_ms`` + retention, so restoring the snapshots restores them.
    """

    partition: int
    decode: Callable[[bytes], SagaState]
    parked: set[str] = field(default_factory=set)
    retention: Callable[[int], int | None] = _no_retention
    _sagas: dict[str, StoredSaga] = field(default_factory=dict)
    _heap: list[_Entry] = field(default_factory=list)
    _taken: set[_Entry] = field(default_factory=set)

    # ------------------------------------------------------------------------- snapshots

    def put(self, state: SagaState, value: bytes, *, parked: bool = False) -> None:
        """Store a committed snapshot (decoded, and as written) and index its pending timers."""
        self.put_encoded(state.saga_id, value, StateSummary.of(state), parked=parked)

    def put_encoded(
        self, saga_id: str, value: bytes, summary: StateSummary, *, parked: bool = False
    ) -> None:
        """Store a committed snapshot as its bytes and summary; index its pending timers."""
        old = self._sagas.get(saga_id)
        saga = StoredSaga(value, summary)
        self._sagas[saga_id] = saga
        if old is None and not parked:  # the fast path of a restore
            t = saga.timers
            if len(t) == 2 and saga.status not in TERMINAL:
                heapq.heappush(self._heap, (cast(int, t[1]), saga_id, cast(str, t[0])))
                return
            for timer_id, due in self._dues(saga):
                heapq.heappush(self._heap, (due, saga_id, timer_id))
            return
        was_indexed = old is not None and saga_id not in self.parked
        if parked:
            self.parked.add(saga_id)
            return
        self.parked.discard(saga_id)
        indexed = set(self._dues(old)) if old is not None and was_indexed else set()
        for timer_id, due in self._dues(saga):
            entry = (due, saga_id, timer_id)
            if (timer_id, due) not in indexed or entry in self._taken:
                self._taken.discard(entry)
                heapq.heappush(self._heap, entry)

    def delete(self, saga_id: str) -> None:
        """Forget a saga (a tombstone in the changelog)."""
        self._sagas.pop(saga_id, None)
        self.parked.discard(saga_id)

    def get(self, saga_id: str) -> SagaState | None:
        """A saga's committed state, decoded; ``None``: no such saga.

        A snapshot that cannot be decoded is logged and forgotten, as a restore used to skip it.
        """
        saga = self._sagas.get(saga_id)
        if saga is None:
            return None
        try:
            return self.decode(saga.value)
        except DecodeError as exc:
            log.error(
                "partition %d: saga %s: unreadable snapshot ignored (it stays in the topic): %s",
                self.partition,
                saga_id,
                exc,
            )
            self.delete(saga_id)
            return None

    def peek(self, saga_id: str) -> SagaState | None:
        """:meth:`get` for other threads (the query endpoint): changes nothing in the store."""
        saga = self._sagas.get(saga_id)
        try:
            return None if saga is None else self.decode(saga.value)
        except DecodeError:
            return None

    def sagas(self) -> list[tuple[str, StoredSaga]]:
        """Every saga's id and stored form: one copy, safe to take from another thread."""
        return list(self._sagas.items())

    def __contains__(self, saga_id: object) -> bool:
        return saga_id in self._sagas

    def __len__(self) -> int:
        return len(self._sagas)

    # ------------------------------------------------------------------------- timers

    def _dues(self, saga: StoredSaga) -> list[tuple[str, int]]:
        if saga.terminal:
            keep = self.retention(saga.version)
            return [] if keep is None else [(EXPIRE, saga.updated_ms + keep)]
        return saga.timer_items()

    def _valid(self, entry: _Entry) -> bool:
        due, saga_id, timer_id = entry
        saga = self._sagas.get(saga_id)
        return saga is not None and (timer_id, due) in self._dues(saga)

    def next_due(self) -> int | None:
        """The earliest pending due time, or ``None``."""
        while self._heap and not self._valid(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int, limit: int) -> list[TimerFired]:
        """Take up to ``limit`` timers due at ``now_ms``, earliest first (never one not yet due).

        Taken timers leave the index; :meth:`put` of the committed state re-indexes any that
        remain pending, and :meth:`restore_timers` puts them back after an aborted transaction.
        Call it once per batch, after the previous batch committed or aborted.
        """
        self._taken.clear()
        fired: list[TimerFired] = []
        while self._heap and len(fired) < limit and self._heap[0][0] <= now_ms:
            entry = heapq.heappop(self._heap)
            if entry not in self._taken and self._valid(entry):  # a duplicate pops next to it
                self._taken.add(entry)
                fired.append(TimerFired(entry[1], entry[2], entry[0]))
        return fired

    def restore_timers(self, timers: list[TimerFired]) -> None:
        """Put back timers taken by :meth:`pop_due` whose transaction was aborted."""
        for timer in timers:
            entry = (timer.due_ms, timer.saga_id, timer.timer_id)
            if entry in self._taken and self._valid(entry):
                self._taken.discard(entry)
                heapq.heappush(self._heap, entry)
