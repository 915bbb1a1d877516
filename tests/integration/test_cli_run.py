"""The installed ``sagas`` command, run as a user runs it: from the folder that holds their module,
with no ``PYTHONPATH``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sagas.client import SagaClient
from sagas.errors import SagaError
from sagas.settings import KafkaSettings
from tests.support.cli import MYAPP, SAGAS, finish, sagas, stop, user_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def myapp(tmp_path: Path, unique: str) -> Path:
    """A folder holding ``myapp.py``: one saga, its app and its participant."""
    (tmp_path / "myapp.py").write_text(MYAPP.format(ns=unique))
    return tmp_path


@pytest.mark.kafka
def test_worker_and_participant_run_from_the_folder_that_holds_the_module(
    myapp: Path, bootstrap: str, unique: str
) -> None:
    env = user_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    worker = sagas("worker", "myapp:app", "--worker-id", "w1", cwd=myapp, env=env)
    participant = sagas("participant", "myapp:p", cwd=myapp, env=env)
    try:
        client = SagaClient(KafkaSettings(bootstrap), unique)
        deadline = time.monotonic() + 60
        sid = None
        while sid is None and time.monotonic() < deadline:
            assert worker.poll() is None, stop(worker)[1]
            assert participant.poll() is None, stop(participant)[1]
            try:  # the worker creates the inbox
                sid = client.start("greet", {"name": "ann"}, saga_id="g-1")
            except Exception:
                time.sleep(0.5)
        assert client.result("greet", "g-1", timeout=60) == {"name": "ann", "greeted": "ann"}
        client.close()
    finally:
        worker_code, worker_out = stop(worker)
        participant_code, participant_out = stop(participant)
    assert worker_code == 0, worker_out
    assert participant_code == 0, participant_out


def _started_pids(out_lines: list[str]) -> dict[str, int]:
    """``worker process NAME started (pid N)`` lines: the latest pid per child."""
    pids: dict[str, int] = {}
    for line in out_lines:
        if "worker process" in line and "started (pid" in line:
            words = line.split()
            name = words[words.index("process") + 1]
            pids[name] = int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
    return pids


@pytest.mark.kafka
def test_processes_runs_one_worker_per_child_and_starts_a_killed_one_again(
    tmp_path: Path, bootstrap: str, unique: str
) -> None:
    (tmp_path / "myapp.py").write_text(
        MYAPP.format(ns=unique).replace("partitions=1", "partitions=2")
    )
    env = user_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    log_file = tmp_path / "worker.log"
    with log_file.open("w") as sink:
        parent = subprocess.Popen(
            [SAGAS, "worker", "myapp:app", "--processes", "2", "--worker-id", "w"],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    participant = sagas("participant", "myapp:p", cwd=tmp_path, env=env)
    client = SagaClient(KafkaSettings(bootstrap), unique)

    def lines() -> list[str]:
        return log_file.read_text().splitlines()

    def wait_for(what: str, check: object, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            assert parent.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, f"{what}:\n" + log_file.read_text()
            time.sleep(0.2)

    def greet_all(ids: list[str]) -> None:
        for sid in ids:
            client.start("greet", {"name": sid}, saga_id=sid)
        for sid in ids:
            assert client.result("greet", sid, timeout=60) == {"name": sid, "greeted": sid}

    try:
        wait_for("two children, each its own worker id", lambda: (
            any("worker w-0 runs" in line for line in lines())
            and any("worker w-1 runs" in line for line in lines())
        ))  # fmt: skip

        def started() -> bool:
            try:  # the workers create the inbox
                return bool(client.start("greet", {"name": "g0"}, saga_id="g0"))
            except SagaError:
                return False

        wait_for("the inbox", started)
        greet_all([f"a{i}" for i in range(10)])
        first = _started_pids(lines())
        os.kill(first["worker-1"], signal.SIGKILL)
        wait_for("the killed child started again", lambda: (
            _started_pids(lines()).get("worker-1", first["worker-1"]) != first["worker-1"]
        ))  # fmt: skip
        assert any("worker-1 exited with code -9" in line for line in lines()), lines()
        greet_all([f"b{i}" for i in range(10)])
    finally:
        client.close()
        parent_code, _ = stop(parent)  # type: ignore[arg-type]
        stop(participant)
    assert parent_code == 0, log_file.read_text()
    for pid in _started_pids(lines()).values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every child is gone with the parent


def test_app_dir_names_the_folder_to_import_from(
    myapp: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = sagas(
        "worker", "myapp:app", "--app-dir", str(myapp), *UNREACHABLE, cwd=elsewhere, env=user_env()
    )
    code, out = finish(proc)
    assert code == 2, out
    assert "no Kafka broker answers" in out, out  # imported, then looked for the broker


def test_the_reference_app_imports_from_the_repository_root() -> None:
    proc = sagas("worker", "processors.orders:app", *UNREACHABLE, cwd=REPO, env=user_env())
    code, out = finish(proc)
    assert code == 2, out
    assert "no Kafka broker answers" in out, out


def _free_port() -> int:
    from sagas.dev.kafka import free_port

    return free_port()


UNREACHABLE = ("--bootstrap-servers", f"127.0.0.1:{_free_port()}", "--connect-timeout", "2")
