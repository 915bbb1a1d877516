"""The one seam for cross-cutting concerns: what the loop, the worker and participants report.

An :class:`Observer` is told what happens; the base class does nothing, so a worker without one
pays nothing. Metrics, tracing and structured logs subclass it (or combine several with
:class:`Observers`). Every method runs on the loop's thread and must return quickly and never
raise: an observer that fails is logged once per method and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sagas.engine.model import JournalEvent

__all__ = ["Observer", "Observers", "partitions_text"]

log = logging.getLogger(__name__)


def partitions_text(owned: Iterable[tuple[str, int]]) -> str:
    """Partitions as people read them: ``shop.order.inbox[0,2] shop.pay.inbox[1]``."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in owned:
        by_topic.setdefault(topic, []).append(partition)
    return " ".join(f"{t}[{','.join(map(str, sorted(ps)))}]" for t, ps in sorted(by_topic.items()))


class Observer:
    """What a transactional loop and its users report. Override what you need."""

    def serving(self, loop: str, role: str) -> None:
        """A loop starts: ``role`` is ``"participant"`` (or ``"worker"``), so an observer can
        show only what applies to it."""

    def transaction(self, loop: str, *, committed: bool, seconds: float, inputs: int) -> None:
        """A batch's transaction committed (or aborted) after ``seconds``, with ``inputs``
        consumed records."""

    def dead_lettered(self, loop: str, topic: str, reason: str) -> None:
        """A record went to dead-letter topic ``topic``; ``reason`` starts with its class
        (``undecodable input``, ``misplaced input``, ``not a command``...)."""

    def isolated(self, loop: str, reason: str) -> None:
        """A record was isolated as poison after it made a transaction fail."""

    def restored(self, loop: str, partition: int, *, records: int, seconds: float) -> None:
        """A changelog partition was read back (saga snapshots, or recorded replies)."""

    def partitions(self, loop: str, owned: Sequence[tuple[str, int]]) -> None:
        """The partitions this loop owns changed."""

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        """Journal events of one committed batch, in order (started, completed, compensated,
        command_sent, reply_accepted, timer_set...)."""

    def timer_fired(self, saga_type: str, *, lateness_ms: int) -> None:
        """A durable timer fired ``lateness_ms`` after it was due."""

    def command_handled(
        self, group: str, command_type: str, *, outcome: str, seconds: float, headers: Any
    ) -> None:
        """A participant's handler ran (``outcome``: success, failure, retryable-failure,
        none, deadline-passed); ``headers`` are the command's (a dict of str)."""

    def command_failed(
        self,
        group: str,
        command_type: str,
        *,
        outcome: str,
        error: str,
        message: str,
        headers: Any,
    ) -> None:
        """A participant's handler answered ``outcome`` ``failure`` or ``retryable-failure``
        (after :meth:`command_handled`): the reply's ``error`` and ``message``."""

    def command_replayed(self, group: str, command_type: str) -> None:
        """A participant answered a command id from its recorded reply."""


class Observers(Observer):
    """Several observers as one."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = list(observers)
        self._failed: set[tuple[int, str]] = set()

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for i, observer in enumerate(self.observers):
            try:
                getattr(observer, method)(*args, **kwargs)
            except Exception:
                if (i, method) not in self._failed:
                    self._failed.add((i, method))
                    log.exception("observer %r failed in %s (reported once)", observer, method)

    def serving(self, loop: str, role: str) -> None:
        """See :meth:`Observer.serving`."""
        self._each("serving", loop, role)

    def transaction(self, loop: str, *, committed: bool, seconds: float, inputs: int) -> None:
        """See :meth:`Observer.transaction`."""
        self._each("transaction", loop, committed=committed, seconds=seconds, inputs=inputs)

    def dead_lettered(self, loop: str, topic: str, reason: str) -> None:
        """See :meth:`Observer.dead_lettered`."""
        self._each("dead_lettered", loop, topic, reason)

    def isolated(self, loop: str, reason: str) -> None:
        """See :meth:`Observer.isolated`."""
        self._each("isolated", loop, reason)

    def restored(self, loop: str, partition: int, *, records: int, seconds: float) -> None:
        """See :meth:`Observer.restored`."""
        self._each("restored", loop, partition, records=records, seconds=seconds)

    def partitions(self, loop: str, owned: Sequence[tuple[str, int]]) -> None:
        """See :meth:`Observer.partitions`."""
        self._each("partitions", loop, owned)

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        """See :meth:`Observer.saga_events`."""
        self._each("saga_events", saga_type, events)

    def timer_fired(self, saga_type: str, *, lateness_ms: int) -> None:
        """See :meth:`Observer.timer_fired`."""
        self._each("timer_fired", saga_type, lateness_ms=lateness_ms)

    def command_handled(
        self, group: str, command_type: str, *, outcome: str, seconds: float, headers: Any
    ) -> None:
        """See :meth:`Observer.command_handled`."""
        self._each(
            "command_handled",
            group,
            command_type,
            outcome=outcome,
            seconds=seconds,
            headers=headers,
        )

    def command_failed(
        self,
        group: str,
        command_type: str,
        *,
        outcome: str,
        error: str,
        message: str,
        headers: Any,
    ) -> None:
        """See :meth:`Observer.command_failed`."""
        self._each(
            "command_failed",
            group,
            command_type,
            outcome=outcome,
            error=error,
            message=message,
            headers=headers,
        )

    def command_replayed(self, group: str, command_type: str) -> None:
        """See :meth:`Observer.command_replayed`."""
        self._each("command_replayed", group, command_type)
