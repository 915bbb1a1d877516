"""Traces on the broker, with the OpenTelemetry SDK's in-memory exporter: one saga, one trace,
its spans (the saga, each step, each handled command) in order, with the saga's attributes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sagas.client import SagaClient
from sagas.runtime.process import Worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.support.shop import shop_app, shop_services, wait_ended

pytestmark = pytest.mark.kafka


def test_one_saga_makes_one_trace_with_its_spans_in_order(bootstrap: str, unique: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sagas.observe.tracing import TracingObserver
    from sagas.protocol import saga_trace_ids

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = KafkaSettings(bootstrap)
    app = shop_app(unique)
    ensure_topics(app, settings)
    handle = Worker(app, settings, worker_id="w1", observer=TracingObserver(provider)).start()
    services = shop_services(settings, unique, TracingObserver(provider))
    thread, stop = services.start()
    client = SagaClient(settings, unique)
    try:
        client.start("shop", {"charge": "fail"}, saga_id="t-1")
        assert wait_ended(client, "shop", "t-1") == "compensated"
    finally:
        stop.set()
        handle.stop()
        thread.join(30)
        client.close()
    spans = sorted(exporter.get_finished_spans(), key=lambda s: (s.start_time, s.name))
    assert {s.context.trace_id for s in spans} == {saga_trace_ids("shop", "t-1")[0]}
    assert [s.name for s in spans] == [
        "saga shop",
        "step reserve",
        "handle Reserve",
        "step charge",
        "handle Charge",
        "handle Release",
    ]
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["saga.id"] == "t-1"
        assert span.attributes["saga.type"] == "shop"
    charge = next(s for s in spans if s.name == "handle Charge")
    assert charge.attributes is not None
    assert charge.attributes["saga.step"] == "charge"
    assert str(charge.attributes["saga.command_id"]) == "t-1:charge:1"
    assert charge.attributes["saga.outcome"] == "failure"


def test_nothing_of_opentelemetry_is_imported_without_a_tracing_observer() -> None:
    code = (
        "import sys, sagas, sagas.observe.metrics, sagas.observe.logs, sagas.runtime.process;"
        "import sagas.observe.tracing;"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
