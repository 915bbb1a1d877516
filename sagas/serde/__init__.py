"""Avro encoding of everything kafka-sagas writes to Kafka.

Records use Avro's single-object encoding (``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint,
then the binary body), so a reader in any language finds the writer's schema among the ``.avsc``
files in ``schemas/`` by fingerprint, and old records stay readable after a schema evolves.
With a schema registry configured (:func:`configure`), records use Confluent's wire format
(``00``, the 4-byte schema id, the body) instead; both are always read.
"""

from sagas.serde.avro import SchemaStore
from sagas.serde.records import (
    configure,
    decode_events,
    decode_payload,
    decode_state,
    default_store,
    encode_event,
    encode_events,
    encode_payload,
    encode_state,
)
from sagas.serde.registry import RegistryError

__all__ = [
    "RegistryError",
    "SchemaStore",
    "configure",
    "decode_events",
    "decode_payload",
    "decode_state",
    "default_store",
    "encode_event",
    "encode_events",
    "encode_payload",
    "encode_state",
]
