"""Translate confluent-kafka errors into kafka-sagas errors at the boundary, keeping the cause."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaError, KafkaException

from sagas.errors import BrokerError, BrokerUnavailableError

__all__ = ["kafka_errors", "translate"]

_UNAVAILABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}


def translate(exc: KafkaException, doing: str) -> BrokerError:
    """The kafka-sagas error for a confluent-kafka exception raised while ``doing`` something."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return BrokerError(f"{doing}: {exc}")
    if err.code() in _UNAVAILABLE:
        return BrokerUnavailableError(
            f"{doing}: no Kafka broker answers ({err.str()}); check bootstrap.servers "
            "(KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers) and that the broker runs"
        )
    return BrokerError(f"{doing}: {err.str()}", retriable=err.retriable(), fatal=err.fatal())


@contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Re-raise any ``KafkaException`` inside the block as a :class:`BrokerError`."""
    try:
        yield
    except KafkaException as exc:
        raise translate(exc, doing) from exc
