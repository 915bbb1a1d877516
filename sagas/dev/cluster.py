"""Several local KRaft nodes in one quorum, for tests that stop, kill and restart single brokers
and see what users see on a real cluster (each node a :class:`~sagas.dev.kafka.LocalKafka`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from sagas.dev.kafka import (
    _COORDINATOR_PARTITIONS,
    KafkaDistribution,
    LocalKafka,
    _terminate,
    free_port,
)
from sagas.errors import BrokerUnavailableError, ConfigurationError

__all__ = ["LocalKafkaCluster", "coordinator_partition", "java_string_hash"]
_CLUSTER_FILE = "cluster.json"


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` of ``text`` (over UTF-16 code units, 32-bit signed)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__consumer_offsets`` or ``__transaction_state`` that holds ``key``
    (a group id or a transactional id): the broker leading it is that key's coordinator."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


@dataclass
class LocalKafkaCluster:
    """Several KRaft nodes on 127.0.0.1, each a broker and a controller, in one quorum.

    With three nodes or more, topics get replication factor 3 and ``min.insync.replicas=2`` by
    default (the internal topics too), so one node may die without losing a write or stopping
    one. The layout (cluster id, ports) is kept in ``data_dir/cluster.json``; node ``i`` keeps its
    data in ``data_dir/node-<i>``.

    Args:
        data_dir: the cluster's folder.
        brokers: how many nodes (at least 1).
        port: the first node's client port, the others follow it; None picks free ports.
        distribution: where the jars come from.
        die_with_parent: stop the nodes when this Python process dies.
        heap: each JVM's maximum heap.

    Raises:
        ConfigurationError: ``brokers`` is less than 1.
    """

    data_dir: Path
    brokers: int = 3
    port: int | None = None
    distribution: KafkaDistribution = field(default_factory=KafkaDistribution)
    die_with_parent: bool = True
    heap: str = "512m"
    nodes: list[LocalKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.brokers < 1:
            raise ConfigurationError(f"a cluster needs at least 1 broker, not {self.brokers}")

    @property
    def replication_factor(self) -> int:
        """The default replication factor of the cluster's topics."""
        return min(3, self.brokers)

    @property
    def min_insync_replicas(self) -> int:
        """The default ``min.insync.replicas``: 2 where there are 3 replicas, else 1."""
        return 2 if self.replication_factor >= 3 else 1

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, comma-separated."""
        return ",".join(node.bootstrap_servers for node in self._nodes())

    def _layout(self) -> dict[str, object]:
        """The cluster id and ports, chosen once and kept (a voter's address must not change)."""
        path = self.data_dir / _CLUSTER_FILE
        if path.exists():
            stored: dict[str, object] = json.loads(path.read_text())
            if self.port is not None:
                stored["ports"] = [self.port + i for i in range(self.brokers)]
            return stored
        ports = (
            [self.port + i for i in range(self.brokers)]
            if self.port is not None
            else [free_port() for _ in range(self.brokers)]
        )
        return {
            "cluster_id": None,
            "ports": ports,
            "controller_ports": [free_port() for _ in range(self.brokers)],
        }

    def _overrides(self) -> dict[str, str]:
        rf, isr = str(self.replication_factor), str(self.min_insync_replicas)
        return {
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            # A dead node is fenced, and leaves the in-sync replicas, within a few seconds.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            "replica.lag.time.max.ms": "10000",
        }

    def _nodes(self) -> list[LocalKafka]:
        """The nodes of the layout (nothing is written or formatted here)."""
        if self.nodes:
            return self.nodes
        layout = self._layout()
        ports = [int(p) for p in layout["ports"]]  # type: ignore[attr-defined]
        cports = [int(p) for p in layout["controller_ports"]]  # type: ignore[attr-defined]
        if len(ports) != self.brokers:
            raise ConfigurationError(
                f"{self.data_dir} holds a cluster of {len(ports)} brokers, not {self.brokers}; "
                "give the same --brokers, or another --data-dir"
            )
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(cports))
        cluster_id = layout["cluster_id"]
        self.nodes = [
            LocalKafka(
                data_dir=self.data_dir / f"node-{i + 1}",
                port=ports[i],
                controller_port=cports[i],
                distribution=self.distribution,
                die_with_parent=self.die_with_parent,
                heap=self.heap,
                node_id=i + 1,
                voters=voters,
                cluster_id=None if cluster_id is None else str(cluster_id),
                overrides=self._overrides(),
            )
            for i in range(self.brokers)
        ]
        return self.nodes

    def prepare(self) -> None:
        """Write and format each node's store if it is new, and keep the layout."""
        nodes = self._nodes()
        cluster_id = nodes[0].cluster_id
        if cluster_id is None:
            nodes[0].check_environment()
            cluster_id = nodes[0].random_cluster_id()
        for node in nodes:
            node.cluster_id = cluster_id
            node.prepare()
        layout = {
            "cluster_id": cluster_id,
            "ports": [n.port for n in nodes],
            "controller_ports": [n.controller_port for n in nodes],
        }
        (self.data_dir / _CLUSTER_FILE).write_text(json.dumps(layout))

    def node(self, node_id: int) -> LocalKafka:
        """Node ``node_id`` (1, 2, ...)."""
        nodes = self._nodes()
        if not 1 <= node_id <= len(nodes):
            raise ConfigurationError(f"no node {node_id}; the nodes are 1 to {len(nodes)}")
        return nodes[node_id - 1]

    def start(self, *, timeout: float = 120.0) -> str:
        """Start every node that is not running, wait until all answer; return the bootstrap
        addresses.

        Raises:
            EnvironmentSetupError: Java or Maven is missing.
            BrokerUnavailableError: a node exited or did not answer within ``timeout``.
        """
        self.prepare()
        started = [node for node in self.nodes if not node.is_running()]
        for node in started:
            node.launch()  # all at once: a quorum elects a leader only when most voters run
        try:
            for node in started:
                node.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def start_node(self, node_id: int, *, timeout: float = 90.0) -> None:
        """Start one stopped or killed node again on its data and wait until it answers."""
        node = self.node(node_id)
        node.launch()
        node.wait_ready(timeout=timeout)

    def stop_node(self, node_id: int, *, grace: float = 30.0) -> None:
        """Stop one node with SIGTERM (a controlled shutdown)."""
        self.node(node_id).stop(grace=grace)

    def kill_node(self, node_id: int) -> None:
        """Kill one node with SIGKILL, as a crash would."""
        self.node(node_id).kill()

    def stop(self, *, grace: float = 30.0) -> None:
        """Stop every node, all at once (a node that waits for a quorum gone would hang)."""
        pids = []
        for node in self._nodes():
            pid = node._proc.pid if node._proc is not None else node._pid_from_file()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                pids.append(pid)
        for pid in pids:
            _terminate(pid, grace)
        for node in self.nodes:
            node.stop(grace=1.0)

    def is_running(self) -> bool:
        """True while any node runs."""
        return any(node.is_running() for node in self._nodes())

    def running_nodes(self) -> list[int]:
        """The ids of the nodes whose process lives."""
        return [n.node_id for n in self._nodes() if n.is_running()]

    def leader(self, topic: str, partition: int, *, timeout: float = 10.0) -> int:
        """The id of the node leading ``topic``'s ``partition`` now (-1: none, or no such topic).

        Raises:
            BrokerUnavailableError: no running node answered.
        """
        from confluent_kafka.admin import AdminClient

        nodes = [self.node(i).bootstrap_servers for i in self.running_nodes()]
        admin = AdminClient({"bootstrap.servers": ",".join(nodes), "log_level": 0})
        try:
            metadata = admin.list_topics(topic, timeout=timeout)
        except Exception as exc:
            raise BrokerUnavailableError(f"no node of {self.data_dir} answered: {exc}") from exc
        found = metadata.topics.get(topic)
        if found is None or partition not in found.partitions:
            return -1  # not created yet: the first producer or group to ask creates it
        return int(found.partitions[partition].leader)

    def transaction_coordinator(self, transactional_id: str) -> int:
        """The id of the node coordinating ``transactional_id``'s transactions now."""
        return self.leader(
            "__transaction_state", coordinator_partition(transactional_id, _COORDINATOR_PARTITIONS)
        )

    def group_coordinator(self, group: str) -> int:
        """The id of the node coordinating consumer group ``group`` now."""
        return self.leader(
            "__consumer_offsets", coordinator_partition(group, _COORDINATOR_PARTITIONS)
        )
