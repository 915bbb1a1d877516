"""Declarative topic specs: what an app's topics should be, and how to reconcile a cluster.

A spec lists every topic an app's workers read or write (from :func:`sagas.runtime.topics.
plan_topics`, plus each DLQ's ``.replayed`` record), and those of the participants given with it
(their command topics, ``<group>.<topic>.replies`` and ``<group>.dlq``: ``sagas topics plan
MODULE:ATTR --participant MODULE:ATTR``, or a participant alone), with its partitions, replication
factor and
the configs that matter: ``cleanup.policy``, ``retention.ms`` (``None``: the broker's), and
``min.insync.replicas``. ``sagas topics plan --write`` writes it to ``topics/<app>.json``;
``sagas topics apply`` compares it with a cluster and creates what is missing and alters configs
that may change. It refuses, with the reason, what Kafka cannot do or what would break sagas:
fewer partitions; more partitions of a keyed topic (a saga lives in the partition its id maps
to); another replication factor (a reassignment, not a config); a state topic not compacted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from sagas.app import App
from sagas.errors import ConfigurationError
from sagas.kafka_io import kafka_errors, translate
from sagas.protocol import replayed_topic
from sagas.runtime.topics import plan_topics

if TYPE_CHECKING:
    from sagas.participants import Participant

__all__ = [
    "MANAGED",
    "AppSpec",
    "Change",
    "TopicDecl",
    "apply_changes",
    "participant_topics",
    "plan_changes",
    "read_spec",
    "spec_of",
    "write_spec",
]

MANAGED = ("cleanup.policy", "retention.ms", "min.insync.replicas")
"""The configs a spec sets (others keep the broker's values)."""


@dataclass(frozen=True)
class TopicDecl:
    """One topic as it should be."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        """Its cleanup policy includes ``compact``."""
        return "compact" in self.config.get("cleanup.policy", "delete").split(",")

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {
            "name": self.name,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "config": dict(sorted(self.config.items())),
        }


@dataclass(frozen=True)
class AppSpec:
    """Every topic of one app (a namespace), and the state topics that must stay compacted."""

    namespace: str
    topics: tuple[TopicDecl, ...]
    state_topics: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives (the file format)."""
        return {
            "namespace": self.namespace,
            "state_topics": list(self.state_topics),
            "topics": [t.to_dict() for t in self.topics],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "spec") -> AppSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigurationError: a field is missing or of the wrong kind.
        """
        try:
            topics = tuple(
                TopicDecl(
                    str(t["name"]),
                    int(t["partitions"]),
                    int(t["replication_factor"]),
                    {str(k): str(v) for k, v in t.get("config", {}).items()},
                )
                for t in d["topics"]
            )
            spec = cls(str(d["namespace"]), topics, tuple(d.get("state_topics", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(
                f"{where}: not a topic spec ({exc!r}); regenerate it with sagas topics plan "
                "MODULE:ATTR --write"
            ) from exc
        spec.check(where)
        return spec

    def check(self, where: str = "spec") -> None:
        """Refuse a spec that would break sagas.

        Raises:
            ConfigurationError: a state topic is not compacted, or a count is below 1.
        """
        by_name = {t.name: t for t in self.topics}
        for name in self.state_topics:
            decl = by_name.get(name)
            if decl is not None and not decl.compacted:
                raise ConfigurationError(
                    f"{where}: {name} is a state changelog and must have cleanup.policy=compact "
                    "(else old snapshots are deleted and sagas lost)"
                )
        for t in self.topics:
            if t.partitions < 1 or t.replication_factor < 1:
                raise ConfigurationError(
                    f"{where}: {t.name} needs at least 1 partition and a replication factor of 1"
                )


def spec_of(
    app: App | None,
    *,
    replication_factor: int = 3,
    min_insync: int | None = None,
    participants: Sequence[Participant] = (),
) -> AppSpec:
    """The spec of an app's topics: the library's plan, each DLQ's replay record, the topics of
    ``participants`` (see :func:`participant_topics`), and the replication settings
    (``min_insync`` default: replication factor - 1, at least 1). Without an app, the spec of
    the participants alone (its namespace: the first one's group).

    Raises:
        ConfigurationError: neither an app nor a participant is given.
    """
    isr = str(min_insync if min_insync is not None else max(1, replication_factor - 1))
    decls: dict[str, TopicDecl] = {}
    if app is not None:
        dlqs = {app.topics(t).dlq for t in app.saga_types}
        for spec in plan_topics(app):
            config = {"cleanup.policy": "delete", "min.insync.replicas": isr, **dict(spec.config)}
            decls[spec.name] = TopicDecl(spec.name, spec.partitions, replication_factor, config)
            if spec.name in dlqs:
                compact = {"cleanup.policy": "compact", "min.insync.replicas": isr}
                replayed = replayed_topic(spec.name)
                decls[replayed] = TopicDecl(replayed, 1, replication_factor, compact)
    elif not participants:
        raise ConfigurationError("a topic spec needs an app or a participant")
    for participant in participants:
        for decl in participant_topics(participant, decls, replication_factor, isr):
            decls.setdefault(decl.name, decl)
    states = tuple(app.topics(t).state for t in app.saga_types) if app is not None else ()
    namespace = app.namespace if app is not None else participants[0].group
    return AppSpec(namespace, tuple(sorted(decls.values(), key=lambda d: d.name)), states)


def participant_topics(
    participant: Participant,
    known: dict[str, TopicDecl],
    replication_factor: int,
    min_insync: str,
) -> list[TopicDecl]:
    """A participant's topics: its command topics (as ``known`` declares them, else with the
    participant's partitions), their compacted replies topics (as many partitions as the
    command topic: the replies of partition N live in partition N) and its DLQ."""
    isr = {"min.insync.replicas": min_insync}
    retention = str(int(participant.replies_retention / timedelta(milliseconds=1)))
    replies = {
        "cleanup.policy": "compact,delete",
        "retention.ms": retention,
        "min.compaction.lag.ms": "0",
        **isr,
    }
    decls = [TopicDecl(participant.dlq, 1, replication_factor, {"cleanup.policy": "delete", **isr})]
    for topic in participant.topics:
        command = known.get(topic) or TopicDecl(
            topic, participant.partitions, replication_factor, {"cleanup.policy": "delete", **isr}
        )
        decls.append(command)
        name = participant.replies_topic(topic)
        decls.append(TopicDecl(name, command.partitions, replication_factor, dict(replies)))
    return decls


def write_spec(spec: AppSpec, path: Path) -> None:
    """Write ``spec`` as JSON (stable order, so a diff shows what changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


def read_spec(path: Path) -> AppSpec:
    """Read a spec file.

    Raises:
        ConfigurationError: no such file, or it is not a valid spec.
    """
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path}: no such spec; write one with sagas topics plan MODULE:ATTR --write"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: not a topic spec (expected a JSON object)")
    return AppSpec.from_dict(raw, str(path))


