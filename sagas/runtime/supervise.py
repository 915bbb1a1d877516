"""Several worker processes from one command: one Python process uses one core.

``sagas worker --processes N`` starts N children, each a whole worker with its own worker id
(``<id>-0`` ... ``<id>-N-1``) and so its own static group membership: Kafka spreads the
partitions over them as over separate hosts. A child that dies is started again with its id
after a back-off (1 s, doubling to 30 s, back to 1 s once it has run a minute), so it takes its
partitions back at once. SIGTERM or Ctrl-C stops every child the way a single worker stops.

Children are started with the ``spawn`` method (a fresh interpreter, no Kafka client inherited
across a fork), so ``entry`` and its arguments must be importable and picklable: a child gets a
:class:`WorkerProcess` (what to run, as the command's flags said) and loads the app itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from sagas.runtime.signals import stop_on_signals

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.settings import KafkaSettings

__all__ = ["WorkerProcess", "supervise", "supervise_workers"]

log = logging.getLogger(__name__)

_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 60.0  # a child that ran this long starts its back-off afresh
_STOP_GRACE = 60.0  # seconds a stopping child has to commit and leave before it is killed


@dataclass
class _Child:
    name: str
    args: tuple[Any, ...]
    process: BaseProcess | None = None
    started: float = 0.0
    backoff: float = _FIRST_BACKOFF
    due: float = field(default=0.0)  # when to start it (again)


def supervise(
    entry: Callable[..., Any],
    children: Sequence[tuple[str, tuple[Any, ...]]],
    stop: threading.Event,
) -> int:
    """Run ``entry(*args)`` in one process per ``(name, args)`` until ``stop`` is set, starting
    a child that exits again after a back-off.

    Returns 0 when every child exited 0 after the stop, else 1.
    """
    context = multiprocessing.get_context("spawn")
    running = [_Child(name, args) for name, args in children]
    while not stop.is_set():
        now = time.monotonic()
        for child in running:
            process = child.process
            if process is not None and process.exitcode is not None:
                ran = now - child.started
                if ran > _HEALTHY_AFTER:
                    child.backoff = _FIRST_BACKOFF
                log.error(
                    "worker process %s exited with code %s after %.1f s; starting it again in "
                    "%.0f s",
                    child.name,
                    process.exitcode,
                    ran,
                    child.backoff,
                )
                child.process = None
                child.due = now + child.backoff
                child.backoff = min(child.backoff * 2, _MAX_BACKOFF)
            if child.process is None and now >= child.due:
                child.process = context.Process(target=entry, args=child.args, name=child.name)
                child.process.start()
                child.started = now
                log.info("worker process %s started (pid %s)", child.name, child.process.pid)
        stop.wait(0.2)
    return _stop_all(running)


def _stop_all(children: list[_Child]) -> int:
    """SIGTERM every child, wait for them to finish their transactions, kill the late ones."""
    alive = [c.process for c in children if c.process is not None and c.process.is_alive()]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + _STOP_GRACE
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.error("worker process %s did not stop in %.0f s; killed", process.name, _STOP_GRACE)
            process.kill()
            process.join()
    codes = [c.process.exitcode for c in children if c.process is not None]
    return 0 if all(code == 0 for code in codes) else 1


@dataclass(frozen=True)
class WorkerProcess:
    """What one ``sagas worker`` process runs (picklable: ``--processes`` sends it to each
    child)."""

    target: str
    namespace: str | None
    app_dir: str | None
    settings: KafkaSettings
    worker_id: str | None
    query_host: str | None
    query_port: int
    advertise_url: str | None
    metrics: bool
    metrics_port: int | None
    static_membership: bool
    log_level: str
    log_format: str

    def run(self, app: App | None = None) -> int:
        """Run the worker in this process until SIGTERM or Ctrl-C."""
        from sagas.observe.logs import SagaLogObserver
        from sagas.runtime.process import run_worker
        from sagas.runtime.target import load_app

        return run_worker(
            app or load_app(self.target, self.namespace, self.app_dir),
            self.settings,
            worker_id=self.worker_id,
            query_host=self.query_host,
            query_port=self.query_port,
            advertise_url=self.advertise_url,
            observer=SagaLogObserver(),
            metrics=self.metrics,
            metrics_port=self.metrics_port,
            static_membership=self.static_membership,
        )

    def child(self, index: int) -> WorkerProcess:
        """The ``index``-th of several: its own worker id, and fixed ports counted up."""
        from sagas.runtime.process import default_worker_id

        def nth(port: int | None) -> int | None:
            return port + index if port else port

        return replace(
            self,
            worker_id=f"{self.worker_id or default_worker_id()}-{index}",
            query_port=nth(self.query_port) or 0,
            metrics_port=nth(self.metrics_port),
        )


def _run_worker_child(process: WorkerProcess) -> None:
    """A child of :func:`supervise_workers`: logging as the parent's, then the worker; exits
    with its code."""
    from sagas.observe.logs import configure_logging

    configure_logging(process.log_level, process.log_format, instance=process.worker_id)
    sys.exit(process.run())


def supervise_workers(process: WorkerProcess, count: int) -> int:
    """Run ``count`` children of ``process`` (see :meth:`WorkerProcess.child`) until SIGTERM or
    Ctrl-C; return as :func:`supervise`."""
    stop = threading.Event()
    stop_on_signals(stop, "stopping every worker process")
    children = [(f"worker-{i}", (process.child(i),)) for i in range(count)]
    return supervise(_run_worker_child, children, stop)
