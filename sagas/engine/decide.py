"""``transition``: the engine's entry point, and how replies, timers and signals move a saga.

This module interprets each input against the saga's state, or records it as ``ignored``, and
turns the events into the decision's outputs. Control flow (entering blocks, joins, failure,
compensation) live in :mod:`sagas.engine.flow`, whose ``__all__`` is what this module uses, and
the deciding context in :mod:`sagas.engine.context`; a saga whose own code raises is made stuck
here (:mod:`sagas.engine.stuck`).

One request, one command id. A command sent again because its participant was silent (a
retriable step's attempt timed out, a compensation's wait timed out, a cancel got no reply) is
the same request: the same id, kept pending, so a late reply to its first send still counts and
the participant's recorded reply deduplicates it. Only an answered failure (``failure`` or
``retryable-failure``) starts a new request, with a new id.
"""

from __future__ import annotations

import zlib
from typing import Any

from sagas.dsl.nodes import Child, LongRunning, Sleep, Step, WaitSignal
from sagas.dsl.program import Program
from sagas.dsl.retry import FOREVER
from sagas.engine.context import Ctx
from sagas.engine.flow import (
    SAGA_DEADLINE,
    attempt,
    await_pivot,
    cancel_child,
    compensate,
    fail,
    finish,
    go,
    late_completion,
    ms,
    pivot_in_flight,
    pump,
    resend,
    resume,
    send_cancel,
    send_undo,
    start_cancel,
    terminate,
)
from sagas.engine.jsonvalue import build_payload
from sagas.engine.model import (
    Cancel,
    ChildCancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
    ParentRef,
    ParentReply,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    Start,
    Terminate,
    TimerFired,
    Token,
)
from sagas.engine.stuck import decide_or_stick, on_stuck, stick

__all__ = ["SAGA_DEADLINE", "stuck_decision", "transition"]


def _non_retryable(reply: Reply, non_retryable: tuple[str, ...]) -> bool:
    return reply.outcome == "failure" or reply.payload.get("error") in non_retryable


def _late_retryable(b: Step[Any], reply: Reply) -> bool:
    """A retryable step's command reached its participant after its deadline and was refused
    (``deadline-passed``): nothing was done, and the step is retried until it succeeds."""
    return b.kind == "retriable" and reply.payload.get("error") == "deadline-passed"


UNSURE_BACKOFF = "backoff-unsure"
"""The phase of a long-running operation backing off after a ``retryable-failure`` to its
start that did not say ``"started": false``: it may have started, so a deadline cancels it."""


def _retry_or_fail(
    ctx: Ctx, name: str, token: Token, why: str, retry_key: str, *, unsure: bool = False
) -> None:
    """Back off and try again; give up per the retry policy. ``unsure``: a long-running start
    that may have started (given up, it is cancelled and verified)."""
    b = ctx.p.nodes[name].block
    assert isinstance(b, Step | LongRunning)  # only these retry
    failures = token.failures + 1
    if b.retry.gives_up(failures):
        why = f"{why}; gave up after {failures} attempts"
        if unsure and b.kind == "pivot":
            await_pivot(ctx, name, "compensated", why, overdue=False)
            return
        if unsure:
            start_cancel(ctx, name)
        fail(ctx, name, why)
        return
    phase = UNSURE_BACKOFF if unsure else "backoff"
    ctx.emit("phase", step=name, phase=phase, failures=failures, checks=token.checks)
    ctx.set_timer(name, "retry", b.retry.delay_ms(failures, ctx.st.seed, retry_key))


