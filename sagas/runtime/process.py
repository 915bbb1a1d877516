"""Run the sagas of an app: one :class:`SagaWorker` thread per saga type and the query endpoint.

Three forms, for three kinds of host:

- ``sagas worker myapp:app`` (:func:`run_worker`): a process of its own, stopped by SIGTERM or
  Ctrl-C.
- ``handle = Worker(app, settings).start()`` then ``handle.stop()``: background threads inside a
  service that has its own main loop.
- ``await Worker(app, settings).serve()``: an asyncio task; cancelling it stops the worker.

Every form stops the same way: the transaction in flight commits, then the worker leaves its
groups.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sagas.app import App
from sagas.errors import ConfigurationError
from sagas.protocol import workers_topic
from sagas.runtime.definitions import check_definitions
from sagas.runtime.observe import Observer, Observers
from sagas.runtime.query import QueryServer
from sagas.runtime.signals import stop_on_signals
from sagas.runtime.topics import connect, ensure_topics
from sagas.runtime.worker import SagaWorker
from sagas.settings import KafkaSettings

if TYPE_CHECKING:
    from sagas.observe.metrics import PrometheusObserver

__all__ = ["Worker", "WorkerHandle", "default_worker_id", "run_worker"]

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """The host name: stable across restarts of the one worker a host usually runs."""
    return socket.gethostname()


@dataclass
class WorkerHandle:
    """A worker running on background threads (from :meth:`Worker.start`)."""

    url: str | None
    """Where the query endpoint is reached (None when it is off)."""
    metrics_url: str | None = field(default=None, init=False)
    """Where Prometheus scrapes this worker (None without metrics)."""
    _stop: threading.Event
    _threads: list[threading.Thread]
    _failures: list[BaseException]
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        """True while any saga type's loop runs."""
        return not self._done.is_set()

    @property
    def failure(self) -> BaseException | None:
        """The error a saga type's loop died of (the others then stopped too), or None."""
        return self._failures[0] if self._failures else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped (by :meth:`stop` or an error); True once it has."""
        return self._done.wait(timeout)

    def stop(self, timeout: float | None = 60.0) -> int:
        """Finish the batch in flight (its transaction commits), leave the groups, and return
        0, or 1 when a loop died of an error (logged; see :attr:`failure`).

        Raises:
            TimeoutError: the worker did not stop within ``timeout`` seconds.
        """
        self._stop.set()
        if not self._done.wait(timeout):
            raise TimeoutError(f"the worker did not stop within {timeout} s")
        return 1 if self._failures else 0


class Worker:
    """Runs every saga type of ``app`` on the Kafka cluster of ``settings``.

    Args:
        app: the sagas to run.
        settings: Kafka settings (default: from the environment, see
            :mod:`sagas.settings`).
        worker_id: stable per worker process across restarts (default: the host name); two live
            workers must not share one.
        query_host: the interface of the query endpoint clients ask for ``status`` and ``list``
            (see :mod:`sagas.runtime.query`); None turns it off.
        query_port: its port (0: any free one).
        advertise_url: the URL clients reach the endpoint at (default ``http://<host>:<port>``).
        observer: told of every saga type's transactions, events and restores
            (:mod:`sagas.runtime.observe`; metrics, traces, logs).
        metrics: count Prometheus metrics (:mod:`sagas.observe.metrics`, the ``observe``
            extra) and serve them at ``/metrics`` of the query endpoint.
        metrics_port: serve them at ``http://<metrics_host>:<port>/metrics`` instead (0: any
            free port; implies ``metrics``).
        metrics_host: the interface of that port.
        static_membership: each saga type's consumer is a static group member with the worker
            id (the default), so a worker restarted with its id takes its partitions back at
            once; ``False``: dynamic members, whose partitions come back after the session
            timeout.

    Raises:
        ConfigurationError: ``query_port`` is not a port number, or metrics are asked for
            without prometheus-client.
    """

    def __init__(
        self,
        app: App,
        settings: KafkaSettings | None = None,
        *,
        worker_id: str | None = None,
        query_host: str | None = "127.0.0.1",
        query_port: int = 0,
        advertise_url: str | None = None,
        observer: Observer | None = None,
        metrics: bool = False,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        static_membership: bool = True,
    ) -> None:
        if not 0 <= query_port <= 65535:
            raise ConfigurationError(
                f"query port {query_port} is not a port; give 1-65535, or 0 for any free one "
                "(--query-port, SAGAS_QUERY_PORT)"
            )
        self.app = app
        self.settings = settings if settings is not None else KafkaSettings()
        self.worker_id = worker_id or default_worker_id()
        self.query_host = query_host
        self.query_port = query_port
        self.advertise_url = advertise_url
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.static_membership = static_membership
        self.observer = observer
        self.metrics: PrometheusObserver | None = None
        if metrics or metrics_port is not None:
            from sagas.observe.metrics import PrometheusObserver

            self.metrics = PrometheusObserver(settings=self.settings)
            self.observer = Observers([self.metrics, *([observer] if observer else [])])

    @contextmanager
    def _listening(self) -> Iterator[None]:
        """Translate the errors of listening on the query host and port."""
        where = f"{self.query_host}:{self.query_port}"
        try:
            yield
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"the query port {where} is in use; pick another, or 0 for any free one "
                    "(--query-port, SAGAS_QUERY_PORT)"
                ) from exc
            raise ConfigurationError(
                f"cannot listen on query host {self.query_host!r} ({exc.strerror or exc}); give "
                "an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all (--query-host, "
                "SAGAS_QUERY_HOST)"
            ) from exc

    def _check_endpoint(self) -> None:
        """Fail before touching Kafka when the query endpoint cannot listen."""
        if self.query_host is not None:
            with self._listening(), socket.create_server((self.query_host, self.query_port)):
                pass

    def _query_server(self) -> QueryServer | None:
        if self.query_host is None:
            return None
        with self._listening():
            return QueryServer(
                self.settings,
                workers_topic(self.app.namespace),
                self.worker_id,
                host=self.query_host,
                port=self.query_port,
                advertise=self.advertise_url,
                serde=self.app.serde,
            )

    def _serve_metrics(self, workers: list[SagaWorker]) -> Any:
        if self.metrics is None:
            return None
        for worker in workers:
            self.metrics.track(worker)
        if self.metrics_port is None:
            return None
        from sagas.observe.metrics import serve_metrics

        try:
            return serve_metrics(self.metrics, self.metrics_port, self.metrics_host)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.metrics_host}:{self.metrics_port} "
                f"({exc.strerror or exc}); pick a free port, or 0 for any (--metrics-port)"
            ) from exc

    def start(self) -> WorkerHandle:
        """Check the settings, create or check the topics, then run on background threads.

        Raises:
            ConfigurationError: the query endpoint cannot listen, or a topic layout is wrong.
            BrokerError: no broker answers, or it refused.
        """
        self._check_endpoint()
        ensure_topics(self.app, self.settings)  # a broker answers, in connect_timeout seconds
        check_definitions(self.app, self.settings, connect(self.settings), self.worker_id)
        workers = [
            SagaWorker(
                self.app,
                t,
                self.settings,
                worker_id=self.worker_id,
                observer=self.observer,
                static_membership=self.static_membership,
            )
            for t in self.app.saga_types
        ]
        metrics_server = self._serve_metrics(workers)
        query = self._query_server()
        stop = threading.Event()
        failures: list[BaseException] = []
        threads: list[threading.Thread] = []
        handle = WorkerHandle(None if query is None else query.url, stop, threads, failures)
        if metrics_server is not None:
            host, port = metrics_server.server_address[:2]
            handle.metrics_url = f"http://{host}:{port}/metrics"
        elif query is not None and self.metrics is not None:
            query.metrics = self.metrics.exposition
            handle.metrics_url = f"{query.url}/metrics"
        if handle.metrics_url is not None:
            log.info("metrics at %s", handle.metrics_url)

        def run(worker: SagaWorker) -> None:
            try:
                worker.run(stop)
            except BaseException as exc:
                log.exception("worker of saga type %s stopped on an error", worker.saga_type)
                failures.append(exc)
                stop.set()

        def watch() -> None:
            for thread in threads:
                thread.join()
            if query is not None:
                query.close()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if self.metrics is not None:
                self.metrics.close()
            handle._done.set()

        for worker in workers:
            if query is not None:
                query.register(worker)
            threads.append(
                threading.Thread(
                    target=run, args=(worker,), name=f"sagas-{worker.saga_type}", daemon=True
                )
            )
        if query is not None:
            query.start()
        for thread in threads:
            thread.start()
        threading.Thread(target=watch, name="sagas-worker", daemon=True).start()
        log.info(
            "worker %s runs %s on %s",
            self.worker_id,
            self.app.saga_types,
            self.settings.bootstrap_servers,
        )
        return handle

    def run(self, stop: threading.Event) -> int:
        """Run in this thread until ``stop`` is set; return what :meth:`WorkerHandle.stop` does.

        Raises:
            ConfigurationError: as :meth:`start`.
            BrokerError: as :meth:`start`.
        """
        handle = self.start()
        while not handle.wait(0.2):
            if stop.is_set():
                break
        return handle.stop(timeout=None)

    async def serve(self) -> None:
        """Run as an asyncio task until cancelled; a cancel finishes the batch in flight (its
        transaction commits) before the task ends.

        Raises:
            ConfigurationError: as :meth:`start`.
            BrokerError: as :meth:`start`.
            Exception: the error a saga type's loop died of.
        """
        handle = await asyncio.to_thread(self.start)
        try:
            await asyncio.to_thread(handle.wait)
        finally:
            await asyncio.shield(asyncio.to_thread(handle.stop, None))
        if handle.failure is not None:
            raise handle.failure


def run_worker(
    app: App,
    settings: KafkaSettings,
    *,
    worker_id: str | None = None,
    stop: threading.Event | None = None,
    install_signal_handlers: bool = True,
    query_host: str | None = "127.0.0.1",
    query_port: int = 0,
    advertise_url: str | None = None,
    observer: Observer | None = None,
    metrics: bool = False,
    metrics_port: int | None = None,
    static_membership: bool = True,
) -> int:
    """Create or check the topics, then run every saga type of ``app`` until stopped: by
    ``stop``, or by SIGTERM or Ctrl-C when ``install_signal_handlers``.

    The query endpoint (:mod:`sagas.runtime.query`) listens on ``query_host:query_port`` and is
    advertised as ``advertise_url``; ``query_host=None`` turns it off (clients then read the state
    topic, which is slow on big ones). ``observer``, ``metrics``, ``metrics_port`` and
    ``static_membership``: see :class:`Worker`.

    Returns 0 after a clean stop (the transaction in flight committed, the group left), 1 when a
    saga type's loop died of an error (logged).
    """
    stop = stop or threading.Event()
    worker = Worker(
        app,
        settings,
        worker_id=worker_id,
        query_host=query_host,
        query_port=query_port,
        advertise_url=advertise_url,
        observer=observer,
        metrics=metrics,
        metrics_port=metrics_port,
        metrics_host=query_host or "127.0.0.1",
        static_membership=static_membership,
    )
    if install_signal_handlers:
        stop_on_signals(stop, "finishing the transaction in flight, then leaving")
    return worker.run(stop)
