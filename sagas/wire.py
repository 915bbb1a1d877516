"""The wire contract: how inputs, commands and replies look on Kafka. No Kafka client here.

Every record is keyed by saga id. Header values are UTF-8 strings. Values are Avro
(``sagas.Payload`` unless a command type has its own schema).

Inbox records (``<ns>.<saga>.inbox``) say what they are in ``sagas-input``:

===========  =================================================================================
start        ``saga-id``; a child saga also has ``parent-saga-type``, ``parent-saga-id``,
             ``parent-command-id``. Value: the saga's initial data.
reply        ``saga-id``, ``command-id``, ``outcome`` (success | failure | retryable-failure).
             Value: the reply payload. A record without ``sagas-input`` but with ``command-id``
             is a reply too: participants written with a plain Kafka client need not set it.
signal       ``saga-id``, ``signal``: the signal's name. Value: its payload.
cancel       ``saga-id``, ``reason``.
terminate    ``saga-id``, ``terminated-by`` (who), ``reason``: end without compensating.
resume       ``saga-id``, ``step`` (the top-level block to enter again), ``resumed-by``: run a
             failed saga on.
settle       ``saga-id``, ``settled`` (done | not-done: whether the in-doubt pivot took effect),
             ``settled-by`` (who), ``reason``: settle a saga waiting in-doubt for its pivot's
             answer; done goes on, not-done compensates.
===========  =================================================================================

A parent saga cancels a running child with a ``cancel`` input to the child type's inbox.

Commands (to the participant's topic): headers ``saga-id``, ``saga-type``, ``command-id``,
``command-type``, ``attempt`` (the request number: a new one only after an answered failure),
``send`` (1, 2...: the same request sent again because its participant was silent; same command
id), ``reply-to`` (the inbox topic), ``deadline`` (epoch ms, when the saga stops waiting; absent
when it waits forever).

State records (``<ns>.<saga>.state``, written by the worker): the encoded snapshot, and the
``sagas-summary`` header (:func:`summary_header`) with what the worker indexes without decoding it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sagas.engine.model import (
    Cancel,
    ChildCancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
    Outcome,
    ParentRef,
    ParentReply,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    Start,
    Terminate,
)
from sagas.errors import DecodeError, PayloadSchemaError
from sagas.protocol import (
    ATTEMPT,
    COMMAND_ID,
    COMMAND_TYPE,
    DEADLINE,
    INPUT_KIND,
    OUTCOME,
    PARENT_COMMAND_ID,
    PARENT_SAGA_ID,
    PARENT_SAGA_TYPE,
    REASON,
    REPLY_TO,
    RESUMED_BY,
    SAGA_ID,
    SAGA_TYPE,
    SEND,
    SETTLE_DONE,
    SETTLE_NOT_DONE,
    SETTLED,
    SETTLED_BY,
    SIGNAL,
    STATE_SUMMARY,
    STEP,
    TERMINATED_BY,
    TRACEPARENT,
    Headers,
    RawHeaders,
    traceparent,
)

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.dsl.program import Program
    from sagas.serde.records import Serde

__all__ = [
    "OUTCOMES",
    "OutRecord",
    "StateSummary",
    "child_cancel_record",
    "command_record",
    "decision_records",
    "decode_input",
    "header_dict",
    "input_record",
    "parent_reply_record",
    "read_summary",
    "reply_record",
    "summary_header",
]

OUTCOMES: frozenset[str] = frozenset({"success", "failure", "retryable-failure"})


@dataclass(frozen=True)
class OutRecord:
    """A record to produce: topic, key, value and headers (partition chosen by the key). A
    ``None`` value is a tombstone (it removes the key from a compacted topic)."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Headers


def header_dict(headers: RawHeaders) -> dict[str, str]:
    """Headers as a dict of strings (the last value of a repeated header wins); a dict of
    strings (headers parsed already) is returned as it is.

    Raises:
        DecodeError: a header value is not UTF-8.
    """
    if isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()):
        return headers
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    out: dict[str, str] = {}
    for name, value in pairs:
        if value is None:
            continue
        try:
            out[name] = value.decode("utf-8") if isinstance(value, bytes) else value
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name!r} is not UTF-8", record=headers) from exc
    return out


