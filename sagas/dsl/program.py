"""A compiled saga: the step graph the engine runs, its topics and record types, and a diagram."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sagas.dsl.nodes import (
    RETRYABLE,
    Branch,
    Call,
    Child,
    LongRunning,
    Node,
    Parallel,
    Sleep,
    Step,
    WaitSignal,
)

__all__ = [
    "END",
    "RECORD_TYPES",
    "START",
    "BlockFace",
    "Program",
    "ProgramNode",
    "block_face",
    "join_of",
]

RECORD_TYPES = ("sagas.Payload", "sagas.Transition", "sagas.SagaState")
"""Avro record types every saga program writes (schemas live in ``schemas/``; the journal is
also read as ``sagas.JournalEvent``, the one record per event of earlier releases)."""


@dataclass(frozen=True)
class ProgramNode:
    """One block placed in the graph.

    Attributes:
        name: the block's unique name.
        block: the DSL block.
        next: the block that runs when this one finishes; ``None`` ends the enclosing list
            (the saga, or a parallel branch).
        targets: for a branch, the (then, otherwise) entries; for a parallel, each branch's
            entry. ``None`` means an empty list.
        scopes: the enclosing parallel branches, outermost first, as (parallel name, index).
        after_pivot: a pivot may have completed before this block runs.
    """

    name: str
    block: Node[Any]
    next: str | None
    targets: tuple[str | None, ...] = ()
    scopes: tuple[tuple[str, int], ...] = ()
    after_pivot: bool = False

    @property
    def waits(self) -> bool:
        """Whether the block waits for something (a reply, a timer, a signal, a child)."""
        return not isinstance(self.block, Branch)

    @property
    def compensation(self) -> Call[Any] | None:
        """The compensating command of a compensatable action, else ``None``."""
        b = self.block
        if isinstance(b, Step | LongRunning | Child) and b.kind == "compensatable":
            return b.compensate
        return None


@dataclass(frozen=True)
class Program:
    """An immutable, validated saga definition. Made by :func:`sagas.compile_saga`.

    Attributes:
        name: saga type name.
        version: definition version.
        deadline_ms: whole-saga deadline in milliseconds, if any.
        retention_ms: how long a finished saga is kept (``None``: forever).
        entry: the first block (``None`` only for a program made by hand with no blocks).
        nodes: every block by name.
        edges: (from, to, label) for drawing and analysis.
        topics: participant command topics the saga writes to.
        children: saga types it starts as children.
        record_types: the library's Avro record types it uses.
        payload_schemas: the Avro schema (as given) of each command type's payload; command
            types not listed travel as ``sagas.Payload``.
        reply_schemas: the Avro schemas (as given) participants may reply with.
        data_schema: the schema of the saga's data when ``Saga[T]`` names a ``TypedDict``
            (:mod:`sagas.dsl.datatype`): what a client checks a start against.
    """

    name: str
    version: int
    deadline_ms: int | None
    entry: str | None
    nodes: Mapping[str, ProgramNode]
    edges: tuple[tuple[str, str, str], ...]
    topics: tuple[str, ...]
    children: tuple[str, ...]
    record_types: tuple[str, ...] = RECORD_TYPES
    payload_schemas: Mapping[str, Any] = field(default_factory=dict)
    reply_schemas: tuple[Any, ...] = ()
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    data_schema: Mapping[str, Any] | None = None

    @property
    def fingerprint(self) -> str:
        """A digest of what this definition does (blocks, topics, commands, retries, deadlines,
        graph, schemas), not of its functions' code: see :mod:`sagas.dsl.fingerprint`."""
        from sagas.dsl.fingerprint import fingerprint

        return fingerprint(self)

    def graph(self) -> tuple[list[str], list[tuple[str, str, str]]]:
        """What every drawing of the flow draws: the vertices (:data:`START`, every block, the
        join of each parallel as :func:`join_of`, :data:`END`) and the edges (from, to, label),
        the one from :data:`START` first."""
        joins = [join_of(n) for n, node in self.nodes.items() if isinstance(node.block, Parallel)]
        edges = [(START, self.entry or END, "")]
        for src, dst, label in self.edges:
            edges.append((join_of(src) if label == "joined" else src, dst, label))
        for name, node in self.nodes.items():
            if node.next is not None:
                continue
            if isinstance(node.block, Branch) and None not in node.targets:
                continue
            edges.append((name, join_of(node.scopes[-1][0]) if node.scopes else END, ""))
        return [START, *self.nodes, *joins, END], edges

    def mermaid(self) -> str:
        """The flow as a Mermaid ``flowchart`` (paste it into a Markdown code block)."""
        ids = {name: f"n{i}" for i, name in enumerate(self.nodes)}
        vertices, edges = self.graph()

        def vid(vertex: str) -> str:
            if vertex in (START, END):
                return "start" if vertex == START else "finish"
            return ids[vertex] if vertex in ids else f"{ids[vertex[: -len(_JOIN)]]}_join"

        lines = ["flowchart TD", "    start((start))", "    finish((end))"]
        for name, node in self.nodes.items():
            face = block_face(node)
            lines.append(f"    {ids[name]}{_MERMAID_SHAPES[face.shape].format(face.label)}")
        (_, first, _), *rest = edges
        lines.append(f"    start --> {vid(first)}")
        lines += [f"    {vid(v)}((join))" for v in vertices if v.endswith(_JOIN)]
        for src, dst, label in rest:
            arrow = f"-->|{label}|" if label else "-->"
            lines.append(f"    {vid(src)} {arrow} {vid(dst)}")
        return "\n".join(lines) + "\n"


