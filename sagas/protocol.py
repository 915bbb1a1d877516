"""The protocol's names in one place: topics, groups, keys, headers, dead letters, trust checks.

Record encodings live beside this in :mod:`sagas.wire`; the client, the worker, participants, the
CLI and the query endpoint read every name from here. No Kafka client here.

Topics of a saga type (namespace ``ns``, saga ``s``):

===================  ===========================================================================
``ns.s.inbox``       every input (start, reply, signal, cancel, ...), key = saga id
``ns.s.state``       compacted snapshots, co-partitioned with the inbox
``ns.s.journal``     every transition's events, key = saga id
``ns.s.dlq``         inputs that could not be handled, with ``dlq-*`` headers saying why
``ns.workers``       compacted: which worker serves which partition's queries
===================  ===========================================================================

A participant in group ``g`` reads its command topics and keeps ``g.<topic>.replies`` (compacted,
key = command id) and ``g.dlq``. A DLQ ``d`` that was replayed from has ``d.replayed``.

Every header name the library writes or reads is a constant here, listed in :data:`HEADERS`; a
test fails on a header or topic name spelled anywhere else in the package.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sagas.partitioning import partition_for

__all__ = [
    "ATTEMPT",
    "COMMAND_ID",
    "COMMAND_TYPE",
    "DEADLINE",
    "DEFINITION_PREFIX",
    "DLQ_HEADERS",
    "DLQ_REASON",
    "DLQ_SOURCE_OFFSET",
    "DLQ_SOURCE_PARTITION",
    "DLQ_SOURCE_TOPIC",
    "DLQ_VALUE_DROPPED",
    "HEADERS",
    "INBOX_TOPIC",
    "INPUT_KIND",
    "MAX_LIMIT",
    "OUTCOME",
    "PARENT_COMMAND_ID",
    "PARENT_SAGA_ID",
    "PARENT_SAGA_TYPE",
    "REASON",
    "REPLY_TO",
    "RESUMED_BY",
    "SAGA_ID",
    "SAGA_TYPE",
    "SEND",
    "SETTLED",
    "SETTLED_BY",
    "SETTLE_DONE",
    "SETTLE_NOT_DONE",
    "SIGNAL",
    "STATE_SUMMARY",
    "STEP",
    "TERMINATED_BY",
    "TOKEN_ENV",
    "TRACEPARENT",
    "Headers",
    "RawHeaders",
    "TopicNames",
    "dead_letter_headers",
    "definition_key",
    "faust_answered_group",
    "faust_reader_group",
    "faust_transactional_id",
    "inbox_check",
    "owner_key",
    "participant_dlq",
    "participant_transactional_id",
    "private_group",
    "replayed_topic",
    "replayer_transactional_id",
    "replies_topic",
    "restore_group",
    "saga_trace_ids",
    "token_from",
    "traceparent",
    "workers_topic",
]

Headers = list[tuple[str, str | bytes | None]]
"""Record headers as the library writes them (values UTF-8)."""

RawHeaders = Headers | Mapping[str, str | bytes | None] | None
"""Headers as a consumed record gives them (a list of pairs, or none), or already parsed."""

# --------------------------------------------------------------------------- headers

SAGA_ID = "saga-id"
"""The saga a record belongs to (every input, command, reply and dead letter)."""
SAGA_TYPE = "saga-type"
"""The saga type of a command."""
COMMAND_ID = "command-id"
"""A command's id, echoed by its reply (a reply is an inbox record with it and :data:`OUTCOME`)."""
COMMAND_TYPE = "command-type"
"""What a command asks for, e.g. ``ReserveCredit``."""
ATTEMPT = "attempt"
"""The attempt number of a command (1 for the first send)."""
SEND = "send"
"""How many times this attempt of a command was sent (a re-send after a rebalance counts)."""
REPLY_TO = "reply-to"
"""The topic a command's reply goes to: the saga type's inbox."""
DEADLINE = "deadline"
"""Epoch ms after which a command's step is no longer waited for."""
TRACEPARENT = "traceparent"
"""The W3C trace context of a saga's records (see :func:`traceparent`)."""
OUTCOME = "outcome"
"""A reply's outcome: ``success``, ``failure`` or ``retry``."""
INPUT_KIND = "sagas-input"
"""The kind of an inbox input: start, reply, signal, cancel, terminate, resume or settle."""
SIGNAL = "signal"
"""A signal input's name."""
REASON = "reason"
"""Why (a cancel, a terminate, a settle)."""
TERMINATED_BY = "terminated-by"
"""Who terminated a saga."""
RESUMED_BY = "resumed-by"
"""Who resumed a saga."""
STEP = "step"
"""The step a resume enters again."""
PARENT_SAGA_TYPE = "parent-saga-type"
"""The parent of a child saga's start: its type..."""
PARENT_SAGA_ID = "parent-saga-id"
"""... its id..."""
PARENT_COMMAND_ID = "parent-command-id"
"""... and the id of the parent's step the child answers."""
DLQ_REASON = "dlq-reason"
"""Why a record was dead-lettered."""
DLQ_SOURCE_TOPIC = "dlq-source-topic"
"""Where a dead letter came from: its topic..."""
DLQ_SOURCE_PARTITION = "dlq-source-partition"
"""... partition..."""
DLQ_SOURCE_OFFSET = "dlq-source-offset"
"""... and offset."""
DLQ_VALUE_DROPPED = "dlq-value-dropped"
"""On a dead letter whose value was too large to keep: how large it was (it cannot be
replayed)."""

