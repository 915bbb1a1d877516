"""Test-wide fixtures: one real Kafka broker per session, unique names per test.

The broker comes from, in this order: ``KAFKA_BOOTSTRAP_SERVERS`` when set; a testcontainers Kafka
when a Docker engine answers; else a local broker started from Maven Central jars
(:mod:`sagas.dev.kafka`). Tests that need it are marked ``kafka``. Without a broker they are skipped
on a laptop, but when ``CI`` is set a broker that cannot start fails the run.

Tests that stop or kill brokers use ``kafka_cluster``: three local KRaft nodes of their own
(:class:`sagas.dev.cluster.LocalKafkaCluster`), started once per session and whole again after each
test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagas.errors import SagaError


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


class _Broker:
    """What a test knows of the session's broker: its address, and (when local) its control."""

    def __init__(self, bootstrap: str, local: object | None = None) -> None:
        self.bootstrap_servers = bootstrap
        self.local = local

    def restart(self) -> None:
        """Stop and start the broker on the same data (local broker only)."""
        from sagas.dev.kafka import LocalKafka

        if not isinstance(self.local, LocalKafka):
            pytest.skip("restarting needs the local broker, not an external one")
        self.local.stop()
        self.local.start()

    def stop(self) -> None:
        """Stop the local broker (it keeps its data)."""
        from sagas.dev.kafka import LocalKafka

        if not isinstance(self.local, LocalKafka):
            pytest.skip("stopping needs the local broker, not an external one")
        self.local.stop()

    def start(self) -> None:
        """Start the local broker again on its data."""
        from sagas.dev.kafka import LocalKafka

        assert isinstance(self.local, LocalKafka)
        self.local.start()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Broker]:
    """The session's broker; see the module docstring for where it comes from."""
    if address := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield _Broker(address)
        return
    try:
        if _docker_engine_answers():
            from testcontainers.kafka import KafkaContainer

            with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
                yield _Broker(container.get_bootstrap_server())
            return
        from sagas.dev.kafka import LocalKafka, free_port

        broker = LocalKafka(data_dir=Path(tmp_path_factory.mktemp("kafka")), port=free_port())
        broker.start()
    except SagaError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Kafka broker for the tests: {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker (set KAFKA_BOOTSTRAP_SERVERS or install Java+Maven): {exc}")
    try:
        yield _Broker(broker.bootstrap_servers, broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def _cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from sagas.dev.cluster import LocalKafkaCluster

    cluster = LocalKafkaCluster(Path(tmp_path_factory.mktemp("cluster")), brokers=3, heap="384m")
    try:
        cluster.start()
    except SagaError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no local Kafka cluster for the tests: {exc}", pytrace=False)
        pytest.skip(f"no local Kafka cluster (install Java+Maven): {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kafka_cluster(_cluster_session: Any) -> Iterator[Any]:
    """Three local KRaft nodes (a :class:`sagas.dev.cluster.LocalKafkaCluster`) that the test may
    stop and kill; every node runs again when the test ends."""
    yield _cluster_session
    _cluster_session.start()


@pytest.fixture
def bootstrap(kafka: _Broker) -> str:
    """The session broker's bootstrap address."""
    return kafka.bootstrap_servers


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for topics, groups and transactional ids."""
    return f"t{uuid.uuid4().hex[:12]}"
