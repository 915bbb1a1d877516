"""Participants on the real broker: recorded replies, exactly-once Kafka effects, bad commands."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagas.errors import CommandFailed
from sagas.participants import CommandContext, Participant
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import create_topic, read_all
from tests.support.participants import command, replies_by_command, send_commands, wait_for

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

HERE = Path(__file__).resolve().parent


def test_a_re_sent_command_gets_the_recorded_reply_and_its_handler_runs_once(
    bootstrap: str, unique: str
) -> None:
    topic, inbox = f"{unique}.billing", f"{unique}.inbox"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, inbox, 3)
    calls: list[str] = []

    def make() -> Participant:
        participant = Participant(KafkaSettings(bootstrap), f"{unique}.billing-service")

        @participant.handler(topic, "Charge")
        async def charge(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            calls.append(ctx.command_id)
            return {"charged": payload["amount"], "key": ctx.idempotency_key}

        @participant.handler(topic, "Refund")
        def refund(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            calls.append(ctx.command_id)
            raise CommandFailed("nothing to refund", error="no-charge")

        return participant

    charge = command(topic, "s1", 1, "Charge", amount=5)
    refund = command(topic, "s2", 1, "Refund")
    participant = make()
    thread, stop = participant.start()
    try:
        send_commands(bootstrap, [charge, refund, charge], inbox)
        wait_for(lambda: participant.handled + participant.replayed >= 3)
        send_commands(bootstrap, [refund], inbox)
        wait_for(lambda: participant.replayed >= 2)
    finally:
        stop.set()
        thread.join(30)
    assert sorted(calls) == ["s1:charge:1", "s2:charge:1"]

    # A new instance of the service reads the recorded replies back: still no second run.
    successor = make()
    thread, stop = successor.start()
    try:
        send_commands(bootstrap, [charge], inbox)
        wait_for(lambda: successor.replayed >= 1)
    finally:
        stop.set()
        thread.join(30)
    assert sorted(calls) == ["s1:charge:1", "s2:charge:1"]
    assert successor.handled == 0

    replies = replies_by_command(bootstrap, inbox, expect=5)
    assert (
        replies["s1:charge:1"]
        == [{"outcome": "success", "payload": {"charged": 5, "key": "s1:charge:1"}}] * 3
    )
    assert (
        replies["s2:charge:1"]
        == [
            {
                "outcome": "failure",
                "payload": {"error": "no-charge", "message": "nothing to refund"},
            }
        ]
        * 2
    )


def test_a_record_that_is_not_a_command_goes_to_the_dlq_with_the_reason(
    bootstrap: str, unique: str
) -> None:
    from confluent_kafka import Producer

    topic, inbox = f"{unique}.billing", f"{unique}.inbox"
    create_topic(bootstrap, topic, 1)
    create_topic(bootstrap, inbox, 1)
    participant = Participant(KafkaSettings(bootstrap), f"{unique}.svc")
    participant.handler(topic, "Charge")(lambda payload, ctx: {"ok": True})
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"s9", value=b"garbage", headers=[("command-type", b"Charge")])
    assert producer.flush(30) == 0
    send_commands(bootstrap, [command(topic, "s1", 1, "Charge")], inbox)
    thread, stop = participant.start()
    try:
        wait_for(lambda: participant.handled >= 1)
    finally:
        stop.set()
        thread.join(30)
    dead = read_all(bootstrap, participant.dlq, expect=1, with_headers=True)
    assert len(dead) == 1
    key, value, headers = dead[0]
    assert (key, value) == (b"s9", b"garbage")
    assert "not a command" in headers["dlq-reason"]
    assert headers["dlq-source-topic"] == topic
    assert headers["dlq-source-offset"] == "0"
    assert len(read_all(bootstrap, inbox, expect=1)) == 1


def spawn(bootstrap: str, group: str, topic: str, log: Path) -> subprocess.Popen[bytes]:
    """``sagas participant`` in its own process."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "SAGAS_TEST_GROUP": group,
        "SAGAS_TEST_COMMANDS": topic,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagas.cli", "participant", "participant_proc:participant"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_kafka_effects_and_replies_survive_kills_exactly_once(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    topic, inbox = f"{unique}.charges", f"{unique}.inbox"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, inbox, 3)
    create_topic(bootstrap, f"{topic}.effects", 3)
    total = 1500
    commands = [command(topic, f"s{i}", 1, "Charge", amount=i) for i in range(total)]
    send_commands(bootstrap, commands, inbox)
    log = tmp_path / "participant.log"
    proc = spawn(bootstrap, f"{unique}.svc", topic, log)
    kills, seen = 0, 0

    def replied() -> int:
        return len(read_all(bootstrap, inbox, timeout=5))

    try:
        while kills < 3:
            before = seen
            wait_for(lambda b=before: replied() > b, timeout=60)  # progress since the restart
            seen = replied()
            if seen >= total:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = spawn(bootstrap, f"{unique}.svc", topic, log)
        wait_for(lambda: replied() >= total, timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert kills >= 2, "the participant finished before it could be killed; send more commands"

    effects = collections.Counter(
        SERDE.decode_payload(value)["command_id"]
        for _, value in read_all(bootstrap, f"{topic}.effects")
    )
    replies = replies_by_command(bootstrap, inbox, expect=total)
    expected = {c.command_id for c in commands}
    assert set(effects) == expected
    assert [cid for cid, n in effects.items() if n > 1] == []
    assert set(replies) == expected
    assert all(len(r) == 1 for r in replies.values())


def test_the_participant_command_refuses_a_target_that_is_not_a_participant() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sagas.cli", "participant", "sagas.errors:SagaError"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "expected a sagas.participants.Participant" in result.stderr


def test_a_command_with_a_header_that_is_not_utf8_is_dead_lettered_and_the_loop_goes_on(
    bootstrap: str, unique: str
) -> None:
    from confluent_kafka import Producer

    topic, inbox = f"{unique}.billing", f"{unique}.inbox"
    create_topic(bootstrap, topic, 1)
    create_topic(bootstrap, inbox, 1)
    participant = Participant(KafkaSettings(bootstrap), f"{unique}.svc")
    participant.handler(topic, "Charge")(lambda payload, ctx: {"ok": True})
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"s8", value=b"", headers=[("command-id", b"\xff\xfe")])
    assert producer.flush(30) == 0
    send_commands(bootstrap, [command(topic, "s1", 1, "Charge")], inbox)
    thread, stop = participant.start()
    try:
        wait_for(lambda: participant.handled >= 1)
    finally:
        stop.set()
        thread.join(30)
    assert thread.is_alive() is False
    [(key, _, headers)] = read_all(bootstrap, participant.dlq, expect=1, with_headers=True)
    assert key == b"s8"
    assert "not UTF-8" in headers["dlq-reason"]


