"""Hostile input on the real broker: records written with a plain producer that break the wire
contract never stall a partition, never forge a step and never resurrect a saga."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Producer

from sagas.participants import Participant
from sagas.partitioning import partition_for
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.runtime import Running

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

PARTITIONS = 3  # make_app's


def _producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "message.max.bytes": 2_000_000,
            "linger.ms": 5,
        }
    )


def _send(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: dict[str, Any],
    partition: int | None = None,
) -> None:
    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    hs = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()]
    producer.produce(topic, key=key, value=value, headers=hs, **extra)


def _start_headers(saga_id: str) -> dict[str, Any]:
    return {"sagas-input": "start", "saga-id": saga_id}


def _dead_letters(bootstrap: str, topic: str, expect: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + 60
    letters: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        letters = [h for _, _, h in read_all(bootstrap, topic, with_headers=True)]
        if len(letters) >= expect:
            return letters
        time.sleep(0.5)
    raise AssertionError(f"{topic}: {len(letters)} dead letters, expected {expect}: {letters}")


def _journal(rt: Running, saga_type: str) -> list[Any]:
    journal = rt.app.topics(saga_type).journal
    return [
        e
        for _, v in read_all(rt.settings.bootstrap_servers, journal)
        for e in SERDE.decode_events(v)[0]
    ]


def test_an_oversized_input_is_isolated_and_sagas_on_every_partition_finish(rt: Running) -> None:
    inbox, dlq = rt.app.topics("order").inbox, rt.app.topics("order").dlq
    bootstrap = rt.settings.bootstrap_servers
    before = [rt.client.start("order", {"behaviour": {}}) for _ in range(6)]
    producer = _producer(bootstrap)
    # Not a valid input, and too large to be copied to a dead-letter topic as it is.
    _send(producer, inbox, b"huge-1", os.urandom(1_040_000), _start_headers("huge-1"))
    # A valid start whose snapshot would exceed the producer's message size: fails when written.
    blob = SERDE.encode_payload({"blob": "x" * 999_700})
    _send(producer, inbox, b"huge-2", blob, _start_headers("huge-2"))
    producer.flush(30)
    after = [rt.client.start("order", {"behaviour": {}}) for _ in range(12)]
    assert {partition_for(s.encode(), PARTITIONS) for s in after} == {0, 1, 2}
    for sid in before + after:
        assert rt.wait_terminal("order", sid).status == "completed"
    letters = _dead_letters(bootstrap, dlq, 2)
    by_id = {h.get("saga-id"): h for h in letters}
    assert "undecodable input" in by_id["huge-1"]["dlq-reason"]
    assert by_id["huge-1"]["dlq-value-dropped"] == "1040000 bytes"
    assert "size too large" in by_id["huge-2"]["dlq-reason"].lower()
    assert {h["dlq-source-topic"] for h in letters} == {inbox}
    assert rt.client.status("order", "huge-2") is None  # never started: nothing half-written


def test_misplaced_starts_go_to_the_dlq_and_never_make_a_second_copy(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {}})
    assert rt.wait_terminal("order", sid).status == "completed"
    inbox, dlq = rt.app.topics("order").inbox, rt.app.topics("order").dlq
    home = partition_for(sid.encode(), PARTITIONS)
    other_key = next(f"k{i}" for i in range(100) if partition_for(f"k{i}".encode(), 3) != home)
    value = SERDE.encode_payload({"behaviour": {"ScheduleShipment": "fail"}})
    producer = _producer(rt.settings.bootstrap_servers)
    _send(producer, inbox, other_key.encode(), value, _start_headers(sid))  # key != saga-id
    _send(producer, inbox, None, value, _start_headers(sid))  # no key
    _send(producer, inbox, b"\xff\xfe" + sid.encode(), value, _start_headers(sid))  # not UTF-8
    _send(producer, inbox, sid.encode(), value, _start_headers(sid), (home + 1) % PARTITIONS)
    producer.flush(30)
    letters = _dead_letters(rt.settings.bootstrap_servers, dlq, 4)
    assert len(letters) == 4
    assert all(h["dlq-reason"].startswith("misplaced input") for h in letters)
    # The saga started once (a ghost copy would start again), is still completed, nothing undone.
    started = [e for e in _journal(rt, "order") if e.saga_id == sid and e.type == "started"]
    assert len(started) == 1
    state_topic = rt.app.topics("order").state
    snapshots = [
        SERDE.decode_state(v) for _, v in read_all(rt.settings.bootstrap_servers, state_topic) if v
    ]
    assert [s.status for s in snapshots if s.saga_id == sid][-1] == "completed"
    assert rt.client.status("order", sid).status == "completed"  # type: ignore[union-attr]
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReserveStock", "ScheduleShipment"]


def test_a_forged_reply_with_a_guessed_command_id_completes_nothing(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {"ReserveStock": "silent"}})
    rt.wait_until(lambda: rt.participants.commands_of(sid) == ["ReserveCredit", "ReserveStock"])
    inbox = rt.app.topics("order").inbox
    producer = _producer(rt.settings.bootstrap_servers)
    for guess in (f"{sid}:reserve_stock:1", f"{sid}:reserve_stock:1:0123456789abcdef"):
        headers = {"sagas-input": "reply", "saga-id": sid, "command-id": guess}
        headers["outcome"] = "success"
        _send(producer, inbox, sid.encode(), SERDE.encode_payload({"forged": True}), headers)
    producer.flush(30)

    def ignored() -> list[Any]:
        return [e for e in _journal(rt, "order") if e.saga_id == sid and e.type == "ignored"]

    rt.wait_until(lambda: len(ignored()) == 2)
    state = rt.client.status("order", sid)
    assert state is not None
    assert state.status == "running"
    assert "reserve_stock" not in state.completed
    assert "forged" not in state.data


def _command(reply_to: str, command_id: str, deadline: int | None = None) -> dict[str, Any]:
    headers = {
        "saga-id": "s-1",
        "saga-type": "order",
        "command-id": command_id,
        "command-type": "Ping",
        "attempt": 1,
        "reply-to": reply_to,
    }
    if deadline is not None:
        headers["deadline"] = deadline
    return headers


def test_a_participant_refuses_a_bad_reply_to_and_a_late_command(
    bootstrap: str, unique: str
) -> None:
    settings = KafkaSettings(bootstrap)
    participant = Participant(settings, f"{unique}.svc", partitions=1, create_topics=True)
    ran: list[str] = []

    @participant.handler(f"{unique}.commands", "Ping")
    def ping(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        ran.append(ctx.command_id)
        return {"pong": True}

    inbox = f"{unique}.order.inbox"
    from tests.support.kafka import create_topic

    create_topic(bootstrap, inbox)
    thread, stop = participant.start()
    try:
        producer = _producer(bootstrap)
        value = SERDE.encode_payload({})
        topic = f"{unique}.commands"
        for reply_to, cid in (
            (f"{unique}.order.state", "c-state"),  # not an inbox
            (f"{unique}.nothing.inbox", "c-missing"),  # no such topic
            ("../../x", "c-garbage"),
        ):
            _send(producer, topic, b"s-1", value, _command(reply_to, cid))
        _send(producer, topic, b"s-1", value, _command(inbox, "c-late", deadline=1000))
        _send(producer, topic, b"s-1", value, _command(inbox, "c-good"))
        producer.flush(30)
        replies = _dead_letters(bootstrap, inbox, 2)  # the late one's and the good one's
        letters = _dead_letters(bootstrap, participant.dlq, 3)
    finally:
        stop.set()
        thread.join(30)
    assert ran == ["c-good"]
    outcomes = {h["command-id"]: h["outcome"] for h in replies}
    assert outcomes == {"c-late": "failure", "c-good": "success"}
    reasons = {h["command-id"]: h["dlq-reason"] for h in letters}
    assert "is not a saga inbox" in reasons["c-state"]
    assert "is not an existing topic" in reasons["c-missing"]
    assert "is not a saga inbox" in reasons["c-garbage"]


def test_a_flood_of_bad_records_leaves_every_real_saga_finished(rt: Running) -> None:
    """Thousands of random, truncated, oversized, mis-keyed and forged records, with real sagas
    interleaved: every real saga ends; every bad record is dead-lettered or ignored."""
    rng = random.Random(7)
    bootstrap = rt.settings.bootstrap_servers
    inbox, dlq = rt.app.topics("order").inbox, rt.app.topics("order").dlq
    commands = f"{rt.app.namespace}.credit"
    producer = _producer(bootstrap)
    good = SERDE.encode_payload({"behaviour": {}})
    sent: Counter[str] = Counter()
    real: list[str] = []
    started = time.monotonic()
    for i in range(1500):
        sid = f"bad-{i}"
        key = sid.encode()
        kind = rng.choice(["random", "truncated", "mis-keyed", "forged", "no-saga"])
        if i % 500 == 0:
            kind = "oversized"
        if kind == "random":
            value = rng.randbytes(rng.randint(0, 300))
            headers = {"sagas-input": rng.choice(["reply", "signal", "x", ""]), "saga-id": sid}
        elif kind == "truncated":
            value, headers = good[: rng.randint(0, len(good) - 1)], _start_headers(sid)
        elif kind == "oversized":
            value, headers = rng.randbytes(1_040_000), _start_headers(sid)
        elif kind == "mis-keyed":
            value, headers, key = good, _start_headers(sid), f"other-{i}".encode()
        elif kind == "forged":  # a guessed id for a saga that may exist
            target = real[-1] if real else sid
            key = target.encode()
            cid = f"{target}:reserve_credit:1:{rng.randbytes(8).hex()}"
            headers = {"sagas-input": "reply", "saga-id": target, "command-id": cid}
            headers["outcome"] = "success"
            value = SERDE.encode_payload({"forged": True})
        else:  # a reply for no saga
            headers = {"sagas-input": "reply", "saga-id": sid, "command-id": f"{sid}:x:1"}
            headers["outcome"] = "failure"
            value = SERDE.encode_payload({})
        if kind == "random" and value and headers["sagas-input"] == "reply":
            headers["outcome"] = "success"  # may decode: then it is a reply to no saga
        if kind in ("random", "truncated") and rng.random() < 0.3:
            value = value[: len(value) // 2]
        _send(producer, inbox, key, value, headers)
        sent[kind] += 1
        if i % 50 == 0:
            real.append(rt.client.start("order", {"behaviour": {}}))
        if i % 3 == 0:  # garbage into a participant's command topic too
            _send(producer, commands, key, rng.randbytes(50), {"command-id": f"g{i}"})
            sent["command-garbage"] += 1
    producer.flush(60)
    for sid in real:
        assert rt.wait_terminal("order", sid, timeout=120).status == "completed"
    took = time.monotonic() - started
    inbox_bad = sum(v for k, v in sent.items() if k != "command-garbage")

    def accounted() -> tuple[list[dict[str, str]], list[Any], set[str]]:
        events = _journal(rt, "order")
        ignored = [e for e in events if e.type == "ignored"]
        # A truncated or random value may still decode as a payload: a valid start, then.
        accepted = {e.saga_id for e in events if e.type == "started" and e.saga_id not in real}
        letters = [h for _, _, h in read_all(bootstrap, dlq, with_headers=True)]
        return letters, ignored, accepted

    rt.wait_until(lambda: sum(map(len, accounted())) >= inbox_bad, timeout=60)
    letters, ignored, accepted = accounted()
    assert len(letters) + len(ignored) + len(accepted) == inbox_bad, (sent, len(letters))
    misplaced = [h for h in letters if h["dlq-reason"].startswith("misplaced input")]
    assert len(misplaced) == sent["mis-keyed"]
    states = [rt.client.status("order", sid) for sid in real]
    assert all(s is not None and "forged" not in s.data for s in states)
    garbage = _dead_letters(bootstrap, rt.participants.participant.dlq, sent["command-garbage"])
    assert len(garbage) == sent["command-garbage"]
    print(
        f"flood: {dict(sent)}; dead-lettered {len(letters)} inbox + {len(garbage)} command "
        f"records, ignored {len(ignored)}, valid after all {len(accepted)}; {len(real)} real "
        f"sagas finished in {took:.1f}s"
    )


def test_a_participant_isolates_a_command_whose_effect_cannot_be_written(
    bootstrap: str, unique: str
) -> None:
    """A handler's record too large to produce aborts one transaction; the command goes to the
    DLQ and every other command of the partition is answered."""
    from tests.support.kafka import create_topic

    settings = KafkaSettings(bootstrap)
    participant = Participant(settings, f"{unique}.svc", partitions=1, create_topics=True)
    inbox = f"{unique}.order.inbox"
    create_topic(bootstrap, inbox)

    @participant.handler(f"{unique}.commands", "Ping")
    def ping(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if payload.get("huge"):
            ctx.send(f"{unique}.effects", b"x" * 1_500_000)
        return {"pong": True}

    create_topic(bootstrap, f"{unique}.effects")
    thread, stop = participant.start()
    try:
        producer = _producer(bootstrap)
        for i in range(10):
            value = SERDE.encode_payload({"huge": i == 3})
            _send(producer, f"{unique}.commands", b"s-1", value, _command(inbox, f"c-{i}"))
        producer.flush(30)
        replies = _dead_letters(bootstrap, inbox, 9)
        letters = _dead_letters(bootstrap, participant.dlq, 1)
    finally:
        stop.set()
        thread.join(30)
    assert sorted(h["command-id"] for h in replies) == sorted(f"c-{i}" for i in range(10) if i != 3)
    [letter] = letters
    assert letter["command-id"] == "c-3"
    assert "too large" in letter["dlq-reason"].lower()
