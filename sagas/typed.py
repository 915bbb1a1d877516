"""What the clients' typed forms return: a saga's state whose ``data`` has its saga's type.

``client.status(order_saga, sid)`` with ``order_saga = Saga[Order](...)`` is a
:class:`TypedState` of ``Order`` for mypy; at run time it is the plain
:class:`~sagas.engine.model.SagaState` (a ``TypedDict`` is a ``dict``), so nothing is copied or
checked again. ``client.status("order", sid)`` stays a ``SagaState`` with ``dict`` data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sagas.engine.model import SagaState

if TYPE_CHECKING:
    from sagas.dsl.saga import Saga

__all__ = ["TypedState", "saga_type_of"]

D = TypeVar("D")

if TYPE_CHECKING:

    class TypedState(SagaState, Generic[D]):
        """A :class:`SagaState` whose ``data`` is its saga's data type."""

        data: D  # type: ignore[assignment]

else:
    TypedState = SagaState


def saga_type_of(saga: Saga[Any] | str) -> str:
    """The saga type name of a definition, or the name itself."""
    return saga if isinstance(saga, str) else saga.name
