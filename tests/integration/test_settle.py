"""An in-doubt pivot on the real broker: the saga whose pivot's participant never answers waits
in-doubt, resending the same command, until an operator settles it, through the client (not done:
it compensates) or the ``sagas`` command (done: it goes on and completes); the journal says who
and why."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sagas.app import App
from sagas.dsl import Saga, call, step, wait_signal
from sagas.dsl.program import Program
from sagas.engine.model import SagaState
from sagas.errors import ConfigurationError
from sagas.operate import in_doubt_steps
from sagas.settings import KafkaSettings
from tests.support.cli import SAGAS, user_env
from tests.support.runtime import Running, start_runtime

pytestmark = pytest.mark.kafka

SAGA = "doubt"


def _app(ns: str) -> App:
    """Reserve credit, ship (the pivot, 2 s deadline, to a topic nobody reads), reserve stock:
    the simulated participants answer credit and stock."""
    doubt = Saga[dict[str, Any]](
        SAGA,
        1,
        deadline=timedelta(minutes=10),
        steps=[
            step("reserve_credit", to=f"{ns}.credit", command="ReserveCredit", payload=dict,
                 compensate=call("ReleaseCredit", dict)),
            step("ship", to=f"{ns}.void", command="Ship", payload=dict, kind="pivot",
                 deadline=timedelta(seconds=2)),
            step("reserve_stock", to=f"{ns}.stock", command="ReserveStock", payload=dict,
                 kind="retryable", deadline=timedelta(seconds=30)),
        ],
    ).compile()  # fmt: skip
    return App(ns, [doubt, _hold(ns)], partitions=2)


def _hold(ns: str) -> Program:
    """A saga that waits for a signal: running, never in-doubt."""
    return Saga[dict[str, Any]](
        "hold",
        1,
        deadline=timedelta(minutes=10),
        steps=[wait_signal("go", timeout=timedelta(minutes=5))],
    ).compile()


@pytest.fixture
def rt(bootstrap: str, unique: str) -> Iterator[Running]:
    running = start_runtime(_app(unique), KafkaSettings(bootstrap))
    yield running
    running.shutdown()


def _in_doubt(rt: Running, saga_id: str, timeout: float = 60.0) -> SagaState:
    """The saga's state once it is in-doubt."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = rt.client.status(SAGA, saga_id)
        if state is not None and state.status == "in-doubt":
            return state
        assert state is None or not state.terminal, state
        time.sleep(0.3)
    raise AssertionError(f"saga {saga_id} not in-doubt in {timeout}s; last state {state}")


def _settled(rt: Running, state: SagaState) -> dict[str, Any]:
    """The body of the saga's one ``settled`` journal event."""
    history = rt.client.history(SAGA, state.saga_id)
    [settled] = [e for e in history.entries if e.event == "settled"]
    return settled.body


def _pivot_sends(rt: Running, saga_id: str) -> list[tuple[str, int]]:
    """(command id, send) of each send of the pivot's command, from the journal."""
    return [
        (str(e.command_id), int(e.body["send"]))
        for e in rt.client.history(SAGA, saga_id).entries
        if e.event == "command_sent" and e.step == "ship"
    ]


def _sagas(rt: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = user_env(KAFKA_BOOTSTRAP_SERVERS=rt.settings.bootstrap_servers)
    return subprocess.run(
        [SAGAS, *args, "-n", rt.app.namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_silent_pivot_goes_in_doubt_and_settled_not_done_compensates(rt: Running) -> None:
    sid = rt.client.start(SAGA, {"order": "o-1"})
    state = _in_doubt(rt, sid)
    assert in_doubt_steps(state) == ["ship"]
    assert sid in {s.saga_id for s in rt.client.list(SAGA, status="in-doubt")}
    rt.wait_until(lambda: len(_pivot_sends(rt, sid)) >= 2)  # resent after 1 s
    sends = _pivot_sends(rt, sid)
    assert len({cid for cid, _ in sends}) == 1  # the same command, again
    assert [n for _, n in sends][:2] == [1, 2]

    with pytest.raises(ConfigurationError, match="give the reason"):
        rt.client.settle(SAGA, sid, done=False, reason=" ", by="ann")
    settled_from = rt.client.settle(
        SAGA, sid, done=False, reason="the carrier has no such shipment", by="ann"
    )
    assert settled_from.status == "in-doubt"

    ended = rt.wait_terminal(SAGA, sid)
    assert ended.status == "compensated"
    assert ended.reason is not None
    assert "settled by ann: the carrier has no such shipment" in ended.reason
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReleaseCredit"]
    assert _settled(rt, ended) == {
        "step": "ship",
        "done": False,
        "by": "ann",
        "reason": "the carrier has no such shipment",
    }
    with pytest.raises(ConfigurationError, match="is compensated, not in-doubt"):
        rt.client.settle(SAGA, sid, done=True, reason="again", by="ann")


def test_the_cli_shows_an_in_doubt_saga_and_settles_it_done(rt: Running) -> None:
    sid = rt.client.start(SAGA, {"order": "o-2"})
    _in_doubt(rt, sid)

    shown = _sagas(rt, "status", SAGA, sid)
    assert shown.returncode == 0, shown.stderr
    assert "status:      in-doubt (pivot ship: no definitive answer by its deadline" in shown.stdout
    assert (
        "held:        Ship got no reply within 0:00:02 (if the pivot was not done, the saga "
        "ends compensated)" in shown.stdout
    )
    hint = f"settle it with: sagas settle {SAGA} {sid} -n {rt.app.namespace} --done|--not-done"
    assert hint in shown.stdout
    listed = _sagas(rt, "list", SAGA, "--status", "in-doubt", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sid in {s["saga_id"] for s in json.loads(listed.stdout)}

    wrong = _sagas(rt, "settle", SAGA, sid, "--reason", "seen")
    assert wrong.returncode == 2
    assert "give --done (the pivot took effect: the saga goes on) or --not-done" in wrong.stderr

    said = _sagas(
        rt, "settle", SAGA, sid, "--done", "--reason", "portal shows shipment 77", "--by", "bob"
    )
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == f"settle (done) sent to {SAGA} {sid} for ship: the saga goes on"

    ended = rt.wait_terminal(SAGA, sid)
    assert ended.status == "completed"
    assert rt.participants.commands_of(sid) == ["ReserveCredit", "ReserveStock"]
    assert _settled(rt, ended) == {
        "step": "ship",
        "done": True,
        "by": "bob",
        "reason": "portal shows shipment 77",
    }
    history = _sagas(rt, "history", SAGA, sid, "--json")
    assert history.returncode == 0, history.stderr
    [row] = [e for e in json.loads(history.stdout)["events"] if e["event"] == "settled"]
    assert (row["step"], row["outcome"], row["reason"]) == (
        "ship",
        "done",
        "portal shows shipment 77",
    )

    again = _sagas(rt, "settle", SAGA, sid, "--not-done", "--reason", "late")
    assert again.returncode == 2
    assert f"saga {sid!r} is completed, not in-doubt" in again.stderr


def test_a_running_saga_is_not_settled(rt: Running) -> None:
    sid = rt.client.start("hold", {})
    rt.wait_until(lambda: rt.client.status("hold", sid) is not None)
    proc = _sagas(rt, "settle", "hold", sid, "--done", "--reason", "x")
    assert proc.returncode == 2
    assert "is running, not in-doubt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
