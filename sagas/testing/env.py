"""The in-memory environment behind :mod:`sagas.testing`.

It runs the same :func:`sagas.engine.transition` as the Kafka worker, one input at a time, with a
virtual clock: replies, child starts and parent replies are delivered through a FIFO queue, and
``advance`` fires every due timer in due-time order. Nothing sleeps; a day passes in milliseconds.

Each decision goes through :func:`sagas.wire.decision_records`, the worker's own encoding of
commands with their payload schemas: a decision whose payload does not fit its schema is not
applied, exactly as the worker dead-letters its input; it shows in
:attr:`SagaTestEnv.dead_letters`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sagas.app import App
from sagas.dsl.program import Program
from sagas.dsl.saga import Saga
from sagas.engine import (
    Cancel,
    CommandOut,
    Input,
    JournalEvent,
    Outcome,
    Reply,
    SagaState,
    Signal,
    Start,
    TimerFired,
    transition,
)
from sagas.errors import ConfigurationError, PayloadSchemaError
from sagas.wire import decision_records

__all__ = ["Responder", "Response", "SagaTestEnv", "fail", "retryable_fail", "silent", "succeed"]


@dataclass(frozen=True)
class Response:
    """A scripted participant reply; ``outcome=None`` means the participant stays silent."""

    outcome: Outcome | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    after: timedelta = timedelta(0)


Responder = Response | Callable[[CommandOut], Response] | Sequence[Response]
"""What :meth:`SagaTestEnv.on` accepts: one response for every command, a function of the
command, or a list used in turn (its last element repeats)."""


def succeed(
    payload: Mapping[str, Any] | None = None, *, after: timedelta = timedelta(0)
) -> Response:
    """Reply ``success`` with ``payload`` (after ``after`` of virtual time)."""
    return Response("success", dict(payload or {}), after)


def fail(error: str = "failed", *, after: timedelta = timedelta(0), **payload: Any) -> Response:
    """Reply ``failure`` (not retried) with ``{"error": error, **payload}``."""
    return Response("failure", {"error": error, **payload}, after)


def retryable_fail(
    error: str = "unavailable", *, after: timedelta = timedelta(0), **payload: Any
) -> Response:
    """Reply ``retryable-failure`` with ``{"error": error, **payload}``."""
    return Response("retryable-failure", {"error": error, **payload}, after)


def silent() -> Response:
    """Never reply (let a deadline pass)."""
    return Response(None)


def _ms(d: timedelta) -> int:
    return round(d.total_seconds() * 1000)


class SagaTestEnv:
    """Run sagas in memory against scripted participants and a virtual clock.

    Args:
        *sagas: the saga types (definitions or compiled programs) this environment runs.
        start_ms: the virtual clock's initial value, epoch milliseconds.
        seed: seeds the saga secrets (command ids are the same in every run with one seed).
    """

    def __init__(self, *sagas: Saga[Any] | Program, start_ms: int = 0, seed: int = 0) -> None:
        self.now_ms = start_ms
        self._random = random.Random(seed)
        self._app_cache: App | None = None
        self._programs: dict[str, Program] = {}
        self._states: dict[str, SagaState] = {}
        self._types: dict[str, str] = {}
        self._journals: dict[str, list[JournalEvent]] = {}
        self._script: dict[str, Responder] = {}
        self._used: dict[str, int] = {}
        self._queue: list[tuple[int, int, str, Input]] = []
        self._seq = 0
        self.commands: list[CommandOut] = []
        """Every command sent, in order."""
        self.dead_letters: list[tuple[Input, str]] = []
        """Inputs the worker would dead-letter instead of applying, with the reason."""
        for saga in sagas:
            self.register(saga)

    # ------------------------------------------------------------------------------ setting up

    def register(self, saga: Saga[Any] | Program) -> Program:
        """Add a saga type (compiling it if needed) and return its program."""
        program = saga.compile() if isinstance(saga, Saga) else saga
        self._programs[program.name] = program
        self._app_cache = None
        return program

    def _app(self) -> App:
        """The programs as an app, as a worker would hold them (for their payload schemas)."""
        if self._app_cache is None:
            self._app_cache = App("test", self._programs.values())
        return self._app_cache

    def on(self, command_type: str, respond: Responder) -> None:
        """Script the participant of ``command_type``. Unscripted commands get no reply."""
        self._script[command_type] = respond

    # ------------------------------------------------------------------------------- driving

    def start(self, saga_type: str, saga_id: str, data: Mapping[str, Any]) -> SagaState | None:
        """Start a saga and deliver every reply due now; returns its state."""
        if saga_type not in self._programs:
            raise ConfigurationError(
                f"unknown saga type {saga_type!r}; register it: SagaTestEnv(..., {saga_type}_saga)"
            )
        self._push(self.now_ms, saga_type, Start(saga_id, dict(data)))
        self._drain(self.now_ms)
        return self._states.get(saga_id)

    def signal(self, saga_id: str, name: str, payload: Mapping[str, Any] | None = None) -> None:
        """Send a signal to a saga."""
        self._push(self.now_ms, self._type_of(saga_id), Signal(saga_id, name, dict(payload or {})))
        self._drain(self.now_ms)

    def cancel(self, saga_id: str, reason: str = "cancelled by test") -> None:
        """Ask a saga to cancel."""
        self._push(self.now_ms, self._type_of(saga_id), Cancel(saga_id, reason))
        self._drain(self.now_ms)

    def reply(
        self,
        command_id: str,
        outcome: Outcome = "success",
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Reply by hand to a command (for instance one whose participant was silent)."""
        cmd = next(c for c in self.commands if c.command_id == command_id)
        reply = Reply(cmd.saga_id, command_id, outcome, dict(payload or {}))
        self._push(self.now_ms, cmd.saga_type, reply)
        self._drain(self.now_ms)

    def advance(self, by: timedelta) -> None:
        """Move the virtual clock forward by ``by``, firing due timers and replies in time order."""
        self._drain(self.now_ms + _ms(by))

    def run_until_idle(self, limit: timedelta = timedelta(days=365)) -> None:
        """Advance until no timer is pending and no reply is in flight (at most ``limit``)."""
        end = self.now_ms + _ms(limit)
        while True:
            nxt = self._next_due()
            if nxt is None or nxt > end:
                return
            self._drain(nxt)

    # ----------------------------------------------------------------------------- inspection

    def state(self, saga_id: str) -> SagaState:
        """The saga's current state."""
        return self._states[saga_id]

    def journal(self, saga_id: str) -> list[JournalEvent]:
        """Every journal event of the saga, in order."""
        return list(self._journals.get(saga_id, []))

    def commands_for(self, saga_id: str) -> list[CommandOut]:
        """The commands the saga sent, in order."""
        return [c for c in self.commands if c.saga_id == saga_id]

    def command_types(self, saga_id: str) -> list[str]:
        """The types of the commands the saga sent, in order."""
        return [c.command_type for c in self.commands_for(saga_id)]

    # ------------------------------------------------------------------------------- internals

    def _type_of(self, saga_id: str) -> str:
        if saga_id not in self._types:
            raise ConfigurationError(f"no saga {saga_id!r} was started in this environment")
        return self._types[saga_id]

    def _push(self, due: int, saga_type: str, inp: Input) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, saga_type, inp))

    def _next_due(self) -> int | None:
        dues = [due for s in self._states.values() for due in s.timers.values()]
        if self._queue:
            dues.append(self._queue[0][0])
        return min(dues, default=None)

    def _next_timer(self, until: int) -> tuple[int, str, str] | None:
        best: tuple[int, str, str] | None = None
        for saga_id, st in self._states.items():
            for timer_id, due in st.timers.items():
                if due <= until and (best is None or (due, saga_id) < best[:2]):
                    best = (due, saga_id, timer_id)
        return best

    def _drain(self, until: int) -> None:
        while True:
            timer = self._next_timer(until)
            queued = self._queue[0] if self._queue and self._queue[0][0] <= until else None
            if queued is not None and (timer is None or queued[0] <= timer[0]):
                heapq.heappop(self._queue)
                self.now_ms = max(self.now_ms, queued[0])
                self._apply(queued[2], queued[3])
            elif timer is not None:
                due, saga_id, timer_id = timer
                self.now_ms = max(self.now_ms, due)
                self._apply(self._types[saga_id], TimerFired(saga_id, timer_id, due))
            else:
                self.now_ms = max(self.now_ms, until)
                return

    def _apply(self, saga_type: str, inp: Input) -> None:
        program = self._programs.get(saga_type)
        if program is None:
            raise ConfigurationError(f"a saga started child type {saga_type!r}; register it too")
        entropy = self._random.randbytes(16)
        decision = transition(
            program, self._states.get(inp.saga_id), inp, self.now_ms, entropy=entropy
        )
        try:
            decision_records(self._app(), program, decision)
        except PayloadSchemaError as exc:
            self.dead_letters.append((inp, f"payload does not fit its schema: {exc}"))
            return
        self._journals.setdefault(inp.saga_id, []).extend(decision.events)
        if decision.state is not None:
            self._states[inp.saga_id] = decision.state
            self._types[inp.saga_id] = saga_type
        for cmd in decision.commands:
            self.commands.append(cmd)
            response = self._respond(cmd)
            if response.outcome is not None:
                reply = Reply(cmd.saga_id, cmd.command_id, response.outcome, dict(response.payload))
                self._push(self.now_ms + _ms(response.after), saga_type, reply)
        for ch in decision.children:
            self._push(self.now_ms, ch.saga_type, Start(ch.saga_id, ch.data, ch.parent))
        for pr in decision.parent_replies:
            reply = Reply(pr.parent.saga_id, pr.parent.command_id, pr.outcome, pr.payload)
            self._push(self.now_ms, pr.parent.saga_type, reply)

    def _respond(self, cmd: CommandOut) -> Response:
        script = self._script.get(cmd.command_type)
        if script is None:
            return silent()
        if isinstance(script, Response):
            return script
        if callable(script):
            return script(cmd)
        i = self._used.get(cmd.command_type, 0)
        self._used[cmd.command_type] = i + 1
        return script[min(i, len(script) - 1)]
