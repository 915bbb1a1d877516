"""The saga type: a name, a version, a step list and an optional whole-saga deadline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from sagas.dsl.nodes import Node, _check_name
from sagas.errors import DefinitionError

if TYPE_CHECKING:
    from sagas.dsl.program import Program

__all__ = ["Saga"]

D = TypeVar("D")


@dataclass(frozen=True)
class Saga(Generic[D]):
    """A saga type. Parameterise it with the type of its data for checked payload builders.

    Example::

        class Order(TypedDict):
            customer: str
            total: float

        order = Saga[Order]("order", version=1, deadline=timedelta(minutes=30), steps=[...])

    Args:
        name: the saga type name (also the inbox, state and journal topic stem).
        version: the definition version; in-flight sagas keep the version they started on.
        steps: the blocks run in order (see :mod:`sagas.dsl.nodes`).
        deadline: when the whole saga must be done; on expiry it compensates (before the pivot).
    """

    name: str
    version: int
    steps: Sequence[Node[D]] = field(default=())
    deadline: timedelta | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "saga")
        if not isinstance(self.version, int) or self.version < 1:
            raise DefinitionError(
                f"version must be a positive int, got {self.version!r}", saga=self.name
            )
        if self.deadline is not None and self.deadline <= timedelta(0):
            raise DefinitionError("deadline must be a positive timedelta", saga=self.name)
        object.__setattr__(self, "steps", tuple(self.steps))

    def compile(self) -> Program:
        """Validate this definition and return its immutable :class:`~sagas.dsl.Program`."""
        from sagas.dsl.compiler import compile_saga

        return compile_saga(self)
