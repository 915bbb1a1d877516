"""Kafka settings for workers, clients and participants.

One precedence everywhere, highest first: an **explicit argument** in code
(``KafkaSettings("kafka:9092")``), then a **CLI flag** (``--bootstrap-servers``, ``-X key=value``,
``--connect-timeout``), then the **environment**, then the **default**. So ``KafkaSettings()``
inside a service honours the environment, and the CLI's flags fill in what the code left open:
``sagas participant`` lays them over the participant's settings when it starts it, so a
participant built at import with ``KafkaSettings()`` (or ``KafkaSettings().with_env()``) runs
with the flags, not the environment it read then.
Environment variables:

=============================  ====================================================
``KAFKA_BOOTSTRAP_SERVERS``    ``bootstrap.servers`` (default ``127.0.0.1:9092``)
``KAFKA_SECURITY_PROTOCOL``    ``security.protocol`` (PLAINTEXT, SSL, SASL_SSL, ...)
``KAFKA_SASL_MECHANISM``       ``sasl.mechanism`` (PLAIN, SCRAM-SHA-512, ...)
``KAFKA_SASL_USERNAME``        ``sasl.username``
``KAFKA_SASL_PASSWORD``        ``sasl.password``
``KAFKA_SSL_CA_LOCATION``      ``ssl.ca.location``
``SAGAS_KAFKA_<NAME>``         any librdkafka setting: ``SAGAS_KAFKA_LINGER_MS=5`` sets linger.ms
``SAGAS_SCHEMA_REGISTRY_URL``  a Confluent schema registry: records are written in its wire
                               format (``-X schema.registry.url=...`` on the command line)
``SAGAS_CONNECT_TIMEOUT``      seconds to wait for a broker at start before giving up (default 10)
=============================  ====================================================

An empty variable counts as unset. librdkafka's own log goes to the Python logger
``sagas.librdkafka`` (its errors, mostly transient connection trouble, as warnings; a message
repeated within a minute at debug level), never raw to stderr.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagas.errors import ConfigurationError

__all__ = ["DEFAULT_BOOTSTRAP", "RECONNECT_DEFAULTS", "KafkaSettings"]

RECONNECT_DEFAULTS: dict[str, Any] = {
    # librdkafka backs off up to 10 s between reconnects by default: after a broker restart a
    # client would sit idle that long. A 1 s cap brings every client back within a second or so
    # of the broker answering again.
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
}
"""What the library's own consume-transform-produce consumers use unless the user's options say
otherwise (see :func:`sagas.runtime.transactions.input_consumer`)."""

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
_DEFAULT_CONNECT_TIMEOUT = 10.0
_REGISTRY = "schema.registry.url"  # an option of ours, never passed to librdkafka
_BOOTSTRAP = "bootstrap.servers"
_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": _BOOTSTRAP,
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "SAGAS_SCHEMA_REGISTRY_URL": _REGISTRY,
}
_PREFIX = "SAGAS_KAFKA_"
_TIMEOUT_ENV = "SAGAS_CONNECT_TIMEOUT"


class _LibrdkafkaLog:
    """Receives librdkafka's log (confluent-kafka's ``logger`` setting) for Python logging.

    Its errors are mostly transient (a broker not answering, a connection closed) and surface as
    exceptions where they matter, so they are logged as warnings; the same message again within
    ``quiet`` seconds, from any client, goes to debug instead of flooding the log.
    """

    def __init__(self, quiet: float = 60.0) -> None:
        self.logger = logging.getLogger("sagas.librdkafka")
        self.quiet = quiet
        self._seen: dict[str, float] = {}

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """Called by confluent-kafka with ``("%s [%s] %s", facility, client, message)``."""
        text = msg % args if args else msg
        key = f"{args[0]} {args[2]}" if len(args) == 3 else text  # the same message, any client
        now = time.monotonic()
        if now - self._seen.get(key, -self.quiet) < self.quiet:
            level = logging.DEBUG
        else:
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = now
            level = min(level, logging.WARNING)
        self.logger.log(level, "%s", text)


_LOG = _LibrdkafkaLog()


def _env_options(env: Mapping[str, str]) -> dict[str, str]:
    """The settings the environment variables of the module docstring name (empty ones unset)."""
    options = {name: env[var] for var, name in _ENV.items() if env.get(var)}
    for var, value in env.items():
        if var.startswith(_PREFIX) and value:
            options[var[len(_PREFIX) :].lower().replace("_", ".")] = value
    return options


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigurationError(f"{where}={value!r}: give a number of seconds above 0, e.g. 10")
    return seconds


@dataclass(frozen=True, init=False)
class KafkaSettings:
    """Connection settings shared by every Kafka client kafka-sagas makes.

    What is not given here comes from the environment, then from the defaults (see the module
    docstring).

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        options: any other librdkafka settings (security, SASL, SSL, tuning).
        schema_registry_url: a Confluent schema registry; None writes records with schema
            fingerprints (see :mod:`sagas.serde.registry`); ``""`` turns off one the environment
            names.
        connect_timeout: seconds to wait for a broker at start before giving up.

    Raises:
        ConfigurationError: ``bootstrap_servers`` is empty or ``connect_timeout`` not positive.
    """

    bootstrap_servers: str
    options: Mapping[str, str]
    schema_registry_url: str | None
    connect_timeout: float
    given: frozenset[str] = field(compare=False, repr=False)
    """The settings given explicitly (in code or by CLI flags), which the CLI keeps."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        options: Mapping[str, str] | None = None,
        schema_registry_url: str | None = None,
        *,
        connect_timeout: float | None = None,
    ) -> None:
        env = os.environ
        explicit = dict(options or {})
        if bootstrap_servers is not None:
            explicit[_BOOTSTRAP] = bootstrap_servers
        if schema_registry_url is not None:
            explicit[_REGISTRY] = schema_registry_url
        given = frozenset(explicit) | (
            {"connect_timeout"} if connect_timeout is not None else set()
        )
        merged = {_BOOTSTRAP: DEFAULT_BOOTSTRAP, **_env_options(env), **explicit}
        timeout = connect_timeout if connect_timeout is not None else env.get(_TIMEOUT_ENV) or None
        self._set(merged, timeout, given)

    def _set(self, merged: dict[str, str], timeout: object, given: frozenset[str]) -> None:
        bootstrap = merged.pop(_BOOTSTRAP)
        if not str(bootstrap).strip():
            raise ConfigurationError(
                "bootstrap.servers is empty; give host:port[,host:port...], e.g. "
                "--bootstrap-servers kafka:9092 or KAFKA_BOOTSTRAP_SERVERS=kafka:9092"
            )
        registry = merged.pop(_REGISTRY, None) or None
        seconds = (
            _DEFAULT_CONNECT_TIMEOUT if timeout is None else _seconds(timeout, "connect timeout")
        )
        object.__setattr__(self, "bootstrap_servers", bootstrap)
        object.__setattr__(self, "options", merged)
        object.__setattr__(self, "schema_registry_url", registry)
        object.__setattr__(self, "connect_timeout", seconds)
        object.__setattr__(self, "given", given)

    def _all(self) -> dict[str, str]:
        every = {_BOOTSTRAP: self.bootstrap_servers, **self.options}
        if self.schema_registry_url is not None:
            every[_REGISTRY] = self.schema_registry_url
        return every

    def _derive(
        self, merged: dict[str, str], timeout: object, given: frozenset[str]
    ) -> KafkaSettings:
        copy = object.__new__(KafkaSettings)
        copy._set(merged, timeout, given)
        return copy

    def with_options(self, options: Mapping[str, str]) -> KafkaSettings:
        """A copy with ``options`` laid over these (they count as given explicitly).

        ``bootstrap.servers`` and ``schema.registry.url`` set the fields of the same names.

        Raises:
            ConfigurationError: ``bootstrap.servers`` is set to an empty value.
        """
        return self._derive(
            {**self._all(), **options}, self.connect_timeout, self.given | frozenset(options)
        )

    def with_env(self, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """A copy with the environment variables of the module docstring laid over these.

        What comes from the environment does not count as given explicitly, so the CLI's flags
        still override it (:meth:`under`)."""
        env = os.environ if environ is None else environ
        copy = self._derive({**self._all(), **_env_options(env)}, self.connect_timeout, self.given)
        if env.get(_TIMEOUT_ENV):
            return copy._derive(copy._all(), env[_TIMEOUT_ENV], copy.given)
        return copy

    def with_flags(
        self,
        bootstrap: str | None,
        options: Iterable[str],
        connect_timeout: float | None = None,
    ) -> KafkaSettings:
        """A copy with CLI flags laid over these: ``--bootstrap-servers``, ``-X key=value`` and
        ``--connect-timeout``.

        Raises:
            ConfigurationError: an option is not ``key=value``, or ``--bootstrap-servers`` is
                empty.
        """
        parsed = parse_flags(bootstrap, options)
        copy = self.with_options(parsed)
        if connect_timeout is not None:
            given = copy.given | {"connect_timeout"}
            return copy._derive(copy._all(), connect_timeout, given)
        return copy

    def under(self, flags: KafkaSettings) -> KafkaSettings:
        """These settings where they were given explicitly, ``flags`` for the rest: how the CLI
        applies its flags to settings a user's module built (explicit argument > CLI flag)."""
        mine = self._all()
        merged = {k: v for k, v in flags._all().items() if k not in self.given}
        merged.update({k: v for k, v in mine.items() if k in self.given})
        merged.setdefault(_BOOTSTRAP, mine[_BOOTSTRAP])
        timeout = self.connect_timeout if "connect_timeout" in self.given else flags.connect_timeout
        return self._derive(merged, timeout, self.given | flags.given)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka config: these settings, then ``extra`` (``extra`` wins), with
        librdkafka's log routed to the Python logger ``sagas.librdkafka``."""
        return {
            _BOOTSTRAP: self.bootstrap_servers,
            **self.options,
            "logger": _LOG,
            **extra,
        }

    def validate(self) -> None:
        """Check every option with librdkafka itself (names and values), without connecting.

        Raises:
            ConfigurationError: librdkafka refuses an option; the message names it.
        """
        from confluent_kafka import KafkaException, Producer

        def refused(config: Mapping[str, Any]) -> str | None:
            try:
                Producer({**config, "log_level": 0})
            except KafkaException as exc:
                err = exc.args[0] if exc.args else exc
                return str(getattr(err, "str", lambda: err)())
            return None

        problem = refused(self.client_config())
        if problem is None:
            return
        for key, value in self.options.items():
            if refused({_BOOTSTRAP: self.bootstrap_servers, key: value}) is not None:
                raise ConfigurationError(
                    f"Kafka setting {key}={value!r} is refused: {problem}; fix or drop it "
                    "(-X, SAGAS_KAFKA_* or KafkaSettings.options)"
                )
        raise ConfigurationError(f"the Kafka settings are refused: {problem}; fix them")


def parse_flags(bootstrap: str | None, options: Iterable[str]) -> dict[str, str]:
    """``--bootstrap-servers`` and ``-X key=value`` flags as settings.

    Raises:
        ConfigurationError: an option is not ``key=value``, or ``--bootstrap-servers`` is empty.
    """
    parsed: dict[str, str] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"Kafka option {item!r} must be key=value, e.g. -X security.protocol=SSL"
            )
        parsed[key.strip()] = value
    if bootstrap is not None:
        if not bootstrap.strip():
            raise ConfigurationError(
                "--bootstrap-servers is empty; give host:port[,host:port...], e.g. kafka:9092"
            )
        parsed[_BOOTSTRAP] = bootstrap
    return parsed
