"""The engine's data: inputs, outputs, the saga state, journal events and the decision.

Everything here is a frozen dataclass of JSON-compatible values. ``SagaState`` and
``JournalEvent`` round-trip through ``to_dict``/``from_dict`` so the runtime can store them as
Avro or JSON. The state is never mutated: the engine builds a new one per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from sagas.engine.ids import public_command_id

__all__ = [
    "TERMINAL",
    "Cancel",
    "ChildCancel",
    "ChildStart",
    "CommandOut",
    "Decision",
    "Input",
    "JournalEvent",
    "Outcome",
    "ParentRef",
    "ParentReply",
    "Reply",
    "Resume",
    "SagaState",
    "Settle",
    "Signal",
    "Start",
    "Status",
    "Terminate",
    "TimerFired",
    "Token",
]

JsonDict: TypeAlias = dict[str, Any]
Outcome = Literal["success", "failure", "retryable-failure"]
Status = Literal[
    "running",
    "in-doubt",
    "stuck",
    "compensating",
    "completed",
    "compensated",
    "failed",
    "cancelled",
    "terminated",
]
"""``in-doubt``: the saga waits for its pivot's definitive answer after a deadline passed (it
resends the same command until one comes, or an operator settles it). ``stuck``: an error in
the saga's own code stopped it; it keeps its inputs until an operator resumes or cancels it
(see :mod:`sagas.engine.stuck`)."""
TERMINAL: frozenset[str] = frozenset(
    {"completed", "compensated", "failed", "cancelled", "terminated"}
)


@dataclass(frozen=True)
class ParentRef:
    """Where a child saga reports: the parent's type, id and the command id of its child step."""

    saga_type: str
    saga_id: str
    command_id: str

    def to_dict(self) -> JsonDict:
        """As JSON-compatible primitives."""
        return {"saga_type": self.saga_type, "saga_id": self.saga_id, "command_id": self.command_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParentRef:
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["saga_type"]), str(d["saga_id"]), str(d["command_id"]))


# ----------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Start:
    """Start saga ``saga_id`` with ``data`` as its initial data (ignored if it already exists)."""

    saga_id: str
    data: JsonDict
    parent: ParentRef | None = None


@dataclass(frozen=True)
class Reply:
    """A participant's reply to command ``command_id`` (or a child saga's result)."""

    saga_id: str
    command_id: str
    outcome: Outcome
    payload: JsonDict


@dataclass(frozen=True)
class TimerFired:
    """Timer ``timer_id`` (from ``SagaState.timers``) is due at ``due_ms``."""

    saga_id: str
    timer_id: str
    due_ms: int


@dataclass(frozen=True)
class Signal:
    """An external event for the saga."""

    saga_id: str
    name: str
    payload: JsonDict


@dataclass(frozen=True)
class Cancel:
    """Ask the saga to stop and compensate (refused after its pivot)."""

    saga_id: str
    reason: str


@dataclass(frozen=True)
class Terminate:
    """End the saga at once without compensating (an operator's decision): its timers and
    pending commands are dropped; what its steps did stays done."""

    saga_id: str
    by: str
    reason: str


@dataclass(frozen=True)
class Resume:
    """Run a failed saga on from ``step`` (a top-level block): the step is entered again, with
    a new attempt and a new command id, as if the saga had just reached it."""

    saga_id: str
    step: str
    by: str


@dataclass(frozen=True)
class Settle:
    """An operator's answer for a pivot whose outcome is in doubt: ``done`` (its effect took
    place: the saga goes on) or not (the saga compensates); journaled with who and why."""

    saga_id: str
    done: bool
    by: str
    reason: str


Input: TypeAlias = Start | Reply | TimerFired | Signal | Cancel | Terminate | Resume | Settle

# ---------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class CommandOut:
    """A command for a participant; ``deadline_ms`` is when the saga stops waiting (epoch ms).

    ``attempt`` is the request number, the ``n`` in the command id: an answered failure starts a
    new request with a new id. ``send`` counts the sends of this one id: a command sent again
    because its participant was silent keeps its id and attempt, with ``send`` 2, 3...
    """

    command_id: str
    saga_id: str
    saga_type: str
    step: str
    command_type: str
    topic: str
    payload: JsonDict
    attempt: int
    deadline_ms: int | None
    send: int = 1
    purpose: str = "do"
    """What the command is for: ``do`` (a step's command), ``undo`` (its compensation), or a
    long-running operation's ``start``, ``status`` or ``cancel``."""


@dataclass(frozen=True)
class ChildStart:
    """Start a child saga; the runtime routes it to the child type's inbox."""

    saga_type: str
    saga_id: str
    data: JsonDict
    parent: ParentRef


