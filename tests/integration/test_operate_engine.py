"""Terminate and resume in the pure engine, and their inbox records (no broker)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sagas import Saga, call, compile, step
from sagas.engine import (
    Reply,
    Resume,
    SagaState,
    Start,
    Terminate,
    TimerFired,
    fold,
    transition,
)
from sagas.engine.model import Decision
from sagas.serde import Serde
from sagas.wire import decode_input, input_record

SERDE = Serde()
"""The encodings these records are read and written with."""

SAGA = compile(
    Saga[dict[str, Any]](
        "op",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("pay", to="pay.commands", command="Pay", compensate=call("Refund")),
            step("ship", to="ship.commands", command="Ship", kind="pivot"),
            step(
                "mail",
                to="mail.commands",
                command="Mail",
                kind="retryable",
                deadline=timedelta(minutes=1),
            ),
        ],
    )
)


def run(state: SagaState | None, inp: Any, now: int = 1000) -> Decision:
    return transition(SAGA, state, inp, now)


def answer(state: SagaState, outcome: str = "success") -> Decision:
    [cid] = state.pending
    return run(state, Reply(state.saga_id, cid, outcome, {"error": "down"}))  # type: ignore[arg-type]


def test_terminate_ends_without_compensating_and_drops_timers_and_commands() -> None:
    first = run(None, Start("s-1", {}))
    paid = answer(first.state)  # type: ignore[arg-type]
    assert paid.state is not None
    assert paid.state.pending
    ended = run(paid.state, Terminate("s-1", "ann", "stuck order"))
    st = ended.state
    assert st is not None
    assert st.status == "terminated"
    assert st.reason == "terminated by ann: stuck order"
    assert not st.pending
    assert not st.timers
    assert not st.tokens
    assert not ended.commands  # no compensation
    assert next(e.type for e in ended.events) == "terminated"
    assert ended.events[0].body == {"by": "ann", "reason": "stuck order"}
    assert fold(SAGA, [*first.events, *paid.events, *ended.events]) == st
    again = run(st, Terminate("s-1", "bob", "twice"))
    assert [e.type for e in again.events] == ["ignored"]


def test_resume_enters_the_failed_step_again_with_a_new_command_id() -> None:
    events = []
    d = run(None, Start("s-2", {}))
    events += d.events
    for outcome in ("success", "success", "failure"):  # pay, ship (pivot), mail fails
        d = answer(d.state, outcome)  # type: ignore[arg-type]
        events += d.events
    failed = d.state
    assert failed is not None
    assert failed.status == "failed"
    [failed_mail] = [e for e in events if e.type == "command_sent" and e.body["step"] == "mail"]
    nope = run(failed, Resume("s-2", "nope", "ann"))
    assert nope.events[0].type == "ignored"
    assert "no step 'nope'" in nope.events[0].body["reason"]
    resumed = run(failed, Resume("s-2", "mail", "ann"), now=2000)
    st = resumed.state
    assert st is not None
    assert st.status == "running"
    assert st.reason is None
    [cmd] = resumed.commands
    assert cmd.step == "mail"
    assert cmd.attempt == 2
    assert cmd.command_id != failed_mail.body["command_id"]
    assert resumed.events[0].body == {"step": "mail", "by": "ann", "previous_reason": failed.reason}
    done = answer(st)
    assert done.state is not None
    assert done.state.status == "completed"
    assert fold(SAGA, [*events, *resumed.events, *done.events]) == done.state
    running = run(st, Resume("s-2", "mail", "ann"))
    assert "only a failed or stuck saga resumes" in running.events[0].body["reason"]


def test_terminate_and_resume_travel_as_inbox_records() -> None:
    for inp in (Terminate("s-3", "ann", "why"), Resume("s-3", "mail", "bob")):
        rec = input_record("ns.op.inbox", inp, SERDE)
        assert decode_input(rec.key, rec.value, rec.headers, SERDE) == inp
    rec = input_record("ns.op.inbox", Terminate("s-3", "ann", "why"), SERDE)
    headers = dict(rec.headers)
    assert headers["terminated-by"] == b"ann"
    assert headers["reason"] == b"why"


def test_a_timer_after_terminate_is_ignored() -> None:
    d = run(None, Start("s-4", {}))
    ended = run(d.state, Terminate("s-4", "ann", "x"))
    late = run(ended.state, TimerFired("s-4", "pay:deadline:1", 0))
    assert [e.type for e in late.events] == ["ignored"]
