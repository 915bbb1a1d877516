"""Avro encoding of everything kafka-sagas writes to Kafka.

Records use Avro's single-object encoding (``C3 01``, the schema's 8-byte CRC-64-AVRO fingerprint,
then the binary body), so a reader in any language finds the writer's schema among the ``.avsc``
files in ``schemas/`` by fingerprint, and old records stay readable after a schema evolves.
With a schema registry (``Serde(registry_url)``), records use Confluent's wire format (``00``,
the 4-byte schema id, the body) instead; both are always read.

A :class:`Serde` is an object: an app, a client and a participant each hold one (its schema
store, the payload schemas registered with it, its registry) and pass it down. There is no
process-wide default.
"""

from sagas.serde.avro import SchemaStore
from sagas.serde.records import Serde

__all__ = ["SchemaStore", "Serde"]
