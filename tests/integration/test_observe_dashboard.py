"""The Grafana dashboard in docs/ queries only metrics and labels the observer exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sagas.engine.model import JournalEvent
from sagas.observe.metrics import PrometheusObserver

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_every_dashboard_query_names_an_exported_metric_and_label() -> None:
    observer = PrometheusObserver()
    observer.saga_events(
        "order",
        [
            JournalEvent("started", "o-1", 0),
            JournalEvent("entered", "o-1", 0, {"step": "pay"}),
            JournalEvent("command_sent", "o-1", 1, {"step": "pay", "command_type": "Pay"}),
            JournalEvent("step_completed", "o-1", 5, {"step": "pay"}),
            JournalEvent("finished", "o-1", 6, {"status": "completed"}),
            JournalEvent("parked", "o-2", 6),
            JournalEvent("expired", "o-3", 6),
        ],
    )
    observer.timer_fired("order", lateness_ms=3)
    observer.transaction("g", committed=True, seconds=0.01, inputs=2)
    observer.restored("g", 0, records=1, seconds=0.1)
    observer.partitions("g", [("t", 0)])
    observer.dead_lettered("g", "g.dlq", "undecodable input: x")
    observer.isolated("g", "cannot write to t: too large")
    observer.command_handled("svc", "Pay", outcome="success", seconds=0.01, headers={})
    observer.command_replayed("svc", "Pay")
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(observer.exposition().decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    exported["sagas_in_flight"] = {"saga_type", "status"}  # empty without a tracked worker
    exported["sagas_consumer_lag_records"] = {"loop", "topic", "partition"}  # needs a broker

    exprs = [
        t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])
    ]
    assert len(exprs) >= 15
    for expr in exprs:
        for name, selector in re.findall(r"(sagas_\w+)(\{[^}]*\})?", expr):
            assert name in exported, f"{name} in {expr!r} is not exported"
            for label in re.findall(r"(\w+)\s*=~?", selector or ""):
                assert label in exported[name], f"{name} has no label {label} ({expr!r})"
        for by in re.findall(r"by \(([^)]*)\)", expr):
            labels = {b.strip() for b in by.split(",")} - {"le"}
            names = set(re.findall(r"(sagas_\w+)", expr))
            assert all(labels <= exported[n] for n in names), (expr, labels)
