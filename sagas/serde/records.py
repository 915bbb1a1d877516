"""The library's records: saga state snapshots, journal events and JSON payloads, as Avro.

A :class:`Serde` owns its schema store (the shipped schemas, the payload schemas registered with
it, and a schema registry when one is configured); an :class:`~sagas.app.App`, a client and a
participant each hold one and pass it down, so nothing decides the wire format for the whole
process: there is no default instance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sagas.dsl.nodes import SchemaSpec
from sagas.engine.model import JournalEvent, SagaState
from sagas.errors import DecodeError, DefinitionError, PayloadSchemaError
from sagas.serde.avro import SchemaStore, schema_dir
from sagas.serde.payloads import full_name, load_schema

__all__ = ["Serde"]

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


# The journal's records: one per transition, and the one per event of earlier releases.
_JOURNAL_RECORDS = ("sagas.Transition", "sagas.JournalEvent")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _loads_object(text: str, what: str, raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}", record=raw) from exc
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a JSON object, got {type(value).__name__}", record=raw)
    return value


class Serde:
    """The encodings of one app, client or participant.

    Args:
        registry_url: a Confluent schema registry to write for (``00`` + schema id); ``None``
            writes fingerprints. Both framings are always read. The registry is first contacted
            when a record is written (or by :meth:`connect`).
    """

    def __init__(self, registry_url: str | None = None) -> None:
        self.store = SchemaStore()
        self.store.load_dir(schema_dir())
        self.registry_url = registry_url or None
        self._connected = self.registry_url is None
        self._owners: dict[str, str] = {}

    @classmethod
    def for_settings(cls, settings: Any) -> Serde:
        """A serde for settings with a ``schema_registry_url`` (or none)."""
        return cls(getattr(settings, "schema_registry_url", None))

    def with_registry(self, registry_url: str | None) -> Serde:
        """A copy with the same schemas that writes for ``registry_url`` (``self`` when it
        already does)."""
        if (registry_url or None) == self.registry_url:
            return self
        other = Serde.__new__(Serde)
        other.store = self.store.copy()
        other.registry_url = registry_url or None
        other._connected = other.registry_url is None
        other._owners = dict(self._owners)
        return other

    def connect(self) -> None:
        """Register the current schemas with the registry (once); a no-op without one.

        Raises:
            RegistryError: the registry is unreachable or refused a schema.
        """
        if not self._connected:
            self.store.use_registry(self.registry_url)
            self._connected = True

    def register(self, spec: SchemaSpec, *, owner: str | None = None) -> str:
        """Make a payload schema known to this serde's readers and writers; return its name.

        A schema under a name that holds another one already is refused, unless both come from
        one ``owner`` (the versions of one saga type): then the one registered last writes and
        the earlier stays readable.

        Raises:
            DefinitionError: the schema is invalid, or clashes with another of the same name.
        """
        schema = load_schema(spec)
        name = full_name(schema)
        if name in self.store.names() and self.store.source(name) != schema:
            first = self._owners.get(name)
            if owner is None or first != owner:
                raise DefinitionError(
                    f"two different schemas are named {name}; give each payload type its own "
                    "name (different versions of one saga type may evolve one)"
                )
        try:
            added = self.store.add(schema)
        except Exception as exc:
            raise DefinitionError(f"{name} is not a valid Avro schema: {exc}") from exc
        self._owners.setdefault(name, owner or "")
        return added

    def _ready(self) -> SchemaStore:
        """The store, connected to the registry (when one is set)."""
        self.connect()
        return self.store

    def encode_payload(self, payload: dict[str, Any], schema: str | None = None) -> bytes:
        """Encode a command, reply, start or signal payload (a JSON object) as ``sagas.Payload``,
        or as the record ``schema`` names (see :mod:`sagas.serde.payloads`).

        Raises:
            PayloadSchemaError: the payload does not fit ``schema``.
        """
        if schema is None or schema == "sagas.Payload":
            return self._ready().encode("sagas.Payload", {"json": _dumps(payload)})
        try:
            return self._ready().encode(schema, payload)
        except KeyError:
            raise PayloadSchemaError(
                f"no payload schema {schema} is registered in this process"
            ) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise PayloadSchemaError(f"the payload does not fit {schema}: {exc}") from exc

    def decode_payload(self, data: bytes | None) -> dict[str, Any]:
        """Decode a payload of any known record type; an empty value is an empty payload."""
        if not data:
            return {}
        name, record = self._ready().decode_any(data)
        if name == "sagas.Payload":
            return _loads_object(record["json"], "payload", data)
        return record

    def encode_state(self, state: SagaState) -> bytes:
        """Encode a saga's snapshot as ``sagas.SagaState``."""
        full = state.to_dict()
        progress = {k: v for k, v in full.items() if k not in _TYPED}
        record = {k: full[k] for k in _TYPED if k != "data"}
        record["data_json"] = _dumps(full["data"])
        record["progress_json"] = _dumps(progress)
        return self._ready().encode("sagas.SagaState", record)

    def decode_state(self, data: bytes | None) -> SagaState:
        """Decode a ``sagas.SagaState`` snapshot."""
        record = self._ready().decode("sagas.SagaState", data)
        full = _loads_object(record.pop("progress_json"), "state progress", data)
        full["data"] = _loads_object(record.pop("data_json"), "state data", data)
        full.update(record)
        try:
            return SagaState.from_dict(full)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"saga state does not fit this release: {exc}", record=data) from exc

    def encode_events(self, events: Sequence[JournalEvent], saga_type: str, version: int) -> bytes:
        """Encode the events of one transition of one saga as one ``sagas.Transition``."""
        return self._ready().encode(
            "sagas.Transition",
            {
                "saga_id": events[0].saga_id,
                "saga_type": saga_type,
                "version": version,
                "events": [
                    {"type": e.type, "at_ms": e.at_ms, "body_json": _dumps(e.body)} for e in events
                ],
            },
        )

    def encode_event(self, event: JournalEvent, saga_type: str, version: int) -> bytes:
        """Encode one event as a ``sagas.JournalEvent``, the journal record of earlier releases
        (one per event); :meth:`decode_events` reads it."""
        return self._ready().encode(
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

    def decode_events(self, data: bytes | None) -> tuple[list[JournalEvent], str, int]:
        """Decode a journal record: a ``sagas.Transition``, or a ``sagas.JournalEvent`` of an
        earlier release. Return its events in order, the saga type and the version."""
        name, record = self._ready().decode_one_of(_JOURNAL_RECORDS, data)
        saga_id = record["saga_id"]
        entries = record["events"] if name == "sagas.Transition" else [record]
        events = [
            JournalEvent(
                e["type"], saga_id, e["at_ms"], _loads_object(e["body_json"], "event body", data)
            )
            for e in entries
        ]
        return events, record["saga_type"], record["version"]
