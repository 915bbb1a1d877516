"""User payload schemas: dataclass mapping, .avsc files, encoding, and the errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import sagas
from sagas import Saga, call, step
from sagas.app import App
from sagas.errors import DefinitionError, PayloadSchemaError
from sagas.serde import Serde
from sagas.serde.payloads import avro_schema, from_record, load_schema

SERDE = Serde()
"""The encodings these records are read and written with."""


@dataclass
class Line:
    sku: str
    quantity: int = 1


@dataclass
class Reserve:
    order_id: str
    amount: float
    lines: list[Line]
    express: bool = False
    note: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Reserved:
    reservation_id: str


def test_a_dataclass_maps_to_an_avro_record() -> None:
    schema = avro_schema(Reserve, namespace="shop")
    assert schema["name"] == "Reserve"
    assert schema["namespace"] == "shop"
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["order_id"]["type"] == "string"
    assert fields["amount"]["type"] == "double"
    assert fields["express"] == {"name": "express", "type": "boolean", "default": False}
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["tags"]["type"] == {"type": "map", "values": "string"}
    assert fields["tags"]["default"] == {}
    line = fields["lines"]["type"]["items"]
    assert line["name"] == "Line"
    assert line["fields"][1] == {"name": "quantity", "type": "long", "default": 1}


def test_a_field_type_without_a_mapping_is_refused_with_the_fix() -> None:
    @dataclass
    class Bad:
        when: complex

    with pytest.raises(DefinitionError, match=r"no Avro mapping .* give the schema as a .avsc"):
        avro_schema(Bad)
    with pytest.raises(DefinitionError, match="not a dataclass"):
        avro_schema(int)


def test_payloads_round_trip_as_their_own_record_and_build_dataclasses() -> None:
    name = SERDE.register(Reserve)
    payload = {
        "order_id": "o-1",
        "amount": 12.5,
        "lines": [{"sku": "book", "quantity": 2}],
        "express": True,
        "note": None,
        "tags": {"gift": "yes"},
    }
    data = SERDE.encode_payload(payload, name)
    assert data[:2] == b"\xc3\x01"
    assert SERDE.decode_payload(data) == payload
    assert SERDE.encode_payload(payload) != data  # without a schema: sagas.Payload
    assert SERDE.decode_payload(SERDE.encode_payload(payload)) == payload
    typed = from_record(Reserve, SERDE.decode_payload(data))
    assert typed == Reserve("o-1", 12.5, [Line("book", 2)], True, None, {"gift": "yes"})


def test_a_payload_that_does_not_fit_its_schema_says_why() -> None:
    name = SERDE.register(Reserved)
    with pytest.raises(PayloadSchemaError, match="does not fit"):
        SERDE.encode_payload({"reservation_id": 42}, name)
    with pytest.raises(PayloadSchemaError, match="no payload schema"):
        SERDE.encode_payload({}, "nobody.Registered")


def test_avsc_files_and_dicts_load_and_clashing_names_are_refused(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "Shipped",
        "namespace": "test.payloads",
        "fields": [{"name": "tracking", "type": "string"}],
    }
    path = tmp_path / "shipped.avsc"
    path.write_text(json.dumps(schema))
    assert load_schema(path) == schema
    assert SERDE.register(str(path)) == "test.payloads.Shipped"
    assert SERDE.register(schema) == "test.payloads.Shipped"  # the same again is fine
    other = {**schema, "fields": [{"name": "carrier", "type": "string"}]}
    with pytest.raises(DefinitionError, match="two different schemas are named"):
        SERDE.register(other)
    with pytest.raises(DefinitionError, match="cannot read the Avro schema"):
        load_schema(tmp_path / "missing.avsc")
    with pytest.raises(DefinitionError, match="must be an Avro record"):
        load_schema({"type": "string"})


def _saga(payload_schema: Any, undo_schema: Any = None) -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]](
        "typed",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step(
                "reserve",
                to="t.commands",
                command="Reserve",
                payload=lambda d: d,
                payload_schema=payload_schema,
                reply_schema=Reserved,
                compensate=call("Release", schema=undo_schema),
            ),
            step("ship", to="t.commands", command="Reserve", kind="pivot", payload_schema=Line),
        ],
    )


def test_one_command_type_has_one_schema() -> None:
    with pytest.raises(DefinitionError, match="command Reserve has two payload schemas"):
        sagas.compile(_saga(Reserve))


def test_the_app_registers_a_programs_schemas_and_names_them_per_command() -> None:
    saga = Saga[dict[str, Any]](
        "typed",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step(
                "reserve",
                to="t.commands",
                command="Reserve",
                payload_schema=Reserve,
                reply_schema=Reserved,
                compensate=call("Release", schema=Line),
            )
        ],
    )
    program = sagas.compile(saga)
    app = App("t", [program])
    assert app.payload_schema(program, "Reserve") == f"{Reserve.__module__}.Reserve"
    assert app.payload_schema(program, "Release") == f"{Line.__module__}.Line"
    assert app.payload_schema(program, "Other") is None


def test_a_misfit_payload_makes_the_saga_stuck_in_the_test_env_as_in_the_worker() -> None:
    from sagas.testing import SagaTestEnv, succeed

    @dataclass
    class Charge:
        amount: int

    saga = Saga[dict[str, Any]](
        "misfit",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step(
                "charge",
                to="t.commands",
                command="Charge",
                payload=lambda d: {"amount": "not a number"},
                payload_schema=Charge,
                kind="pivot",
            )
        ],
    )
    env = SagaTestEnv(saga)
    env.on("Charge", succeed())
    state = env.start("misfit", "m1", {})
    assert state is not None
    assert state.status == "stuck"  # the start was not applied: it is held for a resume
    assert env.commands == []
    assert state.stuck is not None
    assert state.stuck["error"] == "PayloadSchemaError"
    assert state.stuck["step"] == "charge"
    assert "does not fit" in state.stuck["message"]
    assert state.kept[0]["kind"] == "start"


def test_an_app_holds_two_versions_whose_payload_dataclass_gained_an_optional_field() -> None:
    import dataclasses

    from sagas.serde.payloads import avro_schema

    @dataclass
    class Parcel:
        sku: str

    v1_schema = avro_schema(Parcel)

    @dataclass
    class Parcel:  # type: ignore[no-redef]  # the same record, a release later
        sku: str
        express: bool = False

    def saga(version: int, schema: Any) -> Any:
        return Saga[dict[str, Any]](
            "parcel",
            version=version,
            deadline=timedelta(minutes=1),
            steps=[
                step(
                    "ship",
                    to="t.commands",
                    command="Ship",
                    kind="pivot",
                    payload=lambda d: {"sku": "a"},
                    payload_schema=schema,
                )
            ],
        ).compile()

    app = App("evolve", [saga(1, v1_schema), saga(2, Parcel)])
    name = app.payload_schema(app.program("parcel", 1), "Ship")
    assert name == app.payload_schema(app.program("parcel", 2), "Ship")
    old = app.serde.encode_payload({"sku": "a"}, name)  # a v1 saga's payload: the default fills in
    assert app.serde.decode_payload(old) == {"sku": "a", "express": False}
    assert dataclasses.is_dataclass(Parcel)
    # Two saga types may not give one record name two schemas.
    with pytest.raises(DefinitionError, match="two different schemas"):
        App("clash", [saga(1, v1_schema), Saga[dict[str, Any]](
            "other", version=1, deadline=timedelta(minutes=1),
            steps=[step("ship", to="t.commands", command="Ship", kind="pivot",
                        payload_schema=Parcel)],
        ).compile()])  # fmt: skip
