"""README examples pass mypy --strict, a wrong one fails; the DSL and engine are pure."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.typecheck import mypy

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(300)
def test_examples_type_check_and_mistakes_are_caught(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_example.py"
    wrong.write_text((HERE / "wrong_example.py.txt").read_text())
    good = mypy(ROOT / "tests" / "support" / "examples.py")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(wrong)
    assert bad.returncode == 1, bad.stdout
    assert 'TypedDict "Order" has no key "totl"' in bad.stdout
    assert "pivit" in bad.stdout


FORBIDDEN = {"confluent_kafka", "fastavro", "avro", "time", "random", "threading", "asyncio",
             "socket", "os", "datetime.datetime"}  # fmt: skip


@pytest.mark.parametrize("package", ["dsl", "engine"])
def test_pure_packages_import_no_io_clock_randomness_or_threads(package: str) -> None:
    for path in sorted((ROOT / "sagas" / package).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert name not in FORBIDDEN, f"{path.name} imports {name}"
                if top == "sagas":
                    assert name.startswith(("sagas.dsl", "sagas.engine", "sagas.errors")), (
                        f"{path.name} imports {name}"
                    )


def test_the_front_door_exports_every_role_and_import_sagas_loads_no_kafka() -> None:
    code = (
        "import sys, sagas, sagas.cli, sagas.runtime\n"
        "assert 'confluent_kafka' not in sys.modules, 'importing loaded the Kafka client'\n"
        "for name in sagas.__all__: getattr(sagas, name)\n"
        "from sagas import App, AsyncSagaClient, KafkaSettings, Participant, SagaClient, Worker\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr
