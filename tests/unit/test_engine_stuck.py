"""A saga whose own code raises is stuck, keeps its inputs, and waits for an operator: resumed
after a fix it goes on where it stopped; cancelled, it undoes what the world holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, NotRequired, TypedDict

from sagas import Saga, branch, call, step
from sagas.engine import fold
from sagas.engine.stuck import input_from_dict
from sagas.testing import SagaTestEnv, succeed

S = timedelta(seconds=1)


class Order(TypedDict):
    customer: str
    total: float
    items: list[str]
    address: NotRequired[str]
    mode: Literal["fast", "slow"] | None


class Bug:
    """The code a team deploys: ``fixed`` flips when the fix is out."""

    def __init__(self) -> None:
        self.fixed = False

    def items(self, d: dict[str, Any]) -> dict[str, Any]:
        if self.fixed:
            return {"items": d.get("items", [])}
        return {"items": d["items"]}  # KeyError('items') on data without them


def shop(bug: Bug, first: str = "credit") -> Saga[dict[str, Any]]:
    credit = step(
        "reserve-credit",
        to="credit.commands",
        command="ReserveCredit",
        payload=lambda d: {"customer": d["customer"]},
        compensate=call("ReleaseCredit", lambda d: {"customer": d["customer"]}),
    )
    stock = step(
        "reserve-stock",
        to="stock.commands",
        command="ReserveStock",
        payload=bug.items,
        compensate=call("ReleaseStock", lambda d: {}),
    )
    ship = step("ship", to="ship.commands", command="Ship", kind="pivot")
    steps = [credit, stock, ship] if first == "credit" else [stock, credit, ship]
    return Saga[dict[str, Any]]("order", version=1, deadline=timedelta(hours=1), steps=steps)


def world(bug: Bug, **kw: Any) -> SagaTestEnv:
    env = SagaTestEnv(shop(bug, **kw))
    for command in ("ReserveCredit", "ReleaseCredit", "ReserveStock", "ReleaseStock", "Ship"):
        env.on(command, succeed(after=S))
    return env


def standing(env: SagaTestEnv, saga_id: str) -> list[str]:
    return [e.command_type for e in env.effects(saga_id)]


def runs(env: SagaTestEnv, saga_id: str) -> dict[str, int]:
    """How many times the services handled each step's requests (by step, and undo apart)."""
    out: dict[str, int] = {}
    for command_id, n in env.executions(saga_id).items():
        _, step_, *purpose, _n, _tag = command_id.split(":")
        key = step_ + "".join(f":{p}" for p in purpose)
        out[key] = out.get(key, 0) + n
    return out


def test_a_payload_builder_that_raises_makes_the_saga_stuck_with_the_error_and_the_input() -> None:
    bug = Bug()
    env = world(bug)
    env.start("order", "o-1", {"customer": "c-1"})
    env.run_until_idle(limit=timedelta(minutes=5))
    state = env.state("o-1")
    assert state.status == "stuck"
    assert state.stuck is not None
    assert state.stuck["step"] == "reserve-stock"
    assert state.stuck["error"] == "KeyError"
    assert "KeyError('items')" in state.stuck["message"]
    assert "reserve-stock" in state.stuck["message"]
    assert any("test_engine_stuck.py" in f and "in items" in f for f in state.stuck["frames"])
    assert state.stuck["status"] == "running"
    assert state.timers == {}  # paused: its deadline waits for the operator
    assert [input_from_dict(k).__class__.__name__ for k in state.kept] == ["Reply"]
    assert standing(env, "o-1") == ["ReserveCredit"]
    assert fold(None, env.journal("o-1")) == state  # the journal alone rebuilds it
    # an hour later, nothing moved: no deadline fired, nothing was compensated behind its back
    env.jump(timedelta(hours=2))
    assert env.state("o-1").status == "stuck"
    assert standing(env, "o-1") == ["ReserveCredit"]


def test_resumed_after_the_fix_it_goes_on_with_the_inputs_it_kept() -> None:
    bug = Bug()
    env = world(bug)
    env.start("order", "o-1", {"customer": "c-1"})
    env.run_until_idle(limit=timedelta(minutes=5))
    env.signal("o-1", "note", {"x": 1})  # kept too, in order
    assert len(env.state("o-1").kept) == 2
    env.resume("o-1")  # not fixed yet: stuck again, still holding both
    assert env.state("o-1").status == "stuck"
    assert len(env.state("o-1").kept) == 2
    bug.fixed = True
    env.resume("o-1", by="alice")
    env.run_until_idle(limit=timedelta(minutes=5))
    assert env.state("o-1").status == "completed"
    assert standing(env, "o-1") == ["ReserveCredit", "ReserveStock", "Ship"]
    assert runs(env, "o-1") == {"reserve-credit": 1, "reserve-stock": 1, "ship": 1}
    unstuck = [e for e in env.journal("o-1") if e.type == "unstuck"]
    assert [e.body["by"] for e in unstuck] == ["test", "alice"]
    assert fold(None, env.journal("o-1")) == env.state("o-1")


def test_cancelled_while_stuck_it_undoes_what_it_did() -> None:
    env = world(Bug())
    env.start("order", "o-1", {"customer": "c-1"})
    env.run_until_idle(limit=timedelta(minutes=5))
    assert env.state("o-1").status == "stuck"
    env.cancel("o-1", "the customer gave up")
    env.run_until_idle(limit=timedelta(minutes=5))
    state = env.state("o-1")
    assert state.status == "cancelled"
    assert standing(env, "o-1") == []  # the credit reserved before it stuck is released
    assert runs(env, "o-1") == {"reserve-credit": 1, "reserve-credit:undo": 1}


