"""Control flow: how blocks start, finish, fail and compensate.

:mod:`sagas.engine.decide` interprets each input and calls the functions here, the engine's
in-package interface (``__all__``), on the deciding context :class:`~sagas.engine.context.Ctx`
(emit events, timers, commands): :func:`go`,
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

from typing import Any

from sagas.dsl.nodes import (
    Branch,
    Call,
    Child,
    LongRunning,
    Parallel,
    Sleep,
    Step,
    WaitSignal,
)
from sagas.dsl.retry import FOREVER
from sagas.engine.context import Ctx
from sagas.engine.jsonvalue import build_payload

__all__ = [
    "SAGA_DEADLINE",
    "attempt",
    "await_pivot",
    "cancel_child",
    "compensate",
    "fail",
    "finish",
    "go",
    "late_completion",
    "ms",
    "pivot_in_flight",
    "pump",
    "resend",
    "resume",
    "schedule_resend",
    "send_cancel",
    "send_undo",
    "start_cancel",
    "terminate",
]

SAGA_DEADLINE = "@saga:deadline:1"
_CANCELLING = ("cancelling", "verifying")


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
            token = ctx.st.tokens.get(name)
            joining = token is not None and token.phase == "joining"
            if target is not None and joining and ctx.st.status == "running":
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
    held = ctx.st.held
    if pivot and held is not None and held[0] == "cancelled":
        ctx.emit("cancel_refused", reason=f"the pivot {name!r} took effect; refused: {held[1]}")
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
    if block.join == "first":  # the winner: undo the others before going on
        others = [i for i in range(len(block.branches)) if i != idx]
        ctx.emit("phase", step=par, phase="unwinding", failures=0, checks=0)
        _unwind(ctx, par, others)
        pump(ctx)
        return
    if len(ok) < len(block.branches):
        return
    finish(ctx, par)


def _in_branches(ctx: Ctx, name: str, par: str, branches: list[int] | None = None) -> bool:
    """Whether block ``name`` lies inside parallel ``par`` (in one of ``branches``, if given)."""
    scopes = ctx.p.nodes[name].scopes
    return any(p == par and (branches is None or i in branches) for p, i in scopes)


def _undoable_in_flight(ctx: Ctx, name: str) -> bool:
    token = ctx.st.tokens.get(name)
    node = ctx.p.nodes[name]
    return (
        token is not None
        and token.cmd is not None
        and isinstance(node.block, Step)
        and node.compensation is not None
    )


def _unwind(ctx: Ctx, par: str, branches: list[int], maybe_done: list[str] | None = None) -> None:
    """Stop ``branches`` of first-wins parallel ``par`` and queue the undo of what they did or
    may have done (commands without a reply), newest first; the undo runs while the saga goes
    on, and ``par`` finishes only when it is done (:func:`pump`)."""
    st = ctx.st
    inside = [n for n in st.tokens if n != par and _in_branches(ctx, n, par, branches)]
    in_flight = [*(maybe_done or []), *(n for n in inside if _undoable_in_flight(ctx, n))]
    this_round = st.completed[st.opened.get(par, 0) :]  # a loop's earlier rounds stand
    done = [
        s
        for s in reversed(this_round)
        if _in_branches(ctx, s, par, branches) and ctx.p.nodes[s].compensation
    ]
    for name in inside:
        _abandon(ctx, name, f"branch of {par!r} lost or failed")
    busy = {*ctx.st.to_undo, *([ctx.st.undo.step] if ctx.st.undo else [])}
    queue = [n for n in dict.fromkeys([*in_flight, *done]) if n not in busy]
    if queue:
        ctx.emit("unwinding", step=par, queue=queue)


def _unwound(ctx: Ctx, par: str) -> bool:
    st = ctx.st
    if any(n != par and _in_branches(ctx, n, par) for n in st.tokens):
        return False
    if st.undo is not None and _in_branches(ctx, st.undo.step, par):
        return False
    return not any(_in_branches(ctx, n, par) for n in st.to_undo)


def _first_parallel(ctx: Ctx, name: str) -> str | None:
    """The innermost active first-wins parallel around ``name``."""
    for par, _ in reversed(ctx.p.nodes[name].scopes):
        block = ctx.p.nodes[par].block
        if isinstance(block, Parallel) and block.join == "first" and par in ctx.st.tokens:
            return par
    return None


def late_completion(ctx: Ctx, name: str) -> None:
    """Block ``name``, being stopped (a cancelled operation, a cancelled child), completed
    anyway: undo it with the rest while compensating, or with its branch's losers."""
    if ctx.p.nodes[name].compensation is None:
        return
    st = ctx.st
    if st.status == "compensating":
        queue = [name, *st.to_undo]
        ctx.emit("compensating", reason=st.reason, outcome=st.outcome, queue=queue)
        return
    par = _first_parallel(ctx, name)
    if par is not None:
        ctx.emit("unwinding", step=par, queue=[name])


