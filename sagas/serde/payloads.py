"""Payload schemas given by the user: an ``.avsc`` file, a schema dict, or a dataclass.

Without a schema a payload travels as ``sagas.Payload`` (one JSON object in a string). With one,
it is that Avro record, so a participant in another language reads typed fields, and the schema
registry (when configured) checks its evolution. Readers find the writer's schema by fingerprint
(or registry id) whatever the payload's type, so a saga and its participants need only agree on
the schema.

Dataclasses map to Avro records: ``str`` string, ``int`` long, ``float`` double, ``bool``
boolean, ``X | None`` a union with null (default null), ``list[X]`` array, ``dict[str, X]`` map,
a nested dataclass a nested record; field defaults become Avro defaults. Payload fields stay
JSON-compatible, because replies merge into the saga's data, which is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from sagas.dsl.nodes import SchemaSpec
from sagas.errors import DefinitionError

__all__ = [
    "avro_schema",
    "from_record",
    "full_name",
    "load_schema",
]

_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", float: "double", bool: "boolean"}


def avro_schema(cls: type[Any], namespace: str | None = None) -> dict[str, Any]:
    """The Avro record schema of a dataclass.

    Raises:
        DefinitionError: ``cls`` is not a dataclass, or a field has a type with no mapping.
    """
    return _record(cls, namespace, set())


def _record(cls: type[Any], namespace: str | None, seen: set[str]) -> dict[str, Any]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise DefinitionError(f"{cls!r} is not a dataclass; give a dataclass, a .avsc or a dict")
    ns = namespace or cls.__module__
    seen.add(f"{ns}.{cls.__name__}")
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        field: dict[str, Any] = {"name": f.name, "type": _avro_type(hints[f.name], ns, seen, cls)}
        if f.default is not dataclasses.MISSING:
            field["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            field["default"] = f.default_factory()
        fields.append(field)
    return {"type": "record", "name": cls.__name__, "namespace": ns, "fields": fields}


def _avro_type(hint: Any, ns: str, seen: set[str], owner: type[Any]) -> Any:
    if hint in _PRIMITIVES:
        return _PRIMITIVES[hint]
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return ["null", _avro_type(rest[0], ns, seen, owner)]
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _avro_type(args[0], ns, seen, owner)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "map", "values": _avro_type(args[1], ns, seen, owner)}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        full = f"{ns}.{hint.__name__}"
        return full if full in seen else _record(hint, ns, seen)
    raise DefinitionError(
        f"{owner.__name__}: no Avro mapping for {hint!r}; use str, int, float, bool, X | None, "
        "list[X], dict[str, X] or a dataclass, or give the schema as a .avsc file"
    )


def load_schema(spec: SchemaSpec) -> dict[str, Any]:
    """The Avro schema (a dict) that ``spec`` names.

    Raises:
        DefinitionError: the file is missing or not JSON, or the schema is not a named record.
    """
    if isinstance(spec, type):
        return avro_schema(spec)
    if isinstance(spec, str | Path):
        path = Path(spec)
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DefinitionError(f"cannot read the Avro schema {path}: {exc}") from exc
    else:
        schema = dict(spec)
    if not isinstance(schema, dict) or schema.get("type") != "record" or not schema.get("name"):
        raise DefinitionError(f"a payload schema must be an Avro record with a name: {spec!r}")
    return schema


def full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def from_record(cls: type[Any], value: Mapping[str, Any]) -> Any:
    """A dataclass instance from a decoded record (nested dataclasses included)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _convert(rest[0], value) if len(rest) == 1 else value
    if origin is list and args:
        return [_convert(args[0], v) for v in value]
    if origin is dict and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_record(hint, value)
    return value
