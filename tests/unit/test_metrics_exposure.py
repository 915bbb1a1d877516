"""What /metrics shows: no _created series, a participant only its own metrics, gauges at 0."""

from __future__ import annotations

import prometheus_client
import pytest

from sagas.observe.metrics import PrometheusObserver


def test_a_participant_shows_its_own_metrics_at_zero_and_no_created_series() -> None:
    observer = PrometheusObserver()
    observer.serving("billing", "participant")
    observer.command_handled("billing", "Charge", outcome="success", seconds=0.1, headers={})
    text = observer.exposition().decode()
    assert "_created" not in text
    assert 'sagas_handler_duration_seconds_count{command_type="Charge",group="billing"' in text
    assert 'sagas_inputs_total{loop="billing"} 0.0' in text
    assert 'sagas_isolated_total{loop="billing"} 0.0' in text
    for worker_only in ("sagas_started_total", "sagas_in_flight", "sagas_step_duration"):
        assert worker_only not in text


def test_a_shared_registry_keeps_its_other_metrics_created_series() -> None:
    registry = prometheus_client.CollectorRegistry()
    mine = prometheus_client.Counter("app_orders", "Orders.", registry=registry)
    mine.inc()
    observer = PrometheusObserver(registry)
    observer.saga_events("order", [])
    text = prometheus_client.generate_latest(registry).decode()
    assert "app_orders_created" in text
    assert "sagas_started_total" in text
    assert "sagas_started_created" not in text
    assert "sagas_handler_duration_seconds" not in text  # a worker's: no participant metrics


@pytest.mark.parametrize("role", ["worker", "participant"])
def test_each_role_shows_the_loop_metrics(role: str) -> None:
    observer = PrometheusObserver()
    observer.serving("g", role)
    assert "sagas_transaction_duration_seconds" in observer.exposition().decode()