def _abandon(ctx: Ctx, name: str, reason: str) -> None:
    """Stop block ``name``: a long-running operation is cancelled and verified, a running child
    saga cancelled (both stay active until that ends), anything else dropped."""
    token = ctx.st.tokens.get(name)
    if token is None:
        return
    if isinstance(ctx.p.nodes[name].block, LongRunning) and token.phase != "backoff":
        if token.phase not in _CANCELLING:
            start_cancel(ctx, name)
        return
    if cancel_child(ctx, name, reason):
        return
    ctx.clear_timers(name)
    if _drains(ctx, name):  # its effect cannot be undone: the saga ends once it is known
        schedule_resend(ctx, name, "draining")
        return
    ctx.emit("abandoned", step=name)


def _drains(ctx: Ctx, name: str) -> bool:
    """Whether step ``name``'s command is in flight and cannot be undone (a retryable step
    after the pivot): a saga that stops waits for its answer, so that it ends only when nothing
    it sent can still take effect (a parent undoing it then finds all of it)."""
    token = ctx.st.tokens.get(name)
    node = ctx.p.nodes[name]
    return (
        ctx.st.status == "compensating"
        and token is not None
        and token.cmd is not None
        and isinstance(node.block, Step)
        and node.compensation is None
    )


def cancel_child(ctx: Ctx, name: str, reason: str) -> bool:
    """Ask child block ``name``'s running saga to cancel (unless its ``parent_close`` is
    ``abandon``); the block stays active, ``cancelling``, until the child's end comes back.
    Returns whether the block waits for the child."""
    b = ctx.p.nodes[name].block
    token = ctx.st.tokens.get(name)
    if not isinstance(b, Child) or b.parent_close != "cancel" or token is None or not token.cmd:
        return False
    if token.phase != "cancelling":
        ctx.clear_timers(name)
        child_id = f"{ctx.saga_id}/{name}/{ctx.st.counters[f'{name}:child']}"
        why = f"its parent {ctx.p.name} {ctx.saga_id} stopped: {reason}"
        ctx.emit("child_cancelled", step=name, child_type=b.saga, child_id=child_id, reason=why)
        ctx.emit("phase", step=name, phase="cancelling", failures=0, checks=0)
    return True


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


def fail(ctx: Ctx, name: str, reason: str, *, partly_done: bool = False) -> None:
    """Block ``name`` failed for good: fail its branch of a ``first`` join, or the saga.
    ``partly_done``: some of its work may stand (a child saga that ended ``failed``), so it is
    compensated too."""
    token = ctx.st.tokens.get(name)
    undoable = ctx.p.nodes[name].compensation is not None
    maybe_done = [name] if (partly_done and undoable) or _in_flight(ctx, name) else []
    outcome = "failed" if partly_done and not undoable else "compensated"  # it may stand
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
        _unwind(ctx, par, [idx], maybe_done)  # a failed branch is undone at once
        ctx.emit("branch_ended", step=par, index=idx, ok=False)
        if len(ctx.st.joins[par][1]) == len(block.branches):
            fail(ctx, par, f"every branch of {par!r} failed; last: {reason}")
        else:
            pump(ctx)
        return
    compensate(ctx, reason, outcome, maybe_done)


