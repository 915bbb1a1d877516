"""Records written with every schema version in schemas/history still read, and the checker bites.

Each history version writes a record the way an earlier release (or a participant in another
language) would: fastavro, single-object encoding, the fingerprint computed here from the
history file itself. The library's own decoders must read it into the current schema, fields
the old version lacks taking their defaults.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from sagas.engine.model import JournalEvent, ParentRef, SagaState
from sagas.serde import Serde
from sagas.serde.avro import SchemaStore, schema_dir
from sagas.serde.compat import check, main

SERDE = Serde()
"""The encodings these records are read and written with."""

HISTORY = sorted((schema_dir() / "history").glob("*.avsc"))
STATE = SagaState(
    "s-1",
    "order",
    3,
    "compensated",
    {"customer": "ada", "items": ["book"], "total": 30.5},
    {"deadline": 9_000},
    7,
    1_000,
    2_000,
    parent=ParentRef("parent", "p-1", "p-1:child:1"),
    reason="OutOfStock",
)
EVENT = JournalEvent("command_sent", "s-1", 1_234, {"command_id": "s-1:reserve:1"})
TIMER = JournalEvent("timer_set", "s-1", 1_234, {"timer_id": "deadline", "due_ms": 9_000})
PAYLOAD = {"customer": "ada", "amount": 30.5, "nested": {"a": [1, None, "x"]}}


def _single_object(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """What a writer with ``schema`` puts on the wire, computed without the library."""
    fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    out = io.BytesIO()
    out.write(b"\xc3\x01" + bytes.fromhex(fp))
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def _current_record(name: str) -> dict[str, Any]:
    """The fields the current release writes for the sample value of record ``name``."""
    encoded = {
        "sagas.SagaState": lambda: SERDE.encode_state(STATE),
        "sagas.JournalEvent": lambda: SERDE.encode_event(EVENT, "order", 3),
        "sagas.Transition": lambda: SERDE.encode_events([EVENT, TIMER], "order", 3),
        "sagas.Payload": lambda: SERDE.encode_payload(PAYLOAD),
    }[name]()
    value = schemaless_reader(io.BytesIO(encoded[10:]), SERDE.store.schema(name), None)
    assert isinstance(value, dict)
    return value


def _defaults(name: str) -> dict[str, Any]:
    current = json.loads((schema_dir() / f"{name}.avsc").read_text())
    return {f["name"]: f["default"] for f in current["fields"] if "default" in f}


def test_every_record_type_has_history() -> None:
    names = {json.loads(p.read_text())["namespace"] + "." + json.loads(p.read_text())["name"]
             for p in HISTORY}  # fmt: skip
    assert names == {"sagas.SagaState", "sagas.JournalEvent", "sagas.Transition", "sagas.Payload"}
    shipped = SchemaStore()  # the library's own schemas (the process store also holds payloads)
    shipped.load_dir(schema_dir())
    assert set(shipped.names()) == names


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
def test_a_record_written_with_a_history_version_reads_into_the_current_schema(
    path: Path,
) -> None:
    schema = json.loads(path.read_text())
    name = f"{schema['namespace']}.{schema['name']}"
    written = _current_record(name)
    fields = [f["name"] for f in schema["fields"]]
    raw = _single_object(schema, {f: written[f] for f in fields})

    # The values the old writer had survive; the fields it lacked take the current defaults.
    expected = {f: written[f] if f in fields else _defaults(name)[f] for f in written}
    assert SERDE.store.decode(name, raw) == expected

    if name == "sagas.SagaState":
        state = SERDE.decode_state(raw)
        assert state == (STATE if "reason" in fields else dataclasses.replace(STATE, reason=None))
    elif name == "sagas.JournalEvent":
        assert SERDE.decode_events(raw) == ([EVENT], "order", 3)
    elif name == "sagas.Transition":
        assert SERDE.decode_events(raw) == ([EVENT, TIMER], "order", 3)
    else:
        assert SERDE.decode_payload(raw) == PAYLOAD


def test_a_journal_holds_old_one_event_records_and_new_transition_records() -> None:
    # Earlier releases wrote one record per event; a journal written across an upgrade has both.
    journal = [
        SERDE.encode_event(EVENT, "order", 3),
        SERDE.encode_events([EVENT, TIMER], "order", 4),
    ]
    assert [SERDE.decode_events(raw) for raw in journal] == [
        ([EVENT], "order", 3),
        ([EVENT, TIMER], "order", 4),
    ]


def test_a_state_from_before_reason_existed_reads_with_no_reason() -> None:
    v1 = json.loads((schema_dir() / "history" / "sagas.SagaState.v1.avsc").read_text())
    assert "reason" not in [f["name"] for f in v1["fields"]]
    written = _current_record("sagas.SagaState")
    del written["reason"]
    state = SERDE.decode_state(_single_object(v1, written))
    assert state.reason is None
    assert state.data == STATE.data
    assert state.parent == STATE.parent
    assert state.timers == STATE.timers


def test_the_shipped_schemas_pass_the_compatibility_check() -> None:
    assert check(schema_dir()) == []


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """A copy of schemas/ to break."""
    folder = tmp_path / "schemas"
    shutil.copytree(schema_dir(), folder)
    return folder


def _evolve(folder: Path, name: str, change: Any) -> None:
    """Change the current schema ``name`` and record it in history, as the rules say."""
    path = folder / f"{name}.avsc"
    schema = json.loads(path.read_text())
    change(schema["fields"])
    path.write_text(json.dumps(schema))
    newest = max(int(p.name.rsplit(".v", 1)[1][:-5]) for p in folder.glob(f"history/{name}.v*"))
    (folder / "history" / f"{name}.v{newest + 1}.avsc").write_text(json.dumps(schema))


def test_adding_a_field_with_a_default_passes(schemas: Path) -> None:
    _evolve(
        schemas,
        "sagas.JournalEvent",
        lambda fields: fields.append(
            {"name": "trace", "type": ["null", "string"], "default": None}
        ),
    )
    assert check(schemas) == []


def test_a_new_field_without_a_default_breaks_backward(
    schemas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _evolve(
        schemas,
        "sagas.SagaState",
        lambda fields: fields.append({"name": "tenant", "type": "string"}),
    )
    problems = check(schemas)
    assert len(problems) == 2  # the current one cannot read v1 nor v2
    assert all(p.startswith("sagas.SagaState: backward") for p in problems)
    assert "reader_field_missing_default_value (tenant)" in problems[0]
    assert "give the field a default" in problems[0]
    assert main([str(schemas)]) == 1
    assert "schema check failed: 2 problem(s)" in capsys.readouterr().err


def test_removing_a_field_without_a_default_breaks_forward(schemas: Path) -> None:
    _evolve(
        schemas,
        "sagas.JournalEvent",
        lambda fields: fields.remove(next(f for f in fields if f["name"] == "saga_type")),
    )
    assert check(schemas) == [
        "sagas.JournalEvent: forward: v1 cannot read records written with the current schema: "
        "reader_field_missing_default_value (saga_type) at /fields/1: the reader has this field "
        "and the writer lacks it: give the field a default"
    ]


def test_a_type_change_breaks_both_directions(schemas: Path) -> None:
    def to_int(fields: list[dict[str, Any]]) -> None:
        fields[0]["type"] = "int"

    _evolve(schemas, "sagas.Payload", to_int)
    problems = check(schemas)
    assert [p.split(":")[1].strip() for p in problems] == ["backward", "forward"]
    assert all("type_mismatch" in p and "/fields/0/type" in p for p in problems)


def test_an_edited_schema_without_its_history_entry_is_refused(schemas: Path) -> None:
    path = schemas / "sagas.Payload.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][0]["doc"] = "changed"
    path.write_text(json.dumps(schema))
    assert check(schemas) == [
        f"{path} is not its newest history version (v1): copy it to "
        f"{schemas / 'history' / 'sagas.Payload.v2.avsc'}"
    ]


def test_a_deleted_or_misnamed_history_version_is_refused(schemas: Path) -> None:
    (schemas / "history" / "sagas.SagaState.v1.avsc").unlink()
    shutil.copy(schemas / "sagas.Payload.avsc", schemas / "history" / "sagas.SagaState.v3.avsc")
    problems = check(schemas)
    assert any("history lacks v1" in p for p in problems)
    assert any("holds sagas.Payload, its name says sagas.SagaState" in p for p in problems)
