"""A worker process: one :class:`SagaWorker` thread per saga type, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType

from sagas.app import App, workers_topic
from sagas.runtime.config import KafkaSettings
from sagas.runtime.query import QueryServer
from sagas.runtime.topics import ensure_topics
from sagas.runtime.worker import SagaWorker

__all__ = ["default_worker_id", "run_worker"]

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """The host name: stable across restarts of the one worker a host usually runs."""
    return socket.gethostname()


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
) -> int:
    """Create or check the topics, then run every saga type of ``app`` until stopped.

    The query endpoint (:mod:`sagas.runtime.query`) listens on ``query_host:query_port`` and is
    advertised as ``advertise_url``; ``query_host=None`` turns it off (clients then read the state
    topic, which is slow on big ones).

    Returns 0 after a clean stop (the transaction in flight committed, the group left), 1 when a
    saga type's loop died of an error (logged).
    """
    stop = stop or threading.Event()
    wid = worker_id or default_worker_id()
    ensure_topics(app, settings)
    if install_signal_handlers:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: finishing the transaction in flight, then leaving", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    failures: list[BaseException] = []
    query = None
    if query_host is not None:
        query = QueryServer(
            settings,
            workers_topic(app.namespace),
            wid,
            host=query_host,
            port=query_port,
            advertise=advertise_url,
        )
        query.start()
    workers = [SagaWorker(app, t, settings, worker_id=wid) for t in app.saga_types]
    for worker in workers:
        if query is not None:
            query.register(worker)

    def run(worker: SagaWorker) -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            log.exception("worker of saga type %s stopped on an error", worker.saga_type)
            failures.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=run, args=(w,), name=f"sagas-{w.saga_type}", daemon=True)
        for w in workers
    ]
    for thread in threads:
        thread.start()
    log.info("worker %s runs %s on %s", wid, app.saga_types, settings.bootstrap_servers)
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
    finally:
        if query is not None:
            query.close()
    return 1 if failures else 0
