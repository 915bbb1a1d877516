"""Avro encoding with fastavro: single-object encoding by default, Confluent's with a registry.

``SchemaStore`` knows every schema in ``schemas/`` (the current one of each record) and in
``schemas/history/`` (earlier versions, kept so that records written by an earlier release are
still read: the writer's schema is found by fingerprint, the reader's is the current one).

Two framings, told apart by the first byte, are always read:

- ``C3 01`` + the writer schema's 8-byte CRC-64-AVRO fingerprint + body (Avro single-object
  encoding; what the library writes when no registry is configured);
- ``00`` + the writer schema's 4-byte big-endian id in a Confluent schema registry + body (what it
  writes once :meth:`SchemaStore.use_registry` set a registry; see :mod:`sagas.serde.registry`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from sagas.errors import DecodeError
from sagas.serde.registry import ConfluentRegistry

__all__ = ["MAGIC", "REGISTRY_MAGIC", "SchemaStore", "schema_dir"]

MAGIC = b"\xc3\x01"
REGISTRY_MAGIC = b"\x00"
_HEADER = len(MAGIC) + 8
_REGISTRY_HEADER = len(REGISTRY_MAGIC) + 4


def schema_dir() -> Path:
    """The folder of the ``.avsc`` files shipped with the package."""
    return Path(__file__).resolve().parent.parent / "schemas"


def _fingerprint(schema: Mapping[str, Any]) -> bytes:
    # fastavro returns the hex of the little-endian bytes, which is what the header carries.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(dict(schema)), "CRC-64-AVRO"))


class SchemaStore:
    """Named Avro schemas, each current one used to write, every known one used to read."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[bytes, Any]] = {}
        self._source: dict[str, dict[str, Any]] = {}
        self._by_fingerprint: dict[bytes, tuple[str, Any]] = {}
        self._registry: ConfluentRegistry | None = None
        self._ids: dict[str, int] = {}
        self._by_id: dict[int, tuple[str, Any]] = {}

    def add(self, schema: Mapping[str, Any], *, current: bool = True) -> str:
        """Register a schema; return its full name. ``current=False`` registers a past version."""
        parsed: Any = parse_schema(dict(schema))
        name = str(parsed["name"])
        fp = _fingerprint(schema)
        self._by_fingerprint[fp] = (name, parsed)
        if current:
            self._current[name] = (fp, parsed)
            self._source[name] = dict(schema)
        return name

    def copy(self) -> SchemaStore:
        """A store with the same schemas, current and past, and no registry."""
        other = SchemaStore()
        other._current = dict(self._current)
        other._source = dict(self._source)
        other._by_fingerprint = dict(self._by_fingerprint)
        return other

    def load_dir(self, folder: Path) -> None:
        """Register every ``*.avsc`` of ``folder`` as current and of ``folder/history`` as past."""
        for path in sorted(folder.glob("*.avsc")):
            self.add(json.loads(path.read_text()))
        for path in sorted((folder / "history").glob("*.avsc")):
            self.add(json.loads(path.read_text()), current=False)

    def names(self) -> list[str]:
        """The full names of the current schemas."""
        return sorted(self._current)

    def schema(self, name: str) -> Any:
        """The current parsed schema of ``name``."""
        return self._current[name][1]

    @property
    def registry_url(self) -> str | None:
        """The URL of the registry records are written for; None for fingerprints."""
        return self._registry.url if self._registry is not None else None

    def use_registry(self, url: str | None) -> None:
        """Write for the registry at ``url`` (None: fingerprints); a no-op if it is in use.

        Raises:
            RegistryError: the registry is unreachable or refused a schema.
        """
        if url == self.registry_url:
            return
        self.set_registry(ConfluentRegistry(url) if url else None)

    def set_registry(self, registry: ConfluentRegistry | None) -> None:
        """Register the current schemas with ``registry`` and write for it from now on.

        Raises:
            RegistryError: the registry is unreachable or refused a schema.
        """
        ids: dict[str, int] = {}
        by_id: dict[int, tuple[str, Any]] = {}
        if registry is not None:
            for name in self.names():
                ids[name] = registry.register(name, self._source[name])
                by_id[ids[name]] = (name, self.schema(name))
        self._registry, self._ids, self._by_id = registry, ids, by_id

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` with the current schema of ``name``."""
        fp, parsed = self._current[name]
        out = io.BytesIO()
        if self._registry is None:
            out.write(MAGIC)
            out.write(fp)
        else:
            schema_id = self._ids.get(name)
            if schema_id is None:  # added after the registry was set
                schema_id = self._ids[name] = self._registry.register(name, self._source[name])
            out.write(REGISTRY_MAGIC)
            out.write(schema_id.to_bytes(4, "big"))
        schemaless_writer(out, parsed, dict(record))
        return out.getvalue()

    def source(self, name: str) -> Mapping[str, Any]:
        """The current schema of ``name`` as it was given (before parsing)."""
        return self._source[name]

    def decode_any(self, data: bytes | None) -> tuple[str, dict[str, Any]]:
        """Decode a record of whatever type its writer used: its full name and its fields
        (read with the current schema of that name when this process has one).

        Raises:
            DecodeError: as :meth:`decode`.
            RegistryError: as :meth:`decode`.
        """
        if data and data[:2] == MAGIC and len(data) >= _HEADER:
            writer = self._by_fingerprint.get(data[2:_HEADER])
            if writer is not None:
                return writer[0], self._read((writer[0],), writer, data, _HEADER)
        if data and data[:1] == REGISTRY_MAGIC and len(data) >= _REGISTRY_HEADER:
            writer = self._by_schema_id("payload", data)
            return writer[0], self._read((writer[0],), writer, data, _REGISTRY_HEADER)
        return "sagas.Payload", self.decode("sagas.Payload", data)  # raises with the reason

    def decode(self, name: str, data: bytes | None) -> dict[str, Any]:
        """Decode a record of either framing into the current schema of ``name``.

        Raises:
            DecodeError: neither framing, an unknown fingerprint or schema id, another record
                type, or a body that does not match its schema.
            RegistryError: the record names a schema id and the registry did not answer.
        """
        return self.decode_one_of((name,), data)[1]

    def decode_one_of(
        self, names: tuple[str, ...], data: bytes | None
    ) -> tuple[str, dict[str, Any]]:
        """Decode a record whose writer used one of ``names``: the name and its fields, read
        with the current schema of that name.

        Raises:
            DecodeError: as :meth:`decode`, or a record of a type not in ``names``.
            RegistryError: as :meth:`decode`.
        """
        if data and data[:2] == MAGIC and len(data) >= _HEADER:
            writer = self._by_fingerprint.get(data[2:_HEADER])
            if writer is None:
                raise DecodeError(
                    f"unknown schema fingerprint {data[2:_HEADER].hex()} for "
                    f"{' or '.join(names)}; the writer used a schema this release does not know "
                    "(add it to schemas/history)",
                    record=data,
                )
            return writer[0], self._read(names, writer, data, _HEADER)
        if data and data[:1] == REGISTRY_MAGIC and len(data) >= _REGISTRY_HEADER:
            writer = self._by_schema_id(" or ".join(names), data)
            return writer[0], self._read(names, writer, data, _REGISTRY_HEADER)
        start = data[:2].hex(" ") if data else "nothing"
        what = " or ".join(names)
        raise DecodeError(
            f"not an Avro record of {what}: it starts with {start}, missing the C3 01 header "
            "of the single-object encoding and not 00 + a 4-byte schema id of the "
            "schema-registry format",
            record=data,
        )

    def _by_schema_id(self, name: str, data: bytes) -> tuple[str, Any]:
        schema_id = int.from_bytes(data[1:_REGISTRY_HEADER], "big")
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        if self._registry is None:
            raise DecodeError(
                f"a {name} record in the schema-registry format (schema id {schema_id}), but no "
                "schema registry is configured: set SAGAS_SCHEMA_REGISTRY_URL or "
                "KafkaSettings.schema_registry_url",
                record=data,
            )
        text = self._registry.schema_text(schema_id)
        if text is None:
            raise DecodeError(
                f"schema id {schema_id} of a {name} record is not in the schema registry at "
                f"{self._registry.url}",
                record=data,
            )
        try:
            parsed: Any = parse_schema(json.loads(text))
        except Exception as exc:
            raise DecodeError(
                f"schema id {schema_id} in the registry is not a valid Avro schema: {exc}",
                record=data,
            ) from exc
        known = self._by_id[schema_id] = (str(parsed["name"]), parsed)
        return known

    def _read(
        self, names: tuple[str, ...], writer: tuple[str, Any], data: bytes, start: int
    ) -> dict[str, Any]:
        name, writer_schema = writer
        if name not in names:
            raise DecodeError(f"expected a {' or '.join(names)} record, got a {name}", record=data)
        reader = self._current[name][1] if name in self._current else writer_schema
        try:
            value = schemaless_reader(io.BytesIO(data[start:]), writer_schema, reader)
        except Exception as exc:
            raise DecodeError(f"corrupt {name} record: {exc}", record=data) from exc
        if not isinstance(value, dict):
            raise DecodeError(f"corrupt {name} record", record=data)
        return value
