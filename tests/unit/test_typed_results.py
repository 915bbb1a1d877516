"""The clients' start, status and result carry a saga's data type for mypy; names still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagas import Saga, step
from sagas.typed import saga_type_of
from tests.support.typecheck import mypy

SNIPPET = """
from datetime import timedelta
from typing import TypedDict

from sagas import AsyncSagaClient, KafkaSettings, Saga, SagaClient, step


class Order(TypedDict):
    customer: str
    total: float


order_saga = Saga[Order]("order", version=1, deadline=timedelta(minutes=5), steps=[
    step("charge", to="billing.commands", command="Charge",
         payload=lambda d: {"amount": d["total"]}, kind="pivot"),
])


def sync(client: SagaClient) -> None:
    sid = client.start(order_saga, {"customer": "ada", "total": 5.0})
    reveal_type(client.result(order_saga, sid))
    state = client.status(order_saga, sid)
    assert state is not None
    reveal_type(state.data)
    reveal_type(state.status)
    reveal_type(client.result("order", sid))
    client.start("order", {"anything": 1})
    client.start(order_saga, "not a mapping")


async def asynchronous(client: AsyncSagaClient) -> None:
    sid = await client.start(order_saga, {"customer": "ada", "total": 5.0})
    reveal_type(await client.result(order_saga, sid))
    order: Order = await client.result(order_saga, sid)
    total: str = (await client.result(order_saga, sid))["total"]
"""


@pytest.mark.timeout(300)
def test_a_typed_saga_gives_its_data_type_and_a_wrong_use_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "typed_results.py"
    path.write_text(SNIPPET)
    out = mypy(path).stdout
    lines = {int(line.split(":")[1]): line for line in out.splitlines() if line.count(":") >= 3}
    at = {text.strip(): n for n, text in enumerate(SNIPPET.splitlines(), start=1)}

    def said(code: str) -> str:
        return lines.get(at[code], "")

    assert 'Revealed type is "TypedDict(typed_results.Order' in said(
        "reveal_type(client.result(order_saga, sid))"
    ), out
    assert 'Revealed type is "TypedDict(typed_results.Order' in said("reveal_type(state.data)"), out
    assert "Literal['running']" in said("reveal_type(state.status)"), out
    assert '"dict[str, Any]"' in said('reveal_type(client.result("order", sid))')
    assert said('client.start("order", {"anything": 1})') == ""  # a name takes any dict
    assert "incompatible type" in said('client.start(order_saga, "not a mapping")'), out
    assert 'Revealed type is "TypedDict(typed_results.Order' in said(
        "reveal_type(await client.result(order_saga, sid))"
    ), out
    assert said("order: Order = await client.result(order_saga, sid)") == ""
    wrong = 'total: str = (await client.result(order_saga, sid))["total"]'
    assert 'Incompatible types in assignment (expression has type "float"' in said(wrong), out


def test_a_definition_stands_for_its_name() -> None:
    work = step("x", to="t", command="X", payload=dict, kind="pivot")
    saga = Saga[dict[str, int]]("job", version=1, steps=[work])
    assert saga_type_of(saga) == "job"
    assert saga_type_of("job") == "job"
