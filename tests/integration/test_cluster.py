"""Sagas on a three-node cluster while a node dies: the leader of an inbox partition, or the
transaction coordinator of the worker.

Topics get three replicas and ``min.insync.replicas=2`` (the cluster's defaults), so one node may
die without a committed write being lost. What must hold: every saga ends as planned, each send
of a command is once in the command topics, each Kafka effect of a participant is once per
command id, each external effect is made under one idempotency key, a compensated saga undoes in
the world exactly what it did, newest first, and the worker and the participants carry on by
themselves (no restart). The checks are the chaos scenario's (:mod:`tests.chaos.scenario`).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from sagas.client import SagaClient
from sagas.participants import CommandContext
from sagas.settings import KafkaSettings
from tests.chaos.scenario import check
from tests.support.resilience import MIX, PLAN, wait_all_terminal
from tests.support.runtime import Running, start_runtime
from tests.support.sagas_under_test import Participants, make_app

pytestmark = pytest.mark.kafka


class LedgerParticipants(Participants):
    """The simulated services, each command also writing a Kafka effect with ``ctx.send`` and
    an external effect keyed by ``ctx.idempotency_key`` (an API that applies a key once)."""

    def __init__(self, settings: KafkaSettings, ns: str) -> None:
        self.effects_topic = f"{ns}.effects"
        self.calls: list[dict[str, Any]] = []
        super().__init__(settings, ns)

    def _handle(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        reply = super()._handle(payload, ctx)  # raises for a failure: no effect then
        ctx.send(self.effects_topic, {"command_id": ctx.command_id, "type": ctx.command_type})
        call = {"key": ctx.idempotency_key, "saga_id": ctx.saga_id, "type": ctx.command_type}
        with self._lock:
            self.calls.append({**call, "at_ms": int(time.time() * 1000)})
        return reply


def start_sagas(client: SagaClient, first: int, count: int) -> dict[str, str]:
    """Start sagas ``first`` to ``first + count - 1`` of the resilience tests' mix."""
    kinds: dict[str, str] = {}
    for i in range(first, first + count):
        kind = MIX[i % len(MIX)]
        kinds[client.start(PLAN[kind][3], {"behaviour": PLAN[kind][0]}, saga_id=f"s{i:05d}")] = kind
    return kinds


def start_ledger_runtime(bootstrap: str, ns: str) -> Running:
    """A worker thread, the ledger participants and a client on ``bootstrap``."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    effects = f"{ns}.effects"
    admin.create_topics([NewTopic(effects, 3)])[effects].result(30)  # the cluster's replication
    app = make_app(ns)
    rt = start_runtime(app, KafkaSettings(bootstrap))
    rt.participants.stop()  # replaced by participants that keep ledgers
    rt.participants = LedgerParticipants(rt.settings, ns)
    return rt


def run_through_a_node_death(
    cluster: Any, ns: str, victim: Any, *, count: int = 40
) -> tuple[int, Running]:
    """Start ``count`` sagas, kill the node ``victim(app)`` names mid-run, start as many again,
    and check the outcome once all ended; return the killed node's id."""
    bootstrap = cluster.bootstrap_servers
    rt = start_ledger_runtime(bootstrap, ns)
    try:
        kinds = start_sagas(rt.client, 0, count)
        rt.wait_until(lambda: len(rt.participants.handled) >= count // 2, timeout=60)
        node = victim(rt)
        assert node in cluster.running_nodes(), node
        cluster.kill_node(node)
        later = SagaClient(rt.settings, ns)  # a new client finds the partitions' new leaders
        try:
            kinds.update(start_sagas(later, count, count))
        finally:
            later.close()
        states = wait_all_terminal(bootstrap, rt.app, set(kinds), timeout=120)
        assert isinstance(rt.participants, LedgerParticipants)
        allowed = {sid: (PLAN[kind][1],) for sid, kind in kinds.items()}
        report = check(rt.app, bootstrap, allowed, states, list(rt.participants.calls))
        print("\n".join(report.lines()))
        assert not report.violations, "\n".join(report.lines())
        assert rt.thread.is_alive(), "the worker died on the node's death"
        assert rt.participants._thread.is_alive(), "the participant died on the node's death"
        return node, rt
    finally:
        rt.shutdown()


def test_the_leader_of_an_inbox_partition_dies_mid_run(kafka_cluster: Any, unique: str) -> None:
    def inbox_leader(rt: Running) -> int:
        return int(kafka_cluster.leader(rt.app.topics("order").inbox, 0))

    node, rt = run_through_a_node_death(kafka_cluster, unique, inbox_leader)
    # The partition moved to a surviving replica.
    assert kafka_cluster.leader(rt.app.topics("order").inbox, 0) not in (node, -1)


def test_the_transaction_coordinator_of_the_worker_dies_mid_run(
    kafka_cluster: Any, unique: str
) -> None:
    def coordinator(rt: Running) -> int:
        transactional_id = f"{rt.app.topics('order').group}.w1"
        return int(kafka_cluster.transaction_coordinator(transactional_id))

    node, rt = run_through_a_node_death(kafka_cluster, unique, coordinator)
    assert coordinator(rt) not in (node, -1)
