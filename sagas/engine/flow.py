"""Control flow: the deciding context, and how blocks start, finish, fail and compensate.

:mod:`sagas.engine.decide` interprets each input and calls the functions here, the engine's
in-package interface (``__all__``): :class:`Ctx` (emit events, timers, commands), :func:`go`,
:func:`finish`, :func:`fail`, :func:`compensate`, :func:`pump`, :func:`attempt`,
:func:`send_undo`, :func:`start_cancel`, :func:`send_cancel` and :func:`ms`.

Rationale. The engine is event-sourced and nothing else: :meth:`Ctx.emit` appends an event and
immediately applies it with :func:`~sagas.engine.evolve.evolve`, and every decision reads the
state that results. Commands, child starts and parent replies are *derived* from the events
(``command_sent``, ``child_started``, ``finished``), so the journal alone rebuilds both the state
and what was sent. Rejected alternatives: mutating a state object while deciding (a second code
path that replay would have to match), and commands computed beside events (two sources of truth).

Execution is token-based: each active block holds a ``Token`` in ``state.tokens``; a block that
finishes passes control to its ``next`` block, or ends its list (the saga, or a parallel branch).
Command and timer ids come from per ``<step>:<purpose>`` counters kept in the state, so they are
deterministic and never repeat, loops included; command ids carry a tag keyed by the saga's
secret (:mod:`sagas.engine.ids`). A command sent again because its participant was silent keeps
its id (``again=``). Jitter comes from ``state.seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagas.dsl.nodes import (
    Branch,
    Call,
    Child,
    LongRunning,
    Merge,
    Parallel,
    Sleep,
    Step,
    WaitSignal,
)
from sagas.dsl.program import Program
from sagas.engine.evolve import evolve
from sagas.engine.ids import check_entropy, command_id, new_secret
from sagas.engine.jsonvalue import build_payload, merge_reply
from sagas.engine.model import JournalEvent, SagaState

__all__ = [
    "SAGA_DEADLINE",
    "Ctx",
    "attempt",
    "compensate",
    "fail",
    "finish",
    "go",
    "ms",
    "pump",
    "resume",
    "send_cancel",
    "send_undo",
    "start_cancel",
    "terminate",
]

SAGA_DEADLINE = "@saga:deadline:1"
_CANCELLING = ("cancelling", "verifying")


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
        """Clear ``step``'s pending timers of these kinds (all of them without ``kinds``)."""
        for timer_id in list(self.st.timers):
            owner, kind, _ = timer_id.rsplit(":", 2)
            if owner == step and (not kinds or kind in kinds):
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
    ) -> None:
        """Send ``c`` for ``step``: a new request (the next ``n``, a new id), or, with ``again``
        (``step``'s pending command id), the same request once more: the same id and ``n``, the
        next ``send``. Its payload is built from the data again; a participant handles an id
        once, and the first send reaches it first (same key, same partition)."""
        key = f"{step}:{purpose}"
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
        self.emit(
            "command_sent",
            command_id=cid,
            step=step,
            command_type=c.command,
            topic=c.topic or topic,
            payload=build_payload(c.payload, self.st.data, self.p.name, step),
            attempt=n,
            deadline_ms=None if undo else self.deadline_of(step),
            key=key,
            undo=undo,
            send=sends,
        )

    def merge(self, step: str, how: Merge[Any], payload: Mapping[str, Any]) -> None:
        """Merge a success reply (or a signal) into the data, per the block's ``merge``."""
        data = merge_reply(how, self.st.data, payload, self.p.name, step)
        if data != self.st.data:
            self.emit("data_changed", data=data)


# --------------------------------------------------------------------------------- control flow


def _enter(ctx: Ctx, name: str) -> None:
    node = ctx.p.nodes[name]
    b = node.block
    if isinstance(b, Branch):
        taken = bool(b.when(ctx.st.data))
        target = node.targets[0] if taken else node.targets[1]
        ctx.emit("branch_taken", step=name, to=target, taken="then" if taken else "otherwise")
        go(ctx, target, node.scopes)
    elif isinstance(b, Step):
        ctx.emit("entered", step=name, phase="waiting")
        if b.deadline is not None and b.kind != "retriable":
            ctx.set_timer(name, "deadline", ms(b.deadline.total_seconds()))
        attempt(ctx, name, b)
    elif isinstance(b, LongRunning):
        ctx.emit("entered", step=name, phase="starting")
        if b.deadline is not None:
            ctx.set_timer(name, "deadline", ms(b.deadline.total_seconds()))
        ctx.send(name, "start", b.start, b.topic)
    elif isinstance(b, Child):
        ctx.emit("entered", step=name, phase="waiting")
        if b.deadline is not None:
            ctx.set_timer(name, "deadline", ms(b.deadline.total_seconds()))
        key = f"{name}:child"
        n = ctx.next_n(key)
        ctx.emit(
            "child_started",
            command_id=ctx.command_id(name, f"child:{n}"),
            step=name,
            child_type=b.saga,
            child_id=f"{ctx.saga_id}/{name}/{n}",
            data=build_payload(b.input, ctx.st.data, ctx.p.name, name),
            attempt=n,
            key=key,
        )
    elif isinstance(b, WaitSignal):
        ctx.emit("entered", step=name, phase="waiting")
        for sig, payload in ctx.st.signals:
            if sig == b.signal:
                ctx.emit("signal_consumed", name=sig)
                ctx.merge(name, b.merge, payload)
                finish(ctx, name)
                return
        ctx.set_timer(name, "timeout", ms(b.timeout.total_seconds()))
    elif isinstance(b, Sleep):
        ctx.emit("entered", step=name, phase="waiting")
        ctx.set_timer(name, "sleep", ms(b.duration.total_seconds()))
    elif isinstance(b, Parallel):
        ctx.emit("entered", step=name, phase="joining")
        ctx.emit("join_opened", step=name)
        scopes = (*node.scopes,)
        for i, target in enumerate(node.targets):
            if target is None and name in ctx.st.tokens:
                _end_scope(ctx, (*scopes, (name, i)))
        for target in node.targets:
            if target is not None and name in ctx.st.tokens and ctx.st.status == "running":
                _enter(ctx, target)


