"""Apply journal events to a saga state: ``evolve`` one, ``fold`` them all.

The engine is event-sourced: :func:`sagas.engine.transition` decides events and applies each with
:func:`evolve` as it goes, so folding a saga's journal rebuilds exactly the state the last
transition returned. ``evolve`` never consults the program: each event carries what it changes.

Event types (``JournalEvent.type``) and their ``body``:

=================  =====================================================================
started            saga_type, version, data, seed, parent, secret — the saga exists
secret_set         secret — a saga started by a release without secrets gets one
ignored            input, reason, ... — an input changed nothing (no state change at all)
note               message — informational
entered            step, phase — a block became active
phase              step, phase, failures, checks — an active block moved on
command_sent       command_id, step, command_type, topic, payload, attempt, deadline_ms, key, undo,
                   send — ``send`` > 1: the same command again (its participant was silent)
child_started      command_id, step, child_type, child_id, data, attempt, key
reply_accepted     command_id, outcome, payload — a reply the saga was waiting for
attempt_expired    command_id — the saga stopped waiting for this command's reply
timer_set          timer_id, due_ms, key, n
timer_fired        timer_id
timer_cleared      timer_id
data_changed       data — the saga's new data
step_completed     step, action, pivot — a block finished (``action``: it is compensable history)
step_failed        step, reason
abandoned          step — a block stopped without finishing (its branch lost or the saga failed)
branch_taken       step, to, taken
join_opened        step
branch_ended       step, index, ok
signal_received    name, payload, step
signal_buffered    name, payload
signal_consumed    name
compensating       reason, outcome, queue — compensation begins, in ``queue`` order
undo_started       step
undo_phase         failures
undo_done          step
outcome            outcome, reason
finished           status, reason — terminal
terminated         by, reason — an operator ended the saga without compensating (``finished``
                   with status ``terminated`` follows)
resumed            step, by, previous_reason — a failed saga runs again from ``step``
pivot_awaited      step, outcome, reason, overdue — a cancel or deadline came while the pivot was
                   in flight: it is held until the pivot's answer (``overdue``: a deadline passed
                   unanswered, the saga is ``in-doubt`` and resends the same command)
cancel_refused     reason — a held cancel was refused: the pivot took effect
settled            step, done, by, reason — an operator decided an in-doubt pivot
child_cancelled    step, child_type, child_id, reason — the running child saga was asked to cancel
unwinding          step, queue — losing or failed branches of first-wins parallel ``step``: these
                   completed (or maybe completed) steps are undone now, in ``queue`` order
stuck              step, error, message, frames, input, fresh — the saga's own code raised on
                   ``input``: the saga keeps it and waits for an operator, its timers paused
                   (``fresh``: saga_type, version, data, seed of a start that raised, else None)
kept               input — an input that came while the saga was stuck, kept for its resume
unstuck            by, action — an operator resumed, cancelled, terminated or settled a stuck
                   saga: its status and timers come back, its kept inputs are applied again
refused            input, reason, record — written by the worker: an input for this saga id was
                   dead-lettered (undecodable, or in the wrong partition); ``record`` is where
                   it was (topic[partition]@offset)
parked             reason — written by the worker: no definition of the saga's version here
expired            retention_ms — written by the worker: a finished saga's retention ran out, and
                   its snapshot left the state topic (the state is gone)
=================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from sagas.engine.model import JournalEvent, ParentRef, SagaState, Status, Token

_T = TypeVar("_T", SagaState, Token)


def replace(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for the engine's frozen records, without its per-field checks:
    evolve makes several copies per event, and the generic version was the engine's top cost
    in profiles (the fields are never validated on construction anyway)."""
    unknown = changes.keys() - obj.__dataclass_fields__.keys()
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)}")
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


__all__ = ["evolve", "fold"]


def _drop_pending(state: SagaState, step: str) -> dict[str, str]:
    """``pending`` without ``step``'s block commands (its compensation in progress, if any, is
    kept: a step in a loop or a losing branch may be undone while its block still runs)."""
    undo = state.undo.cmd if state.undo is not None else None
    return {c: s for c, s in state.pending.items() if s != step or c == undo}


