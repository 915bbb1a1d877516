"""The pytest plugin: test your sagas in memory, or on a real Kafka broker, with no set-up.

Installed with the package (entry point ``pytest11``), it gives every test suite these fixtures:

* ``sagas_env``: a factory of :class:`~sagas.testing.SagaTestEnv` (in memory, virtual clock).
* ``sagas_broker`` (one per test run): a real broker. ``KAFKA_BOOTSTRAP_SERVERS`` when set; else
  a testcontainers Kafka when a Docker engine answers; else the project's own broker from Maven
  Central jars (:mod:`sagas.dev.kafka`: Java 17 and Maven). Without any, tests that use it are
  skipped, or fail when ``CI`` is set.
* ``sagas_settings``: :class:`~sagas.settings.KafkaSettings` for that broker.
* ``sagas_namespace``: a namespace no other test uses.
* ``sagas_worker``: ``sagas_worker(app)`` runs a worker for the app in the background until the
  test ends; ``sagas_participant``: ``sagas_participant(participant)`` runs one (on the test's
  broker, whatever its settings said); ``sagas_client``: ``sagas_client(namespace)`` a
  :class:`~sagas.client.SagaClient`, closed after the test.

Nothing here imports Kafka until a broker fixture is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sagas.errors import SagaError

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.client import SagaClient
    from sagas.dsl.program import Program
    from sagas.dsl.saga import Saga
    from sagas.participants import Participant
    from sagas.runtime.process import WorkerHandle
    from sagas.settings import KafkaSettings
    from sagas.testing.env import SagaTestEnv

__all__ = ["Broker"]

KAFKA_IMAGE = "apache/kafka:4.1.1"


class Broker:
    """The test run's broker: its address, and, for the local one, its control."""

    def __init__(self, bootstrap_servers: str, local: Any = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.local = local

    def restart(self) -> None:
        """Stop and start the broker on the same data (the local broker only: else skip)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop the local broker; it keeps its data."""
        self._local().stop()

    def start(self) -> None:
        """Start the local broker again on its data."""
        self._local().start()

    def _local(self) -> Any:
        if self.local is None:
            pytest.skip("stopping and starting needs the local broker, not an external one")
        return self.local


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.fixture(scope="session")
def sagas_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real broker for the test run (see the module docstring for where it comes from)."""
    if address := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(address)
        return
    try:
        if _docker_engine_answers():
            from testcontainers.kafka import KafkaContainer

            with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
                yield Broker(container.get_bootstrap_server())
            return
        from sagas.dev.kafka import LocalKafka, free_port

        broker = LocalKafka(data_dir=Path(tmp_path_factory.mktemp("kafka")), port=free_port())
        broker.start()
    except (SagaError, ImportError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Kafka broker for the tests: {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker (set KAFKA_BOOTSTRAP_SERVERS or install Java+Maven): {exc}")
    try:
        yield Broker(broker.bootstrap_servers, broker)
    finally:
        broker.stop()


@pytest.fixture
def sagas_settings(sagas_broker: Broker) -> KafkaSettings:
    """Kafka settings for the test run's broker."""
    from sagas.settings import KafkaSettings

    return KafkaSettings(sagas_broker.bootstrap_servers)


@pytest.fixture
def sagas_namespace() -> str:
    """A namespace (topic prefix) no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sagas_env() -> Callable[..., SagaTestEnv]:
    """``sagas_env(order_saga, ...)``: an in-memory environment with these sagas."""
    from sagas.testing.env import SagaTestEnv

    def make(*sagas: Saga[Any] | Program) -> SagaTestEnv:
        return SagaTestEnv(*sagas)

    return make


@pytest.fixture
def sagas_worker(sagas_settings: KafkaSettings) -> Iterator[Callable[[App], WorkerHandle]]:
    """``sagas_worker(app)``: a worker for ``app`` on the test's broker, in the background
    (its topics created first), stopped when the test ends."""
    from sagas.runtime.process import Worker

    handles: list[WorkerHandle] = []

    def run(app: App, worker_id: str | None = None) -> WorkerHandle:
        handle = Worker(app, sagas_settings, worker_id=worker_id).start()
        handles.append(handle)
        return handle

    yield run
    for handle in reversed(handles):
        handle.stop()


@pytest.fixture
def sagas_participant(
    sagas_settings: KafkaSettings,
) -> Iterator[Callable[[Participant], Participant]]:
    """``sagas_participant(participant)``: run it on the test's broker (whatever settings it was
    made with), creating its command topics, until the test ends."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def run(participant: Participant) -> Participant:
        participant.settings = sagas_settings
        participant.create_topics = True
        running.append(participant.start())
        return participant

    yield run
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(30)


@pytest.fixture
def sagas_client(sagas_settings: KafkaSettings) -> Iterator[Callable[[str], SagaClient]]:
    """``sagas_client(namespace)``: a client on the test's broker, closed after the test."""
    from sagas.client import SagaClient

    clients: list[SagaClient] = []

    def make(namespace: str) -> SagaClient:
        client = SagaClient(sagas_settings, namespace)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