def go(ctx: Ctx, target: str | None, scopes: tuple[tuple[str, int], ...]) -> None:
    """Pass control to ``target``, or end the innermost of ``scopes`` (``None``), if running."""
    if ctx.st.status != "running":
        return
    if target is None:
        _end_scope(ctx, scopes)
    else:
        _enter(ctx, target)


def finish(ctx: Ctx, name: str, *, action: bool = False, pivot: bool = False) -> None:
    """Block ``name`` completed (``action``: it is compensable history); go on after it."""
    ctx.clear_timers(name)
    ctx.emit("step_completed", step=name, action=action, pivot=pivot)
    if pivot:
        ctx.clear_timers("@saga")
    node = ctx.p.nodes[name]
    go(ctx, node.next, node.scopes)


def _end_scope(ctx: Ctx, scopes: tuple[tuple[str, int], ...]) -> None:
    if not scopes:
        _terminate(ctx, "completed", None)
        return
    par, idx = scopes[-1]
    if par not in ctx.st.tokens:
        return
    ctx.emit("branch_ended", step=par, index=idx, ok=True)
    block = ctx.p.nodes[par].block
    assert isinstance(block, Parallel)  # scopes only name parallels
    ok, _ = ctx.st.joins[par]
    if block.join == "first":
        _abandon_scope(ctx, (*scopes[:-1], (par, -1)), keep=idx)
    elif len(ok) < len(block.branches):
        return
    finish(ctx, par)


def _in_scope(ctx: Ctx, name: str, scope: tuple[tuple[str, int], ...], keep: int) -> bool:
    own = ctx.p.nodes[name].scopes
    if len(own) < len(scope) or own[: len(scope) - 1] != scope[:-1]:
        return False
    par, idx = scope[-1]
    mine = own[len(scope) - 1]
    return mine[0] == par and (idx == -1 or mine[1] == idx) and mine[1] != keep


def _abandon_scope(ctx: Ctx, scope: tuple[tuple[str, int], ...], keep: int = -2) -> None:
    """Stop every token inside ``scope`` (``(par, -1)`` = any branch of par but ``keep``)."""
    for name in [n for n in ctx.st.tokens if _in_scope(ctx, n, scope, keep)]:
        _abandon(ctx, name)


def _abandon(ctx: Ctx, name: str) -> None:
    token = ctx.st.tokens.get(name)
    if token is None:
        return
    if isinstance(ctx.p.nodes[name].block, LongRunning) and token.phase != "backoff":
        if token.phase not in _CANCELLING:
            start_cancel(ctx, name)
        return
    ctx.clear_timers(name)
    ctx.emit("abandoned", step=name)


def _in_flight(ctx: Ctx, name: str) -> bool:
    """Whether step ``name`` sent its command and no reply came: the participant may have done
    the work, so a compensation must undo it (compensations tolerate "nothing to undo")."""
    token = ctx.st.tokens.get(name)
    node = ctx.p.nodes[name]
    return (
        token is not None
        and token.cmd is not None
        and isinstance(node.block, Step)
        and node.block.kind == "compensatable"
        and node.compensation is not None
    )


def fail(ctx: Ctx, name: str, reason: str) -> None:
    """Block ``name`` failed for good: fail its branch of a ``first`` join, or the saga."""
    token = ctx.st.tokens.get(name)
    maybe_done = [name] if _in_flight(ctx, name) else []
    if token is not None and token.phase not in _CANCELLING:
        ctx.clear_timers(name)
        ctx.emit("step_failed", step=name, reason=reason)
    scopes = ctx.p.nodes[name].scopes
    for depth in range(len(scopes) - 1, -1, -1):
        par, idx = scopes[depth]
        block = ctx.p.nodes[par].block
        assert isinstance(block, Parallel)  # scopes only name parallels
        if block.join != "first" or par not in ctx.st.tokens:
            continue
        _abandon_scope(ctx, scopes[: depth + 1])
        ctx.emit("branch_ended", step=par, index=idx, ok=False)
        if len(ctx.st.joins[par][1]) == len(block.branches):
            fail(ctx, par, f"every branch of {par!r} failed; last: {reason}")
        return
    compensate(ctx, reason, "compensated", maybe_done)


