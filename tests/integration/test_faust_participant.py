"""Faust participants on the real broker: a saga's step and compensation, and SIGKILLs."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sagas.app import App
from sagas.client import SagaClient
from sagas.errors import CommandFailed
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from sagas.wire import command_record
from tests.support.kafka import create_topic, read_all
from tests.support.participants import command, replies_by_command, send_commands, wait_for
from tests.support.sagas_under_test import order_saga

SERDE = Serde()
"""The encodings these records are read and written with."""

pytest.importorskip("faust", reason="needs the faust extra")
pytestmark = pytest.mark.kafka

HERE = Path(__file__).resolve().parent


def spawn(bootstrap: str, group: str, topic: str, parts: int, tmp: Path) -> subprocess.Popen[bytes]:
    """``faust_participant.py`` in its own process, logging to ``tmp/faust.log``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent.parent)]),
        "SAGAS_TEST_GROUP": group,
        "SAGAS_TEST_COMMANDS": topic,
        "SAGAS_TEST_PARTS": str(parts),
        "SAGAS_TEST_DATADIR": str(tmp / "faust-data"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAGAS_TEST_LOG": "DEBUG",
    }
    with (tmp / "faust.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(HERE / "faust_participant.py"), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """SIGTERM, and the process exits 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, (tmp / "faust.log").read_text()[-3000:]


def test_a_faust_participant_serves_a_step_and_its_compensation(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = KafkaSettings(bootstrap)
    app = App(unique, [order_saga(unique)], partitions=3)
    ensure_topics(app, settings)
    credit = f"{unique}.credit"
    create_topic(bootstrap, f"{credit}.effects", 3)

    others = Participant(settings, f"{unique}.others")  # stock and shipping, on a thread

    @others.handler(f"{unique}.stock", "ReserveStock")
    def reserve_stock(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        if payload.get("out_of_stock"):
            raise CommandFailed("no stock", error="OutOfStock")
        return {"reserved": True}

    others.handler(f"{unique}.stock", "ReleaseStock")(lambda payload, ctx: {})
    others.handler(f"{unique}.shipping", "ScheduleShipment")(lambda payload, ctx: {"ship": 1})
    proc = spawn(bootstrap, f"{unique}.credit-service", credit, 3, tmp_path)
    stop_worker = threading.Event()
    worker = threading.Thread(
        target=run_worker,
        args=(app, settings),
        kwargs={"stop": stop_worker, "install_signal_handlers": False, "query_host": None},
        daemon=True,
    )
    worker.start()
    thread, stop_others = others.start()
    client = SagaClient(settings, unique)
    try:
        client.start("order", {"total": 5}, saga_id="ok")
        client.start("order", {"total": 7, "out_of_stock": True}, saga_id="refused")
        assert client.result("order", "ok", timeout=120)["ship"] == 1
        wait_for(lambda: (s := client.status("order", "refused")) is not None and s.terminal, 60)
        assert client.status("order", "refused").status == "compensated"
        stop(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_worker.set()
        stop_others.set()
        worker.join(60)
        thread.join(30)
        client.close()
    effects = [
        SERDE.decode_payload(v) for _, v in read_all(bootstrap, f"{credit}.effects", expect=3)
    ]
    by_saga = sorted((e["command_id"].split(":")[0], e["type"]) for e in effects)
    assert by_saga == [("ok", "ReserveCredit"), ("refused", "ReleaseCredit"),
                       ("refused", "ReserveCredit")]  # fmt: skip


def test_a_faust_participant_never_handles_a_command_whose_transaction_aborted(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Faust reads uncommitted records; the participant handles only committed commands."""
    from confluent_kafka import Producer

    topic, inbox = f"{unique}.charges", f"{unique}.inbox"
    for name in (topic, inbox, f"{topic}.effects"):
        create_topic(bootstrap, name, 3)
    aborted = [command(topic, f"gone{i}", 1, "Charge", amount=i) for i in range(30)]
    committed = [command(topic, f"kept{i}", 1, "Charge", amount=i) for i in range(30)]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "transactional.id": f"{unique}.a-worker",
        }
    )
    producer.init_transactions(30)
    for batch, commit in ((aborted, False), (committed, True)):
        producer.begin_transaction()
        for cmd in batch:
            rec = command_record(cmd, inbox, serde=SERDE)
            producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
        producer.flush(30)
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    proc = spawn(bootstrap, f"{unique}.svc", topic, 3, tmp_path)
    try:
        replies = replies_by_command(bootstrap, inbox, expect=len(committed))
        stop(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    effects = [
        SERDE.decode_payload(v)["command_id"] for _, v in read_all(bootstrap, f"{topic}.effects")
    ]
    assert sorted(effects) == sorted(c.command_id for c in committed)
    assert set(replies) == {c.command_id for c in committed}


def test_a_faust_participant_killed_mid_run_answers_each_command_once(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    topic, inbox = f"{unique}.charges", f"{unique}.inbox"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, inbox, 3)
    create_topic(bootstrap, f"{topic}.effects", 3)
    total = 300
    commands = [command(topic, f"s{i}", 1, "Charge", amount=i) for i in range(total)]
    send_commands(bootstrap, commands, inbox)
    group = f"{unique}.svc"
    proc = spawn(bootstrap, group, topic, 3, tmp_path)
    kills, seen = 0, 0

    def replied() -> int:
        return len(read_all(bootstrap, inbox, timeout=5))

    try:
        while kills < 2:
            before = seen
            wait_for(lambda b=before: replied() > b, timeout=120)  # progress since the restart
            seen = replied()
            if seen >= total:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = spawn(bootstrap, group, topic, 3, tmp_path)
        wait_for(lambda: replied() >= total, timeout=180)
        stop(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert kills >= 1, "the participant finished before it could be killed; send more commands"

    effects = collections.Counter(
        SERDE.decode_payload(value)["command_id"]
        for _, value in read_all(bootstrap, f"{topic}.effects")
    )
    replies = replies_by_command(bootstrap, inbox, expect=total)
    expected = {c.command_id for c in commands}
    assert set(effects) == expected
    assert [cid for cid, n in effects.items() if n > 1] == []
    assert set(replies) == expected
    assert [cid for cid, r in replies.items() if len(r) > 1] == []


def test_the_committed_reader_returns_committed_records_in_order_and_waits_for_an_open_one(
    bootstrap: str, unique: str
) -> None:
    from confluent_kafka import Producer

    from sagas.faust._committed import CommittedCommands, offset_of

    topic = f"{unique}.reader"
    create_topic(bootstrap, topic, 1)

    def producer(name: str) -> Producer:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{unique}.{name}"})
        p.init_transactions(30)
        return p

    def write(p: Producer, values: list[bytes], commit: bool) -> None:
        p.begin_transaction()
        for v in values:
            p.produce(topic, v, partition=0)
        p.flush(30)
        (p.commit_transaction if commit else p.abort_transaction)(30)

    first = producer("first")
    write(first, [b"a0", b"a1"], commit=True)  # offsets 0, 1; marker 2
    write(first, [b"x0", b"x1"], commit=False)  # 3, 4 aborted; marker 5
    write(first, [b"b0"], commit=True)  # 6; marker 7
    reader = CommittedCommands(KafkaSettings(bootstrap), f"{unique}.reader")
    try:
        got = reader.through(topic, 0, 0, 6)
        assert [(offset_of(m), m.value()) for m in got] == [(0, b"a0"), (1, b"a1"), (6, b"b0")]
        assert reader.through(topic, 0, 7, 7) == []  # a commit marker only
        assert [m.value() for m in reader.through(topic, 0, 1, 4)] == [b"a1"]  # read again

        second = producer("second")
        second.begin_transaction()
        second.produce(topic, b"c0", partition=0)  # offset 8, undecided
        second.flush(30)
        threading.Timer(1.0, second.commit_transaction, args=(30,)).start()
        got = reader.through(topic, 0, 8, 8)  # waits for the commit
        assert [(offset_of(m), m.value()) for m in got] == [(8, b"c0")]
    finally:
        reader.close()
