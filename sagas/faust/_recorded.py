"""The value of a Faust participant's recorded-replies table: one command's reply and effects.

Avro (``sagas.FaustRecordedReply``, schemaless, after one format byte), so the changelog
outlives releases: add fields only with a default.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from sagas.errors import DecodeError
from sagas.wire import OutRecord

_FORMAT = b"\x01"
_OUT = {
    "type": "record",
    "name": "FaustOutRecord",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "key", "type": "bytes"},
        {"name": "value", "type": "bytes"},
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "FaustHeader",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "value", "type": ["null", "bytes"]},
                    ],
                },
            },
        },
    ],
}
_SCHEMA = parse_schema(
    {
        "type": "record",
        "name": "FaustRecordedReply",
        "namespace": "sagas",
        "fields": [
            {"name": "source_topic", "type": "string"},
            {"name": "source_partition", "type": "int"},
            {"name": "source_offset", "type": "long"},
            {"name": "reply", "type": ["null", _OUT]},
            {"name": "effects", "type": {"type": "array", "items": "FaustOutRecord"}},
        ],
    }
)


@dataclass(frozen=True)
class Recorded:
    """A handled command: where its record was read, its reply (``None``: none) and effects."""

    source: tuple[str, int, int]
    reply: OutRecord | None
    effects: list[OutRecord]

    def encode(self) -> bytes:
        """The table value."""
        out = io.BytesIO()
        out.write(_FORMAT)
        topic, partition, offset = self.source
        schemaless_writer(
            out,
            _SCHEMA,
            {
                "source_topic": topic,
                "source_partition": partition,
                "source_offset": offset,
                "reply": None if self.reply is None else _out(self.reply),
                "effects": [_out(e) for e in self.effects],
            },
        )
        return out.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Recorded:
        """Read a table value back.

        Raises:
            DecodeError: the value was not written by :meth:`encode`.
        """
        if not data.startswith(_FORMAT):
            raise DecodeError("not a recorded reply of a Faust participant", record=data)
        try:
            v: Any = schemaless_reader(io.BytesIO(data[1:]), _SCHEMA, None)
        except (EOFError, ValueError, TypeError) as exc:
            raise DecodeError(f"unreadable recorded reply: {exc}", record=data) from exc
        reply = None if v["reply"] is None else _in(v["reply"])
        source = (v["source_topic"], v["source_partition"], v["source_offset"])
        return cls(source, reply, [_in(e) for e in v["effects"]])


def _out(rec: OutRecord) -> dict[str, Any]:
    headers = [
        {"name": k, "value": v.encode() if isinstance(v, str) else v} for k, v in rec.headers
    ]
    return {"topic": rec.topic, "key": rec.key, "value": rec.value, "headers": headers}


def _in(v: dict[str, Any]) -> OutRecord:
    headers: list[tuple[str, str | bytes | None]] = [(h["name"], h["value"]) for h in v["headers"]]
    return OutRecord(v["topic"], v["key"], v["value"], headers)
