"""Pure parts of the Kafka shell: records, the wire contract, partitioning, the store, settings."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sagas.engine.model import (
    Cancel,
    CommandOut,
    JournalEvent,
    ParentRef,
    Reply,
    SagaState,
    Signal,
    Start,
    TimerFired,
)
from sagas.errors import ConfigurationError, DecodeError
from sagas.partitioning import murmur2, partition_for
from sagas.protocol import STATE_SUMMARY, traceparent
from sagas.runtime.store import EXPIRE, PartitionStore
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from sagas.wire import (
    StateSummary,
    command_record,
    decode_input,
    header_dict,
    input_record,
    read_summary,
    summary_header,
)

SERDE = Serde()
"""The encodings these records are read and written with."""


def _state(timers: dict[str, int] | None = None, saga_id: str = "s1") -> SagaState:
    return SagaState(
        saga_id,
        "order",
        2,
        "running",
        {"n": 1, "nested": {"a": [1, "x"]}},
        timers or {},
        42,
        1000,
        2000,
        parent=ParentRef("parent", "p1", "p1:c:1"),
    )


def test_state_snapshots_round_trip_through_avro() -> None:
    state = _state({"deadline": 5000})
    assert SERDE.decode_state(SERDE.encode_state(state)) == state


def test_a_transitions_events_round_trip_in_one_record_with_their_saga_type_and_version() -> None:
    sent = JournalEvent("command_sent", "s1", 1234, {"command_id": "s1:a:1"})
    timer = JournalEvent("timer_set", "s1", 1234, {"timer_id": "t", "due_ms": 2000})
    assert SERDE.decode_events(SERDE.encode_events([sent, timer], "order", 3)) == (
        [sent, timer],
        "order",
        3,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "missing the C3 01 header"),
        (b"{}", "missing the C3 01 header"),
        (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown schema fingerprint"),
    ],
)
def test_undecodable_records_raise_a_decode_error_that_keeps_the_record(
    data: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        SERDE.decode_state(data)
    assert caught.value.record == data


def test_a_record_of_another_type_is_refused() -> None:
    with pytest.raises(
        DecodeError, match=r"expected a sagas\.SagaState record, got a sagas\.Payload"
    ):
        SERDE.decode_state(SERDE.encode_payload({"a": 1}))


def test_a_payload_must_be_a_json_object() -> None:
    raw = SERDE.store.encode("sagas.Payload", {"json": "[1, 2]"})
    with pytest.raises(DecodeError, match="must be a JSON object"):
        SERDE.decode_payload(raw)


@pytest.mark.parametrize(
    "inp",
    [
        Start("s1", {"a": 1}),
        Start("s1", {}, ParentRef("parent", "p1", "p1:child:1")),
        Reply("s1", "s1:step:1", "retryable-failure", {"error": "busy"}),
        Signal("s1", "approved", {"by": "alice"}),
        Cancel("s1", "changed my mind"),
    ],
)
def test_every_inbox_input_round_trips_through_its_record(inp: object) -> None:
    rec = input_record("ns.order.inbox", inp, SERDE)  # type: ignore[arg-type]
    assert rec.key == b"s1"
    assert decode_input(rec.key, rec.value, rec.headers, SERDE) == inp


def test_a_reply_from_a_plain_kafka_client_needs_no_sagas_input_header() -> None:
    headers = [("saga-id", b"s1"), ("command-id", b"s1:x:1"), ("outcome", b"success")]
    assert decode_input(b"s1", SERDE.encode_payload({"ok": True}), headers, SERDE) == Reply(
        "s1", "s1:x:1", "success", {"ok": True}
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("sagas-input", b"launch")], "unknown input kind 'launch'"),
        ([("command-id", b"c"), ("outcome", b"maybe")], "outcome 'maybe' is not one of"),
        ([("sagas-input", b"signal")], "signal without a signal header"),
        ([("sagas-input", b"start"), ("saga-id", b"\xff")], "not UTF-8"),
    ],
)
def test_invalid_inputs_say_what_is_wrong(headers: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_input(b"s1", SERDE.encode_payload({}), headers, SERDE)


def test_an_input_without_any_saga_id_is_refused() -> None:
    with pytest.raises(DecodeError, match="no saga id"):
        decode_input(None, None, [("sagas-input", b"start")], SERDE)


def test_commands_carry_the_wire_contract_headers() -> None:
    cmd = CommandOut(
        "s1:credit:1",
        "s1",
        "order",
        "credit",
        "ReserveCredit",
        "credit.commands",
        {"amount": 5},
        1,
        99000,
    )
    rec = command_record(cmd, "ns.order.inbox", serde=SERDE)
    assert rec.topic == "credit.commands"
    assert rec.key == b"s1"
    assert header_dict(rec.headers) == {
        "saga-id": "s1",
        "saga-type": "order",
        "command-id": "s1:credit:1",
        "command-type": "ReserveCredit",
        "attempt": "1",
        "send": "1",
        "reply-to": "ns.order.inbox",
        "deadline": "99000",
        "traceparent": traceparent("order", "s1"),
    }
    assert SERDE.decode_payload(rec.value) == {"amount": 5}


@pytest.mark.parametrize(
    ("key", "java_hash"),
    [  # org.apache.kafka.common.utils.UtilsTest#testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, java_hash: int) -> None:
    assert murmur2(key) == java_hash & 0xFFFFFFFF


def test_partition_for_is_the_positive_hash_modulo_the_count() -> None:
    assert partition_for(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


def _store(**options: Any) -> PartitionStore:
    return PartitionStore(0, SERDE.decode_state, **options)


def _put(store: PartitionStore, state: SagaState, *, parked: bool = False) -> None:
    store.put(state, SERDE.encode_state(state), parked=parked)


def test_the_timer_index_never_yields_a_timer_before_it_is_due() -> None:
    store = _store()
    _put(store, _state({"a": 300, "b": 100}, "s1"))
    _put(store, _state({"c": 200}, "s2"))
    assert store.next_due() == 100
    assert store.pop_due(99, 10) == []
    assert store.pop_due(200, 10) == [TimerFired("s1", "b", 100), TimerFired("s2", "c", 200)]
    assert store.next_due() == 300


def test_a_timer_removed_or_moved_by_a_new_snapshot_is_not_yielded() -> None:
    store = _store()
    _put(store, _state({"a": 100, "b": 150}))
    _put(store, _state({"a": 500}))  # b cancelled, a moved
    assert store.pop_due(400, 10) == []
    assert store.pop_due(500, 10) == [TimerFired("s1", "a", 500)]


def test_a_timer_kept_by_new_snapshots_fires_once() -> None:
    store = _store()
    for _ in range(3):  # e.g. replies that leave the deadline as it is
        _put(store, _state({"a": 100}))
    _put(store, _state({"a": 200}))
    _put(store, _state({"a": 100}))  # moved back: an index entry of the first due is left
    assert store.pop_due(1000, 10) == [TimerFired("s1", "a", 100)]
    assert store.pop_due(1000, 10) == []


def test_a_taken_timer_still_pending_after_the_commit_is_indexed_again() -> None:
    store = _store()
    _put(store, _state({"a": 100}))
    assert store.pop_due(100, 10) == [TimerFired("s1", "a", 100)]
    assert store.next_due() is None
    _put(store, _state({"a": 100}))  # the committed state still holds it
    assert store.pop_due(100, 10) == [TimerFired("s1", "a", 100)]


def test_timers_of_an_aborted_transaction_come_back() -> None:
    store = _store()
    _put(store, _state({"a": 100}))
    taken = store.pop_due(100, 10)
    assert store.next_due() is None
    store.restore_timers(taken)
    assert store.pop_due(100, 10) == taken


def test_parked_sagas_keep_their_state_but_run_no_timers() -> None:
    store = _store()
    _put(store, _state({"a": 100}), parked=True)
    assert "s1" in store
    assert store.pop_due(1000, 10) == []


def test_a_finished_saga_expires_after_its_versions_retention() -> None:
    store = _store(retention=lambda version: 50 if version == 2 else None)
    done = dataclasses.replace(_state({"a": 100}), status="completed")
    _put(store, done)
    other = dataclasses.replace(done, saga_id="s2", version=3)  # kept forever
    _put(store, other)
    assert store.pop_due(2049, 10) == []
    assert store.pop_due(2050, 10) == [TimerFired("s1", EXPIRE, 2050)]


class _CountingDecode:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: bytes) -> SagaState:
        self.calls += 1
        return SERDE.decode_state(value)


def test_a_snapshot_stored_with_its_summary_is_decoded_only_when_needed() -> None:
    decode = _CountingDecode()
    store = PartitionStore(0, decode)
    for sid in ("s1", "s2"):
        state = _state({"a": 100}, sid)
        _, header = summary_header(state)
        summary = read_summary([("other", b"x"), (STATE_SUMMARY, header)])
        assert summary is not None
        store.put_encoded(sid, SERDE.encode_state(state), summary)
    assert store.pop_due(100, 10) == [TimerFired("s1", "a", 100), TimerFired("s2", "a", 100)]
    assert [(sid, saga.status, saga.updated_ms) for sid, saga in store.sagas()] == [
        ("s1", "running", 2000),
        ("s2", "running", 2000),
    ]
    assert decode.calls == 0
    assert store.get("s1") == store.peek("s1") == _state({"a": 100}, "s1")
    assert decode.calls == 2
    assert store.get("nobody") is None


def test_an_unreadable_snapshot_is_forgotten_when_the_worker_needs_it() -> None:
    store = _store()
    store.put_encoded("s1", b"garbage", StateSummary.of(_state({"a": 100})))
    assert store.peek("s1") is None
    assert "s1" in store  # a query thread changes nothing
    assert store.get("s1") is None
    assert "s1" not in store
    assert store.pop_due(1000, 10) == []


def test_the_summary_header_round_trips_and_a_bad_one_reads_as_none() -> None:
    state = _state({"a": 100, "b": 7})
    name, value = summary_header(state)
    assert name == STATE_SUMMARY
    assert read_summary({name: value}) == StateSummary("running", 2, 2000, ("a", 100, "b", 7))
    assert read_summary([(name, value)]) == StateSummary.of(state)
    assert read_summary(None) is None
    assert read_summary([("saga-id", b"s1")]) is None
    for bad in (
        b"[",
        b"{}",
        b'["running",2]',
        b'["running",2,1,"a"]',
        b'["running",2,1]x',
        b'["running","2",1]',
        b'["running",2,1,"a",1.5]',
        b'["running",2,1,7,100]',
        b'["running",2,true]',
        b"[1,2,1]",
        b"\xff",
    ):
        assert read_summary([(STATE_SUMMARY, bad)]) is None, bad


def test_settings_precedence_is_flags_over_environment_over_code() -> None:
    code = KafkaSettings("code:9092", {"linger.ms": "1", "client.id": "code"})
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "env:9092",
        "SAGAS_KAFKA_LINGER_MS": "5",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }
    settings = code.with_env(env).with_flags("flag:9092", ["linger.ms=9"])
    config = settings.client_config()
    assert config.pop("logger") is not None  # librdkafka's log goes through Python logging
    assert config == {
        "bootstrap.servers": "flag:9092",
        "linger.ms": "9",
        "client.id": "code",
        "security.protocol": "SASL_SSL",
    }
    assert code.with_env(env).bootstrap_servers == "env:9092"


def test_a_malformed_option_flag_says_how_to_write_it() -> None:
    with pytest.raises(ConfigurationError, match="must be key=value"):
        KafkaSettings().with_flags(None, ["linger.ms"])


def test_commands_carry_the_sagas_w3c_trace_and_replies_echo_it() -> None:
    from sagas.participants import Participant
    from sagas.protocol import saga_trace_ids

    header = traceparent("order", "s1")
    version, trace_id, span_id, flags = header.split("-")
    assert (version, flags, len(trace_id), len(span_id)) == ("00", "01", 32, 16)
    assert (int(trace_id, 16), int(span_id, 16)) == saga_trace_ids("order", "s1")
    participant = Participant(KafkaSettings("127.0.0.1:1"), "svc")
    participant.handler("credit.commands", "ReserveCredit")(lambda payload, ctx: {"ok": True})
    cmd = CommandOut(
        "s1:credit:1", "s1", "order", "credit", "ReserveCredit", "credit.commands", {}, 1, None
    )
    rec = command_record(cmd, "ns.order.inbox", serde=SERDE)
    executed = participant.execute("credit.commands", rec.value, rec.headers)
    assert executed.reply is not None
    assert header_dict(executed.reply.headers)["traceparent"] == header
    start = input_record("ns.order.inbox", Start("s1", {}), SERDE, saga_type="order")
    assert header_dict(start.headers)["traceparent"] == header  # the client's start too


def test_a_late_command_is_refused_unless_it_may_have_reached_a_handler_before() -> None:
    from sagas.participants import Participant

    ran: list[str] = []
    participant = Participant(KafkaSettings("127.0.0.1:1"), "svc", clock_ms=lambda: 10_000)
    participant.handler("credit.commands", "ReserveCredit")(
        lambda payload, ctx: ran.append(ctx.idempotency_key) or {"ok": True}
    )
    cmd = CommandOut(
        "s1:credit:1", "s1", "order", "credit", "ReserveCredit", "credit.commands", {}, 1, 5_000
    )
    rec = command_record(cmd, "ns.order.inbox", serde=SERDE)
    first = participant.execute("credit.commands", rec.value, rec.headers)
    assert first.reply is not None
    assert header_dict(first.reply.headers)["outcome"] == "failure"
    assert ran == []  # first seen after its deadline: refused, the handler did not run
    again = participant.execute("credit.commands", rec.value, rec.headers, seen_before=True)
    assert again.reply is not None
    assert header_dict(again.reply.headers)["outcome"] == "success"
    assert ran == ["s1:credit:1"]  # a previous owner may have run it: run again, same key
