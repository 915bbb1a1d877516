"""The deciding context: one transition in progress, emitting the events that make it.

:class:`Ctx` appends each event and applies it at once with :func:`~sagas.engine.evolve.evolve`,
so every decision reads the state that results (see :mod:`sagas.engine.flow`); it also numbers
commands and timers from the state's counters and builds command payloads from the saga's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagas.dsl.nodes import Call, Merge
from sagas.dsl.program import Program
from sagas.engine.evolve import evolve
from sagas.engine.ids import check_entropy, command_id, new_secret
from sagas.engine.jsonvalue import build_payload, merge_reply
from sagas.engine.model import (
    Input,
    JournalEvent,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    TimerFired,
)

__all__ = ["UNDO_TIMERS", "Ctx"]

UNDO_TIMERS = ("undo-retry", "undo-timeout")
"""The timer kinds of a compensation in progress (they outlive the block that set them)."""


class Ctx:
    """One transition in progress: the program, the saga's state so far and the events emitted.

    ``entropy`` (random bytes from the runtime, or ``None``) is used only when the saga gets its
    secret: when it starts, or when a saga from a release without secrets sends a command.
    """

    def __init__(
        self,
        program: Program,
        state: SagaState | None,
        saga_id: str,
        now: int,
        entropy: bytes | None = None,
    ) -> None:
        self.p = program
        self.s = state
        self.saga_id = saga_id
        self.now = now
        check_entropy(entropy)
        self.entropy = entropy
        self.events: list[JournalEvent] = []

    @property
    def st(self) -> SagaState:
        """The current state (the saga exists)."""
        assert self.s is not None  # the saga exists once started
        return self.s

    def emit(self, type_: str, **body: Any) -> None:
        """Journal an event and apply it to the state."""
        event = JournalEvent(type_, self.saga_id, self.now, body)
        self.events.append(event)
        self.s = evolve(self.s, event)

    def ignore(self, inp: Input, reason: str) -> None:
        """Journal ``ignored``: ``inp`` changes nothing, for ``reason``."""
        body: dict[str, Any] = {"input": type(inp).__name__.lower(), "reason": reason}
        if isinstance(inp, Reply):
            body["command_id"] = inp.command_id
            body["outcome"] = inp.outcome
        elif isinstance(inp, TimerFired):
            body["timer_id"] = inp.timer_id
        elif isinstance(inp, Signal):
            body["name"] = inp.name
        elif isinstance(inp, Resume):
            body["step"] = inp.step
        elif isinstance(inp, Settle):
            body["done"] = inp.done
        self.emit("ignored", **body)

    def draw_secret(self) -> str:
        """A secret for this saga, from the runtime's entropy."""
        return new_secret(self.entropy, self.saga_id)

    # ------------------------------------------------------------------ ids, timers, commands

    def next_n(self, key: str) -> int:
        """The next number of the ``<step>:<purpose>`` counter ``key``."""
        return self.st.counters.get(key, 0) + 1

    def command_id(self, step: str, tail: str) -> str:
        """The id of a new command of ``step``, ``tail`` being ``[<purpose>:]<n>``."""
        if not self.st.secret:  # started by a release without secrets: give it one now
            self.emit("secret_set", secret=self.draw_secret())
        return command_id(f"{self.saga_id}:{step}:{tail}", self.st.secret)

    def set_timer(self, step: str, kind: str, delay_ms: int) -> None:
        """Set timer ``<step>:<kind>:<n>`` due in ``delay_ms``."""
        key = f"{step}:{kind}"
        n = self.next_n(key)
        self.emit("timer_set", timer_id=f"{key}:{n}", due_ms=self.now + delay_ms, key=key, n=n)

    def clear_timers(self, step: str, *kinds: str) -> None:
        """Clear ``step``'s pending timers of these kinds (without ``kinds``: all of its
        block's, but not those of its compensation, which may run while the block ends)."""
        for timer_id in list(self.st.timers):
            owner, kind, _ = timer_id.rsplit(":", 2)
            mine = kind in kinds if kinds else kind not in UNDO_TIMERS
            if owner == step and mine:
                self.emit("timer_cleared", timer_id=timer_id)

    def deadline_of(self, step: str) -> int | None:
        """When the saga stops waiting for ``step``: its own or the saga's deadline."""
        dues = [d for t, d in self.st.timers.items() if t.startswith((f"{step}:deadline:", "@"))]
        return min(dues, default=None)

    def send(
        self,
        step: str,
        purpose: str,
        c: Call[Any],
        topic: str,
        *,
        undo: bool = False,
        again: str | None = None,
        keep_deadline: bool = False,
    ) -> None:
        """Send ``c`` for ``step``: a new request (the next ``n``, a new id), or, with ``again``
        (``step``'s pending command id), the same request once more: the same id and ``n``, the
        next ``send``. Its payload is built from the data again; a participant handles an id
        once, and the first send reaches it first (same key, same partition). ``keep_deadline``:
        a resend carries the first send's ``deadline`` (an in-doubt pivot's)."""
        key = f"{step}:{purpose}"
        deadline = None if undo else self.deadline_of(step)
        if again is None:
            n = self.next_n(key)
            cid = self.command_id(step, str(n) if purpose == "do" else f"{purpose}:{n}")
            sends = 1
        else:
            n = self.st.counters[key]
            cid = again
            holder = self.st.undo if undo else self.st.tokens[step]
            assert holder is not None  # resend only what is pending
            assert holder.cmd == again
            sends = holder.sends + 1
            if keep_deadline:
                deadline = holder.due
        self.emit(
            "command_sent",
            command_id=cid,
            step=step,
            command_type=c.command,
            topic=c.topic or topic,
            payload=build_payload(c.payload, self.st.data, self.p.name, step),
            attempt=n,
            deadline_ms=deadline,
            key=key,
            undo=undo,
            send=sends,
        )

    def merge(self, step: str, how: Merge[Any], payload: Mapping[str, Any]) -> None:
        """Merge a success reply (or a signal) into the data, per the block's ``merge``."""
        data = merge_reply(how, self.st.data, payload, self.p.name, step)
        if data != self.st.data:
            self.emit("data_changed", data=data)
