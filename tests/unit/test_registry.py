"""Schema-registry support: the Confluent wire format, against a registry test double over HTTP.

The registry is :mod:`tests.support.registry`, a stdlib test double of the Confluent REST API (not
the real server); the client is the real ``confluent_kafka.schema_registry.SchemaRegistryClient``,
and interop is checked against confluent-kafka's own ``AvroSerializer``/``AvroDeserializer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from sagas.engine.model import SagaState
from sagas.errors import DecodeError, RegistryError
from sagas.serde import Serde
from sagas.serde.avro import SchemaStore, schema_dir
from sagas.serde.registry import ConfluentRegistry
from sagas.settings import KafkaSettings
from tests.support.registry import RegistryDouble

STATE = SagaState("s-1", "order", 2, "running", {"a": [1, "x"]}, {"deadline": 5}, 3, 10, 20)
CTX = SerializationContext("any.topic", MessageField.VALUE)


@pytest.fixture
def registry() -> Iterator[RegistryDouble]:
    with RegistryDouble() as double:
        yield double


def _store(registry: RegistryDouble | None) -> SchemaStore:
    store = SchemaStore()
    store.load_dir(schema_dir())
    if registry is not None:
        store.set_registry(ConfluentRegistry(registry.url))
    return store


def test_records_round_trip_in_the_confluent_wire_format(registry: RegistryDouble) -> None:
    store = _store(registry)
    assert sorted(registry.subjects) == [
        "sagas.JournalEvent",
        "sagas.Payload",
        "sagas.SagaState",
        "sagas.Transition",
    ]
    client = SchemaRegistryClient({"url": registry.url})
    latest = client.get_latest_version("sagas.Payload")

    raw = store.encode("sagas.Payload", {"json": '{"a":1}'})
    assert raw[0] == 0
    assert int.from_bytes(raw[1:5], "big") == latest.schema_id
    assert json.loads(latest.schema.schema_str) == json.loads(
        (schema_dir() / "sagas.Payload.avsc").read_text()
    )
    assert store.decode("sagas.Payload", raw) == {"json": '{"a":1}'}


def test_another_reader_looks_the_id_up_once_and_caches_it(registry: RegistryDouble) -> None:
    raw = _store(registry).encode("sagas.Payload", {"json": "{}"})
    reader = _store(None)
    reader.set_registry(ConfluentRegistry(registry.url))
    reader._by_id.clear()  # as a process that registered nothing would be
    before = registry.calls("GET", "/schemas/ids/")
    for _ in range(3):
        assert reader.decode("sagas.Payload", raw) == {"json": "{}"}
    assert registry.calls("GET", "/schemas/ids/") == before + 1


def test_confluents_own_serde_reads_ours_and_we_read_theirs(registry: RegistryDouble) -> None:
    store = _store(registry)
    client = SchemaRegistryClient({"url": registry.url})
    ours = store.encode("sagas.Payload", {"json": '{"from":"sagas"}'})
    assert AvroDeserializer(client)(ours, CTX) == {"json": '{"from":"sagas"}'}

    serializer = AvroSerializer(
        client,
        (schema_dir() / "sagas.Payload.avsc").read_text(),
        conf={"subject.name.strategy": record_subject_name_strategy},
    )
    theirs = serializer({"json": '{"from":"confluent"}'}, CTX)
    assert theirs is not None
    assert theirs[0] == 0
    assert store.decode("sagas.Payload", theirs) == {"json": '{"from":"confluent"}'}


def test_both_framings_are_read_whichever_one_is_written(registry: RegistryDouble) -> None:
    with_registry, without = _store(registry), _store(None)
    by_id = with_registry.encode("sagas.Payload", {"json": '{"n":1}'})
    by_fingerprint = without.encode("sagas.Payload", {"json": '{"n":2}'})
    assert by_fingerprint[:2] == b"\xc3\x01"
    assert with_registry.decode("sagas.Payload", by_fingerprint) == {"json": '{"n":2}'}
    assert with_registry.decode("sagas.Payload", by_id) == {"json": '{"n":1}'}
    with pytest.raises(DecodeError, match=r"schema id \d+\), but no schema registry is configured"):
        without.decode("sagas.Payload", by_id)


def test_an_older_writer_schema_in_the_registry_reads_with_defaults(
    registry: RegistryDouble,
) -> None:
    v1 = (schema_dir() / "history" / "sagas.SagaState.v1.avsc").read_text()
    client = SchemaRegistryClient({"url": registry.url})
    serializer = AvroSerializer(
        client, v1, conf={"subject.name.strategy": record_subject_name_strategy}
    )
    record = {
        "saga_id": "s-1",
        "saga_type": "order",
        "version": 1,
        "status": "running",
        "started_ms": 1,
        "updated_ms": 2,
        "timers": {},
        "data_json": "{}",
        "progress_json": json.dumps({k: v for k, v in STATE.to_dict().items() if k == "steps"}),
    }
    raw = serializer(record, CTX)
    store = _store(registry)  # registers the current SagaState on top of v1: BACKWARD holds
    assert registry.subjects["sagas.SagaState"] == [1, 4]
    assert store.decode("sagas.SagaState", raw)["reason"] is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00\x00\x03\xe7\x02{}", r"schema id 999 of a sagas.Payload record is not in the "),
        (b"\x00\x00\x01", "it starts with 00 00, missing the C3 01 header"),
        (b"\x7b\x7d", "it starts with 7b 7d"),
        (b"", "it starts with nothing"),
    ],
)
def test_an_unknown_id_or_framing_is_a_clear_decode_error(
    registry: RegistryDouble, raw: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        _store(registry).decode("sagas.Payload", raw)
    assert caught.value.record == raw


def test_an_id_of_another_record_type_is_refused(registry: RegistryDouble) -> None:
    store = _store(registry)
    with pytest.raises(DecodeError, match=r"expected a sagas\.SagaState record, got a sagas\."):
        store.decode("sagas.SagaState", store.encode("sagas.Payload", {"json": "{}"}))


def test_a_registry_that_refuses_a_schema_stops_the_start(registry: RegistryDouble) -> None:
    client = SchemaRegistryClient({"url": registry.url})
    from confluent_kafka.schema_registry import Schema

    other = {"type": "record", "name": "Payload", "namespace": "sagas",
             "fields": [{"name": "blob", "type": "bytes"}]}  # fmt: skip
    client.register_schema("sagas.Payload", Schema(json.dumps(other), "AVRO"))
    with pytest.raises(RegistryError, match=r"refused registering sagas\.Payload: HTTP 409") as e:
        _store(registry)
    assert not e.value.retryable


def test_a_registry_that_does_not_answer_is_a_retriable_registry_error() -> None:
    with RegistryDouble() as gone:
        url = gone.url
    store = _store(None)
    with pytest.raises(RegistryError, match=f"at {url} did not answer registering") as e:
        store.set_registry(ConfluentRegistry(url, {"max.retries": 0}))
    assert e.value.retryable
    assert store.registry_url is None  # still writing fingerprints


def test_a_serde_switches_its_records_to_the_registry_and_back(
    registry: RegistryDouble,
) -> None:
    settings = KafkaSettings().with_env({"SAGAS_SCHEMA_REGISTRY_URL": registry.url})
    serde = Serde.for_settings(settings)
    serde.store.use_registry(settings.schema_registry_url)
    state_raw, payload_raw = serde.encode_state(STATE), serde.encode_payload({"x": 1})
    assert state_raw[0] == payload_raw[0] == 0
    assert serde.decode_state(state_raw) == STATE
    assert serde.decode_payload(payload_raw) == {"x": 1}
    posts = registry.calls("POST", "/subjects/")
    serde.store.use_registry(settings.schema_registry_url)  # the same URL: nothing registered anew
    assert registry.calls("POST", "/subjects/") == posts

    serde.store.use_registry(KafkaSettings().schema_registry_url)
    assert serde.store.registry_url is None
    assert serde.encode_payload({"x": 1})[:2] == b"\xc3\x01"
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        serde.decode_payload(payload_raw)


def test_the_registry_url_setting_code_then_env_then_flags() -> None:
    code = KafkaSettings("k:9092", {"linger.ms": "5"}, "http://code:8081")
    assert code.with_env({}).schema_registry_url == "http://code:8081"
    env = code.with_env({"SAGAS_SCHEMA_REGISTRY_URL": "http://env:8081"})
    assert env.schema_registry_url == "http://env:8081"
    assert env.options == {"linger.ms": "5"}
    assert env.bootstrap_servers == "k:9092"
    flags = env.with_flags(None, ["schema.registry.url=http://flag:8081", "acks=all"])
    assert flags.schema_registry_url == "http://flag:8081"
    assert "schema.registry.url" not in flags.client_config()  # never given to librdkafka
    assert flags.with_options({"acks": "1"}).schema_registry_url == "http://flag:8081"
    assert KafkaSettings().with_env({"SAGAS_SCHEMA_REGISTRY_URL": ""}).schema_registry_url is None


def test_a_client_with_plain_settings_leaves_a_registry_worker_serde_alone(
    registry: RegistryDouble,
) -> None:
    from sagas.app import App
    from sagas.client import SagaClient
    from sagas.dsl import Saga, step

    program = Saga(
        "ping",
        1,
        deadline=timedelta(minutes=1),
        steps=[step("ping", to="t.commands", command="Ping", kind="pivot")],
    ).compile()
    app = App("reg", [program])
    worker_serde = app.serde.with_registry(registry.url)
    worker_serde.connect()
    client = SagaClient(KafkaSettings("127.0.0.1:1"), "reg")  # no registry: fingerprints
    try:
        assert worker_serde.encode_state(STATE)[0] == 0  # still the registry's framing
        assert client.serde.encode_payload({"x": 1})[:2] == b"\xc3\x01"
        assert app.serde.encode_payload({"x": 1})[:2] == b"\xc3\x01"  # the app's own: untouched
    finally:
        client.close()
