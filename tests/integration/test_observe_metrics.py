"""Metrics scraped from a worker's and a participant's /metrics, and JSON log lines about sagas,
after sagas that complete, compensate, hit a deadline and a record that goes to the DLQ."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from sagas.client import SagaClient
from sagas.observe.logs import SagaLogObserver, configure_logging
from sagas.observe.metrics import PrometheusObserver, serve_metrics
from sagas.runtime.observe import Observers
from sagas.runtime.process import Worker, WorkerHandle
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.support.shop import settle_silent_pivot, shop_app, shop_services, wait_ended

pytestmark = pytest.mark.kafka


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at ``url``: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def shop(bootstrap: str, unique: str) -> Iterator[tuple[WorkerHandle, str, SagaClient, Any]]:
    settings = KafkaSettings(bootstrap)
    app = shop_app(unique)
    ensure_topics(app, settings)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    handle = Worker(app, settings, worker_id="w1", metrics=True, observer=SagaLogObserver()).start()
    services_metrics = PrometheusObserver(settings=settings)
    services = shop_services(settings, unique, Observers([services_metrics, SagaLogObserver()]))
    server = serve_metrics(services_metrics, 0)
    thread, stop = services.start()
    client = SagaClient(settings, unique)
    try:
        yield handle, f"http://127.0.0.1:{server.server_address[1]}/metrics", client, stream
    finally:
        stop.set()
        handle.stop()
        thread.join(30)
        server.shutdown()
        server.server_close()
        client.close()
        services_metrics.close()
        logging.basicConfig(force=True)


def test_metrics_and_json_logs_after_sagas_complete_compensate_and_time_out(
    shop: tuple[WorkerHandle, str, SagaClient, io.StringIO], bootstrap: str, unique: str
) -> None:
    handle, services_url, client, logs = shop
    assert handle.metrics_url == f"{handle.url}/metrics"  # on the query endpoint
    client.start("shop", {"charge": "ok"}, saga_id="s-ok")
    client.start("shop", {"charge": "fail"}, saga_id="s-fail")
    client.start("shop", {"charge": "silent"}, saga_id="s-late")
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(f"{unique}.shop.inbox", key=b"junk", value=b"\x00not avro")
    producer.flush(10)
    assert wait_ended(client, "shop", "s-ok") == "completed"
    assert wait_ended(client, "shop", "s-fail") == "compensated"
    settle_silent_pivot(client, "s-late")
    assert wait_ended(client, "shop", "s-late") == "compensated"

    deadline = time.monotonic() + 30
    while True:  # the dead letter's batch commits on its own
        worker = scrape(handle.metrics_url)
        if value(worker, "sagas_dead_letters_total") >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert value(worker, "sagas_started_total", saga_type="shop") == 3
    assert value(worker, "sagas_finished_total", saga_type="shop", status="completed") == 1
    assert value(worker, "sagas_finished_total", saga_type="shop", status="compensated") == 2
    assert value(worker, "sagas_in_flight", saga_type="shop") == 0
    reserve = {"saga_type": "shop", "step": "reserve", "result": "completed"}
    assert value(worker, "sagas_step_duration_seconds_count", **reserve) == 3
    assert (
        value(worker, "sagas_step_duration_seconds_count", step="charge", result="completed") == 1
    )
    assert (
        value(worker, "sagas_step_duration_seconds_count", step="charge", result="step_failed") == 2
    )
    assert value(worker, "sagas_timer_lateness_seconds_count", saga_type="shop") >= 1
    assert value(worker, "sagas_transaction_duration_seconds_count", result="committed") >= 1
    assert value(worker, "sagas_dead_letters_total", reason="undecodable input") == 1
    assert value(worker, "sagas_commands_sent_total", command_type="Release") == 2
    assert value(worker, "sagas_owned_partitions") == 2
    lag = [k for k in worker if k[0] == "sagas_consumer_lag_records"]
    assert {dict(ls)["partition"] for _, ls in lag} == {"0", "1"}
    for name, labels in worker:  # no saga id in any label
        assert not any(v.startswith("s-") for _, v in labels), (name, labels)

    services = scrape(services_url)
    handled = "sagas_handler_duration_seconds_count"
    assert value(services, handled, command_type="Reserve", outcome="success") == 3
    assert value(services, handled, command_type="Charge", outcome="failure") == 1
    assert value(services, handled, command_type="Charge", outcome="none") == 1

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    about = [line for line in lines if line.get("saga_id") == "s-fail"]
    assert {"started", "compensating", "finished"} <= {line.get("event") for line in about}
    assert all(line["saga_type"] == "shop" for line in about)
    failed = [line for line in lines if line.get("outcome") == "failure"]
    assert failed[0]["saga_id"] == "s-fail"
    assert failed[0]["command_id"].startswith("s-fail:charge")
    assert failed[0]["step"] == "charge"
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