def compensate(ctx: Ctx, reason: str, outcome: str, maybe_done: list[str] | None = None) -> None:
    """Undo, newest first, what completed and what may have (commands without a reply)."""
    st = ctx.st
    if st.status != "running":
        return
    in_flight = [*(maybe_done or []), *(n for n in st.tokens if _in_flight(ctx, n))]
    done = [s for s in reversed(st.completed) if ctx.p.nodes[s].compensation]
    queue = [] if st.pivoted else list(dict.fromkeys([*in_flight, *done]))
    ctx.clear_timers("@saga")
    ctx.emit(
        "compensating",
        reason=reason,
        outcome="failed" if st.pivoted else outcome,
        queue=queue,
    )
    for name in list(ctx.st.tokens):
        _abandon(ctx, name)
    pump(ctx)


def pump(ctx: Ctx) -> None:
    """While compensating with no block active: start the next undo, or end the saga."""
    st = ctx.st
    if st.status != "compensating" or st.tokens or st.undo is not None:
        return
    if not st.to_undo:
        _terminate(ctx, st.outcome or "compensated", st.reason)
        return
    step = st.to_undo[0]
    ctx.emit("undo_started", step=step)
    send_undo(ctx, step)


def send_undo(ctx: Ctx, step: str, *, again: str | None = None) -> None:
    """Send ``step``'s compensation (``again``: the pending one, once more), and time it out
    after the step's deadline, if it has one."""
    node = ctx.p.nodes[step]
    c = node.compensation
    assert c is not None  # only compensatable steps are queued
    b = node.block
    topic = b.topic if isinstance(b, Step | LongRunning) else (c.topic or "")
    ctx.send(step, "undo", c, topic, undo=True, again=again)
    deadline = getattr(b, "deadline", None)
    if deadline is not None:
        ctx.set_timer(step, "undo-timeout", ms(deadline.total_seconds()))


def _terminate(ctx: Ctx, status: str, reason: str | None) -> None:
    for name in list(ctx.st.tokens):
        ctx.clear_timers(name)
        ctx.emit("abandoned", step=name)
    for timer_id in list(ctx.st.timers):
        ctx.emit("timer_cleared", timer_id=timer_id)
    ctx.emit("finished", status=status, reason=reason)


def terminate(ctx: Ctx, by: str, reason: str) -> None:
    """End the saga now without compensating: an operator's ``terminated`` (who and why), its
    blocks abandoned, its timers cleared, then ``finished`` with status ``terminated``."""
    ctx.emit("terminated", by=by, reason=reason)
    _terminate(ctx, "terminated", f"terminated by {by}: {reason}")


def resume(ctx: Ctx, step: str, by: str) -> None:
    """Run a failed saga on from top-level block ``step``: ``resumed`` sets it running again
    (no outcome, no reason), then the block is entered anew (new attempt, new command id)."""
    ctx.emit("resumed", step=step, by=by, previous_reason=ctx.st.reason)
    _enter(ctx, step)


# ------------------------------------------------------------------------------ steps and replies


def attempt(ctx: Ctx, name: str, b: Step[Any], *, again: str | None = None) -> None:
    """Send step ``name``'s command (``again``: the pending one, once more); a retriable step's
    deadline bounds each send."""
    if b.kind == "retriable" and b.deadline is not None:
        ctx.set_timer(name, "deadline", ms(b.deadline.total_seconds()))
    ctx.send(name, "do", _call_of(b), b.topic, again=again)


_STEP_CALLS: dict[int, tuple[Step[Any], Call[Any]]] = {}


def _call_of(b: Step[Any]) -> Call[Any]:
    """A step's command as a :class:`Call`, made once per step (not once per send)."""
    hit = _STEP_CALLS.get(id(b))
    if hit is None or hit[0] is not b:
        hit = _STEP_CALLS[id(b)] = (b, Call(b.command, b.payload))
    return hit[1]


def start_cancel(ctx: Ctx, name: str) -> None:
    """Stop waiting for long-running ``name``'s start or status reply and send its cancel."""
    b = ctx.p.nodes[name].block
    assert isinstance(b, LongRunning)  # only long-running operations cancel
    ctx.clear_timers(name)
    token = ctx.st.tokens[name]
    if token.cmd is not None:
        ctx.emit("attempt_expired", command_id=token.cmd)
    ctx.emit("phase", step=name, phase="cancelling", failures=0, checks=0)
    send_cancel(ctx, name, b)


def send_cancel(ctx: Ctx, name: str, b: LongRunning[Any], *, again: str | None = None) -> None:
    """Send the cancel (``again``: the pending one, once more); without a reply within a
    polling interval, it counts as failed."""
    ctx.send(name, "cancel", b.cancel, b.topic, again=again)
    ctx.set_timer(name, "cancel-wait", max(ms(b.every.total_seconds()), 1000))


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds."""
    return round(seconds * 1000)
