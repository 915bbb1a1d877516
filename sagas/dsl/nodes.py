"""The building blocks of a saga definition.

Every block is a frozen dataclass made by a small factory function (``step``, ``long_running``,
``wait_signal``, ``sleep``, ``parallel``, ``branch``, ``goto``, ``child``). The classes are generic
in ``D``, the type of the saga's data (a ``TypedDict`` works best), so a user's mypy checks the keys
their payload builders and predicates read. Nothing here runs: the compiler validates the blocks and
the engine executes them.

A block does not raise when it is made, because it does not know its saga yet: it keeps the first
problem found (``_problem``, also those of its ``Retry`` and calls), and :class:`~sagas.dsl.Saga`
raises it, naming the saga and the step, with the original as the cause.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, Literal, TypeAlias, TypeVar

from sagas.dsl.retry import Retry
from sagas.errors import DefinitionError

__all__ = [
    "KINDS",
    "Branch",
    "Call",
    "Child",
    "Goto",
    "Join",
    "Kind",
    "LongRunning",
    "Merge",
    "Node",
    "Parallel",
    "ParentClose",
    "Payload",
    "SchemaSpec",
    "Sleep",
    "Step",
    "WaitSignal",
    "branch",
    "call",
    "child",
    "goto",
    "long_running",
    "parallel",
    "sleep",
    "step",
    "wait_signal",
]

D = TypeVar("D")

Kind = Literal["compensatable", "pivot", "retryable", "retriable"]
"""compensatable: undone by its compensation; pivot: the point of no return (one per saga);
retryable: after the pivot, retried until it succeeds. ``"retriable"`` is the deprecated spelling
of ``"retryable"``; a block stores both as :data:`RETRYABLE`."""

KINDS: tuple[str, ...] = ("compensatable", "pivot", "retryable")
"""The step kinds, as users write them."""

RETRYABLE: Literal["retriable"] = "retriable"
"""The ``kind`` a block stores (and the engine reads) for a retryable step, whichever spelling the
definition used."""

Join = Literal["all", "first"]
ParentClose = Literal["cancel", "abandon"]
"""What a child saga does when its parent compensates, is cancelled or passes a deadline while
the child runs: ``cancel`` it (it compensates itself; the parent waits for its end), or
``abandon`` it (it runs on, and its result is ignored)."""
SchemaSpec: TypeAlias = type[Any] | str | Path | Mapping[str, Any]
"""An Avro payload schema: a dataclass, the path of an ``.avsc`` file, or the schema as a dict
(see :mod:`sagas.serde.payloads`)."""
Payload: TypeAlias = Callable[[D], Mapping[str, object]]
"""Builds a command payload (a JSON-compatible mapping) from the saga's data."""
Merge: TypeAlias = str | Callable[[D, Mapping[str, Any]], D] | None
"""How a success reply enters the data: ``None`` updates the top-level keys, a string stores the
whole reply under that key, a function ``(data, reply) -> new data`` does anything else."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _no_payload(_: object) -> Mapping[str, object]:
    return {}


def _bad_name(name: object, what: str = "step") -> str | None:
    if isinstance(name, str) and _NAME.match(name):
        return None
    return f"{what} name {name!r} is not valid: use letters, digits, '-', '_' and '.' only"


def _bad_duration(value: object, what: str, optional: bool = True) -> str | None:
    if (value is None and optional) or (isinstance(value, timedelta) and value > timedelta(0)):
        return None
    none = ", or leave it out" if optional else ""
    return f"{what}={value!r}: use a positive timedelta, e.g. {what}=timedelta(minutes=5){none}"


def _bad_kind(kind: object) -> str | None:
    if kind in (*KINDS, RETRYABLE):
        return None
    return f"kind={kind!r} is not a step kind; use one of " + ", ".join(map(repr, KINDS))


def _stored_kind(kind: Kind) -> Kind:
    return RETRYABLE if kind in ("retryable", "retriable") else kind


def _warn_kind(kind: str) -> None:
    """Warn, at the caller of the block factory, that ``kind='retriable'`` is deprecated."""
    if kind == "retriable":
        warnings.warn(
            "kind='retriable' is deprecated: write kind='retryable'",
            DeprecationWarning,
            stacklevel=3,
        )


def _default_retry(kind: str) -> Retry:
    return Retry(max_attempts=None) if kind in ("retryable", "retriable") else Retry()


def _keep_problem(block: object, *found: str | DefinitionError | None) -> None:
    """Store the first problem found on ``block`` (a frozen dataclass) for its saga to raise."""
    for problem in found:
        if problem is not None:
            error = DefinitionError(problem) if isinstance(problem, str) else problem
            object.__setattr__(block, "_problem", error)
            return


@dataclass(frozen=True)
class Call(Generic[D]):
    """A command to send: its type, its payload builder, an optional topic, and optional Avro
    schemas of its payload and of the reply (see :mod:`sagas.serde.payloads`)."""

    command: str
    payload: Payload[D] = _no_payload
    topic: str | None = None
    schema: SchemaSpec | None = None
    reply_schema: SchemaSpec | None = None
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.command or not isinstance(self.command, str):
            _keep_problem(
                self,
                f"call({self.command!r}) needs a command type, e.g. call('ReleaseCredit', ...)",
            )


def call(
    command: str,
    payload: Payload[D] | None = None,
    *,
    to: str | None = None,
    schema: SchemaSpec | None = None,
    reply_schema: SchemaSpec | None = None,
) -> Call[D]:
    """A command: ``call("ReleaseCredit", lambda d: {"customer": d["customer"]})``.

    Args:
        command: the command type participants dispatch on.
        payload: builds the payload from the saga's data; an empty payload when omitted.
        to: the topic, when it differs from the step's topic.
        schema: the payload's Avro schema (a dataclass, a ``.avsc`` path or a dict); without
            one the payload travels as JSON in ``sagas.Payload``.
        reply_schema: the schema participants reply with, so the worker can read it.
    """
    return Call(command, payload or _no_payload, to, schema, reply_schema)


@dataclass(frozen=True)
class Step(Generic[D]):
    """Send a command to a participant and wait for its reply. Made by :func:`step`."""

    name: str
    topic: str
    command: str
    payload: Payload[D]
    compensate: Call[D] | None
    kind: Kind
    deadline: timedelta | None
    retry: Retry
    merge: Merge[D]
    payload_schema: SchemaSpec | None = None
    reply_schema: SchemaSpec | None = None
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _stored_kind(self.kind))
        _keep_problem(
            self,
            _bad_name(self.name),
            None
            if self.topic and self.command
            else "a step needs to='<topic>' and command='<type>', "
            "e.g. step('reserve', to='credit.commands', command='Reserve')",
            _bad_kind(self.kind),
            _bad_duration(self.deadline, "deadline"),
            self.retry._problem,
            None if self.compensate is None else self.compensate._problem,
        )


@dataclass(frozen=True)
class LongRunning(Generic[D]):
    """Start, poll until done, cancel and verify on the deadline. See :func:`long_running`."""

    name: str
    topic: str
    start: Call[D]
    status: Call[D]
    cancel: Call[D]
    every: timedelta
    done: Callable[[Mapping[str, Any]], bool]
    failed: Callable[[Mapping[str, Any]], bool]
    cancelled: Callable[[Mapping[str, Any]], bool]
    deadline: timedelta | None
    checks: int
    compensate: Call[D] | None
    kind: Kind
    retry: Retry
    merge: Merge[D]
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _stored_kind(self.kind))
        calls = (self.start, self.status, self.cancel, self.compensate)
        _keep_problem(
            self,
            _bad_name(self.name),
            None if self.topic else "long_running() needs to='<topic>'",
            _bad_kind(self.kind),
            _bad_duration(self.every, "every", optional=False),
            _bad_duration(self.deadline, "deadline"),
            None
            if isinstance(self.checks, int) and self.checks >= 1
            else f"checks={self.checks!r}: use 1 or more status polls",
            self.retry._problem,
            *(c._problem for c in calls if c is not None),
        )


@dataclass(frozen=True)
class WaitSignal(Generic[D]):
    """Wait for a named signal; fail the saga on the timeout. Made by :func:`wait_signal`."""

    name: str
    signal: str
    timeout: timedelta
    merge: Merge[D]
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _keep_problem(
            self, _bad_name(self.name), _bad_duration(self.timeout, "timeout", optional=False)
        )


@dataclass(frozen=True)
class Sleep:
    """A durable timer. Made by :func:`sleep`."""

    name: str
    duration: timedelta
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _keep_problem(
            self, _bad_name(self.name), _bad_duration(self.duration, "duration", optional=False)
        )


@dataclass(frozen=True)
class Parallel(Generic[D]):
    """Branches that run together and join. Made by :func:`parallel`."""

    name: str
    branches: tuple[tuple[Node[D], ...], ...]
    join: Join
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _keep_problem(
            self,
            _bad_name(self.name),
            None
            if len(self.branches) >= 2
            else "parallel() needs two branches or more: parallel(name, [steps...], [steps...])",
            None if self.join in ("all", "first") else f"join={self.join!r}: use 'all' or 'first'",
        )


@dataclass(frozen=True)
class Branch(Generic[D]):
    """Choose between two step lists on the data. Made by :func:`branch`."""

    name: str
    when: Callable[[D], bool]
    then: tuple[Node[D], ...]
    otherwise: tuple[Node[D], ...]
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _keep_problem(
            self,
            _bad_name(self.name),
            None if callable(self.when) else "branch() needs a predicate: when=lambda data: ...",
        )


@dataclass(frozen=True)
class Goto:
    """Jump to a named step (a loop, with a branch to leave it). Made by :func:`goto`."""

    target: str


@dataclass(frozen=True)
class Child(Generic[D]):
    """Run another saga type and merge its result. Made by :func:`child`."""

    name: str
    saga: str
    input: Payload[D]
    compensate: Call[D] | None
    kind: Kind
    deadline: timedelta | None
    merge: Merge[D]
    parent_close: ParentClose = "cancel"
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _stored_kind(self.kind))
        _keep_problem(
            self,
            _bad_name(self.name),
            None if self.saga else "child() needs saga='<saga type name>'",
            None
            if self.parent_close in ("cancel", "abandon")
            else f"parent_close={self.parent_close!r}: use 'cancel' or 'abandon'",
            _bad_kind(self.kind),
            _bad_duration(self.deadline, "deadline"),
            None if self.compensate is None else self.compensate._problem,
        )


Node: TypeAlias = (
    Step[D] | LongRunning[D] | WaitSignal[D] | Sleep | Parallel[D] | Branch[D] | Goto | Child[D]
)
"""Any block that may appear in a saga's step list."""