def _on_reply(ctx: Ctx, r: Reply) -> None:
    st = ctx.st
    step = st.pending[r.command_id]
    ctx.emit("reply_accepted", command_id=r.command_id, outcome=r.outcome, payload=r.payload)
    if st.undo is not None and st.undo.cmd == r.command_id:
        ctx.clear_timers(step, "undo-timeout")
        if r.outcome == "success":
            ctx.emit("undo_done", step=step)
            pump(ctx)
        else:
            failures = st.undo.failures + 1
            ctx.emit("undo_phase", failures=failures)
            ctx.set_timer(step, "undo-retry", FOREVER.delay_ms(failures, st.seed, r.command_id))
        return
    token = ctx.st.tokens[step]
    b = ctx.p.nodes[step].block
    if token.phase == "draining":  # the saga stopped; this answer was all it waited for
        ctx.clear_timers(step)
        if r.outcome == "success":
            ctx.emit("step_completed", step=step, action=True, pivot=False)
        else:
            ctx.emit("step_failed", step=step, reason=_error(r))
        pump(ctx)
    elif isinstance(b, Step):
        if b.kind == "retriable":  # the reply may come during the back-off before a resend
            ctx.clear_timers(step, "deadline", "retry")
        held = b.kind == "pivot" and ctx.st.held is not None  # no new request: the answer decides
        if r.outcome == "success":
            ctx.merge(step, b.merge, r.payload)
            finish(ctx, step, action=True, pivot=b.kind == "pivot")
        elif held or (_non_retryable(r, b.retry.non_retryable) and not _late_retryable(b, r)):
            fail(ctx, step, f"{b.command} failed: {_error(r)}")
        else:
            _retry_or_fail(ctx, step, token, f"{b.command} failed: {_error(r)}", r.command_id)
    elif isinstance(b, Child):
        ended = f"child saga {b.saga} ended {r.payload.get('status', 'failed')}"
        if token.phase == "cancelling":
            _on_stopped_child(ctx, step, b, r, ended)
        elif r.outcome == "success":
            ctx.merge(step, b.merge, r.payload)
            finish(ctx, step, action=True, pivot=b.kind == "pivot")
        elif b.kind == "pivot" and r.payload.get("pivoted"):
            _pivot_child_failed_past_its_pivot(ctx, step, ended)
        else:  # a child that ended failed may have left work standing: undo it
            fail(ctx, step, ended, partly_done=r.payload.get("status") in _PARTLY)
    elif isinstance(b, LongRunning):
        _on_lr_reply(ctx, step, b, token, r)


_PARTLY = ("failed", "terminated")
"""How a child saga may end with some of its work standing (past its pivot, an unconfirmed
cancellation, or an operator's terminate)."""


def _pivot_child_failed_past_its_pivot(ctx: Ctx, name: str, ended: str) -> None:
    """A pivot child saga failed after its own pivot: its forward work stands, so the parent
    passed its pivot too, and fails (nothing before it is undone)."""
    ctx.clear_timers(name)
    ctx.emit("step_completed", step=name, action=True, pivot=True)
    compensate(ctx, f"{ended} past its pivot", "compensated")  # pivoted: the saga fails


def _on_stopped_child(ctx: Ctx, name: str, b: Child[Any], r: Reply, ended: str) -> None:
    """The end of a child saga its parent asked to cancel. A pivot's decides the saga; any
    other's is undone if the child completed anyway."""
    awaited = b.kind == "pivot" and ctx.st.status in ("running", "in-doubt")
    if awaited and r.outcome == "success":
        ctx.merge(name, b.merge, r.payload)
        finish(ctx, name, action=True, pivot=True)
        return
    if awaited and r.payload.get("pivoted"):
        _pivot_child_failed_past_its_pivot(ctx, name, ended)
        return
    ctx.clear_timers(name)
    if r.outcome == "success":
        ctx.emit("step_completed", step=name, action=True, pivot=False)
        late_completion(ctx, name)
    else:
        ctx.emit("step_failed", step=name, reason=ended)
        partly = r.payload.get("status") in _PARTLY  # some of its work may stand
        if awaited:  # a pivot child's work cannot be undone: the saga fails if some stands
            compensate(ctx, ended, "failed" if partly else "compensated")
            return
        if partly and ctx.p.nodes[name].compensation is not None:
            late_completion(ctx, name)
        elif partly and ctx.st.status == "compensating":
            ctx.emit("outcome", outcome="failed", reason=f"{ctx.st.reason}; {ended}")
    pump(ctx)


