"""Push, not poll: one reader of the committed journal per client wakes whoever waits on a saga.

A worker journals every transition in the transaction that makes it, so a committed ``started``,
``finished``, ``stuck``, ``signal_received`` or ``ignored`` event is the moment the client's
``result()``, ``start(wait=...)`` and ``signal(wait=True)`` are waiting for. :class:`JournalWatch`
reads the journal partitions of the sagas someone waits on (``read_committed``, from the last
stable offset at the moment the first waiter of a partition registered), in one background
thread, and hands each event to the callbacks registered for its saga. However many sagas are
awaited, there is one consumer; a partition nobody waits on any more is still read (cheaply)
until the client closes.

Register first, then act (write the start) or look (read the status): an event committed after
the registration is never missed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from sagas.engine.model import JournalEvent, SagaState
from sagas.errors import DecodeError, InputRefusedError, SagaFailedError, SagaStuckError
from sagas.kafka_io import kafka_errors
from sagas.partitioning import partition_for
from sagas.protocol import TopicNames, private_group
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings

__all__ = [
    "Events",
    "JournalWatch",
    "Listener",
    "Verdict",
    "accepted_start",
    "at_rest",
    "ended",
    "no_answer",
    "not_ended",
    "outcome",
    "took_cancel",
    "took_signal",
]

log = logging.getLogger(__name__)

Listener = Callable[[JournalEvent], None]
"""Called on the reader's thread with each committed journal event of the saga watched."""


class JournalWatch:
    """The journal reader of one client.

    Args:
        settings: Kafka connection settings.
        namespace: the app's namespace.
        serde: how journal records are read.
        partitions: the partition count of a topic (the client's cached metadata).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        namespace: str,
        serde: Serde,
        partitions: Callable[[str], int],
    ) -> None:
        self.settings = settings
        self.namespace = namespace
        self.serde = serde
        self._partitions = partitions
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str], list[Listener]] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._pending: list[TopicPartition] = []
        self._types: dict[str, str] = {}  # journal topic -> its saga type
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def watch(self, saga_type: str, saga_id: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every journal event of the saga committed from now on;
        returns the function that stops it.

        Raises:
            BrokerError: the journal's end could not be read.
        """
        topic = TopicNames(self.namespace, saga_type).journal
        partition = partition_for(saga_id.encode(), self._partitions(topic))
        key = (saga_type, saga_id)
        with self._lock:
            self._types[topic] = saga_type
            self._listeners.setdefault(key, []).append(listener)
            try:
                self._assign(topic, partition)
            except BaseException:
                self._listeners[key].remove(listener)
                raise

        def stop() -> None:
            with self._lock:
                listeners = self._listeners.get(key, [])
                if listener in listeners:
                    listeners.remove(listener)
                if not listeners:
                    self._listeners.pop(key, None)

        return stop

    def close(self) -> None:
        """Stop the reader and release its consumer."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _assign(self, topic: str, partition: int) -> None:
        """Read ``topic[partition]`` from its last stable offset (held: ``self._lock``)."""
        if (topic, partition) in self._assigned:
            return
        tp = TopicPartition(topic, partition)
        if self._admin is None:
            self._admin = AdminClient(self.settings.client_config())
        with kafka_errors(f"reading the end of {topic}[{partition}]"):
            futures = self._admin.list_offsets(
                {tp: OffsetSpec.latest()},  # type: ignore[no-untyped-call]
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self.settings.connect_timeout,
            )
            offset = futures[tp].result().offset
        if self._consumer is None:
            self._consumer = Consumer(
                self.settings.client_config(
                    **{
                        "group.id": private_group("watch"),
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed",
                        "fetch.wait.max.ms": 10,  # see runtime.transactions.changelog_reader
                    }
                )
            )
        # the reader thread assigns it (a consumer is used from one thread); from ``offset``,
        # so nothing committed after this moment is missed however soon that happens
        self._pending.append(TopicPartition(topic, partition, offset))
        self._assigned.add((topic, partition))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sagas-watch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                consumer, pending, self._pending = self._consumer, self._pending, []
            if consumer is None:
                return
            if pending:
                consumer.incremental_assign(pending)
            msg = consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            key = msg.key()
            if key is None:
                continue
            with self._lock:  # only the sagas someone waits on are decoded
                saga_type = self._types.get(str(msg.topic()), "")
                listeners = list(self._listeners.get((saga_type, key.decode(errors="replace")), ()))
            if not listeners:
                continue
            try:
                events, _, _ = self.serde.decode_events(msg.value())
            except DecodeError:
                log.warning("%s: an unreadable journal record at %d", msg.topic(), msg.offset())
                continue
            for event in events:
                for listener in listeners:
                    _call(listener, event)


def _call(listener: Listener, event: JournalEvent) -> None:
    try:
        listener(event)
    except Exception:  # one waiter's defect must not stop the others' events
        log.exception("a journal listener failed on %s", event.type)


# ------------------------------------------------------------------------ what waiters wait for


class Events:
    """The journal events of one saga, as the reader hands them over (for sync waiters)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[JournalEvent] = queue.SimpleQueue()

    def __call__(self, event: JournalEvent) -> None:
        self._queue.put(event)

    def next(self, until: float) -> JournalEvent | None:
        """The next event, or ``None`` at monotonic time ``until``."""
        left = until - time.monotonic()
        if left <= 0:
            return None
        try:
            return self._queue.get(timeout=left)
        except queue.Empty:
            return None


