"""The saga worker beside a Faust app: a Faust service that starts and stops it.

The worker keeps its own transactional confluent-kafka loops, on threads
(:func:`sagas.runtime.process.run_worker`); Faust's event loop only starts it, watches it and
asks it to stop, so one process deploys both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from mode import Service

from sagas.app import App
from sagas.errors import SagaError
from sagas.runtime.process import run_worker
from sagas.settings import KafkaSettings

__all__ = ["SagaWorkerService"]

log = logging.getLogger(__name__)


class SagaWorkerService(Service):
    """Runs every saga type of ``app`` while the service runs.

    Add it to a Faust app with :meth:`attach`: it then starts before the app's agents and stops
    after them. When the worker stops on an error
    the service crashes, which stops the Faust worker (exit code 1).

    Args:
        app: the sagas app (its saga types and namespace).
        settings: Kafka settings of the worker's own clients.
        **options: passed to :func:`~sagas.runtime.process.run_worker` (``worker_id``,
            ``query_host``, ``query_port``, ``advertise_url``).
    """

    def __init__(self, app: App, settings: KafkaSettings, **options: Any) -> None:
        super().__init__()
        self.sagas_app = app
        self.settings = settings
        self.options = options
        self.stop_event = threading.Event()
        self.exit_code: int | None = None
        self._thread: threading.Thread | None = None

    def attach(self, faust_app: Any) -> SagaWorkerService:
        """Start and stop with ``faust_app`` (a dependency of the Faust app)."""
        faust_app.add_dependency(self)
        return self

    async def on_start(self) -> None:
        """Start the worker thread."""
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="sagas-worker", daemon=True)
        self._thread.start()
        self.add_future(self._watch())

    def _run(self) -> None:
        try:
            self.exit_code = run_worker(
                self.sagas_app,
                self.settings,
                stop=self.stop_event,
                install_signal_handlers=False,
                **self.options,
            )
        except BaseException:
            log.exception("the saga worker did not start")
            self.exit_code = 1

    async def _watch(self) -> None:
        thread = self._thread
        while thread is not None and thread.is_alive():
            await asyncio.sleep(0.2)
        if not self.stop_event.is_set():  # it stopped by itself: an error
            await self.crash(SagaError(f"the saga worker stopped (exit code {self.exit_code})"))

    async def on_stop(self) -> None:
        """Ask the worker to finish its transactions in flight and leave; wait for it."""
        self.stop_event.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)
            if self._thread.is_alive():
                log.error("the saga worker did not stop within 60 s")
            self._thread = None
