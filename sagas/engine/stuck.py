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
from collections.abc import Mapping
from typing import Any

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

__all__ = ["MAX_HELD", "error_fields", "input_from_dict", "input_to_dict", "stuck_step"]

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
