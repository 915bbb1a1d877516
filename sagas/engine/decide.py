"""``transition``: decide what an input means for a saga, as journal events.

Rationale. The engine is event-sourced and nothing else: a ``_Ctx`` appends an event and
immediately applies it with :func:`~sagas.engine.evolve.evolve`, and every decision reads the
state that results. Commands, child starts and parent replies are *derived* from the events
(``command_sent``, ``child_started``, ``finished``), so the journal alone rebuilds both the state
and what was sent. Rejected alternatives: mutating a state object while deciding (a second code
path that replay would have to match), and commands computed beside events (two sources of truth).

Execution is token-based: each active block holds a ``Token`` in ``state.tokens``; a block that
finishes passes control to its ``next`` block, or ends its list (the saga, or a parallel branch).
Command and timer ids come from per ``<step>:<purpose>`` counters kept in the state, so they are
deterministic and never repeat, loops included. Jitter comes from ``state.seed``.
"""

from __future__ import annotations

import zlib
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
from sagas.dsl.retry import FOREVER
from sagas.engine.evolve import evolve
from sagas.engine.jsonvalue import build_payload, merge_reply
from sagas.engine.model import (
    Cancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
    JournalEvent,
    ParentRef,
    ParentReply,
    Reply,
    SagaState,
    Signal,
    Start,
    TimerFired,
    Token,
)

__all__ = ["SAGA_DEADLINE", "transition"]

SAGA_DEADLINE = "@saga:deadline:1"
_CANCELLING = ("cancelling", "verifying")


class _Ctx:
    def __init__(self, program: Program, state: SagaState | None, saga_id: str, now: int) -> None:
        self.p = program
        self.s = state
        self.saga_id = saga_id
        self.now = now
        self.events: list[JournalEvent] = []

    @property
    def st(self) -> SagaState:
        assert self.s is not None  # the saga exists once started
        return self.s

    def emit(self, type_: str, **body: Any) -> None:
        event = JournalEvent(type_, self.saga_id, self.now, body)
        self.events.append(event)
        self.s = evolve(self.s, event)

    # ------------------------------------------------------------------ ids, timers, commands

    def next_n(self, key: str) -> int:
        return self.st.counters.get(key, 0) + 1

    def set_timer(self, step: str, kind: str, delay_ms: int) -> None:
        key = f"{step}:{kind}"
        n = self.next_n(key)
        self.emit("timer_set", timer_id=f"{key}:{n}", due_ms=self.now + delay_ms, key=key, n=n)

    def clear_timers(self, step: str, *kinds: str) -> None:
        for timer_id in list(self.st.timers):
            owner, kind, _ = timer_id.rsplit(":", 2)
            if owner == step and (not kinds or kind in kinds):
                self.emit("timer_cleared", timer_id=timer_id)

    def deadline_of(self, step: str) -> int | None:
        dues = [d for t, d in self.st.timers.items() if t.startswith((f"{step}:deadline:", "@"))]
        return min(dues, default=None)

    def send(
        self, step: str, purpose: str, c: Call[Any], topic: str, *, undo: bool = False
    ) -> None:
        key = f"{step}:{purpose}"
        n = self.next_n(key)
        tail = str(n) if purpose == "do" else f"{purpose}:{n}"
        self.emit(
            "command_sent",
            command_id=f"{self.saga_id}:{step}:{tail}",
            step=step,
            command_type=c.command,
            topic=c.topic or topic,
            payload=build_payload(c.payload, self.st.data, self.p.name, step),
            attempt=n,
            deadline_ms=None if undo else self.deadline_of(step),
            key=key,
            undo=undo,
        )

    def merge(self, step: str, how: Merge[Any], payload: Mapping[str, Any]) -> None:
        data = merge_reply(how, self.st.data, payload, self.p.name, step)
        if data != self.st.data:
            self.emit("data_changed", data=data)


