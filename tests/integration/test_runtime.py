"""The worker on the real broker: each saga behaviour end to end, with simulated participants."""

from __future__ import annotations

import itertools
import time

import pytest
from confluent_kafka import Producer

from sagas.app import App
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from tests.support.kafka import read_all
from tests.support.runtime import Running, start_runtime
from tests.support.sagas_under_test import order_saga

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka


def test_happy_path_runs_the_three_steps_and_completes(rt: Running) -> None:
    sid = rt.client.start("order", {"order": "o-1", "behaviour": {}})
    state = rt.wait_terminal("order", sid)
    assert state.status == "completed"
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReserveStock", "ScheduleShipment"]
    assert state.data["ScheduleShipment_done"] is True

    # One journal record per transition: the start, then each of the three replies.
    journal = read_all(rt.settings.bootstrap_servers, rt.app.topics("order").journal)
    mine = [SERDE.decode_events(v)[0] for k, v in journal if k == sid.encode()]
    assert len(mine) == 4
    assert [transition[0].type for transition in mine] == ["started"] + ["reply_accepted"] * 3
    assert mine[-1][-1].type == "finished"
    assert {e.saga_id for transition in mine for e in transition} == {sid}


def test_a_failure_at_step_3_compensates_step_2_then_step_1(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {"ScheduleShipment": "fail"}})
    state = rt.wait_terminal("order", sid)
    assert state.status == "compensated"
    assert rt.participants.commands_of(sid) == [
        "ReserveCredit",
        "ReserveStock",
        "ScheduleShipment",
        "ReleaseStock",
        "ReleaseCredit",
    ]


def test_a_step_deadline_expiry_compensates_the_completed_steps(rt: Running) -> None:
    started = time.monotonic()
    sid = rt.client.start("quick_order", {"behaviour": {"ReserveStock": "silent"}})
    state = rt.wait_terminal("quick_order", sid)
    assert state.status == "compensated"
    # ReserveStock got no reply: it may have reserved, so it is released too, newest first.
    assert rt.participants.commands_of(sid) == [
        "ReserveCredit",
        "ReserveStock",
        "ReleaseStock",
        "ReleaseCredit",
    ]
    # The journal's own clock: the deadline timer was set 3 s after the command and fired no
    # earlier than due; the compensations went out after it fired.
    journal = rt.app.topics("quick_order").journal
    events = [
        e
        for _, v in read_all(rt.settings.bootstrap_servers, journal)
        for e in SERDE.decode_events(v)[0]
    ]
    mine = [e for e in events if e.saga_id == sid]
    sent = {e.body["command_type"]: e.at_ms for e in mine if e.type == "command_sent"}
    due = {e.body["timer_id"]: e.body["due_ms"] for e in mine if e.type == "timer_set"}
    fired = next(e for e in mine if e.type == "timer_fired")
    assert fired.body["timer_id"] == "reserve_stock:deadline:1"
    assert due["reserve_stock:deadline:1"] == sent["ReserveStock"] + 3000
    assert fired.at_ms >= due["reserve_stock:deadline:1"]
    assert sent["ReleaseStock"] >= fired.at_ms
    assert time.monotonic() - started < 60


def test_retryable_failures_are_retried_with_exponential_back_off(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {"ReserveCredit": "retry:2"}})
    state = rt.wait_terminal("order", sid)
    assert state.status == "completed"
    attempts = [h for h in rt.participants.handled if h.command_type == "ReserveCredit"]
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert len({a.command_id for a in attempts}) == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    # Retry(initial=0.5 s, multiplier=2, jitter=0): never earlier than 0.5 s, then 1 s.
    assert gaps[0] >= 0.5 - 0.05
    assert gaps[1] >= 1.0 - 0.05


def test_a_signal_releases_a_wait(rt: Running) -> None:
    sid = rt.client.start("approval", {"behaviour": {}})
    rt.wait_until(lambda: "ReserveCredit" in rt.participants.commands_of(sid))
    rt.client.signal("approval", sid, "approved", {"by": "alice"})
    state = rt.wait_terminal("approval", sid)
    assert state.status == "completed"
    assert state.data["by"] == "alice"
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ScheduleShipment"]


def test_a_signal_that_never_comes_times_out_and_compensates(rt: Running) -> None:
    sid = rt.client.start("approval", {"behaviour": {}})
    state = rt.wait_terminal("approval", sid)
    assert state.status == "compensated"
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReleaseCredit"]