DLQ_HEADERS = (DLQ_REASON, DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET)
"""The headers a dead letter carries besides its source's (when they could be kept)."""

STATE_SUMMARY = "sagas-summary"
"""The header of a state record saying what the worker indexes without decoding the snapshot:
a JSON array ``[status, version, updated_ms, timer id, due ms, ...]`` (see
:func:`sagas.wire.summary_header`). Records of releases before it lack it and are decoded."""

SETTLED = "settled"
"""The header of a ``settle`` input saying what an operator found the in-doubt pivot did:
:data:`SETTLE_DONE` (its effect took place: the saga goes on) or :data:`SETTLE_NOT_DONE` (it did
not: the saga compensates). No other value is accepted."""

SETTLE_DONE = "done"
"""The :data:`SETTLED` value of a pivot that took effect."""

SETTLE_NOT_DONE = "not-done"
"""The :data:`SETTLED` value of a pivot that did not take effect."""

SETTLED_BY = "settled-by"
"""The header of a ``settle`` input naming who settled it (journaled with the reason)."""

HEADERS = (
    SAGA_ID,
    SAGA_TYPE,
    COMMAND_ID,
    COMMAND_TYPE,
    ATTEMPT,
    SEND,
    REPLY_TO,
    DEADLINE,
    TRACEPARENT,
    OUTCOME,
    INPUT_KIND,
    SIGNAL,
    REASON,
    TERMINATED_BY,
    RESUMED_BY,
    STEP,
    PARENT_SAGA_TYPE,
    PARENT_SAGA_ID,
    PARENT_COMMAND_ID,
    *DLQ_HEADERS,
    DLQ_VALUE_DROPPED,
    STATE_SUMMARY,
    SETTLED,
    SETTLED_BY,
)
"""Every header name of the protocol."""

# --------------------------------------------------------------------------- topics and groups

INBOX_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,243}\.inbox")
"""What a command's ``reply-to`` may name by default: a saga inbox."""


@dataclass(frozen=True)
class TopicNames:
    """The topics of one saga type: ``<namespace>.<saga>.{inbox,state,journal,dlq}``."""

    namespace: str
    saga_type: str

    def _topic(self, suffix: str) -> str:
        return f"{self.namespace}.{self.saga_type}.{suffix}"

    @property
    def inbox(self) -> str:
        """Every input of the saga type: starts, replies, signals, cancels and operators' inputs
        (key = saga id)."""
        return self._topic("inbox")

    @property
    def state(self) -> str:
        """The compacted changelog: one snapshot per saga, co-partitioned with the inbox."""
        return self._topic("state")

    @property
    def journal(self) -> str:
        """The append-only history of every saga's events."""
        return self._topic("journal")

    @property
    def dlq(self) -> str:
        """Inputs that could not be decoded or processed, with the reason in their headers."""
        return self._topic("dlq")

    @property
    def group(self) -> str:
        """The consumer group of the saga type's workers."""
        return self._topic("workers")

    def transactional_id(self, worker_id: str) -> str:
        """The ``transactional.id`` of worker ``worker_id`` of the saga type."""
        return f"{self.group}.{worker_id}"


def workers_topic(namespace: str) -> str:
    """The compacted topic where workers advertise their query endpoint per owned partition."""
    return f"{namespace}.workers"


DEFINITION_PREFIX = b"definition/"
"""The key prefix of the definition records in ``<ns>.workers``."""


def definition_key(saga_type: str, version: int) -> bytes:
    """The key of the record in ``<ns>.workers`` naming the definition (its fingerprint and
    data schema) the workers of ``saga_type`` version ``version`` run."""
    return DEFINITION_PREFIX + f"{saga_type}/{version}".encode()


