"""``transition``: the engine's entry point, and how replies, timers and signals move a saga.

Control flow (entering blocks, joins, failure, compensation) lives in :mod:`sagas.engine.flow`;
this module interprets each input against the saga's state, or records it as ``ignored``.
"""

from __future__ import annotations

import zlib
from typing import Any

from sagas.dsl.nodes import Child, LongRunning, Sleep, Step, WaitSignal
from sagas.dsl.program import Program
from sagas.dsl.retry import FOREVER
from sagas.engine.flow import (
    SAGA_DEADLINE,
    _attempt,
    _compensate,
    _Ctx,
    _fail,
    _finish,
    _go,
    _ms,
    _pump,
    _send_cancel,
    _send_undo,
    _start_cancel,
)
from sagas.engine.jsonvalue import build_payload
from sagas.engine.model import (
    Cancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
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
        ctx.clear_timers(name, "cancel-wait")
        if r.outcome == "success":
            ctx.emit("phase", step=name, phase="verifying", failures=0, checks=0)
            ctx.set_timer(name, "poll", every)
        else:
            _cancel_failed(ctx, name, b, token, r.command_id)
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


def _cancel_failed(ctx: _Ctx, name: str, b: LongRunning[Any], token: Token, retry_key: str) -> None:
    """A cancel failed or got no reply: send it again after a back-off; after ``checks`` tries,
    verify by status what happened (which fails the saga if the operation is still running)."""
    failures = token.failures + 1
    if failures >= b.checks:
        ctx.emit("phase", step=name, phase="verifying", failures=failures, checks=0)
        ctx.set_timer(name, "poll", _ms(b.every.total_seconds()))
        return
    ctx.emit("phase", step=name, phase="cancelling", failures=failures, checks=0)
    ctx.set_timer(name, "cancel-retry", b.retry.delay_ms(failures, ctx.st.seed, retry_key))


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
        if kind == "cancel-wait":
            assert token.cmd is not None  # the wait is cleared with the cancel's reply
            cmd = token.cmd
            ctx.emit("attempt_expired", command_id=cmd)
            _cancel_failed(ctx, owner, b, token, cmd)
        elif kind == "cancel-retry":
            _send_cancel(ctx, owner, b)
        elif kind == "retry":
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
