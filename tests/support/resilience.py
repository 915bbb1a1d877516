"""The mix of sagas the resilience tests run through crashes, and how to wait for their ends."""

from __future__ import annotations

import time

from sagas.app import App
from sagas.engine.model import SagaState
from sagas.serde import Serde
from tests.support.kafka import read_all

SERDE = Serde()
"""The encodings these records are read and written with."""

SAGAS = ("order", "quick_order")  # 60 s and 3 s step deadlines

# kind -> (behaviour, expected final status, compensations in order, saga type). Sagas that must
# complete get long deadlines: a kill or a broker restart may legitimately outlast a 3 s one.
PLAN = {
    "ok": ({}, "completed", [], "order"),
    "fail": (
        {"ScheduleShipment": "fail"},
        "compensated",
        ["ReleaseStock", "ReleaseCredit"],
        "order",
    ),
    "silent": (
        {"ReserveStock": "silent"},
        "compensated",
        ["ReleaseStock", "ReleaseCredit"],
        "quick_order",
    ),
    "retry": ({"ReserveCredit": "retry:1"}, "completed", [], "order"),
}
UNDO = {"ReserveCredit": "ReleaseCredit", "ReserveStock": "ReleaseStock"}
MIX = ["ok"] * 5 + ["fail"] * 2 + ["silent", "retry", "ok"]


def latest_states(bootstrap: str, app: App) -> dict[str, SagaState]:
    """The newest committed snapshot of every saga of ``SAGAS``."""
    states: dict[str, SagaState] = {}
    for saga_type in SAGAS:
        for key, value in read_all(bootstrap, app.topics(saga_type).state):
            if key is not None and value is not None:
                states[key.decode()] = SERDE.decode_state(value)
    return states


def wait_all_terminal(
    bootstrap: str, app: App, ids: set[str], timeout: float
) -> dict[str, SagaState]:
    deadline = time.monotonic() + timeout
    while True:
        states = latest_states(bootstrap, app)
        pending = [i for i in ids if i not in states or not states[i].terminal]
        if not pending:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} sagas not terminal, e.g. {pending[:3]}")
        time.sleep(1.0)
