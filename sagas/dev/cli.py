"""``sagas dev kafka``: a local broker, or a cluster of them, for development and tests.

::

    sagas dev kafka [start] [--brokers N] [--port P] [--data-dir D] [--detach]
    sagas dev kafka stop|status [--brokers N] [--data-dir D]

One broker (the default) listens on ``--port``; ``--brokers 3`` runs three KRaft nodes on ports
``P``, ``P+1``, ``P+2`` with replication factor 3 and ``min.insync.replicas=2`` by default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from sagas.dev.kafka import (
    DEFAULT_KAFKA_VERSION,
    KafkaDistribution,
    LocalKafka,
    LocalKafkaCluster,
    default_cache_dir,
)
from sagas.errors import ConfigurationError

__all__ = ["add_kafka_command", "local_kafka"]

Local = LocalKafka | LocalKafkaCluster


def _brokers(value: str) -> int:
    """A ``--brokers`` value: a count from 1 to 9."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 9:
        raise argparse.ArgumentTypeError(f"give a count of brokers from 1 to 9, not {value!r}")
    return count


def add_kafka_command(dev_commands: Any) -> argparse.ArgumentParser:
    """Add ``kafka`` to the ``sagas dev`` subcommands (an argparse subparsers action)."""
    kafka: argparse.ArgumentParser = dev_commands.add_parser(
        "kafka", help="a local Kafka broker or cluster (jars from Maven, no Docker)"
    )
    kafka.add_argument("action", nargs="?", default="start", choices=["start", "stop", "status"])
    kafka.add_argument(
        "--brokers",
        type=_brokers,
        default=1,
        help="how many KRaft nodes (default 1; 3 gives replication factor 3, min.insync=2)",
    )
    kafka.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SAGAS_KAFKA_PORT", "9092")),
        help="client port on 127.0.0.1, the first node's in a cluster (default 9092, env "
        "SAGAS_KAFKA_PORT)",
    )
    kafka.add_argument(
        "--data-dir", help="data folder (default: <cache>/broker, or <cache>/cluster-N)"
    )
    kafka.add_argument(
        "--cache-dir", help="jar cache (default: $KAFKA_SAGAS_CACHE or ~/.cache/kafka-sagas)"
    )
    kafka.add_argument("--kafka-version", default=None, help="Apache Kafka 4.x release")
    kafka.add_argument(
        "--detach", action="store_true", help="return once the broker is ready and leave it running"
    )
    kafka.set_defaults(handler={"start": _start, "stop": _stop, "status": _status})
    return kafka


def local_kafka(args: argparse.Namespace, *, detach: bool) -> Local:
    """The broker or cluster the arguments name; a data folder that holds a cluster is one."""
    version = args.kafka_version or DEFAULT_KAFKA_VERSION
    dist = KafkaDistribution(version=version)
    if args.cache_dir:
        dist = KafkaDistribution(version=version, cache_dir=Path(args.cache_dir))
    brokers: int = args.brokers
    default = "broker" if brokers == 1 else f"cluster-{brokers}"
    data_dir = Path(args.data_dir) if args.data_dir else default_cache_dir() / default
    layout = data_dir / "cluster.json"
    if layout.exists():
        stored = len(json.loads(layout.read_text())["ports"])
        if brokers not in (1, stored):
            raise ConfigurationError(
                f"{data_dir} holds a cluster of {stored} brokers, not {brokers}; give "
                f"--brokers {stored}, or another --data-dir"
            )
        brokers = stored
    if brokers == 1:
        return LocalKafka(
            data_dir=data_dir, port=args.port, distribution=dist, die_with_parent=not detach
        )
    return LocalKafkaCluster(
        data_dir=data_dir,
        brokers=brokers,
        port=args.port,
        distribution=dist,
        die_with_parent=not detach,
    )


def _describe(local: Local) -> str:
    if isinstance(local, LocalKafka):
        return f"Kafka {local.distribution.version} on {local.bootstrap_servers}"
    return (
        f"a Kafka {local.distribution.version} cluster of {local.brokers} brokers on "
        f"{local.bootstrap_servers} (replication factor {local.replication_factor}, "
        f"min.insync.replicas {local.min_insync_replicas})"
    )


def _start(args: argparse.Namespace) -> int:
    local = local_kafka(args, detach=args.detach)
    if local.is_running():
        print(f"a broker already runs from {local.data_dir}")
        return 0
    print(f"starting {_describe(local)}, data in {local.data_dir}", flush=True)
    address = local.start()
    print(f"Kafka is ready: KAFKA_BOOTSTRAP_SERVERS={address}", flush=True)
    if args.detach:
        return 0

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and local.is_running():
        time.sleep(0.5)
    print("stopping Kafka", flush=True)
    local.stop()
    return 0


def _stop(args: argparse.Namespace) -> int:
    local = local_kafka(args, detach=True)
    if not local.is_running():
        print(f"no broker runs from {local.data_dir}")
        return 0
    local.stop()
    print("Kafka stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    local = local_kafka(args, detach=True)
    running = local.is_running()
    print(f"{'running' if running else 'stopped'}: {local.data_dir}")
    return 0 if running else 1
