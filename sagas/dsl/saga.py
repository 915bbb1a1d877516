"""The saga type: a name, a version, a step list and an optional whole-saga deadline."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sagas.dsl.nodes import BLOCKS, Branch, Goto, Node, Parallel, _bad_duration, _bad_name, _blocks
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
        steps: the blocks run in order (see :mod:`sagas.dsl.nodes`); at least one.
        deadline: when the whole saga must be done; on expiry it compensates (before the pivot).
        retention: how long a finished saga stays in the state topic and the worker's memory
            (for ``status`` and ``result``) before it is removed; its journal keeps its history
            for the journal topic's own retention. ``None`` keeps finished sagas forever.

    Raises:
        DefinitionError: the saga or one of its blocks (their ``Retry`` and calls included)
            is not valid; the message names the saga, the step and the fix, and a block's own
            error is the cause. The compiler checks the graph (:meth:`compile`).
    """

    name: str
    version: int
    steps: Sequence[Node[D]] = field(default=())
    deadline: timedelta | None = None
    retention: timedelta | None = timedelta(days=7)

    def __post_init__(self) -> None:
        saga = str(self.name)
        problem = (
            _bad_name(self.name, "saga")
            or _bad_duration(self.deadline, "deadline")
            or _bad_duration(self.retention, "retention")
        )
        if problem is None and (not isinstance(self.version, int) or self.version < 1):
            problem = f"version must be a positive int, e.g. version=1; got {self.version!r}"
        if problem is not None:
            raise DefinitionError(problem, saga=saga)
        steps = _blocks(self.steps)
        if steps == ():
            raise DefinitionError(
                "a saga needs at least one step: Saga(name, version=1, steps=[step(...), ...])",
                saga=saga,
            )
        _check_blocks(saga, steps, "steps=", None)
        object.__setattr__(self, "steps", steps)

    @property
    def data_type(self) -> object:
        """``Order`` of ``Saga[Order](...)`` (``None`` without one): a ``TypedDict`` becomes
        the schema clients check a start's data against (:mod:`sagas.dsl.datatype`)."""
        alias = self.__dict__.get("__orig_class__")
        args = typing.get_args(alias)
        return args[0] if args else None

    def compile(self) -> Program:
        """Validate this definition and return its immutable :class:`~sagas.dsl.Program`."""
        from sagas.dsl.compiler import compile_saga

        return compile_saga(self)


def _check_blocks(saga: str, blocks: object, what: str, owner: str | None) -> None:
    """Raise the first problem a block (or a list nested in it) keeps, naming the saga and step."""
    if not isinstance(blocks, tuple):
        raise DefinitionError(
            f"{what} must be a list of blocks, got a {type(blocks).__name__}: write [block, ...]",
            saga=saga,
            step=owner,
        )
    for b in blocks:
        if not isinstance(b, BLOCKS):
            raise DefinitionError(
                f"{what} holds a {type(b).__name__}, not a block: use step(), long_running(), "
                "wait_signal(), sleep(), parallel(), branch(), goto() or child()",
                saga=saga,
                step=owner,
            )
        if isinstance(b, Goto):
            continue
        if b._problem is not None:
            raise DefinitionError(str(b._problem), saga=saga, step=b.name) from b._problem
        if isinstance(b, Parallel):
            for i, branch in enumerate(b.branches):
                _check_blocks(saga, branch, f"branch {i + 1} of parallel()", b.name)
        if isinstance(b, Branch):
            _check_blocks(saga, b.then, "then=", b.name)
            _check_blocks(saga, b.otherwise, "otherwise=", b.name)


_frozen_setattr = Saga.__setattr__


def _setattr(self: Saga[Any], name: str, value: object) -> None:
    """Frozen, except for the ``__orig_class__`` that ``Saga[Order](...)`` records: the data
    type (:attr:`Saga.data_type`)."""
    if name == "__orig_class__":
        object.__setattr__(self, name, value)
    else:
        _frozen_setattr(self, name, value)


Saga.__setattr__ = _setattr  # type: ignore[method-assign,assignment]
