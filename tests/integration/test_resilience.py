"""Crash safety, rebalancing and broker restarts, on the real broker.

Commands are counted in the command topics with ``read_committed``: that is what participants
see, so "exactly once" means every command id appears there once.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagas.app import App
from sagas.client import SagaClient
from sagas.engine.model import SagaState
from sagas.runtime.topics import ensure_topics
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.resilience import MIX, PLAN, SAGAS, UNDO, wait_all_terminal
from tests.support.runtime import start_runtime
from tests.support.sagas_under_test import Participants, make_app

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def spawn_worker(ns: str, bootstrap: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    """``sagas worker`` in its own process, as in production."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAGAS_TEST_NS": ns, "SAGAS_TEST_PARTS": "3"}
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sagas.cli",
                "worker",
                "tests.support.sagas_under_test:app",
                "--worker-id",
                worker_id,
                "--bootstrap-servers",
                bootstrap,
                "--log-level",
                "info",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def command_log(bootstrap: str, app: App) -> list[dict[str, str]]:
    """Every committed command's headers, from every participant topic.

    A read_committed reader stops at the last stable offset, which an open transaction holds
    back; the topics are read until two reads a second apart agree.
    """
    topics = sorted({t for saga_type in SAGAS for t in app.latest(saga_type).topics})
    previous: list[dict[str, str]] | None = None
    for _ in range(30):
        out = [h for topic in topics for _, _, h in read_all(bootstrap, topic, with_headers=True)]
        if out == previous:
            return out
        previous = out
        time.sleep(1.0)
    raise AssertionError("the command topics did not settle")


def start_sagas(client: SagaClient, count: int) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for i in range(count):
        kind = MIX[i % len(MIX)]
        sid = f"s{i:05d}"
        client.start(PLAN[kind][3], {"behaviour": PLAN[kind][0]}, saga_id=sid)
        kinds[sid] = kind
    return kinds


def check_outcome(
    kinds: dict[str, str],
    states: dict[str, SagaState],
    commands: list[dict[str, str]],
    participants: Participants,
) -> None:
    """Terminal states as planned; each send of a command once; compensations once each, in
    reverse order. A command resent because its participant was silent keeps its id (the same
    request, the same idempotency key) with the next ``send`` number."""
    ids = collections.Counter((h["command-id"], h["send"]) for h in commands)
    duplicates = [c for c, n in ids.items() if n > 1]
    assert not duplicates, (
        f"{len(duplicates)} command sends issued more than once: {duplicates[:5]}"
    )
    by_saga: dict[str, list[str]] = collections.defaultdict(list)
    for h in commands:
        by_saga[h["saga-id"]].append(h["command-type"])
    for sid, kind in kinds.items():
        _, status, compensations, _ = PLAN[kind]
        assert states[sid].status == status, (sid, kind, states[sid].status, states[sid].reason)
        sent = [c for c in by_saga[sid] if c.startswith("Release")]
        # Exactly the compensations of the steps that sent their command (completed, or no reply
        # came: a broker outage may outlast a 3 s deadline while a reply is on its way). With 3 s
        # deadlines an outage may also make a compensation time out and go again (the same id,
        # the next send); with 60 s ones each goes once, as planned (below).
        # A command that reached its participant after its deadline was refused unrun
        # ("deadline-passed"): its step may be undone (no reply in time) or not (the refusal came
        # first), so only the handled ones must be.
        handled = {h.command_type for h in participants.handled if h.saga_id == sid}
        compensated = states[sid].status == "compensated"
        may = set(undo_order(by_saga[sid])) if compensated else set()
        must = {u for u in may if any(UNDO.get(c) == u and c in handled for c in by_saga[sid])}
        distinct = set(sent)
        assert must <= distinct <= may, (sid, kind, by_saga[sid], states[sid].completed)
        assert distinct <= handled, (sid, "a compensation was sent but never ran", by_saga[sid])
        if kind != "silent":  # long deadlines: the plan holds exactly
            assert sorted(sent) == sorted(compensations), (sid, kind, by_saga[sid])
    # Order: the topics are read one after the other, so order comes from when they were handled.
    first: dict[tuple[str, str], float] = {}
    for h in participants.handled:
        first.setdefault((h.saga_id, h.command_type), h.at)
    # Only the compensations that ran: a step whose command was refused unrun for coming after
    # its deadline failed before it did anything, so it has nothing to undo (checked above).
    for sid in kinds:
        undone = undo_order(by_saga[sid]) if states[sid].status == "compensated" else []
        handled = [first[(sid, c)] for c in undone if (sid, c) in first]
        assert handled == sorted(handled), (sid, "compensations out of order")


def undo_order(sent: list[str]) -> list[str]:
    """The compensations due after ``sent`` commands, newest step first."""
    return [UNDO[c] for c in reversed(list(dict.fromkeys(sent))) if c in UNDO]


def check_deadlines(bootstrap: str, app: App) -> int:
    """No timer fired before its due time, per the journal; return how many fired."""
    due: dict[tuple[str, str], int] = {}
    fired = 0
    for saga_type in SAGAS:
        journal = read_all(bootstrap, app.topics(saga_type).journal)
        for event in (e for _, value in journal for e in SERDE.decode_events(value)[0]):
            if event.type == "timer_set":
                due[(event.saga_id, event.body["timer_id"])] = event.body["due_ms"]
            elif event.type == "timer_fired":
                fired += 1
                due_ms = due[(event.saga_id, event.body["timer_id"])]
                assert event.at_ms >= due_ms, (event, due_ms)
    return fired


