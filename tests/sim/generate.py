"""Random saga definitions that compile, drawn from every block.

A definition is first drawn as a plain spec (nested dicts, printable for a reproduction), then
built into :class:`~sagas.Saga` objects. The spec follows the compiler's rules: one pivot at the
top level (not in a parallel or a loop), only compensatable blocks before it, retryable ones
after it (each with its own deadline), every wait covered by a deadline.

Names are unique across a world (child saga types included), so data keys never collide. Each
step's reply may set the flags ``f0``..``f2`` that branches read; a loop counts its rounds in
``n-<its first step>``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sagas import (
    Retry,
    Saga,
    branch,
    call,
    child,
    goto,
    long_running,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.dsl import Call, Node

Spec = dict[str, Any]
Data = dict[str, Any]
FLAGS = ("f0", "f1", "f2")


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


@dataclass
class Drawer:
    """Draws one world's definitions: the parent type and the child types it runs."""

    rng: random.Random
    names: int = 0
    children: list[Spec] = field(default_factory=list)

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    # ------------------------------------------------------------------------ leaf blocks

    def retry(self, kind: str) -> Spec:
        r = self.rng
        return {
            "max_attempts": None if kind == "retryable" else r.randint(1, 4),
            "initial": r.choice([100, 500, 1000, 2000]),
            "multiplier": r.choice([1.0, 1.5, 2.0, 3.0]),
            "cap": r.choice([2000, 5000, 20000]),
            "jitter": r.choice([0.0, 0.2]),
            "non_retryable": ["Fatal"] if r.random() < 0.3 else [],
        }

    def deadline(self, kind: str, saga_deadline: bool, lo: int = 2000, hi: int = 20000) -> Any:
        if kind == "retryable" or not saga_deadline or self.rng.random() < 0.6:
            return self.rng.randint(lo, hi)
        return None

    def action(self, kind: str, ctx: Ctx) -> Spec:
        """A step, a long-running operation or a child saga of ``kind``."""
        r = self.rng.random()
        can_child = ctx.type_depth < 2 and len(self.children) < 3
        if r < 0.6 or (r >= 0.8 and not can_child):
            return {
                "t": "step",
                "name": self.name("s"),
                "kind": kind,
                "deadline": self.deadline(kind, ctx.saga_deadline),
                "retry": self.retry(kind),
            }
        if r < 0.8:
            return {
                "t": "lr",
                "name": self.name("op"),
                "kind": kind,
                "deadline": self.deadline(kind, ctx.saga_deadline, 5000, 60000),
                "every": self.rng.choice([500, 1000, 3000]),
                "checks": self.rng.randint(1, 4),
                "retry": self.retry(kind),
            }
        kid = self.saga(self.name("kid"), type_depth=ctx.type_depth + 1)
        self.children.append(kid)
        return {
            "t": "child",
            "name": self.name("c"),
            "saga": kid["name"],
            "kind": kind,
            "deadline": self.deadline(kind, ctx.saga_deadline, 5000, 120000),
            "parent_close": "abandon" if not ctx.in_first and self.rng.random() < 0.2 else "cancel",
        }

    # ------------------------------------------------------------------------------ lists

    def blocks(self, kind: str, ctx: Ctx, length: int, depth: int) -> list[Spec]:
        """``length`` blocks whose actions are all of ``kind`` (compensatable or retryable)."""
        out: list[Spec] = []
        for _ in range(length):
            r = self.rng.random()
            if depth >= 2 or r < 0.45:
                out.append(self.action(kind, ctx))
            elif r < 0.55:
                out.append(
                    {"t": "wait", "name": self.name("w"), "timeout": self.rng.randint(2000, 30000)}
                )
            elif r < 0.62:
                out.append(
                    {"t": "sleep", "name": self.name("z"), "ms": self.rng.randint(200, 8000)}
                )
            elif r < 0.77:
                # Not after the pivot: a losing branch's retryable work could not be undone.
                # Nor in a loop: the compiler refuses a first-wins race there.
                first = kind == "compensatable" and not ctx.in_loop and self.rng.random() < 0.5
                inner = Ctx(ctx.saga_deadline, ctx.type_depth, ctx.in_first or first, ctx.in_loop)
                arms = [
                    self.blocks(kind, inner, self.rng.randint(1, 2), depth + 1)
                    for _ in range(self.rng.randint(2, 3))
                ]
                join = "first" if first else "all"
                out.append({"t": "par", "name": self.name("par"), "join": join, "branches": arms})
            elif r < 0.9:
                then = self.blocks(kind, ctx, self.rng.randint(1, 2), depth + 1)
                otherwise = self.blocks(kind, ctx, self.rng.randint(0, 1), depth + 1)
                out.append(
                    {
                        "t": "branch",
                        "name": self.name("b"),
                        "flag": self.rng.choice(FLAGS),
                        "then": then,
                        "otherwise": otherwise,
                    }
                )
            else:
                head = {
                    "t": "step",
                    "name": self.name("s"),
                    "kind": kind,
                    "deadline": self.deadline(kind, ctx.saga_deadline),
                    "retry": self.retry(kind),
                }
                in_loop = Ctx(ctx.saga_deadline, ctx.type_depth, ctx.in_first, True)
                body = self.blocks(kind, in_loop, self.rng.randint(0, 1), depth + 1)
                out.append(
                    {"t": "loop", "head": head, "body": body, "times": self.rng.randint(1, 3)}
                )
        return out

    def saga(self, name: str, type_depth: int = 0) -> Spec:
        """A saga type: compensatable blocks, maybe a pivot, then retryable blocks."""
        r = self.rng
        saga_deadline = r.random() < 0.75
        ctx = Ctx(saga_deadline, type_depth, False)
        before = self.blocks("compensatable", ctx, r.randint(0 if r.random() < 0.3 else 1, 4), 0)
        spec: Spec = {
            "name": name,
            "deadline": r.randint(10000, 200000) if saga_deadline else None,
            "before": before,
            "pivot": None,
            "after": [],
        }
        if r.random() < 0.8 or not before:
            spec["pivot"] = self.action("pivot", ctx)
            spec["after"] = self.blocks("retryable", ctx, r.randint(0, 3), 1)
        return spec


