"""A saga parked for a definition version its worker lacked comes back with ``sagas resume``
once the version is deployed again: its dead-lettered inputs are replayed to the inbox, once."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Ops, sagas, stop

pytestmark = pytest.mark.kafka

VERSIONED = """\
import os
from datetime import timedelta

from sagas import Saga, wait_signal
from sagas.app import App

NS = "{ns}"


def hold(version):
    return Saga(
        "hold",
        version=version,
        deadline=timedelta(minutes=5),
        steps=[wait_signal(f"go{{version}}", timeout=timedelta(minutes=2))],
    ).compile()


app = App(NS, [hold(int(v)) for v in os.environ["VERSIONS"].split(",")], partitions=1)
"""


def _worker(ops: Ops, versions: str) -> subprocess.Popen[str]:
    env = {**ops.env, "VERSIONS": versions}
    worker = sagas("worker", "versioned:app", "--worker-id", "w1", cwd=ops.folder, env=env)
    deadline = time.monotonic() + 60
    while ops.run("list", "hold").returncode != 0:
        assert worker.poll() is None, stop(worker)[1]
        assert time.monotonic() < deadline
        time.sleep(0.5)
    return worker


def _stopped(worker: subprocess.Popen[str]) -> None:
    code, out = stop(worker)
    assert code == 0, out


def test_resume_replays_the_inputs_of_a_parked_saga(kafka: Any, tmp_path: Path) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    (tmp_path / "versioned.py").write_text(VERSIONED.format(ns=ns))
    ops = Ops(tmp_path, ns, kafka.bootstrap_servers)
    worker = _worker(ops, "1,2")
    try:
        ops.ok("start", "hold", "{}", "--id", "p-1")
        assert ops.until("hold", "p-1", "running")["version"] == 2
    finally:
        _stopped(worker)
    worker = _worker(ops, "1")  # version 2 is gone: p-1 parks, its signal is dead-lettered
    try:
        ops.ok("signal", "hold", "p-1", "go2", "{}")
        deadline = time.monotonic() + 60
        while not ops.json("dlq", "list", "hold", "--reason", "unknown-definition-version"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert "parked" in {e["event"] for e in ops.json("history", "hold", "p-1")["events"]}
    finally:
        _stopped(worker)
    worker = _worker(ops, "1,2")  # deployed again
    try:
        said = ops.json("resume", "hold", "p-1")
        assert said["action"] == "replayed"
        assert len(said["report"]["replayed"]) == 1
        assert ops.until("hold", "p-1", "completed")["version"] == 2
        assert "only a stuck, failed or parked saga" in ops.error("resume", "hold", "p-1")
    finally:
        _stopped(worker)
