"""The UI's pages without a broker: the participant's reason for a failure, the step graph's
marks of a compensated saga, the list's reason column and dead letters linked to their saga."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

from sagas import Saga, call, step
from sagas.engine.model import SagaState, Token
from sagas.operate.dlq import DeadLetter
from sagas.ui import pages
from sagas.ui.diagram import diagram_svg

_SVG = "{http://www.w3.org/2000/svg}"


def _state(status: Any = "compensated", **kw: Any) -> SagaState:
    fields: dict[str, Any] = {
        "saga_id": "o-1",
        "saga_type": "ship",
        "version": 1,
        "status": status,
        "data": {},
        "timers": {},
        "seed": 1,
        "started_ms": 1000,
        "updated_ms": 5000,
    }
    return SagaState(**{**fields, **kw})


def _journal() -> list[dict[str, Any]]:
    """Reserve done; ship answers CommandFailed("no address to ship to"); reserve undone."""
    return [
        {"at_ms": 1000, "event": "started"},
        {"at_ms": 1000, "event": "command_sent", "step": "reserve", "attempt": 1,
         "command_id": "o-1:reserve:1"},
        {"at_ms": 1100, "event": "reply_accepted", "command_id": "o-1:reserve:1",
         "outcome": "success", "body": {"payload": {}}},
        {"at_ms": 1100, "event": "step_completed", "step": "reserve"},
        {"at_ms": 1200, "event": "command_sent", "step": "ship", "attempt": 1,
         "command_id": "o-1:ship:1"},
        {"at_ms": 1300, "event": "reply_accepted", "command_id": "o-1:ship:1",
         "outcome": "failure",
         "body": {"payload": {"error": "failed", "message": "no address to ship to"}}},
        {"at_ms": 1300, "event": "step_failed", "step": "ship",
         "reason": "Ship failed: failed"},
        {"at_ms": 1300, "event": "compensating", "reason": "Ship failed: failed",
         "outcome": "compensated"},
        {"at_ms": 1300, "event": "undo_started", "step": "reserve"},
        {"at_ms": 1400, "event": "undo_done", "step": "reserve"},
        {"at_ms": 1400, "event": "finished", "outcome": "compensated",
         "reason": "Ship failed: failed"},
    ]  # fmt: skip


def _program() -> Any:
    return Saga(
        "ship",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("reserve", to="stock", command="Reserve", payload=dict,
                 compensate=call("Release", dict)),
            step("ship", to="post", command="Ship", payload=dict, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def test_the_participants_words_come_from_the_reply_payload() -> None:
    assert pages.said({"error": "failed", "message": "no address to ship to"}) == (
        "no address to ship to"
    )
    assert pages.said({"error": "declined", "message": "card declined"}) == "card declined"
    assert pages.said({"error": "sold-out", "message": "no stock"}) == "no stock (sold-out)"
    assert pages.said({"error": "sold-out"}) == "sold-out"
    assert pages.said({}) is None
    assert pages.said(None) is None


def test_a_failed_step_carries_what_the_participant_said_in_the_timeline_and_header() -> None:
    rows = pages.timeline(_journal())
    by_event = {r.event: r for r in rows}
    assert by_event["reply_accepted"].said == "no address to ship to"  # the last reply: ship's
    assert by_event["step_failed"].said == "no address to ship to"
    assert by_event["step_failed"].reason == "Ship failed: failed"
    assert pages.failures(rows) == [("ship", "no address to ship to", "Ship failed: failed")]
    shown = pages.saga_page(
        _state(reason="Ship failed: failed", completed=("reserve",)),
        "ship",
        "o-1",
        rows,
        diagram="<svg></svg>",
        note="",
        actions=False,
        steps=["reserve", "ship"],
        now_ms=5000,
    )
    assert '<b>ship</b> failed: <q class="said">no address to ship to</q>' in shown
    assert 'Ship failed: failed — <q class="said"' in shown  # the step_failed row's reason
    assert 'class="legend"' in shown
    assert "undone (compensated)" in shown


def test_a_new_attempt_forgets_what_an_earlier_answer_said() -> None:
    rows = pages.timeline(
        [
            {"at_ms": 1, "event": "command_sent", "step": "pay", "attempt": 1,
             "command_id": "p:1"},
            {"at_ms": 2, "event": "reply_accepted", "command_id": "p:1",
             "outcome": "retryable-failure", "body": {"payload": {"message": "busy"}}},
            {"at_ms": 3, "event": "command_sent", "step": "pay", "attempt": 2,
             "command_id": "p:2"},
            {"at_ms": 4, "event": "step_failed", "step": "pay", "reason": "no reply within 2s"},
        ]
    )  # fmt: skip
    assert rows[1].said == "busy"
    assert rows[3].said is None
    assert pages.failures(rows) == [("pay", "no reply within 2s", None)]


def test_the_graph_of_a_compensated_saga_marks_the_failed_and_the_undone_steps() -> None:
    rows = pages.timeline(_journal())
    marks = pages.step_marks(_state(completed=("reserve",)), rows)
    assert marks["failed"] == {"ship"}
    assert marks["undone"] == {"reserve"}
    assert marks["done"] == set()
    assert marks["current"] == set()
    root = ET.fromstring(diagram_svg(_program(), **marks))
    classes = {
        g.get("data-step"): (g.get("class") or "").split()
        for g in root.iter(f"{_SVG}g")
        if g.get("data-step")
    }
    assert classes["ship"] == ["node", "failed"]
    assert classes["reserve"] == ["node", "undone"]
    titles = {t.text for t in root.iter(f"{_SVG}title")}
    assert {"ship: failed", "reserve: undone"} <= titles


def test_a_compensating_saga_marks_the_step_being_undone_and_a_stuck_one_its_step() -> None:
    rows = pages.timeline(_journal()[:-2])  # undo_started, not yet done
    undoing = _state("compensating", completed=("reserve",), undo=Token("reserve", "undo"))
    marks = pages.step_marks(undoing, rows)
    assert marks["undoing"] == {"reserve"}
    assert marks["undone"] == marks["done"] == set()
    stuck = _state(
        "stuck",
        tokens={"reserve": Token("reserve", "request")},
        stuck={"step": "reserve", "error": "KeyError", "message": "KeyError('x')", "frames": []},
    )
    marks = pages.step_marks(stuck, [])
    assert marks["stuck"] == {"reserve"}
    assert marks["current"] == set()


def test_the_list_has_a_reason_column_cut_to_one_line_with_the_full_text_on_hover() -> None:
    long = "Ship failed: " + "the address is incomplete; " * 10
    listed = pages.list_page(
        [
            _state(reason=long),
            _state("completed", saga_id="o-2"),
            _state(
                "stuck",
                saga_id="o-3",
                stuck={"step": "ship", "message": "KeyError('x')", "frames": []},
            ),
        ],
        {"compensated": 1, "completed": 1, "stuck": 1},
        types=["ship"],
        filters={},
        now_ms=6000,
        capped=False,
    )
    assert "<th>reason</th>" in listed
    assert f'<td class=why title="{long}"><span>{long}</span></td>' in listed
    assert "<td class=why></td>" in listed
    assert 'title="stuck at ship: KeyError(&#x27;x&#x27;)"' in listed


def _letter(dlq: str, saga_id: str | None) -> DeadLetter:
    return DeadLetter(
        dlq=dlq,
        partition=0,
        offset=7,
        at_ms=1000,
        reason="undecodable input: bad bytes",
        saga_id=saga_id,
        source=("ns.ship.inbox", 1, 3),
        value_dropped=False,
        replayed=False,
        key=None,
        value=None,
        headers=(),
    )


def test_a_dead_letter_links_to_its_saga_when_its_topic_is_a_saga_types() -> None:
    shown = pages.dlq_page(
        ["ns.ship.dlq", "ns.services.dlq"],
        "ns.ship.dlq",
        [_letter("ns.ship.dlq", "o 1/x"), _letter("ns.services.dlq", "o-2"),
         _letter("ns.ship.dlq", None)],
        actions=False,
        error="",
        saga_types={"ns.ship.dlq": "ship"},
    )  # fmt: skip
    assert '<a class="saga-link" href="/saga/ship/o%201%2Fx" title="ship o 1/x">o 1/x</a>' in shown
    assert "<td class=saga>o-2</td>" in shown  # a participant's topic: no saga type to link
    assert "<td class=saga></td>" in shown


def test_the_stylesheet_collapses_the_columns_and_wraps_long_ids() -> None:
    from importlib import resources

    css = resources.files("sagas.ui").joinpath("static", "style.css").read_text()
    assert "@media (max-width: 1300px)" in css
    assert "grid-template-columns: minmax(0, 1fr);" in css
    assert "overflow-wrap: anywhere" in css
    for mark in ("done", "current", "failed", "undoing", "undone", "stuck"):
        assert f"svg.diagram .node.{mark} rect" in css
        assert f".swatch.{mark}" in css
