"""The compiler: program contents, the diagram, and every validation message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from examples import order_saga, vm_saga

import sagas
from sagas import (
    DefinitionError,
    Retry,
    Saga,
    branch,
    call,
    child,
    goto,
    long_running,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.dsl import Node
from sagas.serde.avro import default_store

H = timedelta(hours=1)


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    kw.setdefault("compensate", call(f"Undo{name}"))
    return step(name, to=f"{name}.commands", command=name.title(), **kw)


def saga(*steps: Node[dict[str, Any]], deadline: timedelta | None = H) -> Saga[dict[str, Any]]:
    return Saga[dict[str, Any]]("demo", version=1, steps=steps, deadline=deadline)


def fails(definition: Saga[dict[str, Any]], *fragments: str) -> str:
    with pytest.raises(DefinitionError) as info:
        sagas.compile(definition)
    message = str(info.value)
    assert message.startswith("saga 'demo'")
    for fragment in fragments:
        assert fragment in message
    return message


def test_order_program_lists_topics_records_and_graph() -> None:
    program = sagas.compile(order_saga)
    assert program.name == "order"
    assert program.version == 1
    assert program.topics == ("credit.commands", "stock.commands", "shipping.commands")
    assert program.record_types == ("sagas.Payload", "sagas.JournalEvent", "sagas.SagaState")
    assert set(program.record_types) <= set(default_store().names())  # each has its .avsc
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
    fails(saga(s("a", compensate=None)), "step 'a'", "needs a compensation", "compensate=call(")


def test_wait_without_deadline() -> None:
    fails(saga(s("a"), deadline=None), "step 'a'", "no deadline covers it", "deadline=timedelta")
    sagas.compile(saga(s("a", deadline=H), deadline=None))  # its own deadline is enough


def test_retriable_step_after_pivot_needs_own_deadline() -> None:
    fails(
        saga(s("a"), s("p", kind="pivot"), s("r", kind="retriable")),
        "step 'r'",
        "runs after the pivot",
        "deadline=timedelta",
    )


def test_duplicate_names() -> None:
    fails(saga(s("a"), s("a")), "step 'a'", "unique name")
    fails(saga(s("a"), branch("b", lambda d: True, then=[s("a")])), "unique name")


def test_pivot_followed_by_compensatable() -> None:
    fails(saga(s("p", kind="pivot"), s("c")), "step 'c'", "after the pivot 'p'", "kind='retriable'")


def test_two_pivots() -> None:
    fails(saga(s("p", kind="pivot"), s("q", kind="pivot")), "step 'q'", "one pivot")


def test_retriable_before_pivot() -> None:
    fails(
        saga(s("r", kind="retriable"), s("p", kind="pivot")),
        "step 'r'",
        "retriable step before the pivot 'p'",
    )


def test_retriable_with_max_attempts() -> None:
    fails(
        saga(s("p", kind="pivot"), s("r", kind="retriable", deadline=H, retry=Retry())),
        "step 'r'",
        "remove max_attempts",
    )


def test_pivot_inside_parallel_or_loop() -> None:
    fails(saga(parallel("par", [s("p", kind="pivot")], [s("b")])), "inside parallel()")
    loop = saga(s("p", kind="pivot"), branch("again", lambda d: True, then=[goto("p")]))
    fails(loop, "step 'p'", "inside a loop")


def test_unknown_goto_target() -> None:
    fails(
        saga(s("a"), branch("b", lambda d: True, then=[goto("nowhere")])),
        "step 'b'",
        "goto('nowhere') refers to an unknown step; known steps: a, b",
    )


def test_goto_across_parallel() -> None:
    fails(saga(s("a"), parallel("par", [s("x"), goto("a")], [s("y")])), "parallel branch")


def test_unreachable_step() -> None:
    fails(
        saga(s("a"), branch("b", lambda d: True, then=[goto("a")], otherwise=[goto("a")]), s("c")),
        "step 'c'",
        "can never run",
    )


def test_cycle_that_cannot_end() -> None:
    fails(saga(s("a"), s("b"), goto("a")), "step 'a'", "the loop a → b can't end", "branch()")


def test_cycle_that_never_waits() -> None:
    fails(saga(branch("spin", lambda d: True, then=[goto("spin")])), "never waits")


def test_loop_with_an_exit_and_a_wait_compiles() -> None:
    program = sagas.compile(
        saga(sleep("nap", H), branch("again", lambda d: d["n"] < 3, then=[goto("nap")]))
    )
    assert ("again", "nap", "yes") in program.edges


def test_block_level_checks() -> None:
    with pytest.raises(DefinitionError, match="name 'a b' is not valid"):
        s("a b")
    with pytest.raises(DefinitionError, match="positive timedelta"):
        sleep("nap", timedelta(0))
    with pytest.raises(DefinitionError, match="two branches or more"):
        parallel("p", [s("a")])
    with pytest.raises(DefinitionError, match="max_attempts=0"):
        Retry(max_attempts=0)
    with pytest.raises(DefinitionError, match="jitter"):
        Retry(jitter=1.5)
    with pytest.raises(DefinitionError, match="version must be a positive int"):
        Saga[dict[str, Any]]("demo", version=0)
    with pytest.raises(DefinitionError, match="checks=0"):
        long_running(
            "op", to="t", start=call("S"), status=call("G"), cancel=call("C"),
            every=H, done=lambda r: True, checks=0,
        )  # fmt: skip
    with pytest.raises(DefinitionError, match="compile\\(\\) takes a Saga"):
        sagas.compile("order")  # type: ignore[arg-type]


def test_child_compensation_needs_a_topic() -> None:
    fails(
        saga(child("sub", saga="other", input=lambda d: {}, compensate=call("Undo"))),
        "step 'sub'",
        "to='<topic>'",
    )
