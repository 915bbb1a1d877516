"""The UI's parts that need no broker: the step graph drawn as SVG, and timeline rows."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

from sagas import Saga, step
from sagas.dsl import branch, parallel, sleep, wait_signal
from sagas.ui.diagram import diagram_svg
from sagas.ui.pages import timeline


def _step(name: str) -> object:
    return step(name, to="t", command=name.title(), payload=dict, kind="retryable")


def test_a_graph_with_parallel_branches_a_branch_and_waits_is_drawn_in_layers() -> None:
    program = Saga(
        "trip",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            _step("book"),
            parallel("both", [_step("hotel")], [_step("car"), _step("insure")]),
            branch("big", lambda d: bool(d.get("big")), then=[_step("upgrade")]),
            wait_signal("approved", timeout=timedelta(minutes=1)),
            sleep("cool", timedelta(seconds=5)),
        ],
    ).compile()
    svg = diagram_svg(program, current={"car"}, done={"book", "hotel"})
    root = ET.fromstring(svg)  # well-formed
    ns = "{http://www.w3.org/2000/svg}"
    nodes = {g.get("data-step"): g for g in root.iter(f"{ns}g") if g.get("data-step")}
    assert set(nodes) == set(program.nodes)
    assert "current" in (nodes["car"].get("class") or "")
    assert "done" in (nodes["book"].get("class") or "")

    def y(name: str) -> float:
        rect = nodes[name].find(f"{ns}rect")
        assert rect is not None
        return float(rect.get("y", "0"))

    assert y("book") < y("both") < y("hotel") == y("car") < y("insure") < y("big")
    assert y("big") < y("upgrade") < y("approved") < y("cool")
    assert len(re.findall(r'class="edge"', svg)) >= len(program.nodes)


def test_names_are_escaped_in_the_drawing() -> None:
    program = Saga(
        "x",
        version=1,
        deadline=timedelta(hours=1),
        steps=[step("a", to="t", command="A<b>&c", payload=dict, kind="retryable")],
    ).compile()
    svg = diagram_svg(program)
    ET.fromstring(svg)
    assert "<b>" not in svg


def test_timeline_rows_carry_gaps_and_give_replies_their_commands_step_and_attempt() -> None:
    rows = timeline(
        [
            {"at_ms": 1000, "event": "started"},
            {"at_ms": 1000, "event": "command_sent", "step": "pay", "attempt": 2,
             "command_id": "o:pay:2"},
            {"at_ms": 3500, "event": "reply_accepted", "command_id": "o:pay:2",
             "outcome": "success"},
            {"at_ms": 3600, "event": "timer_set", "body": {"timer_id": "t1", "due_ms": 5600}},
        ]
    )  # fmt: skip
    assert [r.gap_ms for r in rows] == [None, 0, 2500, 100]
    assert (rows[2].step, rows[2].attempt, rows[2].outcome) == ("pay", 2, "success")
    assert rows[3].reason == "timer t1, due +2.0 s"