def test_a_deadline_that_passed_while_stuck_fires_when_it_is_resumed() -> None:
    bug = Bug()
    env = world(bug)
    env.start("order", "o-1", {"customer": "c-1"})
    env.run_until_idle(limit=timedelta(minutes=5))
    env.jump(timedelta(hours=2))
    bug.fixed = True
    env.resume("o-1")
    env.run_until_idle(limit=timedelta(minutes=5))
    state = env.state("o-1")
    # the kept reply was applied first, then the overdue deadline compensated the saga
    assert state.status == "compensated"
    assert standing(env, "o-1") == []


def test_a_start_that_raises_is_stuck_before_it_began_and_can_be_cancelled_or_resumed() -> None:
    bug = Bug()
    env = world(bug, first="stock")
    env.start("order", "o-1", {"customer": "c-1"})
    state = env.state("o-1")
    assert state.status == "stuck"
    assert state.stuck is not None
    assert state.stuck["status"] is None
    assert state.data == {"customer": "c-1"}
    assert env.commands_for("o-1") == []
    env.start("order", "o-1", {"customer": "c-1", "items": ["x"]})  # the id exists: ignored
    assert env.journal("o-1")[-1].type == "ignored"
    env.cancel("o-1", "never mind")
    assert env.state("o-1").status == "cancelled"

    env.start("order", "o-2", {"customer": "c-2"})
    bug.fixed = True
    env.resume("o-2")
    env.run_until_idle(limit=timedelta(minutes=5))
    assert env.state("o-2").status == "completed"
    assert runs(env, "o-2") == {"reserve-stock": 1, "reserve-credit": 1, "ship": 1}


def test_a_branch_predicate_that_raises_makes_the_saga_stuck() -> None:
    saga = Saga[dict[str, Any]](
        "route",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("a", to="a.commands", command="A", compensate=call("UndoA")),
            branch(
                "big",
                when=lambda d: d["total"] > 100,
                then=[step("b", to="b.commands", command="B", kind="pivot")],
                otherwise=[step("c", to="c.commands", command="C", kind="pivot")],
            ),
        ],
    )
    env = SagaTestEnv(saga)
    for command in ("A", "UndoA", "B", "C"):
        env.on(command, succeed())
    env.start("route", "r-1", {})
    env.run_until_idle(limit=timedelta(minutes=1))
    state = env.state("r-1")
    assert state.status == "stuck"
    assert state.stuck is not None
    assert state.stuck["error"] == "KeyError"


def test_the_ui_and_the_status_lines_show_where_it_stuck_why_and_what_to_do() -> None:
    from sagas.operate.control import stuck_lines
    from sagas.ui import pages

    env = world(Bug())
    env.start("order", "o-1", {"customer": "c-1"})
    env.run_until_idle(limit=timedelta(minutes=5))
    state = env.state("o-1")
    assert "stuck" in pages.STATUSES
    shown = pages.saga_page(
        state,
        "order",
        "o-1",
        [],
        diagram="",
        note="",
        actions=True,
        steps=["reserve-stock"],
        now_ms=state.updated_ms,
        namespace="shop",
    )
    assert '<span class="status s-stuck">stuck</span>' in shown
    assert "<b>Stuck at reserve-stock</b>" in shown
    assert "KeyError(&#x27;items&#x27;)" in shown
    assert "sagas resume order o-1 -n shop" in shown
    listed = pages.list_page(
        [state], {"stuck": 1}, types=["order"], filters={}, now_ms=0, capped=False
    )
    assert "1 stuck" in listed
    rows = dict(stuck_lines(state, "shop"))
    assert rows["stuck at"].startswith("reserve-stock: saga 'order', step 'reserve-stock'")
    assert rows["error"] == "KeyError"
    assert rows["kept"] == "1 input(s), applied again when it resumes"
    assert "sagas resume order o-1 -n shop" in rows["hint"]
    running = SagaTestEnv(shop(Bug())).start("order", "x", {"customer": "c", "items": []})
    assert running is not None
    assert running.status == "running"
    assert stuck_lines(running, "shop") == []


def test_a_typed_saga_carries_its_data_schema_and_a_fingerprint_that_ignores_code() -> None:
    from sagas.dsl.datatype import problems

    def typed(payload: Any) -> Saga[Order]:
        return Saga[Order](
            "order",
            1,
            deadline=timedelta(hours=1),
            steps=[step("ship", to="t", command="Ship", payload=payload, kind="pivot")],
        )

    program = typed(dict).compile()
    assert typed(dict).data_type is Order
    schema = program.data_schema
    assert schema is not None
    assert schema["required"] == ["customer", "items", "mode", "total"]
    ok = {"customer": "c", "total": 1, "items": ["a"], "mode": None}
    assert problems(schema, ok) == []
    assert problems(schema, {**ok, "mode": "warp", "items": "a"}) == [
        "data.items is the string 'a', not list[str]",
        "data.mode is the string 'warp', not Literal['fast', 'slow'] | None",
    ]
    assert typed(lambda d: {"x": 1}).compile().fingerprint == program.fingerprint
    other = Saga[Order]("order", 1, deadline=timedelta(hours=2), steps=typed(dict).steps)
    assert other.compile().fingerprint != program.fingerprint
    assert (
        Saga[dict[str, Any]]("order", 1, steps=typed(dict).steps, deadline=timedelta(hours=1))
        .compile()
        .data_schema
        is None
    )
