"""``sagas topics plan | apply`` on the real broker, run as a user runs it (the installed
``sagas`` from the folder that holds the app)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import OPSAPP, Ops

pytestmark = pytest.mark.kafka


@pytest.fixture
def ops(kafka: Any, tmp_path: Path) -> Ops:
    """A folder for apps and their topic specs, and the CLI to call (no app runs)."""
    return Ops(tmp_path, f"t{uuid.uuid4().hex[:12]}", kafka.bootstrap_servers)


def test_topics_plan_write_then_apply_and_refuse(ops: Ops, tmp_path: Path) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    spec_dir = ops.folder / f"topics-{ns}"
    (ops.folder / f"app_{ns}.py").write_text(OPSAPP.format(ns=ns))
    (ops.folder / "opsapp.py").write_text(
        OPSAPP.format(ns=ops.ns)
    )  # its participant: --participant
    args = ("--dir", str(spec_dir), "--replication-factor", "1")
    with_participant = ("--participant", "opsapp:p")
    assert "wrote" in ops.ok("topics", "plan", f"app_{ns}:app", "--write", *args, *with_participant)
    spec_file = str(spec_dir / f"app_{ns}.json")
    written = {t["name"]: t for t in json.loads(Path(spec_file).read_text())["topics"]}
    svc = f"{ops.ns}.svc"  # opsapp's participant: its commands, recorded replies and DLQ
    assert {svc, f"{svc}.{svc}.replies", f"{svc}.dlq"} <= set(written)
    assert written[f"{svc}.{svc}.replies"]["config"]["cleanup.policy"] == "compact,delete"
    assert "opsapp.json (3 topics)" in ops.ok("topics", "plan", "opsapp:p", "--write", *args)
    spec = json.loads(Path(spec_file).read_text())
    spec["topics"] = [t for t in spec["topics"] if t["name"].startswith(f"{ns}.")]
    Path(spec_file).write_text(json.dumps(spec))  # the rest: the ops fixture's participant
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
    plan = ops.run("topics", "plan", spec_file)
    assert plan.returncode == 1, plan
    assert "0 to create, 1 to alter, 1 refused" in plan.stdout, plan.stdout
    assert plan.stderr == (
        "1 refused: sagas topics apply changes nothing until they are fixed; each DETAIL says "
        "how (or write a spec that matches the cluster)\n"
    )
    assert ops.run("topics", "plan", spec_file, "--json").returncode == 1
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
