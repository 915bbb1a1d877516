"""What ``sagas dev kafka`` runs: a local broker, or a cluster of them, for development and tests.

One broker (the default) listens on ``--port``; ``--brokers 3`` runs three KRaft nodes on ports
``P``, ``P+1``, ``P+2`` with replication factor 3 and ``min.insync.replicas=2`` by default. The
command itself is in :mod:`sagas.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path

from sagas.dev.kafka import (
    DEFAULT_KAFKA_VERSION,
    KafkaDistribution,
    LocalKafka,
    LocalKafkaCluster,
    default_cache_dir,
)
from sagas.errors import ConfigurationError

__all__ = ["Local", "describe", "local_kafka"]

Local = LocalKafka | LocalKafkaCluster


def local_kafka(
    *,
    brokers: int = 1,
    port: int = 9092,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    kafka_version: str | None = None,
    detach: bool = False,
) -> Local:
    """The broker or cluster these options name; a data folder that holds a cluster is one.

    Raises:
        ConfigurationError: the data folder holds a cluster of another size.
    """
    version = kafka_version or DEFAULT_KAFKA_VERSION
    dist = KafkaDistribution(version=version)
    if cache_dir:
        dist = KafkaDistribution(version=version, cache_dir=Path(cache_dir))
    default = "broker" if brokers == 1 else f"cluster-{brokers}"
    folder = Path(data_dir) if data_dir else default_cache_dir() / default
    layout = folder / "cluster.json"
    if layout.exists():
        stored = len(json.loads(layout.read_text())["ports"])
        if brokers not in (1, stored):
            raise ConfigurationError(
                f"{folder} holds a cluster of {stored} brokers, not {brokers}; give "
                f"--brokers {stored}, or another --data-dir"
            )
        brokers = stored
    if brokers == 1:
        return LocalKafka(data_dir=folder, port=port, distribution=dist, die_with_parent=not detach)
    return LocalKafkaCluster(
        data_dir=folder, brokers=brokers, port=port, distribution=dist, die_with_parent=not detach
    )


def describe(local: Local) -> str:
    """What runs, in words."""
    if isinstance(local, LocalKafka):
        return f"Kafka {local.distribution.version} on {local.bootstrap_servers}"
    return (
        f"a Kafka {local.distribution.version} cluster of {local.brokers} brokers on "
        f"{local.bootstrap_servers} (replication factor {local.replication_factor}, "
        f"min.insync.replicas {local.min_insync_replicas})"
    )