def _h(items: Mapping[str, str | int | None]) -> Headers:
    """Headers in the order given, those whose value is None left out."""
    return [(k, str(v).encode()) for k, v in items.items() if v is not None]


def decode_input(
    key: bytes | None, value: bytes | None, headers: RawHeaders, serde: Serde
) -> Input:
    """Turn an inbox record into an engine input (payloads read with ``serde``).

    Raises:
        DecodeError: the record is not a valid input; the reason says what is wrong.
    """
    h = header_dict(headers)
    decode_payload = serde.decode_payload
    saga_id = h.get(SAGA_ID) or (key.decode("utf-8", "replace") if key else "")
    if not saga_id:
        raise DecodeError("no saga id: set the record key or the saga-id header", record=value)
    kind = h.get(INPUT_KIND) or ("reply" if COMMAND_ID in h else "")
    if kind == "reply":
        outcome = h.get(OUTCOME, "")
        if outcome not in OUTCOMES:
            raise DecodeError(
                f"reply outcome {outcome!r} is not one of {sorted(OUTCOMES)}", record=value
            )
        if not h.get(COMMAND_ID):
            raise DecodeError("reply without a command-id header", record=value)
        return Reply(saga_id, h[COMMAND_ID], cast(Outcome, outcome), decode_payload(value))
    if kind == "start":
        parent = None
        if PARENT_SAGA_ID in h:
            parent = ParentRef(
                h.get(PARENT_SAGA_TYPE, ""), h[PARENT_SAGA_ID], h.get(PARENT_COMMAND_ID, "")
            )
        return Start(saga_id, decode_payload(value), parent)
    if kind == "signal":
        if not h.get(SIGNAL):
            raise DecodeError("signal without a signal header naming it", record=value)
        return Signal(saga_id, h[SIGNAL], decode_payload(value))
    if kind == "cancel":
        return Cancel(saga_id, h.get(REASON) or "cancelled")
    if kind == "terminate":
        return Terminate(saga_id, h.get(TERMINATED_BY) or "unknown", h.get(REASON) or "")
    if kind == "resume":
        if not h.get(STEP):
            raise DecodeError("resume without a step header naming the block", record=value)
        return Resume(saga_id, h[STEP], h.get(RESUMED_BY) or "unknown")
    if kind == "settle":
        settled = h.get(SETTLED)
        if settled not in (SETTLE_DONE, SETTLE_NOT_DONE):
            said = "no settled header" if settled is None else f"settled header {settled!r}"
            raise DecodeError(
                f"settle with {said}: it must be {SETTLE_DONE!r} (the pivot took effect) or "
                f"{SETTLE_NOT_DONE!r} (it did not)",
                record=value,
            )
        by = h.get(SETTLED_BY) or "unknown"
        return Settle(saga_id, settled == SETTLE_DONE, by, h.get(REASON) or "")
    raise DecodeError(
        f"unknown input kind {kind!r}: the sagas-input header must be start, reply, signal, "
        "cancel, terminate, resume or settle (or a reply must carry command-id and outcome "
        "headers)",
        record=value,
    )


