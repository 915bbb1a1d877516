"""Sagas on a three-node cluster while a node dies: the leader of an inbox partition, or the
transaction coordinator of the worker.

Topics get three replicas and ``min.insync.replicas=2`` (the cluster's defaults), so one node may
die without a committed write being lost. What must hold: every saga ends as planned, each send
of a command is once in the command topics, each Kafka effect of a participant is once per
command id, each external effect is made under one idempotency key, and the worker and the
participants carry on by themselves (no restart).
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
from kafka_util import read_all
from runtime_util import Running, start_runtime
from sagas_under_test import Participants, make_app
from test_resilience import MIX, PLAN, check_outcome, command_log, wait_all_terminal

from sagas.client import SagaClient
from sagas.participants import CommandContext
from sagas.runtime.config import KafkaSettings
from sagas.serde.records import decode_payload

pytestmark = pytest.mark.kafka


class LedgerParticipants(Participants):
    """The simulated services, each command also writing a Kafka effect with ``ctx.send`` and
    an external effect keyed by ``ctx.idempotency_key`` (an API that applies a key once)."""

    def __init__(self, settings: KafkaSettings, ns: str) -> None:
        self.effects_topic = f"{ns}.effects"
        self.external: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        super().__init__(settings, ns)

    def _handle(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        reply = super()._handle(payload, ctx)
        ctx.send(self.effects_topic, {"command_id": ctx.command_id, "type": ctx.command_type})
        with self._lock:
            self.external[ctx.idempotency_key].append((ctx.saga_id, ctx.command_type))
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


def check_effects(bootstrap: str, rt: Running) -> None:
    """Kafka effects once per command id; one idempotency key per external effect."""
    participants = rt.participants
    assert isinstance(participants, LedgerParticipants)
    records = read_all(bootstrap, participants.effects_topic)
    ids = collections.Counter(decode_payload(value)["command_id"] for _, value in records)
    twice = [c for c, n in ids.items() if n > 1]
    assert not twice, f"{len(twice)} Kafka effects written twice: {twice[:5]}"
    keys_per_effect: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for key, calls in participants.external.items():
        for saga_id, command_type in calls:
            keys_per_effect[(saga_id, command_type)].add(key)
    split = {e: k for e, k in keys_per_effect.items() if len(k) > 1 and e[1] != "Status"}
    # A step retried after an answered failure is a new request with a new key; here only
    # ReserveCredit of the "retry" sagas is, and only its second attempt has an effect (the
    # first fails before doing anything), so any other split is an effect made twice.
    split = {e: k for e, k in split.items() if e[1] != "ReserveCredit"}
    assert not split, f"{len(split)} effects made under two keys: {list(split.items())[:3]}"
    reruns = sum(len(calls) - 1 for calls in participants.external.values())
    print(f"handler re-runs absorbed by the idempotency key: {reruns}")


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
        check_outcome(kinds, states, command_log(bootstrap, rt.app), rt.participants)
        check_effects(bootstrap, rt)
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
