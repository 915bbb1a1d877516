"""Test-wide fixtures: one real Kafka broker per session, unique names per test.

The broker is the one the package's pytest plugin gives every user (``sagas_broker``, see
:mod:`sagas.testing.pytest_plugin`): ``KAFKA_BOOTSTRAP_SERVERS`` when set; a testcontainers Kafka
when a Docker engine answers; else a local broker started from Maven Central jars
(:mod:`sagas.dev.kafka`). Tests that need it are marked ``kafka``. Without a broker they are skipped
on a laptop, but when ``CI`` is set a broker that cannot start fails the run.

Tests that stop or kill brokers use ``kafka_cluster``: three local KRaft nodes of their own
(:class:`sagas.dev.cluster.LocalKafkaCluster`), started once per session and whole again after each
test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagas.errors import SagaError
from sagas.testing.pytest_plugin import Broker


@pytest.fixture(scope="session")
def kafka(sagas_broker: Broker) -> Broker:
    """The session's broker: the plugin's (:mod:`sagas.testing.pytest_plugin`), as users get it."""
    return sagas_broker


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
def bootstrap(kafka: Broker) -> str:
    """The session broker's bootstrap address."""
    return kafka.bootstrap_servers


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for topics, groups and transactional ids."""
    return f"t{uuid.uuid4().hex[:12]}"