def input_record(
    topic: str, inp: Input, serde: Serde, *, saga_type: str | None = None
) -> OutRecord:
    """The inbox record of an input (what the client and the runtime send); with
    ``saga_type``, a start carries the saga's W3C ``traceparent``."""
    encode_payload = serde.encode_payload
    key = inp.saga_id.encode()
    if isinstance(inp, Start):
        p = inp.parent
        headers = _h(
            {
                INPUT_KIND: "start",
                SAGA_ID: inp.saga_id,
                PARENT_SAGA_TYPE: p.saga_type if p else None,
                PARENT_SAGA_ID: p.saga_id if p else None,
                PARENT_COMMAND_ID: p.command_id if p else None,
                TRACEPARENT: traceparent(saga_type, inp.saga_id) if saga_type else None,
            }
        )
        return OutRecord(topic, key, encode_payload(inp.data), headers)
    if isinstance(inp, Reply):
        return reply_record(
            topic, inp.saga_id, inp.command_id, inp.outcome, inp.payload, serde=serde
        )
    if isinstance(inp, Signal):
        headers = _h({INPUT_KIND: "signal", SAGA_ID: inp.saga_id, SIGNAL: inp.name})
        return OutRecord(topic, key, encode_payload(inp.payload), headers)
    if isinstance(inp, Cancel):
        headers = _h({INPUT_KIND: "cancel", SAGA_ID: inp.saga_id, REASON: inp.reason})
        return OutRecord(topic, key, encode_payload({}), headers)
    if isinstance(inp, Terminate):
        headers = _h(
            {
                INPUT_KIND: "terminate",
                SAGA_ID: inp.saga_id,
                TERMINATED_BY: inp.by,
                REASON: inp.reason,
            }
        )
        return OutRecord(topic, key, encode_payload({}), headers)
    if isinstance(inp, Resume):
        headers = _h(
            {INPUT_KIND: "resume", SAGA_ID: inp.saga_id, STEP: inp.step, RESUMED_BY: inp.by}
        )
        return OutRecord(topic, key, encode_payload({}), headers)
    if isinstance(inp, Settle):
        headers = _h(
            {
                INPUT_KIND: "settle",
                SAGA_ID: inp.saga_id,
                SETTLED: SETTLE_DONE if inp.done else SETTLE_NOT_DONE,
                SETTLED_BY: inp.by,
                REASON: inp.reason,
            }
        )
        return OutRecord(topic, key, encode_payload({}), headers)
    raise TypeError(f"timer firings are not sent to the inbox: {inp!r}")


def reply_record(
    topic: str,
    saga_id: str,
    command_id: str,
    outcome: Outcome,
    payload: dict[str, Any],
    *,
    schema: str | None = None,
    serde: Serde,
    trace: str | None = None,
) -> OutRecord:
    """A participant's reply to ``command_id``, for the command's ``reply-to`` topic; written
    as the Avro record ``schema`` when given, else as ``sagas.Payload``; ``trace`` is the
    command's ``traceparent``, echoed.

    Raises:
        PayloadSchemaError: the payload does not fit ``schema``.
    """
    headers = _h(
        {
            INPUT_KIND: "reply",
            SAGA_ID: saga_id,
            COMMAND_ID: command_id,
            OUTCOME: outcome,
            TRACEPARENT: trace,
        }
    )
    value = serde.encode_payload(payload, schema)
    return OutRecord(topic, saga_id.encode(), value, headers)


def command_record(
    cmd: CommandOut, reply_to: str, schema: str | None = None, *, serde: Serde
) -> OutRecord:
    """A command for a participant, with the contract's headers; its payload is written as the
    Avro record ``schema`` when given, else as ``sagas.Payload``.

    Raises:
        PayloadSchemaError: the payload does not fit ``schema``.
    """
    headers = _h(
        {
            SAGA_ID: cmd.saga_id,
            SAGA_TYPE: cmd.saga_type,
            COMMAND_ID: cmd.command_id,
            COMMAND_TYPE: cmd.command_type,
            ATTEMPT: cmd.attempt,
            SEND: cmd.send,
            REPLY_TO: reply_to,
            DEADLINE: cmd.deadline_ms,
            TRACEPARENT: traceparent(cmd.saga_type, cmd.saga_id),
        }
    )
    value = serde.encode_payload(cmd.payload, schema)
    return OutRecord(cmd.topic, cmd.saga_id.encode(), value, headers)


