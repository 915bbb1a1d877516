"""One definition per saga type and version in a namespace: a worker refuses to run another.

Workers of a saga type share its sagas: after a rebalance, a restart or during a rolling deploy,
a saga started by one worker is continued by another. If their definitions of the same type and
version differ (a step added, a topic renamed, a different pivot), sagas jump between two
programs. So each worker records, in the namespace's compacted ``<ns>.workers`` topic, the
fingerprint (:mod:`sagas.dsl.fingerprint`) of every definition it runs; at start it reads them
and refuses, naming both, a definition whose fingerprint differs from one recorded while that
type's workers are still running (a member of their group other than this worker). Once they all
stopped, the recorded definition is replaced. A fix to a payload function keeps the fingerprint.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from sagas.app import App
from sagas.errors import ConfigurationError, DecodeError
from sagas.kafka_io import kafka_errors, produce_and_wait, read_to_end
from sagas.protocol import (
    DEFINITION_PREFIX,
    TopicNames,
    definition_key,
    private_group,
    workers_topic,
)
from sagas.settings import KafkaSettings
from sagas.wire import OutRecord

__all__ = ["check_definitions"]


def check_definitions(
    app: App, settings: KafkaSettings, admin: AdminClient, worker_id: str
) -> None:
    """Refuse a definition that differs from the one this namespace's workers run; record ours.

    Raises:
        ConfigurationError: a definition of the same type and version with another fingerprint
            runs in this namespace; the message names both and says to bump the version.
        BrokerError: the records could not be read or written.
    """
    topic = workers_topic(app.namespace)
    recorded = _recorded(app, settings, topic)
    for program in app.programs:
        key = definition_key(program.name, program.version)
        theirs = recorded.get(key)
        if theirs is None or theirs.get("fingerprint") == program.fingerprint:
            continue
        running = _running(admin, TopicNames(app.namespace, program.name).group, worker_id)
        if running:
            raise ConfigurationError(
                f"saga {program.name!r} version {program.version} here is not the one running "
                f"in namespace {app.namespace!r}: fingerprint {program.fingerprint} here, "
                f"{theirs.get('fingerprint')} recorded by worker {theirs.get('worker')!r} on "
                f"{theirs.get('host')!r} (running: {', '.join(running)}). Sagas move between "
                f"workers, so one type and version has one definition: give this one "
                f"version={program.version + 1} (in-flight sagas finish on theirs), or stop "
                "those workers first"
            )
    producer = Producer(settings.client_config())
    host = socket.gethostname()
    for program in app.programs:
        value = {
            "fingerprint": program.fingerprint,
            "data_schema": program.data_schema,
            "worker": worker_id,
            "host": host,
            "at_ms": int(time.time() * 1000),
        }
        key = definition_key(program.name, program.version)
        was = recorded.get(key, {})
        if (was.get("fingerprint"), was.get("data_schema")) != (
            program.fingerprint,
            program.data_schema,
        ):
            record = OutRecord(topic, key, app.serde.encode_payload(value), [])
            produce_and_wait(producer, record, settings=settings)
    producer.flush(settings.connect_timeout)


def _recorded(app: App, settings: KafkaSettings, topic: str) -> dict[bytes, dict[str, Any]]:
    """The definition records of ``<ns>.workers``, by key."""
    consumer = Consumer(
        settings.client_config(
            **{
                "group.id": private_group("definitions"),
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
    )
    found: dict[bytes, dict[str, Any]] = {}
    try:
        with kafka_errors(f"reading {topic}", settings):
            for msg in read_to_end(consumer, topic, 0):
                key, value = msg.key(), msg.value()
                if not key or not key.startswith(DEFINITION_PREFIX):
                    continue
                try:
                    found[key] = app.serde.decode_payload(value) if value else {}
                except DecodeError:
                    continue  # not a record this release wrote: nothing to compare
    finally:
        consumer.close()
    return found


def _running(admin: AdminClient, group: str, worker_id: str) -> list[str]:
    """The members of the workers' group other than this worker (its own static member may
    linger from its previous life), as ``instance@host``."""
    with kafka_errors(f"describing the consumer group {group}"):
        described = admin.describe_consumer_groups([group])[group].result()
    return [
        f"{m.group_instance_id or m.client_id}@{m.host}"
        for m in described.members
        if m.group_instance_id != worker_id
    ]
