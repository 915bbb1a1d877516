"""The chaos scenario, small: what ``make chaos`` runs at full size (see :mod:`scenario`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario import ChaosConfig, run

pytestmark = [pytest.mark.kafka, pytest.mark.chaos, pytest.mark.timeout(900)]


def test_sagas_hold_their_invariants_under_worker_kills_and_a_broker_restart(
    tmp_path: Path,
) -> None:
    config = ChaosConfig.from_env(
        sagas=150, workers=2, participants=2, duration=30.0, partitions=4, workdir=tmp_path
    )
    report = run(config)
    print("\n".join(report.lines()))
    assert not report.violations, "\n".join(report.lines())
    assert report.kills > 0