def test_sagas_survive_repeated_kill_9_of_the_worker(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    count = int(os.environ.get("SAGAS_CRASH_SAGAS", "500"))
    kills = int(os.environ.get("SAGAS_CRASH_KILLS", "5"))
    settings = KafkaSettings(bootstrap)
    app = make_app(unique)
    ensure_topics(app, settings)
    participants = Participants(settings, unique)
    client = SagaClient(settings, unique)
    log = tmp_path / "worker.log"
    rng = random.Random(7)
    worker = spawn_worker(unique, bootstrap, "w1", log)
    try:
        kinds = start_sagas(client, count)
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 4.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
            worker = spawn_worker(unique, bootstrap, "w1", log)
        states = wait_all_terminal(bootstrap, app, set(kinds), timeout=300)
        check_outcome(kinds, states, command_log(bootstrap, app), participants)
        assert check_deadlines(bootstrap, app) >= sum(k == "silent" for k in kinds.values())
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        participants.stop()
        client.close()
    assert code == 0, log.read_text()[-3000:]


def two_worker_setup(
    bootstrap: str, unique: str, tmp_path: Path
) -> tuple[App, Participants, SagaClient, list[Path]]:
    """The topics of the app under test, its participants, a client and two workers' logs."""
    settings = KafkaSettings(bootstrap)
    app = make_app(unique)
    ensure_topics(app, settings)
    return (
        app,
        Participants(settings, unique),
        SagaClient(settings, unique),
        [
            tmp_path / "w1.log",
            tmp_path / "w2.log",
        ],
    )


def test_a_killed_workers_sagas_continue_on_the_other_worker_timers_included(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    app, participants, client, logs = two_worker_setup(bootstrap, unique, tmp_path)
    first = spawn_worker(unique, bootstrap, "w1", logs[0])
    second = spawn_worker(unique, bootstrap, "w2", logs[1])
    try:
        time.sleep(3)  # both joined: partitions shared
        kinds = start_sagas(client, 150)
        time.sleep(1.5)  # some sagas wait for their silent step's deadline timers
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        states = wait_all_terminal(bootstrap, app, set(kinds), timeout=180)
        check_outcome(kinds, states, command_log(bootstrap, app), participants)
        assert check_deadlines(bootstrap, app) >= sum(k == "silent" for k in kinds.values())
        assert "assigned partitions" in logs[1].read_text()
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(60)
        participants.stop()
        client.close()
    assert code == 0, logs[1].read_text()[-3000:]


def _wait_for_line(log: Path, text: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not {count} times in {log}"
        time.sleep(0.2)


def test_a_worker_restarted_with_its_id_takes_its_partitions_back_without_a_rebalance(
    bootstrap: str, unique: str, tmp_path: Path
) -> None:
    """Static membership (the default): a worker killed and started again with its
    ``--worker-id`` gets its own partitions back, and the other worker never takes them over,
    as it would after the session timeout if the restarted one were a new member."""
    app, participants, client, logs = two_worker_setup(bootstrap, unique, tmp_path)
    first = spawn_worker(unique, bootstrap, "w1", logs[0])
    types = len(app.saga_types)
    _wait_for_line(logs[0], "assigned partitions", types)
    second = spawn_worker(unique, bootstrap, "w2", logs[1])
    try:
        _wait_for_line(logs[1], "assigned partitions", types)
        time.sleep(2.0)  # the rebalance that shared the partitions is over
        kinds = start_sagas(client, 60)
        seen_by_second = logs[1].read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        restarted = logs[0].stat().st_size
        first = spawn_worker(unique, bootstrap, "w1", logs[0])
        states = wait_all_terminal(bootstrap, app, set(kinds), timeout=180)
        check_outcome(kinds, states, command_log(bootstrap, app), participants)
        after_restart = logs[0].read_text()[restarted:]
        assert after_restart.count("assigned partitions") == types, after_restart[-3000:]
        taken_over = logs[1].read_text()[len(seen_by_second) :]
        assert "assigned partitions" not in taken_over, "the restart caused a rebalance"
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in (first, second)]
        participants.stop()
        client.close()
    assert codes == [0, 0], logs[0].read_text()[-3000:]


def test_the_worker_recovers_by_itself_from_a_broker_restart(tmp_path: Path, unique: str) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("restarting the broker needs the local broker; an external one was given")
    from sagas.dev.kafka import LocalKafka, free_port

    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port())
    broker.start()
    rt = None
    try:
        app = make_app(unique)
        rt = start_runtime(app, KafkaSettings(broker.bootstrap_servers))
        kinds = start_sagas(rt.client, 60)
        time.sleep(1.0)
        broker.stop()
        time.sleep(2.0)
        broker.start()
        states = wait_all_terminal(broker.bootstrap_servers, app, set(kinds), timeout=180)
        check_outcome(kinds, states, command_log(broker.bootstrap_servers, app), rt.participants)
        assert rt.thread.is_alive()  # it did not die on the outage
    finally:
        if rt is not None:
            rt.shutdown()
        broker.stop()
