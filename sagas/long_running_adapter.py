"""The participant side of a long-running operation: a few functions of an external API in,
the handlers of a ``long_running`` block out.

What the block sends to its participant, and the replies it expects:

=========  ===================================  ===============================================
command    sent                                 reply
=========  ===================================  ===============================================
start      on entering the block; again after   ``success``: polling begins, the payload
           a ``retryable-failure`` (back-off)   merges into the saga's data. ``failure``: the
                                                step fails and the saga compensates.
status     every ``every`` while polling; after ``success``, judged by the saga's ``done``,
           a cancel, to verify it               ``failed`` and ``cancelled`` predicates; any
                                                other reply means "ask again" (while verifying
                                                it uses up one of the ``checks``).
cancel     when the deadline (the step's or     any reply; verification by status follows.
           the saga's) or a cancel hits
undo       the block's ``compensate``, when a   ``success``; anything else is retried with
           later step fails or the operation    back-off, forever.
           finished while being cancelled
=========  ===================================  ===============================================

This module fixes the status reply as ``{"state": <state>, **detail}`` (:class:`OperationStatus`),
gives the saga side its predicates (:func:`is_ready`, :func:`is_failed`, :func:`is_cancelled`),
and :class:`Operations` registers the four handlers on a :class:`~sagas.participants.Participant`.

The operation key. Command ids read ``<saga>:<step>:<purpose>:<n>``. :func:`operation_key` keeps
``<saga>:<step>``, the same for every delivery and every attempt of the start, and for the status,
cancel and undo commands of that block. The adapter hands it to the external API as the start
call's idempotency key and as the handle of the other calls. The command id itself would not do:
it changes with each attempt, and a start retried after a timeout must find the operation the
first attempt may have begun; a cancel may be sent before the start reply came back, so it cannot
rely on an id that reply carries either.

The external-effect window. A handler may run again for a command it already ran: the
participant may die after the external call and before its reply is committed. A start retried
after a retryable failure runs again too. Neither makes a second operation if the external API
deduplicates on the key (a client token, an ``Idempotency-Key`` header). With an API that does
not, name the resource after the key, so that a second call finds it instead of making another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sagas.dsl.nodes import LongRunning
from sagas.engine.ids import parse_command_id
from sagas.errors import CommandFailed, ConfigurationError
from sagas.participants import NO_REPLY, CommandContext, Participant

__all__ = [
    "CancelFn",
    "OperationCommands",
    "OperationState",
    "OperationStatus",
    "Operations",
    "StartFn",
    "StatusFn",
    "is_cancelled",
    "is_failed",
    "is_ready",
    "operation_key",
]

OperationState = Literal["running", "ready", "failed", "cancelling", "cancelled", "missing"]
"""``running`` and ``cancelling``: ask again. ``ready``: done. ``failed``: ended on its own without
success. ``cancelled``: the cancel took effect. ``missing``: the external API knows no such
operation (it never started, or it is long gone)."""

StartFn = Callable[[str, dict[str, Any]], Mapping[str, Any] | None]
"""``start(key, payload)``: start the operation idempotently on ``key``; return what the saga
should learn (merged into its data), or :data:`~sagas.participants.NO_REPLY`."""
StatusFn = Callable[[str, dict[str, Any]], "OperationStatus | None"]
"""``status(key, payload)``: where the operation stands; ``None`` when the API does not know it."""
CancelFn = Callable[[str, dict[str, Any]], None]
"""``cancel(key, payload)`` or ``release(key, payload)``: idempotent, and a no-op on an
operation the API does not know."""


@dataclass(frozen=True)
class OperationStatus:
    """A status reply: ``state`` and what else the saga should learn (e.g. an address)."""

    state: OperationState
    detail: Mapping[str, Any] = field(default_factory=dict)

    def reply(self) -> dict[str, Any]:
        """The reply payload, ``{"state": state, **detail}``."""
        return {**self.detail, "state": self.state}


def is_ready(reply: Mapping[str, Any]) -> bool:
    """``done=`` of a ``long_running`` block whose participant uses :class:`Operations`."""
    return reply.get("state") == "ready"


def is_failed(reply: Mapping[str, Any]) -> bool:
    """``failed=``: the operation failed on its own, or the API lost it while it was polled."""
    return reply.get("state") in ("failed", "missing")


def is_cancelled(reply: Mapping[str, Any]) -> bool:
    """``cancelled=``: nothing runs any more, so the cancellation is confirmed."""
    return reply.get("state") in ("cancelled", "failed", "missing")


def operation_key(ctx: CommandContext) -> str:
    """``<saga>:<step>`` from the command id (step names never hold ``:``, saga ids may).

    Raises:
        ConfigurationError: the command id is not one a ``long_running`` block sends.
    """
    ref = parse_command_id(ctx.command_id)
    if ref is None or ref.purpose not in ("start", "status", "cancel", "undo"):
        raise ConfigurationError(
            f"command id {ctx.command_id!r} is not '<saga>:<step>:<purpose>:<n>:<tag>' of a "
            "long_running block; give Operations a key= function for these commands"
        )
    return f"{ref.saga_id}:{ref.step}"


def _default_key(payload: dict[str, Any], ctx: CommandContext) -> str:
    return operation_key(ctx)


@dataclass(frozen=True)
class OperationCommands:
    """The command types of one ``long_running`` block, and the topics they arrive on.

    Args:
        topic: the block's topic (``to=``).
        start, status, cancel: the command types.
        release: the compensation's command type, if it has one.
        topics: command type -> topic, for commands sent elsewhere (``call(..., to=...)``).
    """

    topic: str
    start: str
    status: str
    cancel: str
    release: str | None = None
    topics: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, block: LongRunning[Any]) -> OperationCommands:
        """Read them off the saga definition's block."""
        calls = [block.start, block.status, block.cancel]
        if block.compensate is not None:
            calls.append(block.compensate)
        return cls(
            block.topic,
            block.start.command,
            block.status.command,
            block.cancel.command,
            block.compensate.command if block.compensate is not None else None,
            {c.command: c.topic for c in calls if c.topic and c.topic != block.topic},
        )

    def topic_of(self, command_type: str) -> str:
        """Where ``command_type`` commands arrive."""
        return self.topics.get(command_type, self.topic)