def _without(mapping: Any, key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _clear_cmd(state: SagaState, cid: str) -> SagaState:
    tokens = {
        k: (replace(t, cmd=None, sends=0, due=None) if t.cmd == cid else t)
        for k, t in state.tokens.items()
    }
    undo = state.undo
    if undo is not None and undo.cmd == cid:
        undo = replace(undo, cmd=None, sends=0)
    return replace(state, pending=_without(state.pending, cid), tokens=tokens, undo=undo)


def _set_cmd(state: SagaState, b: dict[str, Any]) -> SagaState:
    cid, step, sends = b["command_id"], b["step"], b.get("send", 1)
    pending = {**state.pending, cid: step}
    counters = {**state.counters, b["key"]: b["attempt"]}
    state = replace(state, pending=pending, counters=counters)
    if b.get("undo"):
        assert state.undo is not None  # invariant of the engine, not user input
        return replace(state, undo=replace(state.undo, cmd=cid, sends=sends))
    if step in state.tokens:
        token = replace(state.tokens[step], cmd=cid, sends=sends, due=b.get("deadline_ms"))
        state = replace(state, tokens={**state.tokens, step: token})
    return state


def evolve(state: SagaState | None, event: JournalEvent) -> SagaState | None:
    """The state after ``event``. Pure; ``ignored`` events return ``state`` unchanged."""
    t, b = event.type, event.body
    if t in ("ignored", "parked", "refused"):
        return state
    if t == "expired":  # a finished saga's retention ran out: it is gone
        return None
    if t == "started":
        parent = ParentRef.from_dict(b["parent"]) if b["parent"] else None
        return SagaState(
            saga_id=event.saga_id,
            saga_type=b["saga_type"],
            version=b["version"],
            status="running",
            data=b["data"],
            timers={},
            seed=b["seed"],
            started_ms=event.at_ms,
            updated_ms=event.at_ms,
            parent=parent,
            secret=b.get("secret", ""),
        )
    if t == "stuck" and state is None:  # a start raised: the saga holds it, not yet begun
        fresh = b["fresh"]
        return SagaState(
            saga_id=event.saga_id,
            saga_type=fresh["saga_type"],
            version=fresh["version"],
            status="stuck",
            data=fresh["data"],
            timers={},
            seed=fresh["seed"],
            started_ms=event.at_ms,
            updated_ms=event.at_ms,
            parent=ParentRef.from_dict(fresh["parent"]) if fresh["parent"] else None,
            stuck={**_error(event), "status": None, "timers": {}},
            kept=(b["input"],),
        )
    if state is None:
        return None
    s = replace(state, updated_ms=event.at_ms)
    match t:
        case "secret_set":
            return replace(s, secret=b["secret"])
        case (
            "note"
            | "branch_taken"
            | "signal_received"
            | "terminated"
            | "settled"
            | "child_cancelled"
            | "cancel_refused"
        ):
            return s
        case "pivot_awaited":
            s = replace(s, held=s.held or (b["outcome"], b["reason"]))
            return replace(s, status="in-doubt") if b["overdue"] else s
        case "unwinding":  # what the parallel's branches did in this round leaves the books
            gone, mark = set(b["queue"]), s.opened.get(b["step"], 0)
            cut = [i for i, c in enumerate(s.completed) if i >= mark and c in gone]
            completed = tuple(c for i, c in enumerate(s.completed) if i not in cut)
            opened = {k: m - sum(i < m for i in cut) for k, m in s.opened.items()}
            return replace(s, to_undo=(*s.to_undo, *b["queue"]), completed=completed, opened=opened)
        case "stuck":
            if s.stuck is not None:  # stuck again on an operator's input: a new error
                return replace(s, stuck={**s.stuck, **_error(event)})
            was = {"status": s.status, "timers": dict(s.timers)}
            stuck = {**_error(event), **was}
            return replace(s, status="stuck", timers={}, stuck=stuck, kept=(b["input"],))
        case "kept":
            return replace(s, kept=(*s.kept, b["input"]))
        case "unstuck":
            assert s.stuck is not None  # invariant of the engine
            if s.stuck["status"] is None:  # a start that raised: applied again from nothing
                return None
            status = cast(Status, s.stuck["status"])
            return replace(s, status=status, timers=s.stuck["timers"], stuck=None, kept=())
        case "resumed":
            return replace(s, status="running", outcome=None, reason=None)
        case "entered":
            return replace(s, tokens={**s.tokens, b["step"]: Token(b["step"], b["phase"])})
        case "phase":
            tok = replace(s.tokens[b["step"]], phase=b["phase"], failures=b["failures"])
            tok = replace(tok, checks=b["checks"])
            return replace(s, tokens={**s.tokens, b["step"]: tok})
        case "command_sent" | "child_started":
            return _set_cmd(s, b)
        case "reply_accepted" | "attempt_expired":
            return _clear_cmd(s, b["command_id"])
        case "timer_set":
            timers = {**s.timers, b["timer_id"]: b["due_ms"]}
            return replace(s, timers=timers, counters={**s.counters, b["key"]: b["n"]})
        case "timer_fired" | "timer_cleared":
            return replace(s, timers=_without(s.timers, b["timer_id"]))
        case "data_changed":
            return replace(s, data=b["data"])
        case "step_completed":
            step = b["step"]
            s = replace(s, tokens=_without(s.tokens, step), pending=_drop_pending(s, step))
            if step in s.opened:
                s = replace(s, opened=_without(s.opened, step))
            if b["action"]:
                s = replace(s, completed=(*s.completed, step), pivoted=s.pivoted or b["pivot"])
            if b["pivot"] and s.status == "in-doubt":
                s = replace(s, status="running")
            return replace(s, held=None) if b["pivot"] else s
        case "step_failed" | "abandoned":
            step = b["step"]
            return replace(
                s,
                tokens=_without(s.tokens, step),
                pending=_drop_pending(s, step),
                joins=_without(s.joins, step),
                opened=_without(s.opened, step) if step in s.opened else s.opened,
            )
        case "join_opened":
            opened = {**s.opened, b["step"]: len(s.completed)}
            return replace(s, joins={**s.joins, b["step"]: ((), ())}, opened=opened)
        case "branch_ended":
            ok, bad = s.joins[b["step"]]
            pair = ((*ok, b["index"]), bad) if b["ok"] else (ok, (*bad, b["index"]))
            return replace(s, joins={**s.joins, b["step"]: pair})
        case "signal_buffered":
            return replace(s, signals=(*s.signals, (b["name"], b["payload"])))
        case "signal_consumed":
            i = next(i for i, (name, _) in enumerate(s.signals) if name == b["name"])
            return replace(s, signals=s.signals[:i] + s.signals[i + 1 :])
        case "compensating":
            return replace(
                s,
                status="compensating",
                held=None,
                to_undo=tuple(b["queue"]),
                outcome=cast(Status, b["outcome"]),
                reason=b["reason"],
            )
        case "undo_started":
            return replace(s, undo=Token(b["step"], "undo"), to_undo=s.to_undo[1:])
        case "undo_phase":
            assert s.undo is not None  # invariant of the engine
            return replace(s, undo=replace(s.undo, failures=b["failures"]))
        case "undo_done":  # its reply was accepted: nothing of it is pending any more
            return replace(s, undo=None)
        case "outcome":
            return replace(s, outcome=cast(Status, b["outcome"]), reason=b["reason"])
        case "finished":
            return replace(
                s,
                status=cast(Status, b["status"]),
                reason=b["reason"],
                tokens={},
                pending={},
                timers={},
                joins={},
                opened={},
                undo=None,
                to_undo=(),
                held=None,
                stuck=None,
                kept=(),
            )
    raise ValueError(f"unknown journal event type {t!r}")


def _error(event: JournalEvent) -> dict[str, Any]:
    b = event.body
    keys = ("step", "error", "message", "frames")
    return {**{k: b[k] for k in keys}, "at_ms": event.at_ms}


def fold(program: object, events: Iterable[JournalEvent]) -> SagaState | None:
    """Rebuild a saga's state from all of its journal events, oldest first.

    ``program`` is accepted for symmetry with :func:`sagas.engine.transition`; events are
    self-contained, so it is not consulted.
    """
    state: SagaState | None = None
    for event in events:
        state = evolve(state, event)
    return state