def test_an_aborted_transaction_does_not_run_its_handlers_again(
    bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that fails (the broker went away mid-commit) rewinds the batch; the handlers
    that ran keep their results, so each command's handler runs once and its reply goes once."""
    from confluent_kafka import KafkaError, KafkaException

    from sagas.runtime.transactions import Transactions

    topic, inbox = f"{unique}.billing", f"{unique}.billing.inbox"
    create_topic(bootstrap, topic, partitions=2)
    create_topic(bootstrap, inbox)
    real_commit = Transactions.commit
    failures = [2]  # the first two commits fail as a coordinator loss would

    def flaky_commit(self: Transactions, offsets: Any, meta: Any) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker went away"))
        real_commit(self, offsets, meta)

    monkeypatch.setattr(Transactions, "commit", flaky_commit)
    participant = Participant(KafkaSettings(bootstrap), f"{unique}.svc", partitions=2)
    runs: collections.Counter[str] = collections.Counter()

    @participant.handler(topic, "Charge")
    def charge(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        runs[ctx.command_id] += 1
        return {"charged": payload["amount"]}

    thread, stop = participant.start()
    try:
        send_commands(
            bootstrap, [command(topic, f"s{i}", 1, "Charge", amount=i) for i in range(20)], inbox
        )
        replies = replies_by_command(bootstrap, inbox, expect=20)
    finally:
        stop.set()
        thread.join(30)
    assert failures == [0]
    assert len(replies) == 20
    assert all(len(r) == 1 for r in replies.values())
    assert set(runs.values()) == {1}, runs
