"""Sagas from a Faust app: an agent starts and awaits them; the worker runs as its service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagas.client import SagaClient
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.support.kafka import create_topic, read_all
from tests.support.participants import wait_for
from tests.support.sagas_under_test import Participants, make_app

pytest.importorskip("faust", reason="needs the faust extra")
pytestmark = pytest.mark.kafka

HERE = Path(__file__).resolve().parent


def spawn(bootstrap: str, ns: str, tmp: Path) -> subprocess.Popen[bytes]:
    """``faust_orders.py`` (worker service and orders agent) in its own process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent.parent)]),
        "SAGAS_TEST_NS": ns,
        "SAGAS_TEST_PARTS": "3",
        "SAGAS_TEST_DATADIR": str(tmp / "faust-data"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
    }
    with (tmp / "faust.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(HERE / "faust_orders.py"), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def terminate(proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """SIGTERM: the app, its agent and the worker service stop; the process exits 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, (tmp / "faust.log").read_text()[-3000:]


@pytest.fixture
def participants(bootstrap: str, unique: str) -> Iterator[Participants]:
    ensure_topics(make_app(unique), KafkaSettings(bootstrap))
    running = Participants(KafkaSettings(bootstrap), unique)
    yield running
    running.stop()


def test_a_faust_agent_starts_100_sagas_and_awaits_their_results(
    bootstrap: str, unique: str, tmp_path: Path, participants: Participants
) -> None:
    from confluent_kafka import Producer

    create_topic(bootstrap, f"{unique}.orders", 3)
    create_topic(bootstrap, f"{unique}.results", 3)
    proc = spawn(bootstrap, unique, tmp_path)
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(100):
            behaviour = {"ReserveStock": "fail"} if i % 10 == 0 else {}
            value = json.dumps({"n": i, "behaviour": behaviour}).encode()
            producer.produce(f"{unique}.orders", key=f"o{i}".encode(), value=value)
        assert producer.flush(30) == 0
        wait_for(lambda: len(read_all(bootstrap, f"{unique}.results", timeout=5)) >= 100, 240)
        terminate(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    outcomes = {k.decode(): v.decode() for k, v in read_all(bootstrap, f"{unique}.results")}
    assert len(outcomes) == 100
    failed = sorted(k for k, v in outcomes.items() if v != "completed")
    assert failed == sorted(f"o{i}" for i in range(0, 100, 10))
    assert all("compensated" in outcomes[k] for k in failed)


def test_the_saga_worker_service_starts_and_stops_with_the_faust_app(
    bootstrap: str, unique: str, tmp_path: Path, participants: Participants
) -> None:
    create_topic(bootstrap, f"{unique}.orders", 3)
    create_topic(bootstrap, f"{unique}.results", 3)
    proc = spawn(bootstrap, unique, tmp_path)
    client = SagaClient(KafkaSettings(bootstrap), unique)
    try:
        client.start("order", {"total": 3}, saga_id="one")
        assert client.result("order", "one", timeout=120) is not None  # the worker runs
        terminate(proc, tmp_path)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "faust.log").read_text()
    lines = log.splitlines()
    for saga_type in make_app(unique).saga_types:  # each loop gave up its partitions
        group = f"{unique}.{saga_type}.workers: "
        assert any(group in line and "left this process" in line for line in lines), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_the_reference_faust_app_serves_its_steps_and_ends_every_order(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """``python -m processors.faust_orders worker``, from the project folder, as documented."""
    from confluent_kafka import Producer

    root = HERE.parent.parent
    orders, outcomes = f"{unique}.orders", f"{unique}.order-outcomes"
    create_topic(bootstrap, orders, 6)
    create_topic(bootstrap, outcomes, 6)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ORDERS_NAMESPACE": unique,
        "ORDERS_FAILURE_RATE": "0.3",
        "ORDERS_LATENCY_MS": "2",
        "FAUST_DATADIR": str(tmp_path / "faust-data"),
    }
    env.pop("PYTHONPATH", None)
    with (tmp_path / "faust.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.faust_orders", "worker"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    total = 20
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(total):
            order = {"customer": f"c{i}", "total": 10.0 + i, "items": [f"sku-{i % 3}"]}
            producer.produce(orders, key=f"o{i}".encode(), value=json.dumps(order).encode())
        assert producer.flush(30) == 0
        ended = read_all(bootstrap, outcomes, expect=total, timeout=180)
        terminate(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    by_order = {key.decode(): value.decode() for key, value in ended}
    assert sorted(by_order) == sorted(f"o{i}" for i in range(total))
    client = SagaClient(KafkaSettings(bootstrap), unique)
    try:
        statuses = {o: client.status("order", o) for o in by_order}
    finally:
        client.close()
    for order, outcome in by_order.items():
        status = statuses[order]
        assert status is not None, order
        assert status.terminal, order
        assert (outcome == "completed") == (status.status == "completed"), (order, outcome)
    assert {s.status for s in statuses.values() if s is not None} == {"completed", "compensated"}
