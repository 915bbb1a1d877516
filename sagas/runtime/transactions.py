"""A transactional producer and the rules for committing and aborting with it.

Shared by the saga worker and by participants: consume, produce in a transaction with the
consumed offsets (``send_offsets_to_transaction`` with the consumer's group metadata, KIP-447),
commit; on any error, abort (or, after a fatal error, start over with a new producer under the
same ``transactional.id``, which fences the old one) and let the caller rewind its consumer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from sagas.kafka_io import ChangelogReader, is_transient, translate
from sagas.protocol import restore_group
from sagas.settings import RECONNECT_DEFAULTS, KafkaSettings

__all__ = ["Transactions", "changelog_reader", "input_consumer"]

log = logging.getLogger(__name__)


def _reconnect(settings: KafkaSettings) -> dict[str, Any]:
    """The reconnect defaults of the library's loop clients, where the user set none."""
    return {k: v for k, v in RECONNECT_DEFAULTS.items() if k not in settings.options}


def input_consumer(
    settings: KafkaSettings, group: str, *, instance_id: str | None = None, **extra: Any
) -> Consumer:
    """The consumer of a consume-transform-produce loop: no auto-commit (offsets go in the
    transaction), ``read_committed``, the eager ``range`` assignor.

    Eager, not cooperative-sticky: with static members, librdkafka's cooperative-sticky left
    partitions with no owner after a broker restart (seen in a CI run of the chaos test: two
    of a saga type's partitions unowned for minutes while every member believed itself done).
    An eager rebalance revokes everything and assigns afresh, so no member's stale view of what
    it owns survives one; static membership keeps such rebalances rare.

    With ``instance_id`` it is a static group member (KIP-345, ``group.instance.id``): a
    process restarted with the same id takes its partitions back at once, without a
    rebalance; a dead one's partitions move to the others after the session timeout (10 s), as
    a dynamic member's do. Two live processes must never share an id (they fence each other).
    """
    static = {"group.instance.id": instance_id} if instance_id else {}
    return Consumer(
        settings.client_config(
            **{
                **_reconnect(settings),
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "range",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                **static,
                **extra,
            }
        )
    )


