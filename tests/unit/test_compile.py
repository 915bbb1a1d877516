"""The compiler: program contents, the diagram, and every message of its graph checks (the
checks of single blocks are in test_definitions.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import sagas
from sagas import (
    DefinitionError,
    Retry,
    Saga,
    branch,
    call,
    child,
    goto,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.dsl import Node, compile_saga
from sagas.serde import Serde
from tests.support.examples import order_saga, vm_saga

H = timedelta(hours=1)


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    kw.setdefault("compensate", call(f"Undo{name}"))
    return step(name, to=f"{name}.commands", command=name.title(), **kw)


def saga(*steps: Node[dict[str, Any]], deadline: timedelta | None = H) -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]]("demo", version=1, steps=steps, deadline=deadline)


def fails(definition: Saga[dict[str, Any]], step: str | None, *fragments: str) -> str:
    """Compile ``definition``; the error must name saga 'demo', then ``step``, then the fix."""
    with pytest.raises(DefinitionError) as info:
        compile_saga(definition)
    message = str(info.value)
    where = "saga 'demo'" + ("" if step is None else f", step {step!r}")
    assert message.startswith(where + ": ")
    assert (info.value.saga, info.value.step) == ("demo", step)
    for fragment in fragments:
        assert fragment in message
    return message


def test_order_program_lists_topics_records_and_graph() -> None:
    program = sagas.compile(order_saga)
    assert program.name == "order"
    assert program.version == 1
    assert program.topics == ("credit.commands", "stock.commands", "shipping.commands")
    assert program.record_types == ("sagas.Payload", "sagas.Transition", "sagas.SagaState")
    assert set(program.record_types) <= set(Serde().store.names())  # each has its .avsc
    assert program.entry == "reserve-credit"
    assert [(a, b) for a, b, _ in program.edges] == [
        ("reserve-credit", "reserve-stock"),
        ("reserve-stock", "schedule-shipment"),
    ]
    assert program.deadline_ms == 3_600_000
    assert program.nodes["schedule-shipment"].next is None


def test_mermaid_draws_every_block() -> None:
    text = sagas.compile(order_saga).mermaid()
    assert text.startswith("flowchart TD")
    assert "ReserveCredit → credit.commands" in text
    assert "undo: ReleaseCredit" in text
    assert "(pivot)" in text
    rich = saga(
        parallel("both", [s("a")], [s("b"), sleep("nap", H)], join="first"),
        branch("big", lambda d: d["n"] > 1, then=[wait_signal("ok", timeout=H)]),
        child("sub", saga="other", input=lambda d: {}, compensate=call("Undo", to="x.commands")),
    )
    text = sagas.compile(rich).mermaid()
    for fragment in ("parallel, join first", "big?", "-->|yes|", "signal ok", "sleep", "child"):
        assert fragment in text
    assert sagas.compile(vm_saga).mermaid().count("CreateVm") == 1


def test_program_is_immutable() -> None:
    program = sagas.compile(order_saga)
    with pytest.raises(AttributeError):
        program.name = "x"  # type: ignore[misc]


def test_compensatable_step_without_compensation() -> None:
    fails(saga(s("a", compensate=None)), "a", "needs a compensation", "compensate=call(")


def test_wait_without_deadline() -> None:
    fails(saga(s("a"), deadline=None), "a", "no deadline covers it", "deadline=timedelta")
    sagas.compile(saga(s("a", deadline=H), deadline=None))  # its own deadline is enough


def test_retryable_step_after_pivot_needs_own_deadline() -> None:
    fails(
        saga(s("a"), s("p", kind="pivot"), s("r", kind="retryable")),
        "r",
        "runs after the pivot",
        "deadline=timedelta",
    )


def test_duplicate_names() -> None:
    fails(saga(s("a"), s("a")), "a", "unique name")
    fails(saga(s("a"), branch("b", lambda d: True, then=[s("a")])), "a", "unique name")


def test_pivot_followed_by_compensatable() -> None:
    fails(saga(s("p", kind="pivot"), s("c")), "c", "after the pivot 'p'", "kind='retryable'")


def test_two_pivots() -> None:
    fails(saga(s("p", kind="pivot"), s("q", kind="pivot")), "q", "one pivot", "kind='retryable'")


def test_retryable_before_pivot() -> None:
    fails(
        saga(s("r", kind="retryable"), s("p", kind="pivot")),
        "r",
        "retryable step before the pivot 'p'",
    )


def test_retryable_with_max_attempts() -> None:
    fails(
        saga(s("p", kind="pivot"), s("r", kind="retryable", deadline=H, retry=Retry())),
        "r",
        "remove max_attempts",
    )


def test_pivot_inside_parallel_or_loop() -> None:
    fails(saga(parallel("par", [s("p", kind="pivot")], [s("b")])), "p", "inside parallel()")
    loop = saga(s("p", kind="pivot"), branch("again", lambda d: True, then=[goto("p")]))
    fails(loop, "p", "inside a loop")


def test_unknown_goto_target() -> None:
    fails(
        saga(s("a"), branch("b", lambda d: True, then=[goto("nowhere")])),
        "b",
        "goto('nowhere') refers to an unknown step; known steps: a, b",
    )


def test_goto_across_parallel() -> None:
    fails(saga(s("a"), parallel("par", [s("x"), goto("a")], [s("y")])), "par", "parallel branch")


def test_a_goto_outside_any_step_names_the_saga() -> None:
    fails(saga(s("a"), goto("nowhere")), None, "goto('nowhere') refers to an unknown step")


def test_unreachable_step() -> None:
    fails(
        saga(s("a"), branch("b", lambda d: True, then=[goto("a")], otherwise=[goto("a")]), s("c")),
        "c",
        "can never run",
    )


def test_cycle_that_cannot_end() -> None:
    fails(saga(s("a"), s("b"), goto("a")), "a", "the loop a → b can't end", "branch()")


def test_cycle_that_never_waits() -> None:
    fails(saga(branch("spin", lambda d: True, then=[goto("spin")])), "spin", "never waits")


def test_loop_with_an_exit_and_a_wait_compiles() -> None:
    program = sagas.compile(
        saga(sleep("nap", H), branch("again", lambda d: d["n"] < 3, then=[goto("nap")]))
    )
    assert ("again", "nap", "yes") in program.edges


def test_child_compensation_needs_a_topic() -> None:
    fails(
        saga(child("sub", saga="other", input=lambda d: {}, compensate=call("Undo"))),
        "sub",
        "to='<topic>'",
    )


def test_one_command_type_has_one_payload_schema() -> None:
    one = {"type": "record", "name": "demo.A", "fields": []}
    two = {"type": "record", "name": "demo.B", "fields": []}
    fails(
        saga(
            s("a", payload_schema=one),
            step("b", to="b.commands", command="A", compensate=call("U"), payload_schema=two),
        ),
        "b",
        "command A has two payload schemas",
    )


def test_compile_saga_takes_a_saga_and_compile_is_its_alias() -> None:
    with pytest.raises(DefinitionError, match=r"takes a Saga, got str: pass Saga\(name, ...\)"):
        compile_saga("order")  # type: ignore[arg-type]
    assert sagas.compile is compile_saga
    assert sagas.compile(order_saga) == compile_saga(order_saga)
