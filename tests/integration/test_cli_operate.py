"""The operating commands (start, status, result, list, signal, cancel, describe) on the real
broker, run as a user runs them: the installed ``sagas`` from the folder that holds their app."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_cli import MYAPP, SAGAS, sagas, stop, user_env

pytestmark = pytest.mark.kafka


class Shop:
    """A folder with ``myapp.py``, its worker and participant running, and the CLI to call."""

    def __init__(self, folder: Path, ns: str, bootstrap: str) -> None:
        self.folder = folder
        self.ns = ns
        self.env = user_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SAGAS_NAMESPACE=ns)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``sagas ARGS`` to its end."""
        return subprocess.run(
            [SAGAS, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str) -> str:
        """Its output, checking it succeeded."""
        proc = self.run(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def error(self, *args: str) -> str:
        """Its one error line, checking it failed with exit 2."""
        proc = self.run(*args)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("sagas: error: ")
        return lines[0]


S = TypeVar("S", bound=Shop)


def running(shop: S, module: str, saga_type: str) -> Iterator[S]:
    """``sagas worker MODULE:app`` and ``sagas participant MODULE:p``, installed, from the shop's
    folder, while the generator runs; both must exit 0 on SIGTERM."""
    worker = sagas("worker", f"{module}:app", "--worker-id", "w1", cwd=shop.folder, env=shop.env)
    participant = sagas("participant", f"{module}:p", cwd=shop.folder, env=shop.env)
    try:
        deadline = time.monotonic() + 60
        while shop.run("list", saga_type).returncode != 0:  # until the worker made the topics
            assert worker.poll() is None, stop(worker)[1]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        yield shop
    finally:
        worker_code, worker_out = stop(worker)
        participant_code, participant_out = stop(participant)
    assert worker_code == 0, worker_out
    assert participant_code == 0, participant_out


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
    assert "cancelled" in shop.error("result", "approval", "a-2")


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