class Operations:
    """Handlers for a ``long_running`` block over four functions of an external API.

    Args:
        start: starts the operation, idempotent on the key (see :data:`StartFn`).
        status: reports on it (see :data:`StatusFn`).
        cancel: asks the API to stop it (see :data:`CancelFn`).
        release: undoes a finished operation, for the block's ``compensate``.
        key: ``(payload, ctx) -> key``; default :func:`operation_key`. Give one when a loop
            runs the block more than once per saga and each run is a new operation.
        cancel_attempts: tries of ``cancel`` before the handler gives up. The engine sends a
            cancel once and verifies whatever the reply, so transient errors (any exception
            but a non-retryable ``CommandFailed``) are retried here.
        retry_delay: seconds before the second try, doubled after each.

    Exceptions: :class:`~sagas.errors.CommandFailed` from a function passes through (pick
    ``retryable`` there); any other exception becomes a ``retryable-failure`` reply.
    """

    def __init__(
        self,
        *,
        start: StartFn,
        status: StatusFn,
        cancel: CancelFn,
        release: CancelFn | None = None,
        key: Callable[[dict[str, Any], CommandContext], str] = _default_key,
        cancel_attempts: int = 3,
        retry_delay: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if cancel_attempts < 1:
            raise ConfigurationError(f"cancel_attempts={cancel_attempts}: use 1 or more")
        self._start = start
        self._status = status
        self._cancel = cancel
        self._release = release
        self._key = key
        self._cancel_attempts = cancel_attempts
        self._retry_delay = retry_delay
        self._sleep = sleep

    def handle_start(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        """Start the operation; reply with what ``start`` returned and ``operation`` (the key)."""
        key = self._key(payload, ctx)
        result = self._start(key, payload)
        if result is NO_REPLY:
            return NO_REPLY
        return {"operation": key, **(result or {})}

    def handle_status(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        """Reply ``{"state": ..., **detail}``; ``missing`` when the API does not know it."""
        found = self._status(self._key(payload, ctx), payload)
        return (found or OperationStatus("missing")).reply()

    def handle_cancel(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        """Ask the API to cancel; retry what may pass (any error but a non-retryable
        ``CommandFailed``), since the engine does not resend a cancel."""
        key = self._key(payload, ctx)
        delay = self._retry_delay
        for attempt in range(1, self._cancel_attempts + 1):
            try:
                self._cancel(key, payload)
                break
            except Exception as exc:
                final = isinstance(exc, CommandFailed) and not exc.retryable
                if final or attempt == self._cancel_attempts:
                    raise
                self._sleep(delay)
                delay *= 2
        return {"operation": key, "cancel_requested": True}

    def handle_release(self, payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        """Undo the finished operation (the engine retries a failed undo with back-off)."""
        if self._release is None:
            raise ConfigurationError("this Operations has no release function")
        key = self._key(payload, ctx)
        self._release(key, payload)
        return {"operation": key, "released": True}

    def register(self, participant: Participant, commands: OperationCommands) -> None:
        """Add the handlers of ``commands`` to ``participant``.

        Raises:
            ConfigurationError: the block has a compensation but no ``release`` was given, or a
                handler for one of these commands exists already.
        """
        pairs = [
            (commands.start, self.handle_start),
            (commands.status, self.handle_status),
            (commands.cancel, self.handle_cancel),
        ]
        if commands.release is not None:
            if self._release is None:
                raise ConfigurationError(
                    f"the block compensates with {commands.release!r}: give Operations a "
                    "release= function"
                )
            pairs.append((commands.release, self.handle_release))
        for command_type, handle in pairs:
            participant.handler(commands.topic_of(command_type), command_type)(handle)
