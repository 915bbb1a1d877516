"""Prometheus metrics of workers and participants: :class:`PrometheusObserver`.

Give one to a worker or a participant (``observer=``) and serve its
:meth:`~PrometheusObserver.exposition` (the worker's ``--metrics-port``, or
:func:`serve_metrics`). Every label is bounded: saga types, steps, command types, loops
(consumer groups), partitions, statuses and the class of a dead letter's reason; never a saga
or command id. A label fed from outside (a command type in a header) keeps at most
:data:`MAX_LABEL_VALUES` values; later ones count as ``other``.

=========================================  ===============================================
``sagas_started_total``                    saga_type
``sagas_finished_total``                   saga_type, status (completed, compensated, ...)
``sagas_parked_total``                     saga_type: no definition of its version here
``sagas_expired_total``                    saga_type: retention ran out
``sagas_in_flight``                        saga_type, status (running, in-doubt,
                                           compensating): read from the tracked workers at
                                           scrape
``sagas_step_duration_seconds``            saga_type, step, result (completed, failed)
``sagas_commands_sent_total``              saga_type, command_type
``sagas_timer_lateness_seconds``           saga_type: fired minus due
``sagas_transaction_duration_seconds``     loop, result (committed, aborted)
``sagas_inputs_total``                     loop: records consumed in committed transactions
``sagas_restore_duration_seconds``         loop
``sagas_restored_total``                   loop: snapshots (or recorded replies) read back
``sagas_owned_partitions``                 loop
``sagas_consumer_lag_records``             loop, topic, partition: end offset minus the
                                           group's committed one, read at scrape (a
                                           transaction's commit marker counts: an idle
                                           partition may show 1)
``sagas_dead_letters_total``               loop, reason
``sagas_isolated_total``                   loop
``sagas_handler_duration_seconds``        group, command_type, outcome
``sagas_replayed_replies_total``           group, command_type
=========================================  ===============================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sagas.engine.model import TERMINAL, JournalEvent
from sagas.observe.steps import OpenSteps
from sagas.runtime.observe import Observer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from sagas.runtime.worker import SagaWorker
    from sagas.settings import KafkaSettings

__all__ = [
    "CONTENT_TYPE",
    "MAX_LABEL_VALUES",
    "PrometheusObserver",
    "reason_class",
    "serve_metrics",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of :meth:`PrometheusObserver.exposition`."""

MAX_LABEL_VALUES = 200
"""Most values one label of one metric takes; more count as ``other``."""

IN_FLIGHT = ("running", "in-doubt", "stuck", "compensating")
"""The statuses ``sagas_in_flight`` counts (0 for each when none)."""

_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def reason_class(reason: str) -> str:
    """The bounded class of a dead letter's reason: what precedes its first colon
    (``undecodable input``, ``misplaced input``, ``not a command``...)."""
    head = reason.split(":", 1)[0].strip()
    if head.startswith("reply-to "):
        return "reply-to not a topic"
    if head.startswith("cannot write to "):
        return "cannot write"
    return head[:60] or "unknown"


