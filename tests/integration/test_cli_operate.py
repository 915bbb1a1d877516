"""The operating commands (start, status, result, list, signal, cancel, describe, history,
terminate, resume) on the real broker, run as a user runs them: the installed ``sagas`` from the
folder that holds their app."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cli import MYAPP, SAGAS, Ops, Shop, running

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def shop(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("shop")
    (folder / "myapp.py").write_text(MYAPP.format(ns=ns))
    yield from running(Shop(folder, ns, kafka.bootstrap_servers), "myapp", "greet")


def test_start_then_result_status_and_list(shop: Shop) -> None:
    assert shop.ok("start", "greet", '{"name": "ann"}', "--id", "g-1").strip() == "g-1"
    assert shop.json("result", "greet", "g-1") == {"name": "ann", "greeted": "ann"}
    assert json.loads(shop.ok("result", "greet", "g-1")) == {"name": "ann", "greeted": "ann"}

    state = shop.json("status", "greet", "g-1")
    assert state["status"] == "completed"
    assert state["data"] == {"name": "ann", "greeted": "ann"}
    assert "secret" not in state
    human = shop.ok("status", "greet", "g-1")
    assert "status:      completed" in human
    assert "completed:   hello" in human

    listed = shop.json("list", "greet", "--status", "completed")
    assert [s["saga_id"] for s in listed] == ["g-1"]
    table = shop.ok("list", "greet").splitlines()
    assert table[0].split() == ["SAGA", "STATUS", "VERSION", "UPDATED", "(UTC)", "REASON"]
    assert table[1].split()[:3] == ["g-1", "completed", "1"]
    assert shop.json("start", "greet", '{"name": "bo"}')["saga_type"] == "greet"


def test_signal_releases_a_waiting_saga(shop: Shop) -> None:
    shop.ok("start", "approval", '{"name": "cy"}', "--id", "a-1")
    shop.ok("signal", "approval", "a-1", "approved", '{"by": "dee"}')
    assert shop.json("result", "approval", "a-1") == {"name": "cy", "by": "dee", "greeted": "cy"}


def test_cancel_ends_a_saga(shop: Shop) -> None:
    shop.ok("start", "approval", '{"name": "ed"}', "--id", "a-2")
    assert "cancel sent" in shop.ok("cancel", "approval", "a-2", "--reason", "changed mind")
    deadline = time.monotonic() + 60
    while (state := shop.json("status", "approval", "a-2"))["status"] not in ("cancelled",):
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    assert "changed mind" in state["reason"]
    assert "ended cancelled" in shop.refused("result", "approval", "a-2")


def test_operator_mistakes_are_one_line(shop: Shop) -> None:
    assert "no saga 'nope' of type 'greet'" in shop.error("status", "greet", "nope")
    assert "no saga type 'gret'" in shop.error("status", "gret", "g-1")
    assert "DATA is not JSON" in shop.error("start", "greet", "{name}")
    never = shop.error("result", "approval", "a-never", "--timeout", "1")
    assert "did not end within 1s (no such saga" in never
    assert never.endswith("wait longer with --timeout")
    proc = subprocess.run(
        [SAGAS, "status", "greet", "g-1"],
        cwd=shop.folder,
        env={k: v for k, v in shop.env.items() if k != "SAGAS_NAMESPACE"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Missing option '-n' / '--namespace'" in proc.stderr


def test_describe_shows_steps_topics_schemas_and_the_diagram(shop: Shop) -> None:
    described = shop.json("describe", "myapp:app")
    assert described["namespace"] == shop.ns
    [greet] = [s for s in described["sagas"] if s["saga_type"] == "greet"]
    assert greet["steps"] == [
        {
            "name": "hello",
            "block": "Step",
            "kind": "pivot",
            "command": "Hello",
            "topic": f"{shop.ns}.hello",
            "compensation": None,
        }
    ]
    assert greet["topics"]["inbox"] == f"{shop.ns}.greet.inbox"
    assert greet["topics"]["commands"] == [f"{shop.ns}.hello"]
    assert "sagas.SagaState" in greet["schemas"]["records"]
    assert greet["mermaid"].startswith("flowchart TD")
    human = shop.ok("describe", "myapp:app")
    assert "greet v1 (deadline 300 s)" in human
    assert "approval v1" in human
    assert "```mermaid" in human


def test_version() -> None:
    proc = subprocess.run([SAGAS, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("sagas, version ")


def test_history_shows_every_event_of_one_saga(ops: Ops) -> None:
    ops.ok("start", "ship", '{"to": "ann"}', "--id", "h-1")
    ops.ok("start", "ship", '{"to": "bo"}', "--id", "h-2")
    ops.until("ship", "h-1", "completed")
    ops.until("ship", "h-2", "completed")
    found = ops.json("history", "ship", "h-1")
    events = [e["event"] for e in found["events"]]
    assert events[0] == "started"
    assert events[-1] == "finished"
    assert found["status"] == "completed"
    sent = [e for e in found["events"] if e["event"] == "command_sent"]
    assert [(e["step"], e["attempt"]) for e in sent] == [("pay", 1), ("mail", 1)]
    assert [e["command_id"] for e in sent] == ["h-1:pay:1", "h-1:mail:1"]  # without their tags
    assert "secret" not in json.dumps(found)
    assert {e["body"].get("saga_id") for e in found["events"]} <= {None}
    table = ops.ok("history", "ship", "h-1")
    assert "ship h-1 (completed)" in table
    assert "command_sent" in table
    assert "h-2" not in table
    assert "--since" in ops.error("history", "ship", "nobody")
    assert "no events of saga 'nobody'" in ops.error("history", "ship", "nobody", "--since", "1h")


def test_terminate_ends_a_waiting_saga_without_compensating(ops: Ops) -> None:
    ops.ok("start", "hold", "{}", "--id", "t-1")
    ops.until("hold", "t-1", "running")
    assert "terminate sent" in ops.ok(
        "terminate", "hold", "t-1", "--reason", "customer left", "--by", "ann"
    )
    state = ops.until("hold", "t-1", "terminated")
    assert state["reason"] == "terminated by ann: customer left"
    assert not state["timers"]
    found = ops.json("history", "hold", "t-1")
    [ended] = [e for e in found["events"] if e["event"] == "terminated"]
    assert ended["body"] == {"by": "ann", "reason": "customer left"}
    assert "already ended terminated" in ops.error("terminate", "hold", "t-1", "--reason", "x")
    assert "'--reason'" in ops.error("terminate", "hold", "t-1")


def test_resume_runs_a_failed_saga_on_from_its_failed_step(ops: Ops) -> None:
    ops.ok("start", "ship", '{"flaky": true}', "--id", "r-1")
    failed = ops.until("ship", "r-1", "failed")
    assert failed["reason"] == "Mail failed: Down"
    said = ops.json("resume", "ship", "r-1", "--by", "ann")
    assert said == {"action": "resumed", "step": "mail", "report": None}
    ops.until("ship", "r-1", "completed")
    found = ops.json("history", "ship", "r-1")
    mails = [
        e["attempt"]
        for e in found["events"]
        if e["event"] == "command_sent" and e["step"] == "mail"
    ]
    assert mails == [1, 2]
    assert any(e["event"] == "resumed" and e["body"]["by"] == "ann" for e in found["events"])
    assert "only a stuck, failed or parked saga" in ops.error("resume", "ship", "r-1")