BLOCKS = (Step, LongRunning, WaitSignal, Sleep, Parallel, Branch, Goto, Child)
"""The block classes, for ``isinstance`` checks."""


def step(
    name: str,
    *,
    to: str,
    command: str,
    payload: Payload[D] | None = None,
    compensate: Call[D] | None = None,
    kind: Kind = "compensatable",
    deadline: timedelta | None = None,
    retry: Retry | None = None,
    merge: Merge[D] = None,
    payload_schema: SchemaSpec | None = None,
    reply_schema: SchemaSpec | None = None,
) -> Step[D]:
    """A step: send ``command`` to topic ``to`` and wait for the participant's reply.

    Args:
        name: unique within the saga; letters, digits, ``-``, ``_``, ``.``.
        to: the participant's command topic, e.g. ``"credit.commands"``.
        command: the command type.
        payload: builds the command's payload from the saga's data.
        compensate: the command that undoes this step (required for compensatable steps).
        kind: ``"compensatable"`` (default), ``"pivot"`` or ``"retryable"`` (``"retriable"``
            still works, with a ``DeprecationWarning``).
        deadline: how long the step may take, retries included. For a retryable step it bounds
            one attempt, which is then retried.
        retry: back-off policy for ``retryable-failure`` replies (retryable steps retry forever).
        merge: how the success reply enters the data (see :data:`Merge`).
        payload_schema: the command payload's Avro schema (see :func:`call`).
        reply_schema: the success reply's Avro schema.
    """
    _warn_kind(kind)
    return Step(
        name, to, command, payload or _no_payload, compensate, kind, deadline,
        _default_retry(kind) if retry is None else retry, merge,
        payload_schema, reply_schema,
    )  # fmt: skip