class _Bounded:
    """Label values as they come, at most ``limit`` distinct ones per label; then ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self.limit:
                return "other"
            seen.add(value)
            return value


class PrometheusObserver(Observer):
    """Counts what a worker or participant reports, in a registry of its own.

    Args:
        registry: where the metrics live (default: a new one; pass
            ``prometheus_client.REGISTRY`` to share the process's default).
        settings: Kafka settings to read each owned partition's lag at scrape time (none: no
            lag metric).

    Raises:
        ConfigurationError: prometheus-client is not installed (the ``observe`` extra).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, settings: KafkaSettings | None = None
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
        except ImportError as exc:
            from sagas.errors import ConfigurationError

            raise ConfigurationError(
                "metrics need prometheus-client: pip install 'kafka-sagas[observe]'"
            ) from exc
        self.registry = registry if registry is not None else CollectorRegistry()
        self.settings = settings
        self._label = _Bounded(MAX_LABEL_VALUES)
        self._steps = OpenSteps()
        self._workers: list[SagaWorker] = []
        self._owned: dict[str, list[tuple[str, int]]] = {}
        self._lag_consumers: dict[str, Any] = {}
        self._lag_lock = threading.Lock()
        self._roles: set[str] = set()
        self.started = Counter("sagas_started", "Sagas started.", ["saga_type"], registry=None)
        self.finished = Counter(
            "sagas_finished", "Sagas that ended, by status.", ["saga_type", "status"], registry=None
        )
        self.parked = Counter(
            "sagas_parked",
            "Sagas parked: this worker lacks their definition version.",
            ["saga_type"],
            registry=None,
        )
        self.stuck = Counter(
            "sagas_stuck",
            "Sagas stopped by an error in their own code (payload, merge, branch), by step and "
            "error type; each waits for an operator's resume or cancel.",
            ["saga_type", "step", "error"],
            registry=None,
        )
        self.expired = Counter(
            "sagas_expired", "Finished sagas removed after retention.", ["saga_type"], registry=None
        )
        self.step_duration = Histogram(
            "sagas_step_duration_seconds",
            "From a step's entry to its completion or failure.",
            ["saga_type", "step", "result"],
            buckets=_STEP_BUCKETS,
            registry=None,
        )
        self.commands_sent = Counter(
            "sagas_commands_sent",
            "Commands sent to participants (resends included).",
            ["saga_type", "command_type"],
            registry=None,
        )
        self.timer_lateness = Histogram(
            "sagas_timer_lateness_seconds",
            "How long after its due time a durable timer fired.",
            ["saga_type"],
            buckets=_LATENESS_BUCKETS,
            registry=None,
        )
        self.transaction_duration = Histogram(
            "sagas_transaction_duration_seconds",
            "From a batch's begin to its commit or abort.",
            ["loop", "result"],
            buckets=_FAST_BUCKETS,
            registry=None,
        )
        self.inputs = Counter(
            "sagas_inputs", "Records consumed in committed transactions.", ["loop"], registry=None
        )
        self.restore_duration = Histogram(
            "sagas_restore_duration_seconds",
            "Reading a changelog partition back on assignment.",
            ["loop"],
            buckets=_RESTORE_BUCKETS,
            registry=None,
        )
        self.restored_records = Counter(
            "sagas_restored",
            "Saga snapshots (or recorded replies) read back from changelogs.",
            ["loop"],
            registry=None,
        )
        self.dead_letters = Counter(
            "sagas_dead_letters",
            "Records sent to a dead-letter topic, by the class of their reason.",
            ["loop", "reason"],
            registry=None,
        )
        self.isolated_records = Counter(
            "sagas_isolated",
            "Records isolated after they made a transaction fail.",
            ["loop"],
            registry=None,
        )
        self.handler_duration = Histogram(
            "sagas_handler_duration_seconds",
            "A participant handler's run, by its outcome.",
            ["group", "command_type", "outcome"],
            buckets=_FAST_BUCKETS,
            registry=None,
        )
        self.replayed = Counter(
            "sagas_replayed_replies",
            "Commands answered again from their recorded reply.",
            ["group", "command_type"],
            registry=None,
        )
        self._families: dict[str, tuple[Any, ...]] = {
            "worker": (self.started, self.finished, self.parked, self.stuck, self.expired,
                       self.step_duration, self.commands_sent, self.timer_lateness),
            "loop": (self.transaction_duration, self.inputs, self.restore_duration,
                     self.restored_records, self.dead_letters, self.isolated_records),
            "participant": (self.handler_duration, self.replayed),
        }  # fmt: skip
        self.registry.register(_Collector(self))

    # ------------------------------------------------------------------------- wiring

    def track(self, worker: SagaWorker) -> None:
        """Count ``worker``'s sagas in flight (by status) at each scrape."""
        self._workers.append(worker)
        self._roles.add("worker")

    def roles(self) -> set[str]:
        """What this observer's metrics are about: ``worker``, ``participant`` (a worker's
        metrics show once it tracks a worker or hears of sagas, a participant's once one
        starts with it or it hears of commands; before either, all of them show)."""
        return set(self._roles) or {"worker", "participant"}

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format (see :data:`CONTENT_TYPE`)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self) -> None:
        """Release the consumers that read lag."""
        with self._lag_lock:
            for consumer in self._lag_consumers.values():
                consumer.close()
            self._lag_consumers.clear()

    # ------------------------------------------------------------------------- observer

    def serving(self, loop: str, role: str) -> None:
        """Show the metrics of ``role`` (worker, participant) from now on."""
        self._roles.add(role)
        for counter in (self.inputs, self.isolated_records, self.restored_records):
            counter.labels(self._label("loop", loop))  # at 0 from the start

    def transaction(self, loop: str, *, committed: bool, seconds: float, inputs: int) -> None:
        """Time the transaction; count its inputs when it committed."""
        result = "committed" if committed else "aborted"
        self.transaction_duration.labels(self._label("loop", loop), result).observe(seconds)
        if committed:
            self.inputs.labels(self._label("loop", loop)).inc(inputs)

    def dead_lettered(self, loop: str, topic: str, reason: str) -> None:
        """Count by the reason's class."""
        cls = self._label("reason", reason_class(reason))
        self.dead_letters.labels(self._label("loop", loop), cls).inc()

    def isolated(self, loop: str, reason: str) -> None:
        """Count."""
        self.isolated_records.labels(self._label("loop", loop)).inc()

    def restored(self, loop: str, partition: int, *, records: int, seconds: float) -> None:
        """Time the restore; count what it read back."""
        name = self._label("loop", loop)
        self.restore_duration.labels(name).observe(seconds)
        self.restored_records.labels(name).inc(records)

    def partitions(self, loop: str, owned: Sequence[tuple[str, int]]) -> None:
        """Remember the owned partitions (their count and lag are read at scrape)."""
        self._owned[loop] = list(owned)

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        """Count starts, ends, parkings and commands; time steps."""
        self._roles.add("worker")
        st = self._label("saga_type", saga_type)
        for event in events:
            kind, body = event.type, event.body
            if kind == "started":
                self.started.labels(st).inc()
            elif kind == "finished":
                status = str(body.get("status", ""))
                self.finished.labels(st, status if status in TERMINAL else "other").inc()
            elif kind == "parked":
                self.parked.labels(st).inc()
            elif kind == "stuck":
                step = self._label("step", str(body.get("step") or "(start)"))
                error = self._label("error", str(body.get("error", "")))
                self.stuck.labels(st, step, error).inc()
            elif kind == "expired":
                self.expired.labels(st).inc()
            elif kind == "command_sent":
                command = self._label("command_type", str(body.get("command_type", "")))
                self.commands_sent.labels(st, command).inc()
            ended = self._steps.see(saga_type, event)
            if ended is not None and ended.result != "abandoned":
                labels = (st, self._label("step", ended.step), ended.result)
                self.step_duration.labels(*labels).observe(ended.seconds)

    def timer_fired(self, saga_type: str, *, lateness_ms: int) -> None:
        """Observe the lateness."""
        self._roles.add("worker")
        st = self._label("saga_type", saga_type)
        self.timer_lateness.labels(st).observe(max(0, lateness_ms) / 1000)

    def command_handled(
        self, group: str, command_type: str, *, outcome: str, seconds: float, headers: Any
    ) -> None:
        """Time the handler by outcome."""
        self._roles.add("participant")
        labels = (
            self._label("group", group),
            self._label("command_type", command_type),
            self._label("outcome", outcome),
        )
        self.handler_duration.labels(*labels).observe(seconds)

    def command_replayed(self, group: str, command_type: str) -> None:
        """Count."""
        self._roles.add("participant")
        group_, command = self._label("group", group), self._label("command_type", command_type)
        self.replayed.labels(group_, command).inc()

    # ------------------------------------------------------------------------- at scrape

    def in_flight(self) -> dict[tuple[str, str], int]:
        """Unfinished sagas held by the tracked workers, by (saga type, status): every
        status of :data:`IN_FLIGHT` of every tracked saga type, 0 when none."""
        counts: dict[tuple[str, str], int] = {}
        for worker in list(self._workers):
            for status in IN_FLIGHT:  # 0 when none: a series that is there, not absent
                counts.setdefault((worker.saga_type, status), 0)
            for store in list(worker.stores.values()):
                for _, saga in store.sagas():
                    if saga.terminal:
                        continue
                    key = (worker.saga_type, saga.status)
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def owned(self) -> dict[str, list[tuple[str, int]]]:
        """The input partitions of each loop: a tracked worker's as its stores say, others' as
        last reported."""
        owned = dict(self._owned)
        for worker in list(self._workers):
            owned[worker.name] = [(worker.topics.inbox, p) for p in sorted(worker.stores)]
        return owned

    def lag(self) -> Iterator[tuple[str, str, int, int]]:
        """(loop, topic, partition, records behind) of each owned partition."""
        if self.settings is None:
            return
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        with self._lag_lock:
            for loop, owned in self.owned().items():
                if not owned:
                    continue
                consumer = self._lag_consumers.get(loop)
                if consumer is None:
                    config = self.settings.client_config(
                        **{"group.id": loop, "enable.auto.commit": False}
                    )
                    consumer = self._lag_consumers[loop] = Consumer(config)
                tps = [TopicPartition(t, p) for t, p in owned]
                try:
                    for tp in consumer.committed(tps, timeout=5):
                        low, high = consumer.get_watermark_offsets(tp, timeout=5)
                        done = tp.offset if tp.offset >= 0 else low
                        yield loop, tp.topic, tp.partition, max(0, high - done)
                except KafkaException as exc:
                    log.debug("lag of %s not read: %s", loop, exc)