START, END = "(start)", "(end)"
"""The vertices of :meth:`Program.graph` where a saga starts and ends."""
_JOIN = " (join)"


def join_of(parallel: str) -> str:
    """The vertex of :meth:`Program.graph` where the branches of ``parallel`` join."""
    return parallel + _JOIN


@dataclass(frozen=True)
class BlockFace:
    """What a drawing shows of a block: made once per block type by :func:`block_face`, for
    every renderer (Mermaid here, the UI's SVG in :mod:`sagas.ui.diagram`).

    Attributes:
        shape: ``box``, ``subroutine``, ``flag``, ``rounded``, ``parallelogram`` or
            ``rhombus``.
        label: the whole text, the block's name first (``<br/>`` between lines).
        summary: what it does, in one short line, without its name.
    """

    shape: str
    label: str
    summary: str


_MERMAID_SHAPES = {
    "box": '["{}"]',
    "subroutine": '[["{}"]]',
    "flag": '>"{}"]',
    "rounded": '("{}")',
    "parallelogram": '[/"{}"/]',
    "rhombus": '{{"{}"}}',
}


def block_face(node: ProgramNode) -> BlockFace:
    """The face of ``node``'s block: the one place that knows how each block type is drawn."""
    match node.block:
        case Step() as b:
            summary = f"{b.command} → {b.topic}"
            label = f"{b.name}<br/>{summary}"
            if b.kind != "compensatable":
                label += f"<br/>({'retryable' if b.kind == RETRYABLE else b.kind})"
            elif b.compensate:
                label += f"<br/>undo: {b.compensate.command}"
            return BlockFace("box", label, summary)
        case LongRunning() as b:
            summary = f"{b.start.command}, poll {b.status.command}"
            label = f"{b.name}<br/>{summary}, cancel {b.cancel.command}"
            return BlockFace("subroutine", label, summary)
        case WaitSignal() as b:
            return _named("flag", b.name, f"wait for signal {b.signal}")
        case Sleep() as b:
            return _named("rounded", b.name, f"sleep {b.duration}")
        case Parallel() as b:
            return _named("parallelogram", b.name, f"parallel, join {b.join}")
        case Branch() as b:
            return BlockFace("rhombus", f"{b.name}?", "branch")
        case Child() as b:
            return _named("subroutine", b.name, f"child saga {b.saga}")
        case _:
            return BlockFace("box", node.name, "")


def _named(shape: str, name: str, summary: str) -> BlockFace:
    return BlockFace(shape, f"{name}: {summary}", summary)