def _on_lr_reply(ctx: Ctx, name: str, b: LongRunning[Any], token: Token, r: Reply) -> None:
    every = ms(b.every.total_seconds())
    if token.phase == "starting":
        if r.outcome == "success":
            ctx.merge(name, b.merge, r.payload)
            ctx.emit("phase", step=name, phase="polling", failures=0, checks=0)
            ctx.set_timer(name, "poll", every)
        elif _non_retryable(r, b.retry.non_retryable):
            fail(ctx, name, f"{b.start.command} failed: {_error(r)}")
        else:
            why = f"{b.start.command} failed: {_error(r)}"
            unsure = r.payload.get("started") is not False
            _retry_or_fail(ctx, name, token, why, r.command_id, unsure=unsure)
    elif token.phase == "polling":
        if r.outcome == "success" and b.done(r.payload):
            ctx.merge(name, b.merge, r.payload)
            finish(ctx, name, action=True, pivot=b.kind == "pivot")
        elif r.outcome == "success" and b.failed(r.payload):
            fail(ctx, name, f"operation {name!r} failed: {r.payload}")
        else:
            ctx.set_timer(name, "poll", every)
    elif token.phase == "cancelling":  # the reply may come during the back-off before a resend
        ctx.clear_timers(name, "cancel-wait", "cancel-retry")
        if r.outcome == "success":
            ctx.emit("phase", step=name, phase="verifying", failures=0, checks=0)
            ctx.set_timer(name, "poll", every)
        else:
            _cancel_failed(ctx, name, b, token, r.command_id)
    elif token.phase == "verifying":
        awaited = b.kind == "pivot" and ctx.st.status in ("running", "in-doubt")
        if r.outcome == "success" and (b.cancelled(r.payload) or b.failed(r.payload)):
            ctx.clear_timers(name)
            ctx.emit("step_failed", step=name, reason="cancelled; cancellation confirmed")
            if awaited:  # the pivot did not take effect
                compensate(ctx, f"operation {name!r} cancelled", "compensated")
                return
        elif r.outcome == "success" and b.done(r.payload):
            ctx.merge(name, b.merge, r.payload)
            if awaited:  # the pivot took effect after all: the saga goes on
                finish(ctx, name, action=True, pivot=True)
                return
            ctx.clear_timers(name)
            ctx.emit("step_completed", step=name, action=True, pivot=False)
            late_completion(ctx, name)
        elif awaited and token.checks + 1 >= b.checks:  # in doubt: poll on until it is known
            if ctx.st.status != "in-doubt":
                why = f"cancellation of {name!r} not confirmed after {b.checks} status checks"
                ctx.emit(
                    "pivot_awaited", step=name, outcome="compensated", reason=why, overdue=True
                )
            ctx.emit("phase", step=name, phase="verifying", failures=0, checks=token.checks + 1)
            ctx.set_timer(name, "poll", every)
        elif token.checks + 1 >= b.checks:
            ctx.clear_timers(name)
            why = f"cancellation of {name!r} not confirmed after {b.checks} status checks"
            ctx.emit("step_failed", step=name, reason=why)
            if ctx.st.status == "compensating":
                ctx.emit("outcome", outcome="failed", reason=f"{ctx.st.reason}; {why}")
            else:  # a losing branch's operation may run on: undo it as if it finished
                late_completion(ctx, name)
        else:
            ctx.emit("phase", step=name, phase="verifying", failures=0, checks=token.checks + 1)
            ctx.set_timer(name, "poll", every)
        pump(ctx)


def _cancel_failed(ctx: Ctx, name: str, b: LongRunning[Any], token: Token, retry_key: str) -> None:
    """A cancel failed or got no reply: send it again after a back-off (the same command if it
    got no reply); after ``checks`` tries, verify by status what happened (which fails the saga
    if the operation is still running)."""
    failures = token.failures + 1
    if failures >= b.checks:
        if token.cmd is not None:  # verification decides now; a late cancel reply is ignored
            ctx.emit("attempt_expired", command_id=token.cmd)
        ctx.emit("phase", step=name, phase="verifying", failures=failures, checks=0)
        ctx.set_timer(name, "poll", ms(b.every.total_seconds()))
        return
    ctx.emit("phase", step=name, phase="cancelling", failures=failures, checks=0)
    ctx.set_timer(name, "cancel-retry", b.retry.delay_ms(failures, ctx.st.seed, retry_key))


