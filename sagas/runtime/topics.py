"""Create the topics a saga type needs, and refuse to run on a layout that breaks its guarantees.

Per saga type (see :class:`sagas.app.TopicNames`): ``inbox`` and ``state`` with equal partition
counts (a saga's state lives in the state partition numbered like its inbox partition), ``state``
compacted, ``journal`` and ``dlq`` with the broker's retention. Participant command topics are
created when missing so that a command is never produced into the void.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined] # re-exported, not in __all__
    AdminClient,
    ConfigResource,
    NewTopic,
)

from sagas.app import App
from sagas.errors import ConfigurationError
from sagas.kafka_io import kafka_errors, translate
from sagas.protocol import workers_topic
from sagas.settings import KafkaSettings

__all__ = [
    "TopicSpec",
    "connect",
    "create_missing",
    "ensure_topics",
    "partition_count",
    "plan_topics",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic that must exist: name, partitions and the configs that matter."""

    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()


def plan_topics(app: App) -> list[TopicSpec]:
    """Every topic the app's workers read or write."""
    owners = workers_topic(app.namespace)
    specs: dict[str, TopicSpec] = {
        owners: TopicSpec(owners, 1, (("cleanup.policy", "compact"),)),
    }
    for saga_type in app.saga_types:
        names = app.topics(saga_type)
        n = app.partitions
        specs[names.inbox] = TopicSpec(names.inbox, n)
        specs[names.state] = TopicSpec(
            names.state, n, (("cleanup.policy", "compact"), ("min.compaction.lag.ms", "0"))
        )
        specs[names.journal] = TopicSpec(names.journal, n)
        specs[names.dlq] = TopicSpec(names.dlq, 1)
        for version in app.versions(saga_type):
            for topic in app.program(saga_type, version).topics:
                specs.setdefault(topic, TopicSpec(topic, n))
    return list(specs.values())


def ensure_topics(app: App, settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Create missing topics; check existing ones.

    Raises:
        ConfigurationError: an inbox's partition count is not the app's ``partitions``, inbox
            and state partition counts differ, or a state topic is not compacted. The message
            says how to fix it.
        BrokerError: the broker refused or did not answer.
    """
    admin = connect(settings)
    metadata = create_missing(admin, plan_topics(app), timeout)
    _check_layout(app, admin, metadata.topics, timeout)


def connect(settings: KafkaSettings) -> AdminClient:
    """An admin client, once a broker has answered within ``settings.connect_timeout`` seconds.

    Raises:
        BrokerUnavailableError: no broker answered in time.
        BrokerError: a broker answered with an error (e.g. authentication failed).
    """
    admin = AdminClient(settings.client_config())
    with kafka_errors(f"connecting to {settings.bootstrap_servers}", settings):
        admin.list_topics(timeout=settings.connect_timeout)
    return admin


def create_missing(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0) -> Any:
    """Create the topics of ``specs`` that do not exist; return the cluster metadata after.

    Existing topics are left as they are (the caller checks what matters to it).

    Raises:
        BrokerError: the broker refused or did not answer.
    """
    with kafka_errors("listing topics"):
        metadata = admin.list_topics(timeout=timeout)
    replication = min(3, max(1, len(metadata.brokers)))
    missing = [s for s in specs if s.name not in metadata.topics]
    if not missing:
        return metadata
    new = [NewTopic(s.name, s.partitions, replication, config=dict(s.config)) for s in missing]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise translate(exc, f"creating topic {name}") from exc
    return _wait_visible(admin, [s.name for s in specs], timeout)


def _wait_visible(admin: AdminClient, names: list[str], timeout: float) -> Any:
    """Metadata once every topic in ``names`` is visible with its partitions (creation is async)."""
    deadline = time.monotonic() + timeout
    while True:
        with kafka_errors("listing topics"):
            metadata = admin.list_topics(timeout=timeout)
        ready = all(
            n in metadata.topics and metadata.topics[n].partitions and not metadata.topics[n].error
            for n in names
        )
        if ready or time.monotonic() > deadline:
            return metadata
        time.sleep(0.2)


def partition_count(topics: Mapping[str, object], name: str) -> int:
    """The partition count of ``name`` in a metadata's topics (0 when missing)."""
    topic = topics.get(name)
    return len(getattr(topic, "partitions", {}))


def _check_layout(
    app: App, admin: AdminClient, topics: Mapping[str, object], timeout: float
) -> None:
    for saga_type in app.saga_types:
        names = app.topics(saga_type)
        inbox, state = partition_count(topics, names.inbox), partition_count(topics, names.state)
        if inbox != app.partitions:
            raise ConfigurationError(
                f"{names.inbox} has {inbox} partitions but this app says partitions="
                f"{app.partitions}: another deployment made these topics (sagas would be looked "
                f"for in the wrong partitions). Give this app its own namespace, or "
                f"App({app.namespace!r}, ..., partitions={inbox}) if it is the same deployment"
            )
        if inbox != state:
            raise ConfigurationError(
                f"{names.inbox} has {inbox} partitions but {names.state} has {state}; a saga's "
                "state must live in the state partition numbered like its inbox partition. Give "
                f"both the same count (kafka-topics --alter --topic {names.state} --partitions "
                f"{inbox}, or the reverse) before starting the worker"
            )
    resources = [ConfigResource("topic", app.topics(t).state) for t in app.saga_types]
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        config = _describe(admin, resource, future, timeout)
        policy = config["cleanup.policy"].value or ""
        if "compact" not in policy.split(","):
            raise ConfigurationError(
                f"{resource.name} has cleanup.policy={policy}; the state changelog must be "
                "compacted or old snapshots are deleted and sagas lost. Fix it with: kafka-configs "
                f"--alter --entity-type topics --entity-name {resource.name} --add-config "
                "cleanup.policy=compact"
            )


def _describe(admin: AdminClient, resource: Any, future: Any, timeout: float) -> Any:
    """A topic's config; a topic created a moment ago may take a few tries to be described."""
    for attempt in range(50):
        try:
            return future.result(timeout)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc) or attempt == 49:
                raise translate(exc, f"describing {resource.name}") from exc
        time.sleep(0.2)
        future = admin.describe_configs([resource], request_timeout=timeout)[resource]
    raise AssertionError("unreachable")