def _never(_: Mapping[str, Any]) -> bool:
    return False


def long_running(
    name: str,
    *,
    to: str,
    start: Call[D],
    status: Call[D],
    cancel: Call[D],
    every: timedelta,
    done: Callable[[Mapping[str, Any]], bool],
    failed: Callable[[Mapping[str, Any]], bool] = _never,
    cancelled: Callable[[Mapping[str, Any]], bool] | None = None,
    deadline: timedelta | None = None,
    checks: int = 10,
    compensate: Call[D] | None = None,
    kind: Kind = "compensatable",
    retry: Retry | None = None,
    merge: Merge[D] = None,
) -> LongRunning[D]:
    """A long-running operation as one step.

    Sends ``start``; then every ``every`` sends ``status`` until ``done(reply)`` (the step succeeds
    and the reply merges into the data) or ``failed(reply)`` (the step fails and the saga
    compensates). When the deadline passes first, sends ``cancel``, then polls ``status`` until
    ``cancelled(reply)`` confirms it (at most ``checks`` polls), then the saga compensates.

    Args:
        name: unique step name.
        to: the participant's command topic.
        start: the command that starts the operation (retried per ``retry``).
        status: the status query, sent every ``every``.
        cancel: the command that cancels the operation.
        every: the polling interval.
        done: true when a status reply says the operation finished.
        failed: true when a status reply says the operation failed on its own.
        cancelled: true when a status reply confirms the cancellation (default: ``failed``).
        deadline: how long the operation may take before it is cancelled.
        checks: status polls allowed to confirm a cancellation before the saga reports it failed.
        compensate: undoes a finished operation when a later step fails.
        kind: as for :func:`step`.
        retry: back-off for ``retryable-failure`` replies to ``start``.
        merge: how the final status reply enters the data.
    """
    _warn_kind(kind)
    return LongRunning(
        name, to, start, status, cancel, every, done, failed, cancelled or failed,
        deadline, checks, compensate, kind, _default_retry(kind) if retry is None else retry, merge,
    )  # fmt: skip


