"""The saga's data type as a schema a client checks a start's data against, before writing it.

``Saga[Order](...)`` names the type of the saga's data. When ``Order`` is a ``TypedDict``, the
compiled program carries its schema (:func:`schema_of`: required and optional keys and their
types, as JSON), the workers record it beside the definition's fingerprint, and
:meth:`sagas.client.SagaClient.start` refuses data that does not fit (:func:`problems`), naming
each problem, so a start that would break a payload builder three steps later is refused at once.

Understood: ``str``, ``int``, ``float`` (an int fits), ``bool``, ``None``, ``Any``, ``list[X]``,
``dict[str, X]``, ``X | Y``, ``Optional[X]``, ``Literal[...]``, ``NotRequired``/``Required`` and
nested ``TypedDict``; anything else is accepted as is.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["problems", "schema_of"]

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_of(data_type: object) -> dict[str, Any] | None:
    """The schema of a ``TypedDict`` data type; ``None`` for any other type (nothing checked)."""
    if not typing.is_typeddict(data_type):
        return None
    return _schema(data_type, 0)


def _schema(tp: Any, depth: int) -> dict[str, Any]:
    if depth > 8:  # a recursive type: accept below this depth
        return {}
    if tp is Any or tp is object:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if typing.is_typeddict(tp):
        return {
            "type": "object",
            "title": tp.__name__,
            "required": sorted(_required(tp)),
            "properties": {k: _schema(v, depth + 1) for k, v in typing.get_type_hints(tp).items()},
        }
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, depth + 1) for a in args]}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        return {"type": "array", **({"items": _schema(args[0], depth + 1)} if args else {})}
    if origin in (dict, Mapping) or tp is dict:
        value = _schema(args[1], depth + 1) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value}
    return {}


def _required(tp: Any) -> set[str]:
    """The required keys of a TypedDict, read from its resolved hints (``__required_keys__``
    misses ``NotRequired`` written as a string, as ``from __future__ import annotations``
    makes every annotation)."""
    required: set[str] = set()
    for key, hint in typing.get_type_hints(tp, include_extras=True).items():
        origin = typing.get_origin(hint)
        if origin is typing.Required or (origin is not typing.NotRequired and tp.__total__):
            required.add(key)
    return required


def problems(schema: Mapping[str, Any], data: object, where: str = "data") -> list[str]:
    """What in ``data`` does not fit ``schema``, one line each (empty: it fits)."""
    if "anyOf" in schema:
        options = schema["anyOf"]
        if any(not problems(o, data, where) for o in options):
            return []
        return [f"{where} is {_kind(data)}, not {_name(schema)}"]
    if "enum" in schema:
        allowed = schema["enum"]
        return [] if data in allowed else [f"{where} is {data!r}, not one of {allowed}"]
    kind = schema.get("type")
    if kind is None:
        return []
    if not _fits(kind, data):
        return [f"{where} is {_kind(data)}, not {_name(schema)}"]
    found: list[str] = []
    if kind == "array" and "items" in schema and isinstance(data, list | tuple):
        for i, item in enumerate(data):
            found += problems(schema["items"], item, f"{where}[{i}]")
    if kind == "object" and isinstance(data, Mapping):
        for key in schema.get("required", ()):
            if key not in data:
                prop = schema.get("properties", {}).get(key, {})
                found.append(f"{where} has no {key!r} ({_name(prop)}), which it requires")
        for key, prop in schema.get("properties", {}).items():
            if key in data:
                found += problems(prop, data[key], f"{where}.{key}")
        extra = schema.get("additionalProperties")
        if extra is not None:
            for key, value in data.items():
                found += problems(extra, value, f"{where}.{key}")
    return found


def _fits(kind: str, data: object) -> bool:
    match kind:
        case "string":
            return isinstance(data, str)
        case "integer":
            return isinstance(data, int) and not isinstance(data, bool)
        case "number":
            return isinstance(data, int | float) and not isinstance(data, bool)
        case "boolean":
            return isinstance(data, bool)
        case "null":
            return data is None
        case "array":
            return isinstance(data, list | tuple)
        case "object":
            return isinstance(data, Mapping)
    return True


def _name(schema: Mapping[str, Any]) -> str:
    """A schema as the Python type it came from: ``list[str]``, ``Order``, ``int | None``."""
    if "anyOf" in schema:
        return " | ".join(_name(o) for o in schema["anyOf"])
    if "enum" in schema:
        return f"Literal{schema['enum']}"
    kind = schema.get("type")
    if kind == "array":
        return f"list[{_name(schema['items'])}]" if "items" in schema else "list"
    if kind == "object":
        if "title" in schema:
            return str(schema["title"])
        extra = schema.get("additionalProperties")
        return f"dict[str, {_name(extra)}]" if extra else "dict"
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
    return names.get(str(kind), "None" if kind == "null" else "Any")


def _kind(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a bool"
    if isinstance(data, int | float):
        return f"the number {data!r}"
    if isinstance(data, str):
        return f"the string {data!r}" if len(data) < 40 else "a string"
    if isinstance(data, Mapping):
        return "an object"
    if isinstance(data, list | tuple):
        return "a list"
    return type(data).__name__