def compensate(ctx: Ctx, reason: str, outcome: str, maybe_done: list[str] | None = None) -> None:
    """Undo, newest first, what completed and what may have (commands without a reply)."""
    st = ctx.st
    if st.status not in ("running", "in-doubt"):
        return
    if st.held is not None:  # a cancel or deadline waited for the pivot, which was not done
        outcome = outcome if outcome == "failed" else st.held[0]
        reason = st.held[1] if reason == st.held[1] else f"{st.held[1]}; {reason}"
    in_flight = [*(maybe_done or []), *(n for n in st.tokens if _in_flight(ctx, n))]
    done = [s for s in reversed(st.completed) if ctx.p.nodes[s].compensation]
    queue = [] if st.pivoted else list(dict.fromkeys([*in_flight, *done]))
    queue += [q for q in st.to_undo if q not in queue]  # branches being unwound
    ctx.clear_timers("@saga")
    ctx.emit(
        "compensating",
        reason=reason,
        outcome="failed" if st.pivoted else outcome,
        queue=queue,
    )
    for name in list(ctx.st.tokens):
        _abandon(ctx, name, reason)
    pump(ctx)


def pump(ctx: Ctx) -> None:
    """Start the next undo: while compensating once no block is active (or end the saga when
    none is left); while running, as soon as the last one ended, finishing each first-wins
    parallel whose losing branches are undone."""
    st = ctx.st
    if st.status in ("running", "in-doubt"):  # first-wins losers are undone as the saga goes on
        if st.undo is None and st.to_undo:
            ctx.emit("undo_started", step=st.to_undo[0])
            send_undo(ctx, st.to_undo[0])
        for par, token in list(ctx.st.tokens.items()):
            if token.phase == "unwinding" and par in ctx.st.tokens and _unwound(ctx, par):
                finish(ctx, par)
        return
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


# ----------------------------------------------------------------------------------------- pivots


def pivot_in_flight(ctx: Ctx) -> str | None:
    """The pivot whose outcome is not known yet: its command sent and unanswered, its
    operation running (or maybe started), its child saga running. ``None`` if there is none."""
    for name, token in ctx.st.tokens.items():
        b = ctx.p.nodes[name].block
        if not isinstance(b, Step | LongRunning | Child) or b.kind != "pivot":
            continue
        if isinstance(b, LongRunning) and token.phase != "backoff":
            return name
        if not isinstance(b, LongRunning) and token.cmd is not None:
            return name
    return None


def await_pivot(ctx: Ctx, name: str, outcome: str, reason: str, *, overdue: bool) -> None:
    """A cancel or deadline came while pivot ``name`` is in flight: hold it until the pivot's
    definitive answer (done: the saga goes on; not done: it compensates with ``outcome`` and
    ``reason``). An operation is cancelled and verified, a child saga cancelled; a command
    whose deadline passed (``overdue``) makes the saga ``in-doubt`` and is sent again, the
    same request, until its participant answers (it refuses what came too late)."""
    b = ctx.p.nodes[name].block
    was_overdue = ctx.st.status == "in-doubt"
    overdue = overdue and not isinstance(b, LongRunning)  # its cancel and checks decide
    ctx.emit(
        "pivot_awaited", step=name, outcome=outcome, reason=reason, overdue=overdue or was_overdue
    )
    if isinstance(b, LongRunning):
        if ctx.st.tokens[name].phase not in _CANCELLING:
            start_cancel(ctx, name)
    elif isinstance(b, Child):
        cancel_child(ctx, name, reason)
    elif overdue and not was_overdue:
        ctx.clear_timers(name, "deadline")
        schedule_resend(ctx, name)


def resend(ctx: Ctx, name: str) -> None:
    """Send step ``name``'s unanswered command again, the same request with the deadline it
    first carried (no new per-attempt deadline), and schedule the next resend."""
    b = ctx.p.nodes[name].block
    assert isinstance(b, Step)  # only steps are resent this way
    token = ctx.st.tokens[name]
    ctx.send(name, "do", _call_of(b), b.topic, again=token.cmd, keep_deadline=True)
    schedule_resend(ctx, name, token.phase)


def schedule_resend(ctx: Ctx, name: str, phase: str = "in-doubt") -> None:
    """Send step ``name``'s unanswered command again after a back-off (1 s, doubling, 5 min),
    the same request with the same deadline, until it is answered: an in-doubt pivot's, or a
    ``draining`` one's (a stopped saga waits for it)."""
    token = ctx.st.tokens[name]
    failures = token.failures + 1
    ctx.emit("phase", step=name, phase=phase, failures=failures, checks=0)
    ctx.set_timer(name, "resend", FOREVER.delay_ms(failures, ctx.st.seed, token.cmd or name))


def ms(seconds: float) -> int:
    """Seconds as whole milliseconds."""
    return round(seconds * 1000)