@dataclass(frozen=True)
class Ctx:
    """Where blocks are drawn: under a saga deadline, at which child depth, in a first-wins,
    in a loop."""

    saga_deadline: bool
    type_depth: int
    in_first: bool
    in_loop: bool = False


def draw_world(rng: random.Random) -> list[Spec]:
    """The specs of one world: the parent type first, then the child types it may start."""
    drawer = Drawer(rng)
    parent = drawer.saga("main")
    return [parent, *drawer.children]


# ------------------------------------------------------------------------------------ building


def _retry(spec: Spec) -> Retry:
    return Retry(
        max_attempts=spec["max_attempts"],
        initial=ms(spec["initial"]),
        multiplier=spec["multiplier"],
        cap=ms(spec["cap"]),
        jitter=spec["jitter"],
        non_retryable=tuple(spec["non_retryable"]),
    )


def _opt(n: int | None) -> timedelta | None:
    return None if n is None else ms(n)


def _state_is(value: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda r: r.get("state") == value


def _no_payload(_: Data) -> dict[str, Any]:
    return {}


def _count(key: str) -> Callable[[Data, Mapping[str, Any]], Data]:
    return lambda d, r: {**d, **r, key: int(d.get(key, 0)) + 1}


def _below(key: str, times: int) -> Callable[[Data], bool]:
    return lambda d: int(d.get(key, 0)) < times


def _flag(key: str) -> Callable[[Data], bool]:
    return lambda d: bool(d.get(key))


def _action(s: Spec, merge: Any = None) -> Node[Data]:
    kind = s["kind"]
    name = s["name"]
    undo: Call[Data] | None = call(f"Undo-{name}") if kind == "compensatable" else None
    if s["t"] == "step":
        return step(
            name,
            to=f"{name}.commands",
            command=f"Do-{name}",
            compensate=undo,
            kind=kind,
            deadline=_opt(s["deadline"]),
            retry=_retry(s["retry"]),
            merge=merge,
        )
    if s["t"] == "lr":
        return long_running(
            name,
            to=f"{name}.commands",
            start=call(f"Start-{name}"),
            status=call(f"Status-{name}"),
            cancel=call(f"Cancel-{name}"),
            every=ms(s["every"]),
            done=_state_is("done"),
            failed=_state_is("failed"),
            cancelled=_state_is("cancelled"),
            deadline=_opt(s["deadline"]),
            checks=s["checks"],
            compensate=undo,
            kind=kind,
            retry=_retry(s["retry"]),
        )
    kid_undo: Call[Data] | None = None
    if kind == "compensatable":
        kid_undo = call(f"Undo-{name}", to=f"{name}.commands")
    return child(
        name,
        saga=s["saga"],
        input=_no_payload,
        compensate=kid_undo,
        kind=kind,
        deadline=_opt(s["deadline"]),
        parent_close=s["parent_close"],
    )


def _blocks(specs: list[Spec]) -> list[Node[Data]]:
    out: list[Node[Data]] = []
    for s in specs:
        t = s["t"]
        if t in ("step", "lr", "child"):
            out.append(_action(s))
        elif t == "wait":
            out.append(wait_signal(s["name"], timeout=ms(s["timeout"])))
        elif t == "sleep":
            out.append(sleep(s["name"], ms(s["ms"])))
        elif t == "par":
            out.append(parallel(s["name"], *(_blocks(b) for b in s["branches"]), join=s["join"]))
        elif t == "branch":
            out.append(
                branch(
                    s["name"],
                    _flag(s["flag"]),
                    then=_blocks(s["then"]),
                    otherwise=_blocks(s["otherwise"]),
                )
            )
        elif t == "loop":
            head = s["head"]
            key = f"n-{head['name']}"
            again = branch(
                f"{head['name']}-again", _below(key, s["times"]), then=[goto(head["name"])]
            )
            out += [_action(head, merge=_count(key)), *_blocks(s["body"]), again]
    return out


def build(spec: Spec) -> Saga[Data]:
    """The saga a spec describes."""
    steps = _blocks(spec["before"])
    if spec["pivot"] is not None:
        steps += [_action(spec["pivot"]), *_blocks(spec["after"])]
    return Saga[Data](
        spec["name"], version=1, deadline=_opt(spec["deadline"]), steps=steps, retention=None
    )


def walk(specs: list[Spec]) -> list[Spec]:
    """Every block spec in ``specs``, nested ones included."""
    out: list[Spec] = []
    for s in specs:
        if s["t"] == "loop":
            out.append(s["head"])
            out += walk(s["body"])
            continue
        out.append(s)
        if s["t"] == "par":
            for b in s["branches"]:
                out += walk(b)
        elif s["t"] == "branch":
            out += walk(s["then"]) + walk(s["otherwise"])
    return out


def blocks_of(spec: Spec) -> list[Spec]:
    """Every block spec of a saga spec, the pivot included."""
    pivot = [spec["pivot"]] if spec["pivot"] else []
    return walk(spec["before"]) + pivot + walk(spec["after"])
