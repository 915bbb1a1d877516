"""Kafka settings for workers, clients and participants.

Precedence, lowest first: a :class:`KafkaSettings` object in code, then environment variables, then
CLI flags. Environment variables:

=============================  ====================================================
``KAFKA_BOOTSTRAP_SERVERS``    ``bootstrap.servers``
``KAFKA_SECURITY_PROTOCOL``    ``security.protocol`` (PLAINTEXT, SSL, SASL_SSL, ...)
``KAFKA_SASL_MECHANISM``       ``sasl.mechanism`` (PLAIN, SCRAM-SHA-512, ...)
``KAFKA_SASL_USERNAME``        ``sasl.username``
``KAFKA_SASL_PASSWORD``        ``sasl.password``
``KAFKA_SSL_CA_LOCATION``      ``ssl.ca.location``
``SAGAS_KAFKA_<NAME>``         any librdkafka setting: ``SAGAS_KAFKA_LINGER_MS=5`` sets linger.ms
``SAGAS_SCHEMA_REGISTRY_URL``  a Confluent schema registry: records are written in its wire
                               format (``-X schema.registry.url=...`` on the command line)
=============================  ====================================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagas.errors import ConfigurationError

__all__ = ["KafkaSettings"]

_REGISTRY = "schema.registry.url"  # an option of ours, never passed to librdkafka
_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "SAGAS_SCHEMA_REGISTRY_URL": _REGISTRY,
}
_PREFIX = "SAGAS_KAFKA_"


@dataclass(frozen=True)
class KafkaSettings:
    """Connection settings shared by every Kafka client kafka-sagas makes.

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        options: any other librdkafka settings (security, SASL, SSL, tuning).
        schema_registry_url: a Confluent schema registry; None writes records with schema
            fingerprints (see :mod:`sagas.serde.registry`).
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    options: Mapping[str, str] = field(default_factory=dict)
    schema_registry_url: str | None = None

    def with_options(self, options: Mapping[str, str]) -> KafkaSettings:
        """A copy with ``options`` laid over these.

        ``bootstrap.servers`` and ``schema.registry.url`` set the fields of the same names.
        """
        merged = {**self.options, **options}
        bootstrap = merged.pop("bootstrap.servers", self.bootstrap_servers)
        registry = merged.pop(_REGISTRY, self.schema_registry_url) or None
        return KafkaSettings(bootstrap, merged, registry)

    def with_env(self, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """A copy with the environment variables of the module docstring laid over these."""
        env = os.environ if environ is None else environ
        options = {name: env[var] for var, name in _ENV.items() if env.get(var)}
        for var, value in env.items():
            if var.startswith(_PREFIX) and value:
                options[var[len(_PREFIX) :].lower().replace("_", ".")] = value
        return self.with_options(options)

    def with_flags(self, bootstrap: str | None, options: Iterable[str]) -> KafkaSettings:
        """A copy with CLI flags laid over these: ``--bootstrap-servers`` and ``-X key=value``.

        Raises:
            ConfigurationError: an option is not ``key=value``.
        """
        parsed: dict[str, str] = {}
        for item in options:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigurationError(
                    f"Kafka option {item!r} must be key=value, e.g. -X security.protocol=SSL"
                )
            parsed[key.strip()] = value
        if bootstrap:
            parsed["bootstrap.servers"] = bootstrap
        return self.with_options(parsed)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka config: these settings plus ``extra`` (``extra`` wins)."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.options, **extra}
