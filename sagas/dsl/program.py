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

__all__ = ["RECORD_TYPES", "Program", "ProgramNode"]

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

    def mermaid(self) -> str:
        """The flow as a Mermaid ``flowchart`` (paste it into a Markdown code block)."""
        ids = {name: f"n{i}" for i, name in enumerate(self.nodes)}
        lines = ["flowchart TD", "    start((start))", "    finish((end))"]
        for name, node in self.nodes.items():
            lines.append(f"    {ids[name]}{_shape(node)}")
        first = ids[self.entry] if self.entry else "finish"
        lines.append(f"    start --> {first}")
        joins = {n for n, node in self.nodes.items() if isinstance(node.block, Parallel)}
        for name in joins:
            lines.append(f"    {ids[name]}_join((join))")
        for src, dst, label in self.edges:
            arrow = f"-->|{label}|" if label else "-->"
            tail = "_join" if label == "joined" else ""
            lines.append(f"    {ids[src]}{tail} {arrow} {ids[dst]}")
        for name, node in self.nodes.items():
            if node.next is not None:
                continue
            if isinstance(node.block, Branch) and None not in node.targets:
                continue
            end = f"{ids[node.scopes[-1][0]]}_join" if node.scopes else "finish"
            lines.append(f"    {ids[name]} --> {end}")
        return "\n".join(lines) + "\n"


def _shape(node: ProgramNode) -> str:
    b = node.block
    if isinstance(b, Step):
        text = f"{b.name}<br/>{b.command} → {b.topic}"
        if b.kind != "compensatable":
            text += f"<br/>({'retryable' if b.kind == RETRYABLE else b.kind})"
        elif b.compensate:
            text += f"<br/>undo: {b.compensate.command}"
        return f'["{text}"]'
    if isinstance(b, LongRunning):
        ops = f"{b.start.command}, poll {b.status.command}, cancel {b.cancel.command}"
        return f'[["{b.name}<br/>{ops}"]]'
    if isinstance(b, WaitSignal):
        return f'>"{b.name}: wait for signal {b.signal}"]'
    if isinstance(b, Sleep):
        return f'("{b.name}: sleep {b.duration}")'
    if isinstance(b, Parallel):
        return f'[/"{b.name}: parallel, join {b.join}"/]'
    if isinstance(b, Branch):
        return f'{{"{b.name}?"}}'
    if isinstance(b, Child):
        return f'[["{b.name}: child saga {b.saga}"]]'
    return f'["{node.name}"]'
