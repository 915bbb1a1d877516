"""A running app for runtime tests: worker threads, simulated participants and a client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sagas.app import App
from sagas.client import SagaClient
from sagas.engine.model import SagaState
from sagas.partitioning import partition_for
from sagas.protocol import workers_topic
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.sagas_under_test import Participants

SERDE = Serde()
"""The encodings these records are read and written with."""


@dataclass
class Running:
    """What a runtime test drives."""

    app: App
    settings: KafkaSettings
    client: SagaClient
    participants: Participants
    stop: threading.Event
    thread: threading.Thread

    def wait_terminal(self, saga_type: str, saga_id: str, timeout: float = 60.0) -> SagaState:
        """The saga's state once it ended."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.client.status(saga_type, saga_id)
            if state is not None and state.terminal:
                return state
            time.sleep(0.3)
        raise AssertionError(f"saga {saga_id} did not end in {timeout}s; last state {state}")

    def wait_until(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``check()`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError("condition not reached in time")

    def shutdown(self) -> None:
        """Stop the worker and the participants."""
        self.stop.set()
        self.thread.join(60)
        self.participants.stop()
        self.client.close()


def start_runtime(app: App, settings: KafkaSettings, worker_id: str = "w1") -> Running:
    """Start a worker thread for every saga type of ``app``, the participants and a client."""
    ensure_topics(app, settings)  # before the client writes to them
    stop = threading.Event()
    exit_codes: list[int] = []

    def work() -> None:
        exit_codes.append(
            run_worker(app, settings, worker_id=worker_id, stop=stop, install_signal_handlers=False)
        )

    thread = threading.Thread(target=work, name="worker", daemon=True)
    thread.start()
    participants = Participants(settings, app.namespace)
    return Running(app, settings, SagaClient(settings, app.namespace), participants, stop, thread)


def owner_url(
    rt: Running, bootstrap: str, saga_id: str, saga_type: str = "order"
) -> tuple[str, int]:
    """The query URL of the worker that owns ``saga_id``'s partition, and the partition."""
    p = partition_for(saga_id.encode(), rt.app.partitions)
    owners = {
        k: SERDE.decode_payload(v) for k, v in read_all(bootstrap, workers_topic(rt.app.namespace))
    }
    return str(owners[f"{saga_type}/{p}".encode()]["url"]), p