Verdict = Callable[[str, JournalEvent], bool]
"""Whether a waiter got its answer from an event (``True``); raises for a refusal."""


def _refused(event: JournalEvent, what: str) -> InputRefusedError:
    reason = event.body.get("reason", "")
    return InputRefusedError(
        f"saga {event.saga_id!r} refused the {what}: {reason}", saga_id=event.saga_id
    )


def _stuck(saga_type: str, event: JournalEvent) -> SagaStuckError:
    b = event.body
    return SagaStuckError(saga_type, event.saga_id, b.get("step"), str(b.get("message", "")))


def accepted_start(saga_type: str, event: JournalEvent) -> bool:
    t, b = event.type, event.body
    if t == "started":
        return True
    if t == "stuck":
        raise _stuck(saga_type, event)
    if (t == "ignored" and b.get("input") == "start") or t in ("refused", "parked"):
        raise _refused(event, "start")
    return False


def ended(saga_type: str, event: JournalEvent) -> bool:
    if event.type == "stuck":
        raise _stuck(saga_type, event)
    return event.type == "finished"


def took_signal(name: str) -> Verdict:
    def verdict(saga_type: str, event: JournalEvent) -> bool:
        t, b = event.type, event.body
        if t in ("signal_received", "signal_buffered") and b.get("name") == name:
            return True
        if t == "kept" and b["input"].get("name") == name:
            return True
        if t == "ignored" and b.get("input") == "signal" and b.get("name") == name:
            raise _refused(event, f"signal {name!r}")
        return False

    return verdict


def took_cancel(saga_type: str, event: JournalEvent) -> bool:
    t, b = event.type, event.body
    if t in ("compensating", "pivot_awaited", "finished", "unstuck"):
        return True
    if t == "ignored" and b.get("input") == "cancel":
        raise _refused(event, "cancel")
    return False


def no_answer(namespace: str, saga_type: str, saga_id: str, verdict: Verdict) -> str:
    if verdict is accepted_start:
        return (
            f"no worker journaled the start of {saga_type} {saga_id!r} in time: is a worker for "
            f"{saga_type!r} running in namespace {namespace!r}? The start waits in its inbox "
            "and runs once one is"
        )
    if verdict is ended:
        return f"saga {saga_id!r} did not end in time (sagas status {saga_type} {saga_id})"
    return (
        f"no worker answered the input to {saga_type} {saga_id!r} in time: is a worker for "
        f"{saga_type!r} running in namespace {namespace!r}?"
    )


def not_ended(saga_id: str, timeout: float, *, seen: bool) -> TimeoutError:
    """``result()``'s timeout: ``seen`` says whether the saga existed when it began to wait."""
    why = (
        "" if seen else " (no such saga: never started, or it ended longer ago than its retention)"
    )
    return TimeoutError(f"saga {saga_id!r} did not end within {timeout:.0f}s{why}")


def at_rest(state: SagaState) -> bool:
    """The saga ended, or is stuck: waiting longer for it changes nothing without a person."""
    return state.terminal or state.status == "stuck"


def outcome(saga_type: str, state: SagaState) -> dict[str, Any]:
    """A completed saga's data; raises for any other end, or while it is stuck."""
    if state.status == "completed":
        return dict(state.data)
    if state.status == "stuck" and state.stuck is not None:
        raise SagaStuckError(saga_type, state.saga_id, state.stuck["step"], state.stuck["message"])
    if state.terminal:
        raise SagaFailedError(state.saga_id, state.status, state.reason)
    raise TimeoutError(f"saga {state.saga_id!r} is still {state.status}")