def serve_metrics(observer: PrometheusObserver, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``observer``'s metrics at ``http://host:port/metrics`` on a daemon thread; return
    the server (``shutdown()`` stops it). For processes without a query endpoint: participants.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=observer.registry)
    return server


class _Collector:
    """Reads what is only known at scrape time: sagas in flight, consumer lag."""

    def __init__(self, observer: PrometheusObserver) -> None:
        self.observer = observer

    def describe(self) -> Iterable[Metric]:
        """Nothing up front (the registry then calls :meth:`collect` only at scrape)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The metrics of the observer's roles, without ``_created`` series (the time a
        series was made says nothing to an operator and doubles the series), and the gauges,
        read now."""
        from prometheus_client.core import GaugeMetricFamily

        roles = self.observer.roles()
        for role in ("worker", "loop", "participant"):
            if role != "loop" and role not in roles:
                continue
            for metric in self.observer._families[role]:
                for family in metric.collect():
                    family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                    yield family
        if "worker" in roles:
            flight = GaugeMetricFamily(
                "sagas_in_flight",
                "Unfinished sagas this worker holds.",
                labels=["saga_type", "status"],
            )
            for (saga_type, status), n in sorted(self.observer.in_flight().items()):
                flight.add_metric([saga_type, status], n)
            yield flight
        owned = GaugeMetricFamily(
            "sagas_owned_partitions", "Input partitions this process owns.", labels=["loop"]
        )
        for loop, partitions in sorted(self.observer.owned().items()):
            owned.add_metric([loop], len(partitions))
        yield owned
        lag = GaugeMetricFamily(
            "sagas_consumer_lag_records",
            "Records in an owned input partition after the group's committed offset.",
            labels=["loop", "topic", "partition"],
        )
        for loop, topic, partition, behind in self.observer.lag():
            lag.add_metric([loop, topic, str(partition)], behind)
        yield lag
