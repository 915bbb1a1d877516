"""Confluent schema-registry support: ids instead of fingerprints, when a registry is configured.

With ``KafkaSettings.schema_registry_url`` (or ``SAGAS_SCHEMA_REGISTRY_URL``) set,
:func:`configure` registers the current schema of every record type with the registry and the
library writes the Confluent wire format: byte ``00``, the schema id (4 bytes, big-endian), the
Avro binary body. Without it, records keep the single-object encoding (``C3 01``, fingerprint).
Readers always accept both: a topic written before the registry was turned on (or by a
participant that uses fingerprints) stays readable, and ids are looked up once, then cached.

Subjects follow Confluent's RecordNameStrategy: the record's full name (``sagas.SagaState``),
not the topic. One saga type has several topics of each record type (``<ns>.<saga>.state`` of
every namespace and saga carries ``sagas.SagaState``), so one subject per record type keeps one
version history per schema, which is what :mod:`sagas.serde.compat` checks.

Design notes. The registry is configured once per process (``configure`` replaces what an earlier
call set) because every encoder of the library goes through one store: the settings of a worker,
a client and a participant in one process name the same registry. Registration happens in
``configure``, so a registry that is down or refuses a schema (say, an incompatible change under
its compatibility policy) stops the process at start-up with a clear error, not in the middle of
a transaction. A registry that does not answer while decoding raises :class:`RegistryError`, not
``DecodeError``: a record is not dead-lettered because the registry had a bad minute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sagas.errors import ConfigurationError, RegistryError

__all__ = ["ConfluentRegistry"]

_HTTP_NOT_FOUND = 404


class ConfluentRegistry:
    """The calls kafka-sagas makes to a Confluent-compatible schema registry.

    Args:
        url: the registry's base URL (several, comma-separated, are tried in turn).
        config: more ``SchemaRegistryClient`` settings (``basic.auth.user.info``, ...).
    """

    def __init__(self, url: str, config: Mapping[str, Any] | None = None) -> None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:
            raise ConfigurationError(
                f"a schema registry is configured ({url}) but confluent-kafka's registry client "
                f"cannot be imported ({exc}): pip install 'kafka-sagas[registry]'"
            ) from exc
        self.url = url
        self._client = SchemaRegistryClient({**(config or {}), "url": url})

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (a no-op when it is there already); its id.

        Raises:
            RegistryError: the registry is unreachable, or refused the schema (the message
                carries its reason, e.g. an incompatible change).
        """
        from confluent_kafka.schema_registry import Schema

        try:
            return int(self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))
        except Exception as exc:
            raise self._error(f"registering {subject}", exc) from exc

    def schema_text(self, schema_id: int) -> str | None:
        """The schema (JSON text) registered with ``schema_id``; None when there is none.

        Raises:
            RegistryError: the registry is unreachable or answered with an error.
        """
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == _HTTP_NOT_FOUND:
                return None
            raise self._error(f"looking up schema id {schema_id}", exc) from exc
        except Exception as exc:
            raise self._error(f"looking up schema id {schema_id}", exc) from exc
        if schema.schema_type not in (None, "AVRO"):
            raise RegistryError(
                f"schema id {schema_id} at {self.url} is {schema.schema_type}, not AVRO",
                retryable=False,
            )
        return str(schema.schema_str)

    def _error(self, doing: str, exc: Exception) -> RegistryError:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if isinstance(exc, SchemaRegistryError):
            status = exc.http_status_code
            return RegistryError(
                f"schema registry at {self.url} refused {doing}: HTTP {status}, error "
                f"{exc.error_code}: {exc.error_message}",
                retryable=status >= 500 or status == 429,
            )
        return RegistryError(
            f"schema registry at {self.url} did not answer {doing}: {type(exc).__name__}: {exc}",
            retryable=True,
        )
