"""The reference apps through a real worker on the broker: every saga ends, the books balance.

Each app runs as ``make demo`` runs it (:mod:`processors.demo`), under a namespace of its own,
with failures, and for provisioning with hangs that reach the saga deadline, so the cancel,
confirm and release path runs.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # processors/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from processors import demo  # noqa: E402
from sagas.settings import KafkaSettings  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _run_to_end(
    settings: KafkaSettings, run: demo.AppRun, inputs: dict[str, dict[str, Any]], worker: str
) -> Counter[str]:
    """Launch the app, start the sagas, wait until they end; stop it. Counts by status."""
    run.launch(settings, worker)
    try:
        run.start_sagas(settings, inputs)
        demo.wait_until_ended(settings, [run], timeout=50)
    finally:
        run.shutdown()
    return Counter(s.status for s in run.states.values())


def test_orders_all_end_and_every_reservation_is_released_or_shipped(
    bootstrap: str, unique: str
) -> None:
    settings = KafkaSettings(bootstrap)
    run = demo.orders_run(settings, namespace=unique, failure_rate=0.25, latency_ms=5)
    counts = _run_to_end(settings, run, demo.order_inputs(unique, 50), f"{unique}-w")
    assert run.problems() == []
    assert counts["completed"] > 0
    assert counts["compensated"] > 0
    assert counts["completed"] + counts["compensated"] == 50


def test_provisioning_all_end_no_vm_leaks_and_hung_vms_are_cancelled(
    bootstrap: str, unique: str
) -> None:
    settings = KafkaSettings(bootstrap)
    run, books = demo.provisioning_run(
        settings,
        namespace=unique,
        failure_rate=0.15,
        hang_rate=0.3,
        latency_ms=5,
        deadline=timedelta(seconds=4),
        every=timedelta(milliseconds=200),
    )
    counts = _run_to_end(settings, run, demo.vm_inputs(unique, 50), f"{unique}-w")
    assert run.problems() == []
    assert counts["failed"] == 0, [s.reason for s in run.states.values() if s.status == "failed"]
    assert counts["completed"] > 0
    assert counts["completed"] + counts["compensated"] == 50
    deadline_hits = [s for s in run.states.values() if s.reason == "the saga deadline passed"]
    vms = Counter(books.cloud.final_states().values())
    assert deadline_hits, "no saga reached its deadline: the cancel path did not run"
    assert books.cloud.calls["cancel"] >= 1
    assert vms["cancelled"] >= 1, vms  # a hung VM whose cancel was confirmed
    assert vms["released"] >= 1, vms  # a VM that booted while cancelled, or before a DNS failure
    assert vms["running"] == counts["completed"]
