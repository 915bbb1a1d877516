"""A saga stuck on an error in its own code, and the inputs it holds until an operator acts.

User code runs inside a transition: payload builders, ``merge`` functions, branch predicates;
the runtime then writes the payloads with their schemas. When any of it raises, the input is not
lost and the saga does not wait silently for a deadline: the transition is rolled back and the
saga becomes ``stuck`` (journaled ``stuck``: the step, the exception's type and message, its
last frames). The input that raised is kept in the state; inputs that come while it is stuck
(replies, signals) are kept after it (``stashed``), in order; its timers pause.

An operator then decides: ``resume`` (after a fix is deployed) applies the kept inputs again, in
order; ``cancel`` (compensate), ``terminate`` or ``settle`` is applied first, then the kept
inputs. Either way ``unstuck`` restores the status and timers the saga had, and a kept input that
raises again makes it stuck again, holding the rest.
"""

from __future__ import annotations

import traceback
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sagas.engine.model import (
    Cancel,
    Input,
    JsonDict,
    ParentRef,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    Start,
    Terminate,
    TimerFired,
)
from sagas.errors import DefinitionError

if TYPE_CHECKING:
    from sagas.engine.context import Ctx

__all__ = [
    "MAX_HELD",
    "Decide",
    "decide_or_stick",
    "error_fields",
    "input_from_dict",
    "input_to_dict",
    "on_stuck",
    "stick",
    "stuck_step",
]

Decide = Callable[["Ctx", Input], None]
"""The engine's decision on one input (:func:`sagas.engine.decide.transition` passes its own)."""

MAX_HELD = 1000
"""Inputs a stuck saga keeps at most after the one that raised (more are ignored, journaled)."""
_FRAMES = 8

_KINDS: dict[str, type[Input]] = {
    "start": Start,
    "reply": Reply,
    "timer": TimerFired,
    "signal": Signal,
    "cancel": Cancel,
    "terminate": Terminate,
    "resume": Resume,
    "settle": Settle,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def input_to_dict(inp: Input) -> JsonDict:
    """An input as JSON-compatible primitives, ``kind`` naming its type."""
    d: JsonDict = {"kind": _NAMES[type(inp)], **vars(inp)}
    if isinstance(inp, Start):
        d["parent"] = inp.parent.to_dict() if inp.parent else None
    return d


def input_from_dict(d: Mapping[str, Any]) -> Input:
    """Inverse of :func:`input_to_dict`."""
    fields = {k: v for k, v in d.items() if k != "kind"}
    cls = _KINDS[str(d["kind"])]
    if cls is Start and fields.get("parent"):
        fields["parent"] = ParentRef.from_dict(fields["parent"])
    return cls(**fields)


def error_fields(exc: BaseException) -> JsonDict:
    """What a person needs to see of an error in user code: its type, message and last frames.

    A :class:`DefinitionError` wrapping the user's exception (a payload builder raised) shows
    the user's exception's type and frames, and its own message, which names the saga and step.
    """
    origin = exc.__cause__ if isinstance(exc, DefinitionError) and exc.__cause__ else exc
    frames = traceback.extract_tb(origin.__traceback__)[-_FRAMES:]
    return {
        "error": type(origin).__name__,
        "message": str(exc) if origin is not exc else f"{type(exc).__name__}: {exc}",
        "frames": [f"{f.filename}:{f.lineno} in {f.name}: {f.line or ''}".rstrip() for f in frames],
    }


def stuck_step(state: SagaState | None, inp: Input, exc: BaseException) -> str | None:
    """The step the error belongs to: the one named by the error, else the input's."""
    named = getattr(exc, "step", None)  # DefinitionError, PayloadSchemaError
    if isinstance(named, str) and named:
        return named
    if state is None:
        return None
    if isinstance(inp, Reply):
        return state.pending.get(inp.command_id)
    if isinstance(inp, TimerFired):
        return inp.timer_id.rsplit(":", 2)[0]
    return None


# ------------------------------------------------------------------------ stuck and unstuck


def decide_or_stick(ctx: Ctx, inp: Input, decide: Decide) -> bool:
    """Decide ``inp``; if the saga's code raises, undo what it decided and make it stuck."""
    before, mark = ctx.s, len(ctx.events)
    try:
        decide(ctx, inp)
    except Exception as exc:  # user code (payload, merge, branch): never lose the input
        ctx.s = before
        del ctx.events[mark:]
        stick(ctx, inp, exc)
        return False
    return True


def stick(ctx: Ctx, inp: Input, exc: BaseException) -> None:
    """Journal ``stuck``: the saga keeps ``inp`` (a saga already stuck records the new error)."""
    st = ctx.s
    fresh = None
    if st is None:
        assert isinstance(inp, Start)  # only a start does anything to a saga that is not there
        fresh = {
            "saga_type": ctx.p.name,
            "version": ctx.p.version,
            "data": inp.data,
            "seed": zlib.crc32(inp.saga_id.encode()),
            "parent": inp.parent.to_dict() if inp.parent else None,
        }
    again = st is not None and st.stuck is not None  # an operator's input failed: no new input
    ctx.emit(
        "stuck",
        step=stuck_step(st, inp, exc),
        **error_fields(exc),
        input=None if again else input_to_dict(inp),
        fresh=fresh,
    )


def on_stuck(ctx: Ctx, inp: Input, decide: Decide) -> None:
    """A stuck saga keeps replies and signals, pauses its timers, and waits for an operator."""
    st = ctx.st
    assert st.stuck is not None  # a stuck saga has its error
    if isinstance(inp, Reply | Signal):
        if len(st.kept) > MAX_HELD:
            ctx.ignore(inp, f"the saga is stuck and keeps {MAX_HELD} inputs already")
        else:
            ctx.emit("kept", input=input_to_dict(inp))
        return
    if isinstance(inp, TimerFired):
        ctx.ignore(inp, "the saga is stuck: its timers wait until it is resumed")
        return
    if isinstance(inp, Start):
        ctx.ignore(inp, "the saga already exists (stuck: resume or cancel it)")
        return
    kept = [input_from_dict(k) for k in st.kept]
    action = type(inp).__name__.lower()
    by = inp.reason if isinstance(inp, Cancel) else inp.by
    if st.stuck["status"] is None and not isinstance(inp, Resume):  # a start that raised
        if isinstance(inp, Settle):
            ctx.ignore(inp, "the saga never began: there is nothing to settle")
            return
        status = "cancelled" if isinstance(inp, Cancel) else "terminated"
        ctx.emit("finished", status=status, reason=f"{status} while stuck before its start: {by}")
        return
    ctx.emit("unstuck", action=action, by=by)
    queue = kept if isinstance(inp, Resume) else [inp, *kept]
    for i, held in enumerate(queue):
        if not decide_or_stick(ctx, held, decide):
            for rest in queue[i + 1 :]:
                ctx.emit("kept", input=input_to_dict(rest))
            return