def owner_key(saga_type: str, partition: int) -> bytes:
    """The key of a partition's owner record in ``<ns>.workers``."""
    return f"{saga_type}/{partition}".encode()


MAX_LIMIT = 1000
"""The most sagas one list answer of a worker's query endpoint holds; a larger ``limit`` is
lowered to it."""

TOKEN_ENV = "SAGAS_QUERY_TOKEN"  # noqa: S105 - the variable's name, not a token
"""The environment variable the query endpoint and the client read the bearer token from."""


def token_from(value: str | None) -> str | None:
    """The bearer token to use: ``value`` if given (``""``: none), else ``$SAGAS_QUERY_TOKEN``."""
    token = os.environ.get(TOKEN_ENV) if value is None else value
    return token or None


def saga_trace_ids(saga_type: str, saga_id: str) -> tuple[int, int]:
    """The W3C trace id of a saga's trace and its root span id: the first 16 and next 8 bytes
    of SHA-256 of ``<type>/<id>``, so every process (in any language) finds the same trace."""
    digest = hashlib.sha256(f"{saga_type}/{saga_id}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


def traceparent(saga_type: str, saga_id: str) -> str:
    """The W3C ``traceparent`` header of a saga's records: its trace, its root span, sampled.
    Commands carry it and replies echo it, so a participant's spans join the saga's trace."""
    trace_id, root = saga_trace_ids(saga_type, saga_id)
    return f"00-{trace_id:032x}-{root:016x}-01"


def replies_topic(group: str, topic: str) -> str:
    """The compacted topic where participant group ``group`` records its replies to ``topic``."""
    return f"{group}.{topic}.replies"


def participant_dlq(group: str) -> str:
    """Where participant group ``group`` puts the records of its command topics it cannot take."""
    return f"{group}.dlq"


def participant_transactional_id(group: str, instance_id: str) -> str:
    """The ``transactional.id`` of instance ``instance_id`` of participant group ``group``."""
    return f"{group}.{instance_id}"


def faust_transactional_id(group: str, instance_id: str) -> str:
    """The ``transactional.id`` of a Faust participant instance of ``group``."""
    return f"{group}.faust.{instance_id}"


def faust_answered_group(group: str) -> str:
    """The group whose committed offsets say which commands a Faust participant answered."""
    return f"{group}.answered"


def faust_reader_group(group: str) -> str:
    """The group id of a Faust participant's reader of committed commands (it joins no group)."""
    return f"{group}.faust-reader"


def replayed_topic(dlq: str) -> str:
    """The compacted topic recording which letters of ``dlq`` were replayed."""
    return f"{dlq}.replayed"


def replayer_transactional_id(dlq: str) -> str:
    """The ``transactional.id`` of replays of ``dlq``: two at once fence each other."""
    return f"{dlq}.replayer"


def restore_group(group: str) -> str:
    """The group id of the restore reader of ``group``'s changelogs (it commits nothing)."""
    return f"{group}.restore"


def private_group(role: str) -> str:
    """A group id of its own for a reader that assigns partitions and commits nothing (a
    client's, an operator tool's)."""
    return f"sagas-{role}-{uuid.uuid4().hex[:8]}"


def dead_letter_headers(
    headers: RawHeaders, reason: str, topic: str, partition: int, offset: int
) -> Headers:
    """A record's headers (``None``: none kept) plus where it came from and why it is
    dead-lettered."""
    kept = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    values = (reason, topic, str(partition), str(offset))
    return [*kept, *((name, v.encode()) for name, v in zip(DLQ_HEADERS, values, strict=True))]


def inbox_check(key: bytes | None, saga_id: str, partition: int, partitions: int) -> str | None:
    """Why an inbox record is not where its saga lives (``None``: it is).

    A saga lives in one partition: the one its id maps to (murmur2 over the topic's real
    partition count). An input is accepted only when its key is the UTF-8 saga id and it sits in
    that partition; otherwise a second copy of the saga could start elsewhere.
    """
    if key is None:
        return "the record has no key: the key must be the saga id"
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return "the key is not UTF-8: it must be the saga id"
    if text != saga_id:
        return f"the key {text[:100]!r} is not the saga id {saga_id[:100]!r}"
    expected = partition_for(key, partitions)
    if partition != expected:
        return (
            f"saga {saga_id[:100]!r} lives in partition {expected} of {partitions}, not "
            f"{partition}: produce with the key as the saga id and the murmur2 partitioner"
        )
    return None
