"""The worker's local state: one store per owned partition, restored from the changelog.

A :class:`PartitionStore` holds the snapshot of every saga of one inbox partition and an index of
their due timers (a heap with lazy deletion: an entry is valid while the saga's state still holds
that timer at that due time). Nothing here talks to Kafka; the worker fills and drains it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from sagas.engine.model import SagaState, TimerFired

EXPIRE = "@expire"
"""The timer id of a finished saga's retention running out (kept by the store, not the saga)."""

__all__ = ["EXPIRE", "PartitionStore"]


@dataclass
class PartitionStore:
    """Snapshots and due timers of the sagas of one partition.

    Attributes:
        partition: the inbox (and state) partition number.
        states: saga id -> latest committed snapshot.
        parked: saga ids whose definition version this worker lacks (their timers are not run).
        retention: how long a finished saga is kept (ms, ``None``: forever); its expiry is due
            ``updated_ms`` + retention, so restoring the snapshots restores the expiries.
    """

    partition: int
    states: dict[str, SagaState] = field(default_factory=dict)
    parked: set[str] = field(default_factory=set)
    retention: Callable[[SagaState], int | None] = field(default=lambda state: None)
    _heap: list[tuple[int, str, str]] = field(default_factory=list)
    _indexed: set[tuple[int, str, str]] = field(default_factory=set)

    def put(self, state: SagaState, *, parked: bool = False) -> None:
        """Store a committed snapshot and index its pending timers."""
        self.states[state.saga_id] = state
        if parked:
            self.parked.add(state.saga_id)
            return
        self.parked.discard(state.saga_id)
        for timer_id, due in self._dues(state):
            entry = (due, state.saga_id, timer_id)
            if entry not in self._indexed:
                self._indexed.add(entry)
                heapq.heappush(self._heap, entry)

    def _dues(self, state: SagaState) -> list[tuple[str, int]]:
        if state.terminal:
            keep = self.retention(state)
            return [] if keep is None else [(EXPIRE, state.updated_ms + keep)]
        return list(state.timers.items())

    def delete(self, saga_id: str) -> None:
        """Forget a saga (a tombstone in the changelog)."""
        self.states.pop(saga_id, None)
        self.parked.discard(saga_id)

    def _valid(self, entry: tuple[int, str, str]) -> bool:
        due, saga_id, timer_id = entry
        state = self.states.get(saga_id)
        if state is None:
            return False
        if timer_id == EXPIRE:
            return (EXPIRE, due) in self._dues(state)
        return state.timers.get(timer_id) == due

    def next_due(self) -> int | None:
        """The earliest pending due time, or ``None``."""
        while self._heap and not self._valid(self._heap[0]):
            self._indexed.discard(heapq.heappop(self._heap))
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int, limit: int) -> list[TimerFired]:
        """Take up to ``limit`` timers due at ``now_ms``, earliest first (never one not yet due).

        Taken timers leave the index; :meth:`put` of the committed state re-indexes any that
        remain pending, and :meth:`restore_timers` puts them back after an aborted transaction.
        """
        fired: list[TimerFired] = []
        while self._heap and len(fired) < limit and self._heap[0][0] <= now_ms:
            entry = heapq.heappop(self._heap)
            self._indexed.discard(entry)
            if self._valid(entry):
                fired.append(TimerFired(entry[1], entry[2], entry[0]))
        return fired

    def restore_timers(self, timers: list[TimerFired]) -> None:
        """Put back timers taken by :meth:`pop_due` whose transaction was aborted."""
        for timer in timers:
            entry = (timer.due_ms, timer.saga_id, timer.timer_id)
            if entry not in self._indexed and self._valid(entry):
                self._indexed.add(entry)
                heapq.heappush(self._heap, entry)

    def __len__(self) -> int:
        return len(self.states)