def decision_records(
    app: App, program: Program, decision: Decision, serde: Serde | None = None
) -> list[OutRecord]:
    """Every record a decision sends: its commands (replying to the saga's inbox), child starts,
    child cancels (a :class:`Cancel` for the child type's inbox) and parent replies, all encoded
    with ``serde`` (default: the app's); the one way a decision becomes records, for the worker
    and for :mod:`sagas.testing` alike.

    Raises:
        PayloadSchemaError: a command payload does not fit its schema (then nothing is sent: the
            saga is stuck, holding the input, see :func:`sagas.engine.stuck_decision`).
    """
    serde = serde or app.serde
    reply_to = app.topics(program.name).inbox
    records = []
    for cmd in decision.commands:
        schema = app.payload_schema(program, cmd.command_type)
        try:
            records.append(command_record(cmd, reply_to, schema, serde=serde))
        except PayloadSchemaError as exc:
            raise PayloadSchemaError(
                f"step {cmd.step!r}, command {cmd.command_type}: {exc}", step=cmd.step
            ) from exc
    records += [
        child_start_record(child, app.topics(child.saga_type).inbox, serde)
        for child in decision.children
    ]
    records += [
        child_cancel_record(cancel, app.topics(cancel.saga_type).inbox, serde)
        for cancel in decision.child_cancels
    ]
    records += [
        parent_reply_record(reply, app.topics(reply.parent.saga_type).inbox, serde)
        for reply in decision.parent_replies
    ]
    return records


def child_start_record(child: ChildStart, inbox: str, serde: Serde) -> OutRecord:
    """The start of a child saga, for the child type's inbox."""
    return input_record(inbox, Start(child.saga_id, child.data, child.parent), serde)


def child_cancel_record(cancel: ChildCancel, inbox: str, serde: Serde) -> OutRecord:
    """A parent's cancel of a running child saga, for the child type's inbox: the same record
    as a client's :class:`Cancel`."""
    return input_record(inbox, Cancel(cancel.saga_id, cancel.reason), serde)


def parent_reply_record(reply: ParentReply, inbox: str, serde: Serde) -> OutRecord:
    """A child saga's result, for the parent's inbox."""
    p = reply.parent
    return reply_record(inbox, p.saga_id, p.command_id, reply.outcome, reply.payload, serde=serde)


class StateSummary(NamedTuple):
    """What the worker indexes of a snapshot: carried in the state record's
    :data:`~sagas.protocol.STATE_SUMMARY` header, so a restore need not decode the snapshot.
    ``timers`` is flat: ``(timer id, due ms, timer id, due ms, ...)``."""

    status: str
    version: int
    updated_ms: int
    timers: tuple[str | int, ...]

    @classmethod
    def of(cls, state: SagaState) -> StateSummary:
        """The summary of a decoded snapshot."""
        timers = tuple(x for pair in state.timers.items() for x in pair)
        return cls(state.status, state.version, state.updated_ms, timers)


_JSON = json.JSONDecoder()


def summary_header(state: SagaState) -> tuple[str, bytes]:
    """The :data:`~sagas.protocol.STATE_SUMMARY` header of a snapshot's record: a JSON array
    ``[status, version, updated_ms, timer id, due ms, ...]``."""
    status, version, updated, timers = StateSummary.of(state)
    body = [status, version, updated, *timers]
    return STATE_SUMMARY, json.dumps(body, separators=(",", ":")).encode()


def read_summary(headers: RawHeaders) -> StateSummary | None:
    """The summary a state record's headers carry; ``None`` when it has none (written by an
    older release) or it is malformed: then the snapshot itself must be decoded."""
    raw = None
    if isinstance(headers, Mapping):
        raw = headers.get(STATE_SUMMARY)
    else:  # a consumed record's: a list of pairs, or None
        for name, value in headers or ():
            if name == STATE_SUMMARY:
                raw = value
    if raw is None:
        return None
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        body, end = _JSON.raw_decode(text)
    except ValueError:  # UnicodeDecodeError too
        return None
    if end != len(text) or type(body) is not list or len(body) < 3 or len(body) % 2 == 0:
        return None
    status, version, updated, *timers = body
    if type(status) is not str or type(version) is not int or type(updated) is not int:
        return None
    for i in range(0, len(timers), 2):
        if type(timers[i]) is not str or type(timers[i + 1]) is not int:
            return None
    return StateSummary(status, version, updated, tuple(timers))
