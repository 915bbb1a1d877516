"""The local broker's tooling: clear errors when Java or Maven is missing, the CLI, and the
three-node cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sagas.cli import main
from sagas.dev.kafka import KafkaDistribution, LocalKafka
from sagas.errors import ConfigurationError, EnvironmentSetupError


def test_missing_maven_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java here
    with pytest.raises(EnvironmentSetupError, match=r"'mvn' was not found.*apt-get install maven"):
        KafkaDistribution(cache_dir=tmp_path / "cache").resolve()


def test_missing_java_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(
        data_dir=tmp_path / "data", distribution=KafkaDistribution(cache_dir=tmp_path / "cache")
    )
    with pytest.raises(EnvironmentSetupError, match=r"'java' was not found.*openjdk-17"):
        broker.start()


def test_a_java_older_than_17_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java = tmp_path / "java"
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(data_dir=tmp_path / "data")
    with pytest.raises(EnvironmentSetupError, match=r"needs Java 17 or newer.*Java 11"):
        broker.prepare()


def test_a_maven_failure_shows_its_output_and_leaves_no_half_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn = tmp_path / "mvn"
    fake_mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies' >&2\nexit 1\n")
    fake_mvn.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    dist = KafkaDistribution(version="4.1.1", cache_dir=tmp_path / "cache")
    with pytest.raises(EnvironmentSetupError, match=r"(?s)exit 1.*Could not resolve dependencies"):
        dist.resolve()
    assert not dist.is_resolved()


def test_cli_prints_one_line_errors_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(
        [
            "dev",
            "kafka",
            "start",
            "--data-dir",
            str(tmp_path / "d"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--port",
            "19999",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("sagas: error: 'java' was not found")
    assert "Traceback" not in err


def test_cli_rejects_a_wrong_argument_with_usage() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sagas.cli", "dev", "kafka", "--port", "many"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "sagas: error: Invalid value for '--port': 'many' is not a valid integer. "
        "(see sagas dev kafka --help)"
    ]


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sagas.dev.kafka import default_cache_dir

    monkeypatch.setenv("KAFKA_SAGAS_CACHE", str(tmp_path / "jars"))
    assert default_cache_dir() == tmp_path / "jars"
    monkeypatch.delenv("KAFKA_SAGAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kafka-sagas"


def _dev_kafka(argv: list[str]) -> int:
    """``sagas dev kafka ARGS``, as the command runs it."""
    from sagas.cli import main

    return main(["dev", *argv])


def test_brokers_must_be_a_count_from_1_to_9(capsys: pytest.CaptureFixture[str]) -> None:
    assert _dev_kafka(["kafka", "--brokers", "0"]) == 2
    assert "'--brokers': 0 is not in the range 1<=x<=9" in capsys.readouterr().err


def test_a_cluster_without_java_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    argv = ["kafka", "--brokers", "3", "--data-dir", str(tmp_path / "d")]
    assert _dev_kafka([*argv, "--cache-dir", str(tmp_path / "c"), "--port", "19990"]) == 2
    assert re.search(r"'java' was not found.*openjdk-17", capsys.readouterr().err)


def test_a_cluster_folder_keeps_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sagas.dev.cluster import LocalKafkaCluster

    (tmp_path / "cluster.json").write_text(
        '{"cluster_id": "x", "ports": [1, 2, 3], "controller_ports": [4, 5, 6]}'
    )
    assert _dev_kafka(["kafka", "status", "--brokers", "2", "--data-dir", str(tmp_path)]) == 2
    assert "holds a cluster of 3 brokers, not 2" in capsys.readouterr().err
    assert _dev_kafka(["kafka", "status", "--data-dir", str(tmp_path)]) == 1  # 3, not running
    assert "stopped" in capsys.readouterr().out
    cluster = LocalKafkaCluster(tmp_path, brokers=3)
    assert cluster.bootstrap_servers == "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
    with pytest.raises(ConfigurationError, match="no node 4; the nodes are 1 to 3"):
        cluster.node(4)


def test_coordinators_are_found_as_the_broker_finds_them() -> None:
    from sagas.dev.cluster import coordinator_partition, java_string_hash

    assert java_string_hash("") == 0
    assert java_string_hash("abc") == 96354  # "abc".hashCode() in Java
    assert java_string_hash("polygenelubricants") == -(2**31)  # Integer.MIN_VALUE
    assert coordinator_partition("polygenelubricants", 10) == 0
    assert 0 <= coordinator_partition("shop.order.workers.w1", 10) < 10


@pytest.mark.kafka
def test_a_three_node_cluster_survives_a_node_death(kafka_cluster: Any, unique: str) -> None:
    """Replication factor 3 and min.insync.replicas=2 by default; a killed leader is replaced
    within seconds, writes go on, and the node rejoins the in-sync replicas once back."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    admin.create_topics([NewTopic(unique, 3)])[unique].result(30)
    resource = ConfigResource("topic", unique)
    config = admin.describe_configs([resource])[resource].result(30)
    assert config["min.insync.replicas"].value == "2"
    partitions = admin.list_topics(unique, timeout=10).topics[unique].partitions
    assert all(len(p.replicas) == 3 for p in partitions.values())

    group = f"{unique}-group"
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "group.id": group})
    consumer.subscribe([unique])
    consumer.poll(5)
    described = admin.describe_consumer_groups([group])[group].result(30)
    assert kafka_cluster.group_coordinator(group) == described.coordinator.id
    consumer.close()

    victim = kafka_cluster.leader(unique, 0)
    kafka_cluster.kill_node(victim)
    producer = Producer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "acks": "all"})
    for i in range(30):
        producer.produce(unique, str(i).encode(), partition=i % 3)
    assert producer.flush(60) == 0, "writes stopped with one node of three dead"
    assert kafka_cluster.leader(unique, 0) not in (victim, -1)

    kafka_cluster.start_node(victim)
    deadline = time.monotonic() + 60
    while any(
        len(p.isrs) < 3
        for p in admin.list_topics(unique, timeout=10).topics[unique].partitions.values()
    ):
        assert time.monotonic() < deadline, f"node {victim} did not rejoin the in-sync replicas"
        time.sleep(0.5)