def _on_timer(ctx: Ctx, timer_id: str) -> None:
    ctx.emit("timer_fired", timer_id=timer_id)
    owner, kind, _ = timer_id.rsplit(":", 2)
    st = ctx.st
    if owner == "@saga":
        pivot = pivot_in_flight(ctx)
        if pivot is not None:  # its answer decides: never compensate a pivot on a guess
            await_pivot(ctx, pivot, "compensated", "the saga deadline passed", overdue=True)
        else:
            compensate(ctx, "the saga deadline passed", "compensated")
        return
    if kind in ("undo-retry", "undo-timeout"):
        assert st.undo is not None  # undo timers are cleared with the undo
        if kind == "undo-timeout":  # silence: the same compensation again, still pending
            assert st.undo.cmd is not None
            ctx.emit("undo_phase", failures=st.undo.failures + 1)
        send_undo(ctx, owner, again=st.undo.cmd)
        return
    token = st.tokens[owner]
    b = ctx.p.nodes[owner].block
    if isinstance(b, Sleep):
        finish(ctx, owner)
    elif isinstance(b, WaitSignal):
        fail(ctx, owner, f"signal {b.signal!r} did not arrive within {b.timeout}")
    elif isinstance(b, Child):
        why = f"child saga {b.saga} did not finish within {b.deadline}"
        if b.kind == "pivot":
            await_pivot(ctx, owner, "compensated", why, overdue=True)
        else:
            cancel_child(ctx, owner, why)
            fail(ctx, owner, why)
    elif isinstance(b, Step):
        if kind == "resend":  # in doubt, or draining: the same request, until it is answered
            resend(ctx, owner)
        elif kind == "retry":  # after a back-off: the pending command again, or a new request
            ctx.emit("phase", step=owner, phase="waiting", failures=token.failures, checks=0)
            attempt(ctx, owner, b, again=token.cmd)
        elif b.kind == "retriable":  # an attempt timed out: send it again after a back-off
            assert token.cmd is not None
            why = f"{b.command} timed out after {b.deadline}"
            _retry_or_fail(ctx, owner, token, why, token.cmd)
        elif b.kind == "pivot" and token.cmd is not None:
            why = f"{b.command} got no reply within {b.deadline}"
            await_pivot(ctx, owner, "compensated", why, overdue=True)
        else:
            fail(ctx, owner, f"{b.command} got no reply within {b.deadline}")
    elif isinstance(b, LongRunning):
        if kind == "cancel-wait":  # no reply: the same cancel again after a back-off
            assert token.cmd is not None  # the wait is cleared with the cancel's reply
            _cancel_failed(ctx, owner, b, token, token.cmd)
        elif kind == "cancel-retry":
            send_cancel(ctx, owner, b, again=token.cmd)
        elif kind == "retry":
            ctx.emit("phase", step=owner, phase="starting", failures=token.failures, checks=0)
            ctx.send(owner, "start", b.start, b.topic)
        elif kind == "poll":
            ctx.send(owner, "status", b.status, b.topic)
        elif token.phase == "backoff":  # its participant said nothing started
            fail(ctx, owner, f"operation {owner!r} did not start within {b.deadline}")
        elif b.kind == "pivot":
            why = f"operation {owner!r} passed its deadline {b.deadline}"
            await_pivot(ctx, owner, "compensated", why, overdue=False)
        else:
            start_cancel(ctx, owner)
            fail(ctx, owner, f"operation {owner!r} passed its deadline {b.deadline}")


