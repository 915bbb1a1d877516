"""The installed ``sagas`` command run as a user runs it: from a folder that holds their app,
with no ``PYTHONPATH``; apps for it, and the processes it starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

SAGAS = str(Path(sys.executable).parent / "sagas")


MYAPP = """\
from datetime import timedelta

from sagas import Saga, step, wait_signal
from sagas.app import App
from sagas.participants import Participant
from sagas.settings import KafkaSettings

NS = "{ns}"

greet = Saga(
    "greet",
    version=1,
    deadline=timedelta(minutes=5),
    steps=[step("hello", to=f"{{NS}}.hello", command="Hello", payload=lambda d: dict(d),
               kind="pivot")],
).compile()
approval = Saga(
    "approval",
    version=1,
    deadline=timedelta(minutes=5),
    steps=[
        wait_signal("approved", timeout=timedelta(minutes=2)),
        step("hello", to=f"{{NS}}.hello", command="Hello", payload=lambda d: dict(d),
             kind="pivot"),
    ],
).compile()
app = App(NS, [greet, approval], partitions=1)

p = Participant(KafkaSettings(), f"{{NS}}.svc")


@p.handler(f"{{NS}}.hello", "Hello")
def hello(payload, ctx):
    return {{"greeted": payload["name"]}}
"""


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, as ``env -u PYTHONPATH`` gives."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def sagas(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``sagas ARGS`` as a process of its own, its output in a pipe."""
    return subprocess.Popen(
        [SAGAS, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for the process to exit by itself; its exit code and output."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """SIGTERM the process; its exit code and output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


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

    def refused(self, *args: str) -> str:
        """Its one answer line, checking the input was refused (or the saga did not complete):
        exit 1."""
        proc = self.run(*args)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("sagas: ")
        return lines[0]

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