@dataclass(frozen=True)
class ChildCancel:
    """Cancel a running child saga (its parent compensates or was cancelled); the runtime
    routes it to the child type's inbox as a :class:`Cancel`."""

    saga_type: str
    saga_id: str
    reason: str


@dataclass(frozen=True)
class ParentReply:
    """A child saga ended; the runtime delivers it to the parent as a :class:`Reply`."""

    parent: ParentRef
    outcome: Outcome
    payload: JsonDict


# ------------------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class Token:
    """Progress of one active block.

    Attributes:
        step: the block's name.
        phase: ``waiting``/``backoff`` for steps; ``starting``, ``polling``, ``cancelling``,
            ``verifying`` for long-running operations; ``joining`` for parallels; ``undo`` for
            a compensation in progress.
        failures: failed attempts in this visit (drives the back-off).
        cmd: the command id awaiting a reply, if any.
        checks: status polls made to confirm a cancellation.
        sends: how many times ``cmd`` was sent (a silent participant gets it again).
        due: the ``deadline`` ``cmd`` carries (epoch ms), which a resend of it keeps.
    """

    step: str
    phase: str
    failures: int = 0
    cmd: str | None = None
    checks: int = 0
    sends: int = 0
    due: int | None = None

    def to_dict(self) -> JsonDict:
        """As JSON-compatible primitives."""
        return {
            "step": self.step,
            "phase": self.phase,
            "failures": self.failures,
            "cmd": self.cmd,
            "checks": self.checks,
            "sends": self.sends,
            "due": self.due,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Token:
        """Inverse of :meth:`to_dict` (a token from an earlier release counts one send)."""
        sends = int(d.get("sends", 1 if d["cmd"] else 0))
        due = d.get("due")
        return cls(
            d["step"],
            d["phase"],
            int(d["failures"]),
            d["cmd"],
            int(d["checks"]),
            sends,
            None if due is None else int(due),
        )


@dataclass(frozen=True)
class SagaState:
    """A saga's state; the engine's only memory.

    Attributes:
        saga_id: the saga's id (the Kafka key).
        saga_type: the saga type name.
        version: the definition version it runs on.
        status: ``running``, ``compensating`` or a terminal status (see :attr:`terminal`).
        data: the saga's data.
        timers: every pending timer, id -> due time (epoch ms).
        seed: jitter seed, derived from the saga id.
        started_ms: when it started.
        updated_ms: when the last event happened.
        parent: the parent saga, for a child saga.
        tokens: active blocks by name.
        pending: command id -> block name, for every command awaiting a reply.
        counters: requests and timers issued so far per ``<step>:<purpose>`` (ids never repeat).
        completed: actions that completed, in completion order.
        pivoted: the pivot completed.
        joins: per active parallel, the branch indexes that ended ``ok`` and ``failed``.
        opened: per active parallel, the length of ``completed`` when it was entered (what its
            branches completed in this round comes after it; a loop enters it again).
        to_undo: compensations still to issue, next first.
        undo: the compensation in progress.
        outcome: the terminal status compensation will end in.
        reason: why the saga compensated or failed.
        signals: signals received before a step waited for them, in order.
        held: ``(outcome, reason)`` of a cancel or deadline that came while the pivot was in
            flight: it waits for the pivot's answer, and compensates with these if it was not
            done (a done pivot refuses a held cancel).
        secret: the key of the tags in its command ids (hex; empty for a saga started by a
            release without tags, until it sends its next command).
        stuck: for a ``stuck`` saga, the error (``step``, ``error``, ``message``, ``frames``,
            ``at_ms``) and what it goes back to (``status``, ``timers``; ``status`` ``None``: a
            start that raised, the saga does not exist yet).
        kept: a stuck saga's inputs to apply again when it is resumed, the one that raised
            first (as :func:`sagas.engine.stuck.input_to_dict`).
    """

    saga_id: str
    saga_type: str
    version: int
    status: Status
    data: JsonDict
    timers: Mapping[str, int]
    seed: int
    started_ms: int
    updated_ms: int
    parent: ParentRef | None = None
    tokens: Mapping[str, Token] = field(default_factory=dict)
    pending: Mapping[str, str] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    completed: tuple[str, ...] = ()
    pivoted: bool = False
    joins: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    opened: Mapping[str, int] = field(default_factory=dict)
    to_undo: tuple[str, ...] = ()
    undo: Token | None = None
    outcome: Status | None = None
    reason: str | None = None
    signals: tuple[tuple[str, JsonDict], ...] = ()
    held: tuple[str, str] | None = None
    secret: str = field(default="", repr=False)
    stuck: JsonDict | None = None
    kept: tuple[JsonDict, ...] = ()

    @property
    def terminal(self) -> bool:
        """The saga has ended: completed, compensated, failed, cancelled or terminated."""
        return self.status in TERMINAL

    def to_dict(self) -> JsonDict:
        """As JSON-compatible primitives (lists, dicts, str, int, bool, None)."""
        return {
            "saga_id": self.saga_id,
            "saga_type": self.saga_type,
            "version": self.version,
            "status": self.status,
            "data": self.data,
            "timers": dict(self.timers),
            "seed": self.seed,
            "started_ms": self.started_ms,
            "updated_ms": self.updated_ms,
            "parent": self.parent.to_dict() if self.parent else None,
            "tokens": {k: t.to_dict() for k, t in self.tokens.items()},
            "pending": dict(self.pending),
            "counters": dict(self.counters),
            "completed": list(self.completed),
            "pivoted": self.pivoted,
            "joins": {k: [list(ok), list(bad)] for k, (ok, bad) in self.joins.items()},
            "opened": dict(self.opened),
            "to_undo": list(self.to_undo),
            "undo": self.undo.to_dict() if self.undo else None,
            "outcome": self.outcome,
            "reason": self.reason,
            "signals": [[name, payload] for name, payload in self.signals],
            "held": list(self.held) if self.held else None,
            "secret": self.secret,
            "stuck": self.stuck,
            "kept": list(self.kept),
        }

    def public_dict(self) -> JsonDict:
        """:meth:`to_dict` for status views: without the secret, command ids without their tags
        (shown, they could answer the commands). :meth:`from_dict` reads it back."""
        d = self.to_dict()
        del d["secret"]
        d["pending"] = {public_command_id(c): s for c, s in self.pending.items()}
        for tok in (*d["tokens"].values(), d["undo"]):
            if tok and tok["cmd"]:
                tok["cmd"] = public_command_id(tok["cmd"])
        if d["parent"]:
            d["parent"]["command_id"] = public_command_id(d["parent"]["command_id"])
        for kept in d["kept"]:
            if kept.get("command_id"):
                kept["command_id"] = public_command_id(kept["command_id"])
            if kept.get("parent"):
                kept["parent"] = {**kept["parent"], "command_id": "(hidden)"}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SagaState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            saga_id=d["saga_id"],
            saga_type=d["saga_type"],
            version=int(d["version"]),
            status=cast(Status, d["status"]),
            data=dict(d["data"]),
            timers={k: int(v) for k, v in d["timers"].items()},
            seed=int(d["seed"]),
            started_ms=int(d["started_ms"]),
            updated_ms=int(d["updated_ms"]),
            parent=ParentRef.from_dict(d["parent"]) if d["parent"] else None,
            tokens={k: Token.from_dict(t) for k, t in d["tokens"].items()},
            pending=dict(d["pending"]),
            counters={k: int(v) for k, v in d["counters"].items()},
            completed=tuple(d["completed"]),
            pivoted=bool(d["pivoted"]),
            joins={k: (tuple(ok), tuple(bad)) for k, (ok, bad) in d["joins"].items()},
            opened={k: int(v) for k, v in (d.get("opened") or {}).items()},
            to_undo=tuple(d["to_undo"]),
            undo=Token.from_dict(d["undo"]) if d["undo"] else None,
            outcome=cast("Status | None", d["outcome"]),
            reason=d["reason"],
            signals=tuple((str(n), dict(p)) for n, p in d["signals"]),
            held=(str(d["held"][0]), str(d["held"][1])) if d.get("held") else None,
            secret=str(d.get("secret") or ""),
            stuck=dict(d["stuck"]) if d.get("stuck") else None,
            kept=tuple(dict(k) for k in d.get("kept") or ()),
        )


@dataclass(frozen=True)
class JournalEvent:
    """One fact in a saga's history. ``type`` names it; ``body`` holds its JSON-compatible fields.

    The types are listed in :mod:`sagas.engine.evolve`. ``ignored`` records an input that changed
    nothing (a late or duplicate reply, an early timer, a refused cancel...).
    """

    type: str
    saga_id: str
    at_ms: int
    body: JsonDict = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        """As JSON-compatible primitives."""
        return {"type": self.type, "saga_id": self.saga_id, "at_ms": self.at_ms, "body": self.body}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JournalEvent:
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["type"]), str(d["saga_id"]), int(d["at_ms"]), dict(d["body"]))


@dataclass(frozen=True)
class Decision:
    """What one transition decided: the new state, the events to journal and the messages to send.

    ``state`` is ``None`` only for an input about a saga that does not exist.
    """

    state: SagaState | None
    events: list[JournalEvent]
    commands: list[CommandOut]
    children: list[ChildStart]
    parent_replies: list[ParentReply]
    child_cancels: list[ChildCancel] = field(default_factory=list)
