"""Compile a :class:`~sagas.dsl.Saga` into a validated, immutable :class:`~sagas.dsl.Program`.

Lists of blocks become a graph: each block knows the block that follows it, a branch knows the
entries of its two lists, a parallel knows the entries of its branches, and a ``goto`` is just an
edge. Every check then runs on that graph (reachability, strongly connected components, what
follows a pivot), so loops and nested lists need no special cases. Each error names the saga, the
step and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sagas.dsl.datatype import schema_of
from sagas.dsl.nodes import (
    RETRYABLE,
    Branch,
    Child,
    Goto,
    LongRunning,
    Node,
    Parallel,
    Step,
    WaitSignal,
)
from sagas.dsl.program import Program, ProgramNode
from sagas.errors import DefinitionError

if TYPE_CHECKING:  # a Saga compiles itself through this module (Saga.compile)
    from sagas.dsl.saga import Saga

__all__ = ["compile", "compile_saga"]

_Scopes = tuple[tuple[str, int], ...]
_SAGA_FIELDS = ("name", "version", "steps", "deadline", "retention")
"""What the compiler reads of a :class:`~sagas.dsl.Saga`."""


class _Layout:
    def __init__(self, saga: str) -> None:
        self.saga = saga
        self.nodes: dict[str, ProgramNode] = {}
        self.order: list[str] = []
        self.gotos: list[tuple[str, _Scopes, str | None]] = []

    def lay(
        self, blocks: Sequence[Node[Any]], after: str | None, scopes: _Scopes, owner: str | None
    ) -> str | None:
        cont = after
        for b in reversed(blocks):
            if isinstance(b, Goto):
                self.gotos.append((b.target, scopes, owner))
                cont = b.target
                continue
            if b.name in self.nodes:
                raise DefinitionError(
                    "two steps share this name: give each step a unique name",
                    saga=self.saga,
                    step=b.name,
                )
            targets: tuple[str | None, ...] = ()
            self.nodes[b.name] = ProgramNode(b.name, b, cont)  # reserve the name
            if isinstance(b, Branch):
                targets = (
                    self.lay(b.then, cont, scopes, b.name),
                    self.lay(b.otherwise, cont, scopes, b.name),
                )
            elif isinstance(b, Parallel):
                targets = tuple(
                    self.lay(branch, None, (*scopes, (b.name, i)), b.name)
                    for i, branch in enumerate(b.branches)
                )
            self.nodes[b.name] = ProgramNode(b.name, b, cont, targets, scopes)
            self.order.append(b.name)
            cont = b.name
        return cont


def _edges(nodes: Mapping[str, ProgramNode]) -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for name, node in nodes.items():
        if isinstance(node.block, Branch):
            for target, label in zip(node.targets, ("yes", "no"), strict=True):
                if target is not None:
                    edges.append((name, target, label))
            continue
        if isinstance(node.block, Parallel):
            edges.extend((name, t, f"branch {i + 1}") for i, t in enumerate(node.targets) if t)
            if node.next is not None:
                edges.append((name, node.next, "joined"))
            continue
        if node.next is not None:
            edges.append((name, node.next, ""))
    return edges


def _reach(start: Iterable[str], succ: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(succ[n])
    return seen


def _sccs(names: list[str], succ: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on.add(v)
            if i < len(succ[v]):
                work.append((v, i + 1))
                w = succ[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp: set[str] = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def compile_saga(saga: Saga[Any]) -> Program:
    """Validate a saga definition's graph and return its immutable program.

    The blocks themselves were checked when the :class:`~sagas.dsl.Saga` was made.

    Raises:
        DefinitionError: the definition is wrong; the message names the saga, the step and the fix.
    """
    if not all(hasattr(saga, a) for a in _SAGA_FIELDS):
        raise DefinitionError(
            f"compile_saga() takes a Saga, got {type(saga).__name__}: pass Saga(name, ...)"
        )
    s = saga.name
    layout = _Layout(s)
    entry = layout.lay(saga.steps, None, (), None)
    nodes = layout.nodes
    names = list(reversed(layout.order))

    for target, scopes, owner in layout.gotos:
        if target not in nodes:
            known = ", ".join(names) or "none"
            raise DefinitionError(
                f"goto({target!r}) refers to an unknown step; known steps: {known}",
                saga=s,
                step=owner,
            )
        if nodes[target].scopes != scopes:
            raise DefinitionError(
                f"goto({target!r}) leaves or enters a parallel branch; "
                "jump only to steps in the same list or an enclosing one outside any parallel",
                saga=s,
                step=owner,
            )
    if entry is not None and entry not in nodes:  # a list that is only a goto
        raise DefinitionError(f"the saga starts with goto({entry!r}); remove it", saga=s)

    edges = _edges({n: nodes[n] for n in names})
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst, _ in edges:
        succ[src].append(dst)

    reachable = _reach([entry] if entry else [], succ)
    for name in names:
        if name not in reachable:
            raise DefinitionError(
                "this step can never run (it follows a goto, so nothing leads to it); "
                "remove it, or move it before the goto, or goto it",
                saga=s,
                step=name,
            )

    in_loops: set[str] = set()
    for comp in _sccs(names, succ):
        cyclic = len(comp) > 1 or any(n in succ[n] for n in comp)
        if not cyclic:
            continue
        in_loops |= comp
        loop = " → ".join(n for n in names if n in comp)
        exits = any(
            isinstance(nodes[n].block, Branch)
            and any(t is None or t not in comp for t in nodes[n].targets)
            for n in comp
        )
        if not exits:
            raise DefinitionError(
                f"the loop {loop} can't end: no branch in it leads out of it; "
                "add a branch() whose other list leaves the loop",
                saga=s,
                step=min(comp, key=names.index),
            )
        if not any(nodes[n].waits for n in comp):
            raise DefinitionError(
                f"the loop {loop} never waits, so it would spin forever in one transition; "
                "put a step, a sleep or a signal wait inside it",
                saga=s,
                step=min(comp, key=names.index),
            )

    for name in names:
        if _join(nodes[name]) == "first" and name in in_loops:
            raise DefinitionError(
                "a first-wins parallel cannot be inside a loop: a compensation undoes everything "
                "its step did, so undoing one round's losing branches would undo what earlier "
                "rounds kept; move the parallel out of the loop, or use join='all'",
                saga=s,
                step=name,
            )

    after_pivot: set[str] = set()
    actions = [n for n in names if isinstance(nodes[n].block, Step | LongRunning | Child)]
    for name in actions:
        b = nodes[name].block
        assert isinstance(b, Step | LongRunning | Child)  # narrowing, not validation
        if b.kind == "compensatable" and b.compensate is None:
            raise DefinitionError(
                "a compensatable step needs a compensation: add compensate=call('<UndoCommand>', "
                "...), or declare kind='pivot' (or kind='retryable' after the pivot) "
                "if it cannot be undone",
                saga=s,
                step=name,
            )
        if b.kind == RETRYABLE and not isinstance(b, Child) and b.retry.max_attempts is not None:
            raise DefinitionError(
                "a retryable step is retried until it succeeds: remove max_attempts from its "
                "Retry (use Retry(max_attempts=None, ...))",
                saga=s,
                step=name,
            )
        if isinstance(b, Child) and b.compensate is not None and b.compensate.topic is None:
            raise DefinitionError(
                "a child step's compensation has no step topic to go to: "
                "add to='<topic>' to its call(...)",
                saga=s,
                step=name,
            )
        first = [p for p, _ in nodes[name].scopes if _join(nodes[p]) == "first"]
        if first and b.kind != "pivot" and b.compensate is None:
            raise DefinitionError(
                f"a step inside the first-wins parallel {first[-1]!r} must be undoable: when "
                "another branch wins, its work is compensated; add compensate=call(...), or "
                "use join='all'",
                saga=s,
                step=name,
            )
        if first and isinstance(b, Child) and b.parent_close != "cancel":
            raise DefinitionError(
                f"a child saga inside the first-wins parallel {first[-1]!r} is cancelled when "
                "another branch wins: remove parent_close='abandon', or use join='all'",
                saga=s,
                step=name,
            )
        if b.kind != "pivot":
            continue
        if nodes[name].scopes:
            raise DefinitionError(
                "a pivot cannot run inside parallel(): the other branches could still need "
                "compensating after it; move the pivot after the join",
                saga=s,
                step=name,
            )
        later = _reach(succ[name], succ)
        if name in later:
            raise DefinitionError(
                "a pivot cannot be inside a loop (it would run twice); move it out of the loop",
                saga=s,
                step=name,
            )
        after_pivot |= later
        for other in (n for n in names if n in later):
            ob = nodes[other].block
            if not isinstance(ob, Step | LongRunning | Child):
                continue
            if ob.kind == "pivot":
                raise DefinitionError(
                    f"a saga has one pivot, but pivot {other!r} can follow pivot {name!r}; "
                    "make the later one kind='retryable'",
                    saga=s,
                    step=other,
                )
            if ob.kind == "compensatable":
                raise DefinitionError(
                    f"compensatable step after the pivot {name!r}: it could never be compensated; "
                    "move it before the pivot or make it kind='retryable'",
                    saga=s,
                    step=other,
                )
    for name in actions:
        b = nodes[name].block
        if (
            isinstance(b, Step | LongRunning | Child)
            and b.kind == RETRYABLE
            and name not in after_pivot
        ):
            pivots = [n for n in _reach(succ[name], succ) if _kind(nodes[n]) == "pivot"]
            if pivots:
                raise DefinitionError(
                    f"retryable step before the pivot {pivots[0]!r}: it cannot be undone if the "
                    "saga compensates; make it compensatable or move it after the pivot",
                    saga=s,
                    step=name,
                )

    for name in actions:
        b = nodes[name].block
        assert isinstance(b, Step | LongRunning | Child)  # narrowing, not validation
        if b.deadline is not None:
            continue
        if name in after_pivot:
            raise DefinitionError(
                "this step runs after the pivot, where the saga deadline no longer applies, and "
                "has no deadline of its own: add deadline=timedelta(...) to the step",
                saga=s,
                step=name,
            )
        if saga.deadline is None:
            raise DefinitionError(
                "this step waits for a reply but no deadline covers it: add "
                "deadline=timedelta(...) to the step, or a deadline to the saga",
                saga=s,
                step=name,
            )

    final = {
        n: ProgramNode(
            n, nodes[n].block, nodes[n].next, nodes[n].targets, nodes[n].scopes, n in after_pivot
        )
        for n in names
    }
    topics: list[str] = []
    children: list[str] = []
    for node in final.values():
        b = node.block
        if isinstance(b, Step | LongRunning):
            topics.append(b.topic)
        if isinstance(b, LongRunning):
            topics.extend(c.topic for c in (b.start, b.status, b.cancel) if c.topic)
        if isinstance(b, Child):
            children.append(b.saga)
        if isinstance(b, Step | LongRunning | Child) and b.compensate and b.compensate.topic:
            topics.append(b.compensate.topic)
        if isinstance(b, WaitSignal):
            pass
    deadline_ms = None if saga.deadline is None else _ms(saga.deadline.total_seconds())
    retention_ms = None if saga.retention is None else _ms(saga.retention.total_seconds())
    payload_schemas, reply_schemas = _schemas(s, final)
    return Program(
        name=s,
        version=saga.version,
        deadline_ms=deadline_ms,
        retention_ms=retention_ms,
        entry=entry,
        nodes=final,
        edges=tuple(edges),
        topics=tuple(dict.fromkeys(topics)),
        children=tuple(dict.fromkeys(children)),
        payload_schemas=payload_schemas,
        reply_schemas=tuple(reply_schemas),
        data_schema=schema_of(getattr(saga, "data_type", None)),
    )


def _schemas(saga: str, nodes: Mapping[str, ProgramNode]) -> tuple[dict[str, Any], list[Any]]:
    """The payload schema per command type and the reply schemas the saga names (resolved and
    registered by :class:`sagas.app.App`, outside this pure package).

    Raises:
        DefinitionError: one command type has two payload schemas.
    """
    payloads: dict[str, Any] = {}
    replies: list[Any] = []

    def add(command: str, spec: Any, reply: Any, step: str) -> None:
        if spec is not None and payloads.setdefault(command, spec) != spec:
            raise DefinitionError(
                f"command {command} has two payload schemas, {payloads[command]!r} and "
                f"{spec!r}; one command type has one schema",
                saga=saga,
                step=step,
            )
        if reply is not None and reply not in replies:
            replies.append(reply)

    for name, node in nodes.items():
        b = node.block
        if isinstance(b, Step):
            add(b.command, b.payload_schema, b.reply_schema, name)
        calls = [b.start, b.status, b.cancel] if isinstance(b, LongRunning) else []
        if isinstance(b, Step | LongRunning | Child) and b.compensate is not None:
            calls.append(b.compensate)
        for c in calls:
            add(c.command, c.schema, c.reply_schema, name)
    return payloads, replies


def _join(node: ProgramNode) -> str | None:
    return node.block.join if isinstance(node.block, Parallel) else None


def _kind(node: ProgramNode) -> str | None:
    b = node.block
    return b.kind if isinstance(b, Step | LongRunning | Child) else None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


compile = compile_saga
"""The former name of :func:`compile_saga`, kept working as an alias. It shadows the built-in
``compile`` where it is imported unqualified, so new code should write ``compile_saga``."""