def _on_signal(ctx: Ctx, sig: Signal) -> bool:
    for name, token in ctx.st.tokens.items():
        b = ctx.p.nodes[name].block
        if isinstance(b, WaitSignal) and b.signal == sig.name and token.phase == "waiting":
            ctx.emit("signal_received", name=sig.name, payload=sig.payload, step=name)
            ctx.merge(name, b.merge, sig.payload)
            finish(ctx, name)
            return True
    ctx.emit("signal_buffered", name=sig.name, payload=sig.payload)
    return True


# ------------------------------------------------------------------------------------ entry point


def _error(r: Reply) -> str:
    return str(r.payload.get("error") or r.payload.get("reason") or r.outcome)


def _decide(ctx: Ctx, inp: Input) -> None:
    st = ctx.s
    if st is None:
        if not isinstance(inp, Start):
            ctx.ignore(inp, "no saga with this id")
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
            secret=ctx.draw_secret(),
        )
        if ctx.p.deadline_ms is not None:
            ctx.set_timer("@saga", "deadline", ctx.p.deadline_ms)
        go(ctx, ctx.p.entry, ())
        return
    if isinstance(inp, Start):
        ctx.ignore(inp, "the saga already exists (start is idempotent)")
    elif isinstance(inp, Resume):
        _on_resume(ctx, inp)
    elif st.terminal:
        ctx.ignore(inp, f"the saga already ended {st.status}")
    elif isinstance(inp, Reply):
        if inp.command_id not in st.pending:
            why = "no command awaits this reply (duplicate, late, older attempt, or forged)"
            ctx.ignore(inp, why)
        else:
            _on_reply(ctx, inp)
    elif isinstance(inp, TimerFired):
        due = st.timers.get(inp.timer_id)
        if due is None:
            ctx.ignore(inp, "the timer is not pending")
        elif due > ctx.now:
            ctx.ignore(inp, f"the timer is not due until {due}")
        else:
            _on_timer(ctx, inp.timer_id)
    elif isinstance(inp, Signal):
        if st.status not in ("running", "in-doubt"):
            ctx.ignore(inp, f"the saga is {st.status}")
        else:
            _on_signal(ctx, inp)
    elif isinstance(inp, Cancel):
        _on_cancel(ctx, inp)
    elif isinstance(inp, Terminate):
        terminate(ctx, inp.by, inp.reason)
    elif isinstance(inp, Settle):
        _on_settle(ctx, inp)


def _on_cancel(ctx: Ctx, inp: Cancel) -> None:
    st = ctx.st
    pivot = pivot_in_flight(ctx)
    if st.status not in ("running", "in-doubt"):
        ctx.ignore(inp, f"the saga is already {st.status}")
    elif st.pivoted:
        done = next(s for s in st.completed if _is_pivot(ctx.p, s))
        ctx.ignore(inp, f"refused: the saga passed its pivot {done!r} and cannot be undone")
    elif st.held is not None:
        ctx.ignore(inp, f"the saga already waits for its pivot's answer ({st.held[1]})")
    elif pivot is not None:  # the pivot's answer decides whether the cancel can be honoured
        await_pivot(ctx, pivot, "cancelled", f"cancelled: {inp.reason}", overdue=False)
    else:
        compensate(ctx, f"cancelled: {inp.reason}", "cancelled")


def _on_settle(ctx: Ctx, inp: Settle) -> None:
    st = ctx.st
    pivot = pivot_in_flight(ctx)
    if st.status != "in-doubt" or pivot is None:
        ctx.ignore(inp, f"only an in-doubt saga is settled; this one is {st.status}")
        return
    b = ctx.p.nodes[pivot].block
    if isinstance(b, Child):
        ctx.ignore(inp, f"its pivot is the child saga {b.saga}, whose end decides: settle it")
        return
    ctx.emit("settled", step=pivot, done=inp.done, by=inp.by, reason=inp.reason)
    token = st.tokens[pivot]
    if token.cmd is not None:  # its late answer changes nothing now
        ctx.emit("attempt_expired", command_id=token.cmd)
    why = f"settled by {inp.by}: {inp.reason}"
    if inp.done:
        finish(ctx, pivot, action=True, pivot=True)
        return
    ctx.clear_timers(pivot)
    ctx.emit("step_failed", step=pivot, reason=f"not done: {why}")
    compensate(ctx, why, "compensated")