Action = Literal["create", "alter", "ok", "refuse"]


@dataclass(frozen=True)
class Change:
    """What apply does to one topic (``refuse``: what it cannot do, and why)."""

    topic: str
    action: Action
    detail: str
    decl: TopicDecl
    configs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {
            "topic": self.topic,
            "action": self.action,
            "detail": self.detail,
            "configs": self.configs,
        }


def _describe(admin: AdminClient, names: Sequence[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource("topic", n) for n in names]
    out: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        try:
            entries = future.result(30)
        except KafkaException as exc:
            raise translate(exc, f"describing {resource.name}") from exc
        out[resource.name] = {k: (e.value or "") for k, e in entries.items()}
    return out


def plan_changes(admin: AdminClient, spec: AppSpec) -> list[Change]:
    """Compare ``spec`` with the cluster: one change per topic.

    Raises:
        BrokerError: the cluster could not be read.
    """
    with kafka_errors("listing topics"):
        meta = admin.list_topics(timeout=30)
    existing = [t.name for t in spec.topics if t.name in meta.topics]
    configs = _describe(admin, existing)
    changes: list[Change] = []
    for decl in spec.topics:
        topic = meta.topics.get(decl.name)
        if topic is None:
            changes.append(Change(decl.name, "create", _summary(decl), decl))
            continue
        count = len(topic.partitions)
        replicas = len(next(iter(topic.partitions.values())).replicas) if count else 0
        if count != decl.partitions:
            why = (
                "Kafka cannot remove partitions"
                if count > decl.partitions
                else "adding partitions moves keys: sagas live in the partition their id maps to"
            )
            detail = f"has {count} partitions, spec {decl.partitions}: {why}; create a new topic"
            changes.append(Change(decl.name, "refuse", detail, decl))
            continue
        if replicas != decl.replication_factor:
            detail = (
                f"replication factor {replicas}, spec {decl.replication_factor}: that is a "
                "partition reassignment (kafka-reassign-partitions), not a config"
            )
            changes.append(Change(decl.name, "refuse", detail, decl))
            continue
        have = configs.get(decl.name, {})
        diff = {k: v for k, v in decl.config.items() if k in MANAGED and have.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: {have.get(k, '?')} -> {v}" for k, v in sorted(diff.items()))
            changes.append(Change(decl.name, "alter", detail, decl, diff))
        else:
            changes.append(Change(decl.name, "ok", "as specified", decl))
    return changes


def _summary(decl: TopicDecl) -> str:
    configs = ", ".join(f"{k}={v}" for k, v in sorted(decl.config.items()))
    return f"{decl.partitions} partitions, replication {decl.replication_factor}, {configs}"


def apply_changes(
    admin: AdminClient,
    changes: Sequence[Change],
    *,
    progress: Callable[[Change], None] | None = None,
) -> None:
    """Create and alter what ``changes`` say (``ok`` and ``refuse`` are left alone).

    Raises:
        BrokerError: the cluster refused a creation or an alteration.
    """
    for change in changes:
        if change.action == "create":
            d = change.decl
            new = NewTopic(d.name, d.partitions, d.replication_factor, config=dict(d.config))
            for name, future in admin.create_topics([new], request_timeout=30).items():
                try:
                    future.result(30)
                except KafkaException as exc:
                    raise translate(exc, f"creating {name}") from exc
        elif change.action == "alter":
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in change.configs.items()
            ]
            resource = ConfigResource("topic", change.topic, incremental_configs=entries)
            for _, future in admin.incremental_alter_configs([resource]).items():
                try:
                    future.result(30)
                except KafkaException as exc:
                    raise translate(exc, f"altering {change.topic}") from exc
        if progress is not None:
            progress(change)
