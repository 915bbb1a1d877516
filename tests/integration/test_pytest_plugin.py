"""The pytest plugin as a user gets it: a fresh folder, no PYTHONPATH, no conftest; the user's
tests use ``sagas_env`` in memory and ``sagas_worker``/``sagas_participant``/``sagas_client`` on
the real broker, and pass; a failing saga fails the user's test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import user_env

pytestmark = pytest.mark.kafka

SHOP = """\
from datetime import timedelta

from sagas import App, CommandContext, KafkaSettings, Participant, Saga, step

NS = "{ns}"
ship = step("ship", to=f"{{NS}}.shipping", command="Ship", kind="pivot",
            payload=lambda d: {{"address": d["address"]}})
order_saga = Saga[dict]("order", version=1, deadline=timedelta(minutes=1), steps=[ship])
app = App(NS, [order_saga.compile()], partitions=1)
participant = Participant(KafkaSettings(), f"{{NS}}.shipping-service")


@participant.handler(f"{{NS}}.shipping", "Ship")
def ship_it(payload: dict, ctx: CommandContext) -> dict:
    if not payload["address"]:
        raise ValueError("no address")
    return {{"tracking": "t-" + ctx.saga_id}}
"""

TESTS = """\
import pytest

from sagas import SagaFailedError
from sagas.testing import succeed
from shop import app, order_saga, participant


def test_in_memory(sagas_env):
    env = sagas_env(order_saga)
    env.on("Ship", succeed({"tracking": "t-1"}))
    env.start("order", "o-1", {"address": "1 Main St"})
    assert env.state("o-1").status == "completed"


def test_on_kafka(sagas_worker, sagas_participant, sagas_client):
    sagas_worker(app)
    sagas_participant(participant)
    client = sagas_client(app.namespace)
    sid = client.start("order", {"address": "1 Main St"})
    assert client.result("order", sid, timeout=60)["tracking"] == "t-" + sid


def test_that_fails_on_kafka(sagas_worker, sagas_participant, sagas_client):
    sagas_worker(app)
    sagas_participant(participant)
    client = sagas_client(app.namespace)
    sid = client.start("order", {"address": ""})
    assert client.result("order", sid, timeout=60)["tracking"]
"""


def test_a_users_suite_runs_with_the_plugin_alone(
    tmp_path: Path, bootstrap: str, unique: str
) -> None:
    (tmp_path / "shop.py").write_text(SHOP.format(ns=unique))
    (tmp_path / "test_shop.py").write_text(TESTS)
    env = user_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    env.pop("CI", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    report = out.stdout + out.stderr
    assert "PASSED test_shop.py::test_in_memory" in report, report
    assert "PASSED test_shop.py::test_on_kafka" in report, report
    assert "FAILED test_shop.py::test_that_fails_on_kafka" in report, report
    assert "SagaFailedError: saga" in report, report  # the saga's end, not a harness error
    assert out.returncode == 1, report