# --------------------------------------------------------------------------------- control flow


def _enter(ctx: _Ctx, name: str) -> None:
    node = ctx.p.nodes[name]
    b = node.block
    if isinstance(b, Branch):
        taken = bool(b.when(ctx.st.data))
        target = node.targets[0] if taken else node.targets[1]
        ctx.emit("branch_taken", step=name, to=target, taken="then" if taken else "otherwise")
        _go(ctx, target, node.scopes)
    elif isinstance(b, Step):
        ctx.emit("entered", step=name, phase="waiting")
        if b.deadline is not None and b.kind != "retriable":
            ctx.set_timer(name, "deadline", _ms(b.deadline.total_seconds()))
        _attempt(ctx, name, b)
    elif isinstance(b, LongRunning):
        ctx.emit("entered", step=name, phase="starting")
        if b.deadline is not None:
            ctx.set_timer(name, "deadline", _ms(b.deadline.total_seconds()))
        ctx.send(name, "start", b.start, b.topic)
    elif isinstance(b, Child):
        ctx.emit("entered", step=name, phase="waiting")
        if b.deadline is not None:
            ctx.set_timer(name, "deadline", _ms(b.deadline.total_seconds()))
        key = f"{name}:child"
        n = ctx.next_n(key)
        ctx.emit(
            "child_started",
            command_id=f"{ctx.saga_id}:{name}:child:{n}",
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
                _finish(ctx, name)
                return
        ctx.set_timer(name, "timeout", _ms(b.timeout.total_seconds()))
    elif isinstance(b, Sleep):
        ctx.emit("entered", step=name, phase="waiting")
        ctx.set_timer(name, "sleep", _ms(b.duration.total_seconds()))
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


def _go(ctx: _Ctx, target: str | None, scopes: tuple[tuple[str, int], ...]) -> None:
    if ctx.st.status != "running":
        return
    if target is None:
        _end_scope(ctx, scopes)
    else:
        _enter(ctx, target)


def _finish(ctx: _Ctx, name: str, *, action: bool = False, pivot: bool = False) -> None:
    ctx.clear_timers(name)
    ctx.emit("step_completed", step=name, action=action, pivot=pivot)
    if pivot:
        ctx.clear_timers("@saga")
    node = ctx.p.nodes[name]
    _go(ctx, node.next, node.scopes)


def _end_scope(ctx: _Ctx, scopes: tuple[tuple[str, int], ...]) -> None:
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
    _finish(ctx, par)


def _in_scope(ctx: _Ctx, name: str, scope: tuple[tuple[str, int], ...], keep: int) -> bool:
    own = ctx.p.nodes[name].scopes
    if len(own) < len(scope) or own[: len(scope) - 1] != scope[:-1]:
        return False
    par, idx = scope[-1]
    mine = own[len(scope) - 1]
    return mine[0] == par and (idx == -1 or mine[1] == idx) and mine[1] != keep


def _abandon_scope(ctx: _Ctx, scope: tuple[tuple[str, int], ...], keep: int = -2) -> None:
    """Stop every token inside ``scope`` (``(par, -1)`` = any branch of par but ``keep``)."""
    for name in [n for n in ctx.st.tokens if _in_scope(ctx, n, scope, keep)]:
        _abandon(ctx, name)


def _abandon(ctx: _Ctx, name: str) -> None:
    token = ctx.st.tokens.get(name)
    if token is None:
        return
    if isinstance(ctx.p.nodes[name].block, LongRunning) and token.phase != "backoff":
        if token.phase not in _CANCELLING:
            _start_cancel(ctx, name)
        return
    ctx.clear_timers(name)
    ctx.emit("abandoned", step=name)


def _fail(ctx: _Ctx, name: str, reason: str) -> None:
    """Block ``name`` failed for good: fail its branch of a ``first`` join, or the saga."""
    token = ctx.st.tokens.get(name)
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
            _fail(ctx, par, f"every branch of {par!r} failed; last: {reason}")
        return
    _compensate(ctx, reason, "compensated")


def _compensate(ctx: _Ctx, reason: str, outcome: str) -> None:
    st = ctx.st
    if st.status != "running":
        return
    queue = [] if st.pivoted else [s for s in reversed(st.completed) if ctx.p.nodes[s].compensation]
    ctx.clear_timers("@saga")
    ctx.emit(
        "compensating",
        reason=reason,
        outcome="failed" if st.pivoted else outcome,
        queue=queue,
    )
    for name in list(ctx.st.tokens):
        _abandon(ctx, name)
    _pump(ctx)


def _pump(ctx: _Ctx) -> None:
    st = ctx.st
    if st.status != "compensating" or st.tokens or st.undo is not None:
        return
    if not st.to_undo:
        _terminate(ctx, st.outcome or "compensated", st.reason)
        return
    step = st.to_undo[0]
    ctx.emit("undo_started", step=step)
    _send_undo(ctx, step)


def _send_undo(ctx: _Ctx, step: str) -> None:
    node = ctx.p.nodes[step]
    c = node.compensation
    assert c is not None  # only compensatable steps are queued
    b = node.block
    topic = b.topic if isinstance(b, Step | LongRunning) else (c.topic or "")
    ctx.send(step, "undo", c, topic, undo=True)
    deadline = getattr(b, "deadline", None)
    if deadline is not None:
        ctx.set_timer(step, "undo-timeout", _ms(deadline.total_seconds()))


def _terminate(ctx: _Ctx, status: str, reason: str | None) -> None:
    for name in list(ctx.st.tokens):
        ctx.clear_timers(name)
        ctx.emit("abandoned", step=name)
    for timer_id in list(ctx.st.timers):
        ctx.emit("timer_cleared", timer_id=timer_id)
    ctx.emit("finished", status=status, reason=reason)


# ------------------------------------------------------------------------------ steps and replies


def _attempt(ctx: _Ctx, name: str, b: Step[Any]) -> None:
    if b.kind == "retriable" and b.deadline is not None:
        ctx.set_timer(name, "deadline", _ms(b.deadline.total_seconds()))
    ctx.send(name, "do", Call(b.command, b.payload), b.topic)


def _non_retryable(reply: Reply, non_retryable: tuple[str, ...]) -> bool:
    return reply.outcome == "failure" or reply.payload.get("error") in non_retryable


def _retry_or_fail(ctx: _Ctx, name: str, token: Token, why: str, retry_key: str) -> None:
    b = ctx.p.nodes[name].block
    assert isinstance(b, Step | LongRunning)  # only these retry
    failures = token.failures + 1
    if b.retry.gives_up(failures):
        _fail(ctx, name, f"{why}; gave up after {failures} attempts")
        return
    phase = "backoff"
    ctx.emit("phase", step=name, phase=phase, failures=failures, checks=token.checks)
    ctx.set_timer(name, "retry", b.retry.delay_ms(failures, ctx.st.seed, retry_key))


def _on_reply(ctx: _Ctx, r: Reply) -> None:
    st = ctx.st
    step = st.pending[r.command_id]
    ctx.emit("reply_accepted", command_id=r.command_id, outcome=r.outcome, payload=r.payload)
    if st.undo is not None and st.undo.cmd == r.command_id:
        ctx.clear_timers(step, "undo-timeout")
        if r.outcome == "success":
            ctx.emit("undo_done", step=step)
            _pump(ctx)
        else:
            failures = st.undo.failures + 1
            ctx.emit("undo_phase", failures=failures)
            ctx.set_timer(step, "undo-retry", FOREVER.delay_ms(failures, st.seed, r.command_id))
        return
    token = ctx.st.tokens[step]
    b = ctx.p.nodes[step].block
    if isinstance(b, Step):
        if b.kind == "retriable":
            ctx.clear_timers(step, "deadline")
        if r.outcome == "success":
            ctx.merge(step, b.merge, r.payload)
            _finish(ctx, step, action=True, pivot=b.kind == "pivot")
        elif _non_retryable(r, b.retry.non_retryable):
            _fail(ctx, step, f"{b.command} failed: {_error(r)}")
        else:
            _retry_or_fail(ctx, step, token, f"{b.command} failed: {_error(r)}", r.command_id)
    elif isinstance(b, Child):
        if r.outcome == "success":
            ctx.merge(step, b.merge, r.payload)
            _finish(ctx, step, action=True, pivot=b.kind == "pivot")
        else:
            _fail(ctx, step, f"child saga {b.saga} ended {r.payload.get('status', 'failed')}")
    elif isinstance(b, LongRunning):
        _on_lr_reply(ctx, step, b, token, r)


def _on_lr_reply(ctx: _Ctx, name: str, b: LongRunning[Any], token: Token, r: Reply) -> None:
    every = _ms(b.every.total_seconds())
    if token.phase == "starting":
        if r.outcome == "success":
            ctx.merge(name, b.merge, r.payload)
            ctx.emit("phase", step=name, phase="polling", failures=0, checks=0)
            ctx.set_timer(name, "poll", every)
        elif _non_retryable(r, b.retry.non_retryable):
            _fail(ctx, name, f"{b.start.command} failed: {_error(r)}")
        else:
            _retry_or_fail(ctx, name, token, f"{b.start.command} failed: {_error(r)}", r.command_id)
    elif token.phase == "polling":
        if r.outcome == "success" and b.done(r.payload):
            ctx.merge(name, b.merge, r.payload)
            _finish(ctx, name, action=True, pivot=b.kind == "pivot")
        elif r.outcome == "success" and b.failed(r.payload):
            _fail(ctx, name, f"operation {name!r} failed: {r.payload}")
        else:
            ctx.set_timer(name, "poll", every)
    elif token.phase == "cancelling":
        ctx.emit("phase", step=name, phase="verifying", failures=0, checks=0)
        ctx.set_timer(name, "poll", every)
    elif token.phase == "verifying":
        if r.outcome == "success" and b.cancelled(r.payload):
            ctx.clear_timers(name)
            ctx.emit("step_failed", step=name, reason="cancelled; cancellation confirmed")
        elif r.outcome == "success" and b.done(r.payload):
            ctx.merge(name, b.merge, r.payload)
            ctx.clear_timers(name)
            ctx.emit("step_completed", step=name, action=True, pivot=False)
            if ctx.st.status == "compensating" and ctx.p.nodes[name].compensation:
                ctx.emit("outcome", outcome=ctx.st.outcome, reason=ctx.st.reason)
                queue = [name, *ctx.st.to_undo]
                ctx.emit("compensating", reason=ctx.st.reason, outcome=ctx.st.outcome, queue=queue)
        elif token.checks + 1 >= b.checks:
            ctx.clear_timers(name)
            why = f"cancellation of {name!r} not confirmed after {b.checks} status checks"
            ctx.emit("step_failed", step=name, reason=why)
            if ctx.st.status == "compensating":
                ctx.emit("outcome", outcome="failed", reason=f"{ctx.st.reason}; {why}")
        else:
            ctx.emit("phase", step=name, phase="verifying", failures=0, checks=token.checks + 1)
            ctx.set_timer(name, "poll", every)
        _pump(ctx)


def _start_cancel(ctx: _Ctx, name: str) -> None:
    b = ctx.p.nodes[name].block
    assert isinstance(b, LongRunning)  # only long-running operations cancel
    ctx.clear_timers(name)
    token = ctx.st.tokens[name]
    if token.cmd is not None:
        ctx.emit("attempt_expired", command_id=token.cmd)
    ctx.emit("phase", step=name, phase="cancelling", failures=0, checks=0)
    ctx.send(name, "cancel", b.cancel, b.topic)


def _on_timer(ctx: _Ctx, timer_id: str) -> None:
    ctx.emit("timer_fired", timer_id=timer_id)
    owner, kind, _ = timer_id.rsplit(":", 2)
    st = ctx.st
    if owner == "@saga":
        _compensate(ctx, "the saga deadline passed", "compensated")
        return
    if kind in ("undo-retry", "undo-timeout"):
        assert st.undo is not None  # undo timers are cleared with the undo
        if kind == "undo-timeout":
            assert st.undo.cmd is not None
            ctx.emit("attempt_expired", command_id=st.undo.cmd)
            ctx.emit("undo_phase", failures=st.undo.failures + 1)
        _send_undo(ctx, owner)
        return
    token = st.tokens[owner]
    b = ctx.p.nodes[owner].block
    if isinstance(b, Sleep):
        _finish(ctx, owner)
    elif isinstance(b, WaitSignal):
        _fail(ctx, owner, f"signal {b.signal!r} did not arrive within {b.timeout}")
    elif isinstance(b, Child):
        _fail(ctx, owner, f"child saga {b.saga} did not finish within {b.deadline}")
    elif isinstance(b, Step):
        if kind == "retry":
            ctx.emit("phase", step=owner, phase="waiting", failures=token.failures, checks=0)
            _attempt(ctx, owner, b)
        elif b.kind == "retriable":  # an attempt timed out: retry it
            assert token.cmd is not None
            cmd = token.cmd
            ctx.emit("attempt_expired", command_id=cmd)
            _retry_or_fail(ctx, owner, token, f"{b.command} timed out after {b.deadline}", cmd)
        else:
            _fail(ctx, owner, f"{b.command} got no reply within {b.deadline}")
    elif isinstance(b, LongRunning):
        if kind == "retry":
            ctx.emit("phase", step=owner, phase="starting", failures=token.failures, checks=0)
            ctx.send(owner, "start", b.start, b.topic)
        elif kind == "poll":
            ctx.send(owner, "status", b.status, b.topic)
        elif token.phase == "backoff":
            _fail(ctx, owner, f"operation {owner!r} did not start within {b.deadline}")
        else:
            _start_cancel(ctx, owner)
            _fail(ctx, owner, f"operation {owner!r} passed its deadline {b.deadline}")


def _on_signal(ctx: _Ctx, sig: Signal) -> bool:
    for name, token in ctx.st.tokens.items():
        b = ctx.p.nodes[name].block
        if isinstance(b, WaitSignal) and b.signal == sig.name and token.phase == "waiting":
            ctx.emit("signal_received", name=sig.name, payload=sig.payload, step=name)
            ctx.merge(name, b.merge, sig.payload)
            _finish(ctx, name)
            return True
    ctx.emit("signal_buffered", name=sig.name, payload=sig.payload)
    return True


# ------------------------------------------------------------------------------------ entry point


def _error(r: Reply) -> str:
    return str(r.payload.get("error") or r.payload.get("reason") or r.outcome)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _ignore(ctx: _Ctx, inp: Input, reason: str) -> None:
    body: dict[str, Any] = {"input": type(inp).__name__.lower(), "reason": reason}
    if isinstance(inp, Reply):
        body["command_id"] = inp.command_id
        body["outcome"] = inp.outcome
    elif isinstance(inp, TimerFired):
        body["timer_id"] = inp.timer_id
    elif isinstance(inp, Signal):
        body["name"] = inp.name
    ctx.emit("ignored", **body)


def _decide(ctx: _Ctx, inp: Input) -> None:
    st = ctx.s
    if st is None:
        if not isinstance(inp, Start):
            _ignore(ctx, inp, "no saga with this id")
            return
        parent = inp.parent.to_dict() if inp.parent else None
        seed = zlib.crc32(inp.saga_id.encode())
        data = build_payload(lambda d: d, inp.data, ctx.p.name, None)
        ctx.emit(
            "started",
            saga_type=ctx.p.name,
            version=ctx.p.version,
            data=data,
            seed=seed,
            parent=parent,
        )
        if ctx.p.deadline_ms is not None:
            ctx.set_timer("@saga", "deadline", ctx.p.deadline_ms)
        _go(ctx, ctx.p.entry, ())
        return
    if isinstance(inp, Start):
        _ignore(ctx, inp, "the saga already exists (start is idempotent)")
    elif st.terminal:
        _ignore(ctx, inp, f"the saga already ended {st.status}")
    elif isinstance(inp, Reply):
        if inp.command_id not in st.pending:
            _ignore(ctx, inp, "no command awaits this reply (duplicate, late, or an older attempt)")
        else:
            _on_reply(ctx, inp)
    elif isinstance(inp, TimerFired):
        due = st.timers.get(inp.timer_id)
        if due is None:
            _ignore(ctx, inp, "the timer is not pending")
        elif due > ctx.now:
            _ignore(ctx, inp, f"the timer is not due until {due}")
        else:
            _on_timer(ctx, inp.timer_id)
    elif isinstance(inp, Signal):
        if st.status != "running":
            _ignore(ctx, inp, f"the saga is {st.status}")
        else:
            _on_signal(ctx, inp)
    elif isinstance(inp, Cancel):
        if st.status != "running":
            _ignore(ctx, inp, f"the saga is already {st.status}")
        elif st.pivoted:
            pivot = next(s for s in st.completed if _is_pivot(ctx.p, s))
            _ignore(ctx, inp, f"refused: the saga passed its pivot {pivot!r} and cannot be undone")
        else:
            _compensate(ctx, f"cancelled: {inp.reason}", "cancelled")


def _is_pivot(program: Program, step: str) -> bool:
    b = program.nodes[step].block
    return isinstance(b, Step | LongRunning | Child) and b.kind == "pivot"


def transition(program: Program, state: SagaState | None, inp: Input, now_ms: int) -> Decision:
    """Decide what ``inp`` does to the saga in ``state`` at ``now_ms``. Pure and deterministic.

    Args:
        program: the compiled saga type (its version must match ``state.version``).
        state: the saga's state, ``None`` if it does not exist.
        inp: the input.
        now_ms: the current time, epoch milliseconds (the only clock the engine sees).

    Returns:
        The new state, the journal events, and the commands, child starts and parent replies
        to send. Inputs that change nothing yield one ``ignored`` event and the same state.
    """
    ctx = _Ctx(program, state, inp.saga_id if state is None else state.saga_id, now_ms)
    _decide(ctx, inp)
    return _outputs(ctx)


def _outputs(ctx: _Ctx) -> Decision:
    commands: list[CommandOut] = []
    children: list[ChildStart] = []
    replies: list[ParentReply] = []
    st = ctx.s
    for e in ctx.events:
        b = e.body
        if e.type == "command_sent":
            assert st is not None
            commands.append(
                CommandOut(
                    b["command_id"],
                    e.saga_id,
                    st.saga_type,
                    b["step"],
                    b["command_type"],
                    b["topic"],
                    b["payload"],
                    b["attempt"],
                    b["deadline_ms"],
                )
            )
        elif e.type == "child_started":
            parent = ParentRef(ctx.p.name, e.saga_id, b["command_id"])
            children.append(ChildStart(b["child_type"], b["child_id"], b["data"], parent))
        elif e.type == "finished" and st is not None and st.parent is not None:
            if b["status"] == "completed":
                replies.append(ParentReply(st.parent, "success", st.data))
            else:
                payload = {"status": b["status"], "reason": b["reason"], "error": b["status"]}
                replies.append(ParentReply(st.parent, "failure", payload))
    return Decision(ctx.s, ctx.events, commands, children, replies)