def changelog_reader(settings: KafkaSettings, group: str) -> ChangelogReader:
    """The reader of restores: a ``read_committed`` consumer that reads assigned partitions
    through their high watermark, which a ``read_uncommitted`` probe reads.

    The end shows as a partition-EOF event, which comes with a fetch that found nothing new; a
    short ``fetch.wait.max.ms`` makes that fetch return at once instead of after the default
    half second, per partition restored.
    """
    common = {**_reconnect(settings), "group.id": restore_group(group), "enable.auto.commit": False}
    restorer = Consumer(
        settings.client_config(
            **{
                **common,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
    )
    probe = Consumer(settings.client_config(**{**common, "isolation.level": "read_uncommitted"}))
    return ChangelogReader(restorer, probe)


@dataclass
class _Done:
    error: BaseException | None = None


class _Helper:
    """One daemon thread that runs producer calls for :meth:`Transactions._bounded`, so a call
    has a deadline without a new thread per call. A daemon: one stuck in librdkafka for good
    must not keep the process alive (it is then left behind, and a new helper takes over)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], _Done, threading.Event]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._serve, name="sagas-txn-helper", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, done, finished = self._calls.get()
            try:
                call()
            except BaseException as exc:  # handed to the caller's thread
                done.error = exc
            finished.set()

    def run(self, call: Callable[[], Any], timeout: float) -> _Done | None:
        """Run ``call`` on the helper thread; ``None`` if it did not return within ``timeout``."""
        done, finished = _Done(), threading.Event()
        self._calls.put((call, done, finished))
        return done if finished.wait(timeout) else None


class Transactions:
    """One ``transactional.id``'s producer.

    Args:
        settings: Kafka connection settings.
        transactional_id: stable across restarts of one process, so that a restarted process
            aborts what its previous life left open; never shared by two live processes.
        owner: what to call the user in messages (a consumer group).
        offsets_timeout: longest wait for ``send_offsets_to_transaction`` (seconds). It takes
            milliseconds when the coordinator answers; after a broker restart librdkafka may
            leave it waiting on a stale coordinator (confluentinc/librdkafka#5511), and a new
            producer (under 1 s) is the quickest way out.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        transactional_id: str,
        *,
        owner: str,
        offsets_timeout: float = 2.0,
    ) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        self.owner = owner
        self.offsets_timeout = offsets_timeout
        self.committed = 0
        self.aborted = 0
        self._replacements: list[float] = []
        self._helper: _Helper | None = None
        self._producer: Producer | None = self._new_producer()

    @property
    def producer(self) -> Producer:
        """The current producer (a new one after a fatal error)."""
        if self._producer is None:
            raise RuntimeError("the transactional producer is closed")
        return self._producer

    def _new_producer(self) -> Producer:
        """A producer with its transactions initialised (which aborts what an earlier producer
        with this ``transactional.id`` left open)."""
        producer = Producer(
            self.settings.client_config(
                **{
                    # A producer that kept librdkafka's 10 s reconnect back-off sat out a
                    # broker restart with its transaction's request queued: the 1 s cap
                    # brings it back as fast as the consumers.
                    **_reconnect(self.settings),
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": 10000,
                    "partitioner": "murmur2_random",
                    "linger.ms": 2,
                    "queue.buffering.max.messages": 500000,
                }
            )
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                producer.init_transactions(30)
                return producer
            except KafkaException as exc:
                if not is_transient(exc.args[0]) or time.monotonic() > deadline:
                    raise translate(exc, f"starting the producer of {self.owner}") from exc
                time.sleep(0.5)

    def _replace_producer(self, cause: KafkaException) -> None:
        """Start over with a new producer after a fatal error (e.g. the coordinator bumped the
        epoch when a transaction timed out during a broker outage)."""
        now = time.monotonic()
        self._replacements = [t for t in self._replacements if now - t < 60] + [now]
        if len(self._replacements) > 5:
            raise translate(
                cause,
                f"the producer {self.transactional_id!r} of {self.owner} keeps being fenced; "
                "if another process runs with the same id, give each its own",
            ) from cause
        log.warning("%s: producer failed fatally (%s); starting a new one", self.owner, cause)
        self._producer = None  # a fatal producer can neither flush nor abort
        self._producer = self._new_producer()

    def begin(self) -> None:
        """Begin a transaction."""
        self.producer.begin_transaction()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Any = None,
        on_delivery: Any = None,
    ) -> None:
        """Produce into the open transaction, waiting while the local queue is full.

        Raises:
            KafkaException: the record cannot be produced (e.g. too large for the producer).
        """
        extra: dict[str, Any] = {"headers": headers}
        if on_delivery is not None:
            extra["on_delivery"] = on_delivery
        if partition is not None:
            extra["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, **extra)
                return
            except BufferError:
                self.producer.poll(0.05)

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """Add the consumed ``offsets`` (if any) and commit.

        Raises:
            KafkaException: the transaction did not commit; call :meth:`abort`.
        """
        if offsets:
            self._send_offsets(offsets, group_metadata)
        for attempt in range(120):
            try:
                self.producer.commit_transaction(30)
                self.committed += 1
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not (isinstance(err, KafkaError) and err.retriable()) or attempt == 119:
                    raise
                log.info("commit not confirmed yet (%s); retrying", err.str())
                time.sleep(0.5)

    def _send_offsets(self, offsets: list[TopicPartition], meta: Any) -> None:
        send = self.producer.send_offsets_to_transaction
        self._bounded("send_offsets_to_transaction", self.offsets_timeout, send, offsets, meta)

    def _bounded(self, what: str, timeout: float, call: Any, *args: Any) -> None:
        """Run a producer call with ``timeout`` (passed as its last argument) and a deadline that
        holds.

        librdkafka may block in a transactional call past its own timeout when the coordinator
        went away (confluentinc/librdkafka#5456, #5511: seen here after a broker restart, a request
        left in the coordinator's out-queue for minutes). The call runs on a helper thread; if it
        has not returned in time, it counts as a fatal error: the producer is abandoned and the
        next one, with the same ``transactional.id``, fences it.
        """
        if self._helper is None:
            self._helper = _Helper()
        done = self._helper.run(lambda: call(*args, timeout), timeout + 2)
        if done is None:
            self._helper = None  # stuck in librdkafka for good: the next call gets a new one
            raise KafkaException(KafkaError(KafkaError._FATAL, f"{what} is stuck", fatal=True))
        if done.error is not None:
            raise done.error

    def abort(self, cause: KafkaException) -> None:
        """Abort the open transaction; if that fails (or ``cause`` was fatal), start over with
        a new producer, whose ``init_transactions`` aborts it on the broker.

        Raises:
            BrokerError: producers keep being fenced (another process uses this id).
        """
        self.aborted += 1
        error = cause
        for _ in range(3):
            err = error.args[0] if error.args else None
            if isinstance(err, KafkaError) and err.fatal():
                break
            try:
                self._bounded("abort_transaction", 10, self.producer.abort_transaction)
                return
            except KafkaException as exc:
                log.info("%s: abort not confirmed (%s)", self.owner, exc)
                error = exc
                time.sleep(0.5)
        self._replace_producer(error)

    def close(self) -> None:
        """Flush and release the producer."""
        if self._producer is not None:
            try:
                self._producer.flush(10)
            except KafkaException as exc:  # a fatal producer cannot flush; nothing is pending
                log.warning("%s: producer not flushed on close: %s", self.owner, exc)
            self._producer = None
