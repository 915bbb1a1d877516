"""Avro encoding of everything kafka-sagas writes to Kafka.

Records use Avro's single-object encoding (``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint,
then the binary body), so a reader in any language finds the writer's schema among the ``.avsc``
files in ``schemas/`` by fingerprint, and old records stay readable after a schema evolves.
"""

from sagas.serde.avro import SchemaStore, default_store
from sagas.serde.records import (
    decode_event,
    decode_payload,
    decode_state,
    encode_event,
    encode_payload,
    encode_state,
)

__all__ = [
    "SchemaStore",
    "decode_event",
    "decode_payload",
    "decode_state",
    "default_store",
    "encode_event",
    "encode_payload",
    "encode_state",
]