def _on_resume(ctx: Ctx, inp: Resume) -> None:
    st = ctx.st
    node = ctx.p.nodes.get(inp.step)
    if st.status != "failed":
        ctx.ignore(inp, f"only a failed or stuck saga resumes; this one is {st.status}")
    elif node is None:
        ctx.ignore(inp, f"no step {inp.step!r} in {ctx.p.name} v{ctx.p.version}")
    elif node.scopes:
        ctx.ignore(inp, f"step {inp.step!r} is inside a parallel: resume its parallel block")
    else:
        resume(ctx, inp.step, inp.by)


def _is_pivot(program: Program, step: str) -> bool:
    b = program.nodes[step].block
    return isinstance(b, Step | LongRunning | Child) and b.kind == "pivot"


def transition(
    program: Program,
    state: SagaState | None,
    inp: Input,
    now_ms: int,
    *,
    entropy: bytes | None = None,
) -> Decision:
    """Decide what ``inp`` does to the saga in ``state`` at ``now_ms``. Pure and deterministic.

    Args:
        program: the compiled saga type (its version must match ``state.version``).
        state: the saga's state, ``None`` if it does not exist.
        inp: the input.
        now_ms: the current time, epoch milliseconds (the only clock the engine sees).
        entropy: at least 16 random bytes, the source of the saga's secret (the key of the
            tags that make its command ids unguessable, hence replies unforgeable). Used only
            when the saga gets its secret: at its start, or when a saga started by a release
            without secrets sends its next command; recorded in the journal, so replay needs
            none. Runtime callers must pass ``os.urandom(16)`` on every call. ``None`` derives
            the secret from the saga id, which anyone can do: for tests and tools only.

    Returns:
        The new state, the journal events, and the commands, child starts and parent replies
        to send. Inputs that change nothing yield one ``ignored`` event and the same state.

    Raises:
        ConfigurationError: ``entropy`` is shorter than 16 bytes.
    """
    saga_id = inp.saga_id if state is None else state.saga_id
    ctx = Ctx(program, state, saga_id, now_ms, entropy)
    if state is not None and state.status == "stuck":
        on_stuck(ctx, inp, _decide)
    else:
        decide_or_stick(ctx, inp, _decide)
    return _outputs(ctx)


def stuck_decision(
    program: Program, state: SagaState | None, inp: Input, now_ms: int, error: BaseException
) -> Decision:
    """The saga stuck on ``inp`` instead of what its transition decided: the runtime could not
    write that (a payload does not fit its schema). Its state stays as it was, holding ``inp``
    (see :mod:`sagas.engine.stuck`); a saga already stuck records the new error."""
    saga_id = inp.saga_id if state is None else state.saga_id
    ctx = Ctx(program, state, saga_id, now_ms)
    stick(ctx, inp, error)
    return _outputs(ctx)


def _outputs(ctx: Ctx) -> Decision:
    commands: list[CommandOut] = []
    children: list[ChildStart] = []
    replies: list[ParentReply] = []
    cancels: list[ChildCancel] = []
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
                    b.get("send", 1),
                    b["key"].rsplit(":", 1)[1],
                )
            )
        elif e.type == "child_started":
            parent = ParentRef(ctx.p.name, e.saga_id, b["command_id"])
            children.append(ChildStart(b["child_type"], b["child_id"], b["data"], parent))
        elif e.type == "child_cancelled":
            cancels.append(ChildCancel(b["child_type"], b["child_id"], b["reason"]))
        elif e.type == "finished" and st is not None and st.parent is not None:
            if b["status"] == "completed":
                replies.append(ParentReply(st.parent, "success", st.data))
            else:
                payload = {
                    "status": b["status"],
                    "reason": b["reason"],
                    "error": b["status"],
                    "pivoted": st.pivoted,
                }
                replies.append(ParentReply(st.parent, "failure", payload))
    return Decision(ctx.s, ctx.events, commands, children, replies, cancels)
