"""What a participant checks at start, before it reads a command (shared by the confluent-kafka
and the Faust participant).

* **Its command topics exist.** A participant does not create the topic it reads unless told to
  (``Participant(create_topics=True)``, ``sagas participant --create-topics``): a handler on a
  misspelt topic would otherwise wait forever for commands nobody sends. The worker of the saga
  that sends to a topic creates it, and so does ``sagas topics apply``; a participant started
  beside its worker waits up to three times its connect timeout for it (30 s by default).
* **No other consumer group reads them.** Each consumer group gets every command of a topic, so
  two participant groups on one command topic both answer each command, and the one without the
  handler answers with a ``no-handler`` failure that can make the other's saga compensate. A
  group with members assigned partitions of the topic, other than the participant's own (and the
  ones it names as its own, like the Faust app's), is refused. Empty groups (stopped services,
  readers that only commit offsets) are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from sagas.errors import ConfigurationError
from sagas.kafka_io import kafka_errors
from sagas.runtime.topics import TopicSpec, create_missing

if TYPE_CHECKING:
    from sagas.participants import Participant

__all__ = ["check_start", "command_topics", "refuse_other_groups"]

log = logging.getLogger(__name__)

_ACTIVE = {
    ConsumerGroupState.STABLE,
    ConsumerGroupState.PREPARING_REBALANCING,
    ConsumerGroupState.COMPLETING_REBALANCING,
}


def check_start(
    admin: AdminClient, participant: Participant, *, partitions: int, own: Collection[str]
) -> Any:
    """Both checks for ``participant`` (its command topics exist or are created with
    ``partitions``; no group outside ``own`` reads them); return the cluster metadata.

    Raises:
        ConfigurationError: a command topic is missing, or read by another group.
    """
    wait = participant.settings.connect_timeout
    metadata = command_topics(  # three connect timeouts: a worker started beside it has to connect
        admin,
        participant.topics,
        create=participant.create_topics,
        partitions=partitions,
        wait=3 * wait,
    )
    refuse_other_groups(admin, own, participant.topics, wait)
    return metadata


def command_topics(
    admin: AdminClient,
    topics: Sequence[str],
    *,
    create: bool,
    partitions: int,
    wait: float,
) -> Any:
    """Make sure the command topics exist; return the cluster metadata.

    With ``create`` the missing ones are created with ``partitions``; otherwise they are waited
    for up to ``wait`` seconds (a worker started at the same time creates them).

    Raises:
        ConfigurationError: a command topic is still missing.
        BrokerError: the cluster could not be read, or refused a creation.
    """
    if create:
        return create_missing(admin, [TopicSpec(t, partitions) for t in topics])
    deadline = time.monotonic() + wait
    told = False
    while True:
        with kafka_errors("listing topics"):
            metadata = admin.list_topics(timeout=max(1.0, wait))
        missing = [t for t in topics if t not in metadata.topics]
        if not missing:
            return metadata
        if time.monotonic() >= deadline:
            break
        if not told:
            log.warning(
                "command topic %s does not exist yet; waiting up to %g s for it (the worker of "
                "the saga that sends to it creates it)",
                ", ".join(missing),
                wait,
            )
            told = True
        time.sleep(0.5)
    names = ", ".join(missing)
    raise ConfigurationError(
        f"command topic {names} does not exist (no saga has sent to it); check the topic name "
        "of the handler, start the worker of the saga that sends to it (it creates it) or run "
        "sagas topics apply, or let the participant create it: Participant(create_topics=True), "
        "sagas participant --create-topics"
    )


def refuse_other_groups(
    admin: AdminClient, own: Collection[str], topics: Collection[str], timeout: float
) -> None:
    """Refuse to start when a consumer group other than ``own`` is consuming one of ``topics``.

    A cluster that does not let this client list or describe groups (ACLs) is not checked: a
    warning says so.

    Raises:
        ConfigurationError: another group has members assigned partitions of a command topic.
    """
    wanted = set(topics)
    try:
        listed = admin.list_consumer_groups(request_timeout=timeout, states=_ACTIVE).result(timeout)
        ids = [
            g.group_id
            for g in listed.valid
            if g.group_id not in own and not g.is_simple_consumer_group
        ]
        described = admin.describe_consumer_groups(ids, request_timeout=timeout) if ids else {}
        for group, future in sorted(described.items()):
            try:
                description = future.result(timeout)
            except KafkaException:
                continue  # gone since it was listed
            for member in description.members:
                assigned = {tp.topic for tp in member.assignment.topic_partitions}
                for topic in sorted(assigned & wanted):
                    mine = ", ".join(sorted(own))
                    raise ConfigurationError(
                        f"another consumer group, {group} (client {member.client_id} on "
                        f"{member.host.lstrip('/')}), reads the command topic {topic}; so does "
                        f"this participant's group {mine}, and each group gets every command: "
                        "the one without its handler answers it with a failure that can make "
                        "the other's saga compensate. Serve a command topic from one group "
                        "(one Participant), or give the other app its own namespace"
                    )
    except (KafkaException, TimeoutError) as exc:
        log.warning(
            "could not check which consumer groups read %s (%s); make sure no other group "
            "consumes them",
            ", ".join(sorted(wanted)),
            exc,
        )
