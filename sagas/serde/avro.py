"""Avro single-object encoding with fastavro, schemas resolved by fingerprint.

``SchemaStore`` knows every schema in ``schemas/`` (the current one of each record) and in
``schemas/history/`` (earlier versions, kept so that records written by an earlier release are
still read: the writer's schema is found by fingerprint, the reader's is the current one).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from sagas.errors import DecodeError

__all__ = ["MAGIC", "SchemaStore", "default_store", "schema_dir"]

MAGIC = b"\xc3\x01"
_HEADER = len(MAGIC) + 8


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
        self._by_fingerprint: dict[bytes, tuple[str, Any]] = {}

    def add(self, schema: Mapping[str, Any], *, current: bool = True) -> str:
        """Register a schema; return its full name. ``current=False`` registers a past version."""
        parsed: Any = parse_schema(dict(schema))
        name = str(parsed["name"])
        fp = _fingerprint(schema)
        self._by_fingerprint[fp] = (name, parsed)
        if current:
            self._current[name] = (fp, parsed)
        return name

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

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` with the current schema of ``name``."""
        fp, parsed = self._current[name]
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(fp)
        schemaless_writer(out, parsed, dict(record))
        return out.getvalue()

    def decode(self, name: str, data: bytes | None) -> dict[str, Any]:
        """Decode a record into the current schema of ``name``.

        Raises:
            DecodeError: not single-object encoded, an unknown fingerprint, another record type,
                or a body that does not match its schema.
        """
        if data is None or len(data) < _HEADER or data[:2] != MAGIC:
            raise DecodeError(
                f"not an Avro single-object record of {name} (missing the C3 01 header)",
                record=data,
            )
        writer = self._by_fingerprint.get(data[2:_HEADER])
        if writer is None:
            raise DecodeError(
                f"unknown schema fingerprint {data[2:_HEADER].hex()} for {name}; the writer used "
                "a schema this release does not know (add it to schemas/history)",
                record=data,
            )
        writer_name, writer_schema = writer
        if writer_name != name:
            raise DecodeError(f"expected a {name} record, got a {writer_name}", record=data)
        try:
            value = schemaless_reader(
                io.BytesIO(data[_HEADER:]), writer_schema, self._current[name][1]
            )
        except Exception as exc:
            raise DecodeError(f"corrupt {name} record: {exc}", record=data) from exc
        if not isinstance(value, dict):
            raise DecodeError(f"corrupt {name} record", record=data)
        return value


@cache
def default_store() -> SchemaStore:
    """The store of the schemas shipped in ``schemas/``."""
    store = SchemaStore()
    store.load_dir(schema_dir())
    return store