def wait_signal(
    name: str, *, signal: str | None = None, timeout: timedelta, merge: Merge[D] = None
) -> WaitSignal[D]:
    """Wait for ``signal`` (default: ``name``); the saga fails if ``timeout`` passes first.

    A signal that arrives before the saga reaches this step is kept and consumed here.
    The signal's payload merges into the data as a reply would.
    """
    return WaitSignal(name, signal or name, timeout, merge)


def sleep(name: str, duration: timedelta) -> Sleep:
    """A durable sleep: the saga continues after ``duration``, across restarts."""
    return Sleep(name, duration)


def parallel(name: str, *branches: Sequence[Node[D]], join: Join = "all") -> Parallel[D]:
    """Run step lists side by side and join them.

    Args:
        name: the name of the join.
        *branches: the step lists.
        join: ``"all"`` waits for every branch (any failure fails the saga); ``"first"``
            continues with the first branch to succeed (the saga fails only when every branch
            failed): the other branches stop, and what they completed or may have completed
            (a command without a reply) is compensated, newest first, before the saga goes
            past the join; a branch that fails is undone at once. Every step in a first-wins
            branch must therefore be undoable (the compiler says so).
    """
    return Parallel(name, tuple(_blocks(b) for b in branches), join)


def branch(
    name: str,
    when: Callable[[D], bool],
    *,
    then: Sequence[Node[D]],
    otherwise: Sequence[Node[D]] = (),
) -> Branch[D]:
    """Run ``then`` when ``when(data)`` is true, else ``otherwise``; then carry on after the branch.

    Either list may end with :func:`goto` to jump elsewhere (a loop).
    """
    return Branch(name, when, _blocks(then), _blocks(otherwise))


def goto(target: str) -> Goto:
    """Jump to the step named ``target``. Only valid as the last block of a list."""
    return Goto(target)


def child(
    name: str,
    *,
    saga: str,
    input: Payload[D],
    compensate: Call[D] | None = None,
    kind: Kind = "compensatable",
    deadline: timedelta | None = None,
    merge: Merge[D] = None,
    parent_close: ParentClose = "cancel",
) -> Child[D]:
    """Run a saga of type ``saga`` with ``input(data)`` as its data; its final data merges back.

    The child fails the step when it ends compensated, failed or cancelled. When the parent
    compensates, is cancelled or passes a deadline while the child runs, ``parent_close``
    decides: ``"cancel"`` (the default) cancels the child, which compensates itself, and the
    parent waits for its end before it goes on (a child that completed is undone by
    ``compensate``); ``"abandon"`` lets it run on and ignores its result.
    """
    _warn_kind(kind)
    return Child(name, saga, input, compensate, kind, deadline, merge, parent_close)


def _blocks(blocks: Sequence[Node[D]]) -> tuple[Node[D], ...]:
    """A step list as a tuple; anything else is kept as is for the saga to report."""
    return tuple(blocks) if isinstance(blocks, list | tuple) else blocks  # type: ignore[return-value]
