"""docker-compose.yml and the Dockerfile stay something a Docker user would keep: one image built
once, processes that receive signals, published query endpoints (checked without a Docker
engine; `docker compose config` runs when one is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagas.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash"}


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def apps() -> dict[str, dict[str, Any]]:
    """Every service but the broker."""
    return {name: s for name, s in spec()["services"].items() if name != "kafka"}


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: its entrypoint (the image's, ``sagas``, by default) and command."""
    entrypoint = service.get("entrypoint", ["sagas"])
    assert isinstance(entrypoint, list), "exec form: a list, not a shell string"
    assert isinstance(service["command"], list), "exec form: a list, not a shell string"
    return [*entrypoint, *service["command"]]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1])
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def test_compose_file_runs_a_kraft_broker_and_the_reference_app() -> None:
    kafka = spec()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    commands = [" ".join(argv(s)) for s in apps().values()]
    assert any("sagas worker processors.orders:app" in c for c in commands), commands
    assert any("sagas worker processors.provisioning:app" in c for c in commands), commands
    for name, service in apps().items():
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_every_app_service_runs_the_one_image_built_from_the_dockerfile() -> None:
    images = {s["image"] for s in apps().values()}
    assert len(images) == 1, images
    for name, service in apps().items():
        assert service["build"] == ".", name  # the same context: one image, built once
        assert "volumes" not in service, f"{name}: the image holds the code, no bind mount"
        assert "pip" not in " ".join(argv(service)), f"{name}: nothing is installed at start"
    assert DOCKERFILE.exists()


def test_signals_reach_the_processes() -> None:
    for name, service in apps().items():
        command = argv(service)
        assert command[0] not in SHELLS, f"{name}: a shell as PID 1 swallows SIGTERM"
        assert "-c" not in command[:2], name
        assert service.get("init") is True, f"{name}: an init forwards signals and reaps"
    for instruction, value in dockerfile_instructions():
        if instruction in ("ENTRYPOINT", "CMD"):
            assert isinstance(json.loads(value), list), f"{instruction} in exec form"


def test_worker_commands_parse_and_their_query_ports_are_published() -> None:
    workers = {n: s for n, s in apps().items() if argv(s)[:2] == ["sagas", "worker"]}
    assert len(workers) == 2
    for name, service in workers.items():
        command = argv(service)[1:]
        ctx = cli.commands["worker"].make_context("worker", command[1:])
        args = ctx.params
        assert args["query_host"] == "0.0.0.0", name
        published = {p.split(":")[-1]: p.split(":")[0] for p in service["ports"]}
        port = args["query_port"]
        assert published.get(port) == port, f"{name}: publish the port"
        assert args["advertise_url"].endswith(f":{port}"), name


def test_the_image_installs_the_library_once_and_holds_the_reference_apps() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(v for i, v in instructions if i == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "a regular install, not -e"
    copied = {v.split()[0] for i, v in instructions if i == "COPY"}
    assert {"sagas", "schemas", "processors", "pyproject.toml"} <= copied  # sagas/schemas links
    ignored = (ROOT / ".dockerignore").read_text()
    for path in ("pyproject.toml", "README.md", "schemas/", "sagas/", "processors/"):
        assert f"!{path}" in ignored, f".dockerignore keeps {path} in the build context"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_accepts_the_file() -> None:
    proc = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
