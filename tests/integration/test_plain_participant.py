"""A participant that knows only the wire contract and the .avsc files takes part in a saga.

The trip saga reserves credit (a ``sagas.participants`` service), books a room (served by
:mod:`plain_participant`: a bare confluent-kafka consumer and producer, fastavro and the schema
file, no ``sagas`` import) and schedules a shipment (the pivot). The worker runs for real.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from plain_participant import PlainParticipant

from sagas.app import App
from sagas.dsl import Saga, call, step
from sagas.dsl.program import Program
from sagas.settings import KafkaSettings
from tests.support.runtime import Running, start_runtime

PLAIN = Path(__file__).with_name("plain_participant.py")


def trip_saga(ns: str) -> Program:
    """Credit (library participant), room (plain participant), shipment (library, pivot)."""
    return Saga(
        "trip", 1, deadline=timedelta(minutes=5),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit",
                 payload=dict, compensate=call("ReleaseCredit", dict)),
            step("book_room", to=f"{ns}.rooms", command="BookRoom",
                 payload=lambda d: {"guest": d["guest"], "nights": d["nights"]},
                 compensate=call("CancelRoom", lambda d: {"room": d["room"]})),
            step("schedule_shipment", to=f"{ns}.shipping", command="ScheduleShipment",
                 payload=dict, kind="pivot"),
        ],
    ).compile()  # fmt: skip


def rooms(
    command_type: str, payload: dict[str, Any], headers: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The hotel: books up to 30 nights; a cancellation echoes the room."""
    if command_type == "CancelRoom":
        return "success", {"cancelled_room": payload["room"]}
    if payload["nights"] > 30:
        return "failure", {"error": "TooLong", "message": f"{payload['nights']} nights"}
    return "success", {
        "room": f"{payload['guest']}-{payload['nights']}",
        "saga": headers["saga-id"],
    }


pytestmark = pytest.mark.kafka


@pytest.fixture
def trip(bootstrap: str, unique: str) -> Iterator[tuple[Running, PlainParticipant]]:
    running = start_runtime(
        App(unique, [trip_saga(unique)], partitions=2), KafkaSettings(bootstrap)
    )
    plain = PlainParticipant(bootstrap, f"{unique}.hotel", [f"{unique}.rooms"], rooms)
    yield running, plain
    plain.stop()
    running.shutdown()


def test_the_plain_participants_reply_is_merged_and_the_saga_completes(
    trip: tuple[Running, PlainParticipant],
) -> None:
    rt, plain = trip
    sid = rt.client.start("trip", {"guest": "ada", "nights": 2, "behaviour": {}})
    state = rt.wait_terminal("trip", sid)
    assert state.status == "completed"
    assert state.data["room"] == "ada-2"
    assert state.data["saga"] == sid
    assert plain.received == [(sid, "BookRoom", 1, {"guest": "ada", "nights": 2})]
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ScheduleShipment"]


def test_a_failed_pivot_compensates_through_the_plain_participant(
    trip: tuple[Running, PlainParticipant],
) -> None:
    rt, plain = trip
    sid = rt.client.start(
        "trip", {"guest": "bo", "nights": 3, "behaviour": {"ScheduleShipment": "fail"}}
    )
    state = rt.wait_terminal("trip", sid)
    assert state.status == "compensated"
    assert [(c, p) for _, c, _, p in plain.received] == [
        ("BookRoom", {"guest": "bo", "nights": 3}),
        ("CancelRoom", {"room": "bo-3"}),  # built from the booking's reply
    ]
    assert rt.participants.commands_of(sid) == [
        "ReserveCredit",
        "ScheduleShipment",
        "ReleaseCredit",
    ]


def test_a_failure_reply_from_the_plain_participant_compensates_the_credit(
    trip: tuple[Running, PlainParticipant],
) -> None:
    rt, plain = trip
    sid = rt.client.start("trip", {"guest": "cy", "nights": 40, "behaviour": {}})
    state = rt.wait_terminal("trip", sid)
    assert state.status == "compensated"
    assert "TooLong" in (state.reason or "")
    assert [c for _, c, _, _ in plain.received] == ["BookRoom"]
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReleaseCredit"]


def test_the_plain_participant_imports_nothing_of_sagas() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(PLAIN.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"__future__", "io", "json", "threading", "time", "collections", "pathlib",
                        "typing", "confluent_kafka", "fastavro"}  # fmt: skip
    loaded = subprocess.run(
        [sys.executable, "-c", "import plain_participant, sys; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sagas'))"],
        cwd=PLAIN.parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == "[]"
