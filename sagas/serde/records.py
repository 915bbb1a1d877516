"""The library's records: saga state snapshots, journal events and JSON payloads, as Avro."""

from __future__ import annotations

import json
from typing import Any

from sagas.engine.model import JournalEvent, SagaState
from sagas.errors import DecodeError, PayloadSchemaError
from sagas.serde.avro import default_store

__all__ = [
    "decode_event",
    "decode_payload",
    "decode_state",
    "encode_event",
    "encode_payload",
    "encode_state",
]

# Fields of SagaState.to_dict() stored as typed Avro fields; the rest travel in progress_json.
_TYPED = (
    "saga_id",
    "saga_type",
    "version",
    "status",
    "started_ms",
    "updated_ms",
    "timers",
    "reason",
    "data",
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads_object(text: str, what: str, raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}", record=raw) from exc
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a JSON object, got {type(value).__name__}", record=raw)
    return value


def encode_payload(payload: dict[str, Any], schema: str | None = None) -> bytes:
    """Encode a command, reply, start or signal payload (a JSON object) as ``sagas.Payload``,
    or as the record ``schema`` names (see :mod:`sagas.serde.payloads`).

    Raises:
        PayloadSchemaError: the payload does not fit ``schema``.
    """
    if schema is None or schema == "sagas.Payload":
        return default_store().encode("sagas.Payload", {"json": _dumps(payload)})
    try:
        return default_store().encode(schema, payload)
    except KeyError:
        raise PayloadSchemaError(
            f"no payload schema {schema} is registered in this process"
        ) from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise PayloadSchemaError(f"the payload does not fit {schema}: {exc}") from exc


def decode_payload(data: bytes | None) -> dict[str, Any]:
    """Decode a payload of any known record type; an empty value is an empty payload."""
    if not data:
        return {}
    name, record = default_store().decode_any(data)
    if name == "sagas.Payload":
        return _loads_object(record["json"], "payload", data)
    return record


def encode_state(state: SagaState) -> bytes:
    """Encode a saga's snapshot as ``sagas.SagaState``."""
    full = state.to_dict()
    progress = {k: v for k, v in full.items() if k not in _TYPED}
    record = {k: full[k] for k in _TYPED if k != "data"}
    record["data_json"] = _dumps(full["data"])
    record["progress_json"] = _dumps(progress)
    return default_store().encode("sagas.SagaState", record)


def decode_state(data: bytes | None) -> SagaState:
    """Decode a ``sagas.SagaState`` snapshot."""
    record = default_store().decode("sagas.SagaState", data)
    full = _loads_object(record.pop("progress_json"), "state progress", data)
    full["data"] = _loads_object(record.pop("data_json"), "state data", data)
    full.update(record)
    try:
        return SagaState.from_dict(full)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"saga state does not fit this release: {exc}", record=data) from exc


def encode_event(event: JournalEvent, saga_type: str, version: int) -> bytes:
    """Encode a journal event as ``sagas.JournalEvent``."""
    return default_store().encode(
        "sagas.JournalEvent",
        {
            "saga_id": event.saga_id,
            "saga_type": saga_type,
            "version": version,
            "type": event.type,
            "at_ms": event.at_ms,
            "body_json": _dumps(event.body),
        },
    )


def decode_event(data: bytes | None) -> tuple[JournalEvent, str, int]:
    """Decode a ``sagas.JournalEvent``; return the event, its saga type and version."""
    record = default_store().decode("sagas.JournalEvent", data)
    body = _loads_object(record["body_json"], "event body", data)
    event = JournalEvent(record["type"], record["saga_id"], record["at_ms"], body)
    return event, record["saga_type"], record["version"]
