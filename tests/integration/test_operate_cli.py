"""The operator commands on the real broker, run as a user runs them (the installed ``sagas``
from the folder that holds their app): history, terminate, resume, dlq list/replay, topics
plan/apply."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from test_cli_operate import Shop, running

from sagas.engine.model import Start
from sagas.partitioning import partition_for
from sagas.serde import Serde
from sagas.wire import input_record

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

OPSAPP = """\
from datetime import timedelta

from sagas import Saga, step, wait_signal
from sagas.app import App
from sagas.errors import CommandFailed
from sagas.participants import Participant
from sagas.settings import KafkaSettings

NS = "{ns}"

ship = Saga(
    "ship",
    version=1,
    deadline=timedelta(minutes=5),
    steps=[
        step("pay", to=f"{{NS}}.svc", command="Pay", kind="pivot"),
        step("mail", to=f"{{NS}}.svc", command="Mail", payload=lambda d: dict(d),
             kind="retryable", deadline=timedelta(minutes=1)),
    ],
).compile()
hold = Saga(
    "hold",
    version=1,
    deadline=timedelta(minutes=5),
    steps=[wait_signal("go", timeout=timedelta(minutes=2))],
).compile()
app = App(NS, [ship, hold], partitions=2)

p = Participant(KafkaSettings(), f"{{NS}}.svc")
failed_once = set()


@p.handler(f"{{NS}}.svc", "Pay")
def pay(payload, ctx):
    return {{"paid": True}}


@p.handler(f"{{NS}}.svc", "Mail")
def mail(payload, ctx):
    if payload.get("flaky") and ctx.saga_id not in failed_once:
        failed_once.add(ctx.saga_id)
        raise CommandFailed("mail server down", error="Down")
    return {{"mailed": True}}
"""


class Ops(Shop):
    """A folder with ``opsapp.py``, its worker and participant running, and the CLI to call."""

    def __init__(self, folder: Path, ns: str, bootstrap: str) -> None:
        super().__init__(folder, ns, bootstrap)
        self.bootstrap = bootstrap

    def until(self, saga_type: str, saga_id: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            proc = self.run("status", saga_type, saga_id, "--json")
            if proc.returncode == 0:
                state: dict[str, Any] = json.loads(proc.stdout)
                if state["status"] in statuses:
                    return state
            assert time.monotonic() < deadline, proc
            time.sleep(0.3)


@pytest.fixture(scope="module")
def ops(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    ns = f"t{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("ops")
    (folder / "opsapp.py").write_text(OPSAPP.format(ns=ns))
    yield from running(Ops(folder, ns, kafka.bootstrap_servers), "opsapp", "hold")


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
    assert "only a failed saga or a parked one" in ops.error("resume", "ship", "r-1")


def test_a_misplaced_start_is_listed_then_replayed_once(ops: Ops) -> None:
    inbox = f"{ops.ns}.ship.inbox"
    rec = input_record(inbox, Start("d-1", {"to": "cy"}), SERDE)
    wrong = 1 - partition_for(b"d-1", 2)
    producer = Producer({"bootstrap.servers": ops.bootstrap})
    producer.produce(inbox, key=rec.key, value=rec.value, headers=rec.headers, partition=wrong)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while not (letters := ops.json("dlq", "list", "ship", "--saga", "d-1")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    [letter] = letters
    assert letter["reason_class"] == "misplaced input"
    assert letter["source"][:2] == [inbox, wrong]
    assert not letter["replayed"]
    table = ops.ok("dlq", "list", "ship", "--reason", "misplaced")
    assert "misplaced input" in table
    assert "d-1" in table
    assert "choose what to replay" in ops.error("dlq", "replay", "ship")
    assert ops.json("dlq", "replay", "ship", "--saga", "d-1") == {
        "replayed": [letter["offset"]],
        "skipped": [],
        "refused": [],
    }
    ops.until("ship", "d-1", "completed")  # back in its partition, it started
    again = ops.json("dlq", "replay", "ship", "--reason", "misplaced")
    assert again == {"replayed": [], "skipped": [letter["offset"]], "refused": []}
    assert ops.json("dlq", "list", "ship", "--saga", "d-1")[0]["replayed"]
    assert "does not exist" in ops.error("dlq", "list", "--group", f"{ops.ns}.nobody")


def test_topics_plan_write_then_apply_and_refuse(ops: Ops, tmp_path: Path) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    spec_dir = ops.folder / f"topics-{ns}"
    (ops.folder / f"app_{ns}.py").write_text(OPSAPP.format(ns=ns))
    args = ("--dir", str(spec_dir), "--replication-factor", "1")
    assert "wrote" in ops.ok("topics", "plan", f"app_{ns}:app", "--write", *args)
    spec_file = str(spec_dir / f"app_{ns}.json")
    planned = ops.json("topics", "plan", spec_file)
    assert {c["action"] for c in planned} == {"create"}
    assert f"{ns}.ship.state" in {c["topic"] for c in planned}
    applied = ops.ok("topics", "apply", spec_file)
    assert f"{len(planned)} created" in applied
    assert {c["action"] for c in ops.json("topics", "plan", spec_file)} == {"ok"}
    spec = json.loads(Path(spec_file).read_text())
    for topic in spec["topics"]:
        if topic["name"] == f"{ns}.ship.inbox":
            topic["partitions"] = 1
        if topic["name"] == f"{ns}.ship.journal":
            topic["config"]["retention.ms"] = "86400000"
    Path(spec_file).write_text(json.dumps(spec))
    refused = ops.error("topics", "apply", spec_file)
    assert f"{ns}.ship.inbox has 2 partitions, spec 1: Kafka cannot remove partitions" in refused
    for topic in spec["topics"]:
        if topic["name"] == f"{ns}.ship.inbox":
            topic["partitions"] = 2
    Path(spec_file).write_text(json.dumps(spec))
    [alter] = [c for c in ops.json("topics", "plan", spec_file) if c["action"] == "alter"]
    assert alter["configs"] == {"retention.ms": "86400000"}
    assert "0 created, 1 altered" in ops.ok("topics", "apply", spec_file)
    for topic in spec["topics"]:
        if topic["name"] == f"{ns}.ship.state":
            topic["config"]["cleanup.policy"] = "delete"
    Path(spec_file).write_text(json.dumps(spec))
    assert "must have cleanup.policy=compact" in ops.error("topics", "apply", spec_file)
