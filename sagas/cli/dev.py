"""``sagas dev kafka``: a local broker, or a cluster of them, for development and tests.

One broker (the default) listens on ``--port``; ``--brokers 3`` runs three KRaft nodes on ports
``P``, ``P+1``, ``P+2`` with replication factor 3 and ``min.insync.replicas=2`` by default.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import click

from sagas.dev.cluster import LocalKafkaCluster
from sagas.dev.kafka import DEFAULT_KAFKA_VERSION, KafkaDistribution, LocalKafka, default_cache_dir
from sagas.errors import ConfigurationError
from sagas.runtime.signals import stop_on_signals

__all__ = ["Local", "describe", "dev", "local_kafka"]

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


@click.group()
def dev() -> None:
    """Developer tools."""


@dev.command("kafka")
@click.argument(
    "action", required=False, default="start", type=click.Choice(["start", "stop", "status"])
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="how many KRaft nodes (3 gives replication factor 3, min.insync.replicas 2)",
)
@click.option(
    "--port",
    type=int,
    default=9092,
    envvar="SAGAS_KAFKA_PORT",
    show_default=True,
    help="client port on 127.0.0.1, the first node's in a cluster (env SAGAS_KAFKA_PORT)",
)
@click.option("--data-dir", help="data folder (default: <cache>/broker, or <cache>/cluster-N)")
@click.option("--cache-dir", help="jar cache (default: $KAFKA_SAGAS_CACHE or ~/.cache/kafka-sagas)")
@click.option("--kafka-version", help="Apache Kafka 4.x release")
@click.option("--detach", is_flag=True, help="return once the broker is ready and leave it running")
def dev_kafka(
    *,
    action: str,
    brokers: int,
    port: int,
    data_dir: str | None,
    cache_dir: str | None,
    kafka_version: str | None,
    detach: bool,
) -> int:
    """A local Kafka broker or cluster (jars from Maven, no Docker)."""
    local = local_kafka(
        brokers=brokers,
        port=port,
        data_dir=data_dir,
        cache_dir=cache_dir,
        kafka_version=kafka_version,
        detach=detach or action != "start",
    )
    if action == "stop":
        if not local.is_running():
            click.echo(f"no broker runs from {local.data_dir}")
            return 0
        local.stop()
        click.echo("Kafka stopped")
        return 0
    if action == "status":
        running = local.is_running()
        click.echo(f"{'running' if running else 'stopped'}: {local.data_dir}")
        return 0 if running else 1
    if local.is_running():
        click.echo(f"a broker already runs from {local.data_dir}")
        return 0
    click.echo(f"starting {describe(local)}, data in {local.data_dir}")
    address = local.start()
    click.echo(f"Kafka is ready: KAFKA_BOOTSTRAP_SERVERS={address}")
    if detach:
        return 0
    stop = threading.Event()
    stop_on_signals(stop, "stopping the broker")
    while not stop.is_set() and local.is_running():
        stop.wait(0.5)
    click.echo("stopping Kafka")
    local.stop()
    return 0
