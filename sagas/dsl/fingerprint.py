"""A compiled definition's fingerprint: what the saga does, not how its functions are written.

Two workers that run the same saga type and version must run the same definition: a saga started
by one is continued by the other (after a rebalance, a restart, a rolling deploy). The fingerprint
covers every block's structure (names, kinds, topics, command types, retries, deadlines,
compensations, branches, the graph) and the payload schemas, and leaves out the code of payload
builders, merges and predicates: fixing a bug in a function keeps the fingerprint (and is how a
stuck saga gets going again); changing what the saga does changes it, and needs a new version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagas.dsl.program import Program

__all__ = ["fingerprint"]


def fingerprint(program: Program) -> str:
    """A short hex digest of ``program``'s structure (see the module docstring)."""
    body = {
        "name": program.name,
        "version": program.version,
        "deadline_ms": program.deadline_ms,
        "entry": program.entry,
        "nodes": {name: _face(node) for name, node in program.nodes.items()},
        "edges": [list(e) for e in program.edges],
        "payload_schemas": {k: _face(v) for k, v in sorted(program.payload_schemas.items())},
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _face(value: Any) -> Any:
    """``value`` as JSON, functions as a placeholder (their code may change freely)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, type):  # a payload schema, or a type used as a function (dict)
        if dataclasses.is_dataclass(value):
            return {f.name: str(f.type) for f in dataclasses.fields(value)}
        return "<function>"
    if dataclasses.is_dataclass(value):
        return {
            "block": type(value).__name__,
            **{f.name: _face(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, Mapping):
        return {str(k): _face(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_face(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    if callable(value):
        return "<function>"
    return repr(value)
