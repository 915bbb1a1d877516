"""The examples of the README and the documentation run as written, from a user's folder with no
PYTHONPATH.

Each ``python`` block of those pages (:data:`PAGES`) is one of three kinds, told by its first line:
``# file: NAME`` (a file of the walkthrough: written to a fresh folder), ``# sketch...`` (a
fragment that names things from the reader's code: it must parse), or anything else (a script:
run on its own in that folder, against the test broker, once the walkthrough's worker and
participant run). The walkthrough's shell block is run line by line as written.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sagas.dev.kafka import free_port

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"```(python|sh)\n(.*?)```", re.S)


PAGES = (
    "README.md",
    "docs/getting-started.md",
    "docs/concepts.md",
    "docs/client.md",
    "docs/participants.md",
    "docs/deploy.md",
    "docs/operate.md",
    "docs/observe.md",
    "docs/faust.md",
    "docs/wire-contract.md",
    "docs/development.md",
)
"""The pages whose examples run, in this order (the walkthrough's files and commands first)."""


def _blocks() -> list[tuple[str, str]]:
    return [
        (m.group(1), m.group(2))
        for page in PAGES
        for m in BLOCK.finditer((ROOT / page).read_text())
    ]


def _env(bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _service_order(port: int, service: subprocess.Popen[bytes]) -> dict[str, object]:
    """POST an order to shop_service.py and GET it until it ends."""
    url = f"http://127.0.0.1:{port}/orders/o-1"
    body = json.dumps({"customer": "ann", "total": 30}).encode()
    deadline = time.monotonic() + 60
    while True:
        assert service.poll() is None, "shop_service.py exited"
        assert time.monotonic() < deadline, "shop_service.py did not complete o-1"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, method="POST")):
                break
        except OSError:
            time.sleep(0.3)  # not listening yet
    while True:
        assert time.monotonic() < deadline, "shop_service.py did not complete o-1"
        try:
            with urllib.request.urlopen(url) as answer:
                order: dict[str, object] = json.loads(answer.read())
            if order["status"] not in ("running",):
                return order
        except urllib.error.HTTPError as exc:  # 404 until the worker has the saga
            exc.close()
        time.sleep(0.3)


def test_every_python_block_is_a_file_a_sketch_or_a_script_that_parses() -> None:
    python = [code for kind, code in _blocks() if kind == "python"]
    assert len(python) >= 8
    for code in python:
        ast.parse(code)  # a SyntaxError names the block's line


def test_the_walkthrough_and_the_scripts_run_as_written(tmp_path: Path, bootstrap: str) -> None:
    blocks = _blocks()
    files = {}
    scripts = []
    for kind, code in blocks:
        first = code.splitlines()[0] if code.strip() else ""
        if kind != "python" or first.startswith("# sketch"):
            continue
        if m := re.match(r"# file: (\S+)", first):
            files[m.group(1)] = code
        else:
            scripts.append(code)
    assert {"shop.py", "services.py", "test_shop.py", "try_shop.py"} <= set(files)
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    env = _env(bootstrap)

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr

    walkthrough = next(code for kind, code in blocks if kind == "sh" and "try_shop.py" in code)
    background: list[subprocess.Popen[bytes]] = []
    outputs = []
    port = free_port()
    try:
        # The Deploy section's service, beside the walkthrough: its own namespace, its own sagas.
        with (tmp_path / "bg0.log").open("wb") as log:
            service = subprocess.Popen(
                [sys.executable, "shop_service.py"], cwd=tmp_path, env={**env, "PORT": str(port)},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        background.append(service)
        for line in walkthrough.splitlines():
            command = line.split("#", 1)[0].strip()
            if not command:
                continue
            if command.endswith("&"):
                with (tmp_path / f"bg{len(background)}.log").open("wb") as log:
                    background.append(
                        subprocess.Popen(
                            shlex.split(command[:-1]), cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )  # fmt: skip
                continue
            done = subprocess.run(
                shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=180, check=False,
            )  # fmt: skip
            logs = "".join(p.read_text() for p in tmp_path.glob("bg*.log"))
            assert done.returncode == 0, done.stdout + done.stderr + logs
            outputs.append(done.stdout)
        printed = "".join(outputs)
        assert "completed: {" in printed
        assert "compensated:" in printed
        assert "finished" in outputs[-1]  # the history's last event
        assert _service_order(port, service) == {"status": "completed", "data": {
            "customer": "ann", "total": 30, "hold": "hold-ann"}}  # fmt: skip
        for code in scripts:
            script = tmp_path / "script.py"
            script.write_text(code)
            done = subprocess.run(
                [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=180, check=False,
            )  # fmt: skip
            assert done.returncode == 0, code + done.stdout + done.stderr
    finally:
        for proc in background:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc in background:
            code = proc.wait(max(1.0, deadline - time.monotonic()))
            assert code == 0, (tmp_path / f"bg{background.index(proc)}.log").read_text()[-3000:]