def test_a_cancel_compensates_what_completed_and_what_may_have(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {"ReserveStock": "silent"}})
    rt.wait_until(lambda: "ReserveStock" in rt.participants.commands_of(sid))
    rt.client.cancel("order", sid, "customer changed their mind")
    state = rt.wait_terminal("order", sid)
    assert state.status in {"cancelled", "compensated"}
    # ReserveStock never answered: it may have reserved, so it is released first.
    assert rt.participants.commands_of(sid) == [
        "ReserveCredit",
        "ReserveStock",
        "ReleaseStock",
        "ReleaseCredit",
    ]


def test_the_long_running_operation_polls_until_ready(rt: Running) -> None:
    sid = rt.client.start("vm", {"behaviour": {}})
    state = rt.wait_terminal("vm", sid)
    assert state.status == "completed"
    assert rt.participants.commands_of(sid)[:2] == ["Allocate", "Status"]


def test_the_long_running_operation_times_out_cancels_verifies_and_compensates(
    rt: Running,
) -> None:
    sid = rt.client.start("vm", {"behaviour": {"Status": "pending"}})
    state = rt.wait_terminal("vm", sid)
    assert state.status in {"compensated", "failed"}
    commands = rt.participants.commands_of(sid)
    assert commands[0] == "Allocate"
    assert commands.count("Status") >= 2  # polled every 300 ms until the 2 s deadline
    cancel_at = commands.index("CancelAllocate")
    assert "Status" in commands[cancel_at + 1 :]  # the cancellation was verified


def test_poison_records_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    rt: Running, bootstrap: str
) -> None:
    inbox = rt.app.topics("order").inbox
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    producer.produce(inbox, key=b"poison-1", value=b"\x00garbage")
    producer.produce(inbox, key=b"poison-2", value=b"{}", headers=[("sagas-input", b"launch")])
    producer.flush(10)
    sid = rt.client.start("order", {"behaviour": {}}, saga_id="poison-1")  # same partition
    assert rt.wait_terminal("order", sid).status == "completed"
    dead = read_all(bootstrap, rt.app.topics("order").dlq, expect=2, with_headers=True)
    reasons = {key: headers.get("dlq-reason", "") for key, _, headers in dead}
    assert set(reasons) == {b"poison-1", b"poison-2"}
    assert "sagas-input" in reasons[b"poison-2"] or "unknown input kind" in reasons[b"poison-2"]
    assert all(headers["dlq-source-topic"] == inbox for _, _, headers in dead)


def test_a_saga_on_a_version_the_worker_lacks_is_parked_not_lost(
    bootstrap: str, unique: str
) -> None:
    settings = KafkaSettings(bootstrap)
    newer = App(unique, [order_saga(unique, version=2)], partitions=3)
    rt = start_runtime(newer, settings)
    try:
        sid = rt.client.start("order", {"behaviour": {"ReserveStock": "silent"}})
        rt.wait_until(lambda: "ReserveStock" in rt.participants.commands_of(sid))
    finally:
        rt.shutdown()

    older = App(unique, [order_saga(unique, version=1)], partitions=3)
    rt = start_runtime(older, settings, worker_id="w-old")
    try:
        rt.client.cancel("order", sid, "please stop")
        rt.client.signal("order", sid, "nudge", {})
        rt.client.cancel("order", sid, "stop, really")
        dlq = rt.app.topics("order").dlq
        rt.wait_until(lambda: len(read_all(bootstrap, dlq, timeout=2)) == 3, timeout=60)
        dead = read_all(bootstrap, dlq, with_headers=True)
        state = rt.client.status("order", sid)
    finally:
        rt.shutdown()
    assert [key for key, _, _ in dead] == [sid.encode()] * 3  # every input kept
    assert dead[0][2]["dlq-reason"].startswith("unknown-definition-version")
    assert state is not None
    assert (state.version, state.status) == (2, "running")  # kept as it was
    events = [
        e
        for _, v in read_all(bootstrap, rt.app.topics("order").journal)
        for e in SERDE.decode_events(v)[0]
    ]
    assert [e.type for e in events if e.saga_id == sid].count("parked") == 1  # said once


def test_the_client_terminates_a_saga_and_reads_its_history(rt: Running) -> None:
    sid = rt.client.start("order", {"behaviour": {"ReserveStock": "silent"}})
    rt.wait_until(lambda: "ReserveStock" in rt.participants.commands_of(sid))
    rt.client.terminate("order", sid, "stuck supplier", by="ops@example")
    state = rt.wait_terminal("order", sid)
    assert state.status == "terminated"
    assert "ReleaseCredit" not in rt.participants.commands_of(sid)  # nothing compensated
    events = [e.event for e in rt.client.history("order", sid).entries]
    assert events[0] == "started"
    assert "terminated" in events
    assert events[-1] == "finished"
