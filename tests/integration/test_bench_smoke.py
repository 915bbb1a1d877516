"""Every benchmark of ``make bench`` at tiny sizes, so the harness keeps working.

Figures are never asserted (the machines are shared and noisy): only that each benchmark ran
and its row made it into the table. Temporal and DBOS are skipped with their reason when the
``bench`` extra or Postgres is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run

pytestmark = pytest.mark.kafka


def test_every_benchmark_runs_at_tiny_size(
    bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    out = tmp_path / "bench.json"
    run.main(["--smoke", "--no-profile", "--json", str(out)])
    text = "\n".join(json.loads(out.read_text())["lines"])
    for row in (
        "sagas/s at saturation",
        "one saga alone, p50",
        "records/s, ratio to the bare loop",
        "worker memory per in-flight saga",
        "restore of",
        "deadline lateness",
        "| 7 | worker |",  # the last hop of one saga's critical path
    ):
        assert row in text
