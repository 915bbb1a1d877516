"""Checked JSON values: user payload builders and merge functions must return JSON data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sagas.dsl.nodes import Merge
from sagas.errors import DefinitionError

__all__ = ["build_payload", "json_copy", "merge_reply"]


def json_copy(value: object, where: str) -> Any:
    """A deep copy of ``value`` as plain JSON types; raises ``TypeError`` naming ``where``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = json_copy(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [json_copy(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-compatible")


def build_payload(
    fn: Callable[[Any], Mapping[str, object]], data: Mapping[str, Any], saga: str, step: str | None
) -> dict[str, Any]:
    """Call a user's builder on a copy of ``data`` and check it returned a JSON object."""
    try:
        result = fn(json_copy(data, "data"))
    except Exception as exc:
        raise DefinitionError(
            f"a payload builder or merge function raised {exc!r}; make it handle this data",
            saga=saga,
            step=step,
        ) from exc
    if not isinstance(result, Mapping):
        raise DefinitionError(
            f"the payload builder returned {type(result).__name__}; return a dict",
            saga=saga,
            step=step,
        )
    try:
        out: dict[str, Any] = json_copy(result, "payload")
    except TypeError as exc:
        raise DefinitionError(
            f"the payload builder returned a value that is not JSON ({exc}); return only "
            "str, int, float, bool, None, lists and dicts",
            saga=saga,
            step=step,
        ) from exc
    return out


def merge_reply(
    how: Merge[Any], data: Mapping[str, Any], payload: Mapping[str, Any], saga: str, step: str
) -> dict[str, Any]:
    """The saga's data after a success reply ``payload``, per the step's ``merge``."""
    if how is None:
        return {**data, **json_copy(payload, "reply")}
    if isinstance(how, str):
        return {**data, how: json_copy(payload, "reply")}
    return build_payload(lambda d: how(d, json_copy(payload, "reply")), data, saga, step)
