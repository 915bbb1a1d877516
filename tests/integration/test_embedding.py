"""A service hosts its sagas' worker: on threads (``Worker.start``/``stop``) or as an asyncio task
(``Worker.serve``), stopped cleanly with the batch in flight committed; and the documented example
service runs as written."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from sagas import Saga, step
from sagas.app import App
from sagas.async_client import AsyncSagaClient
from sagas.client import SagaClient
from sagas.dev.kafka import free_port
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import Worker
from sagas.settings import KafkaSettings
from tests.support.cli import user_env
from tests.support.kafka import read_all

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"

pytestmark = pytest.mark.kafka


def greet_app(ns: str, payload: Any = dict) -> App:
    """One saga type, one pivot step to ``<ns>.hello``."""
    saga = Saga(
        "greet",
        version=1,
        deadline=timedelta(minutes=5),
        steps=[step("hello", to=f"{ns}.hello", command="Hello", payload=payload, kind="pivot")],
    ).compile()
    return App(ns, [saga], partitions=1)


def greeter(settings: KafkaSettings, ns: str) -> Participant:
    """The participant answering ``Hello``."""
    participant = Participant(settings, f"{ns}.svc")

    @participant.handler(f"{ns}.hello", "Hello")
    def hello(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        return {"greeted": True}

    return participant


def test_a_worker_on_threads_runs_sagas_and_stops_with_exit_0(bootstrap: str, unique: str) -> None:
    settings = KafkaSettings(bootstrap)
    handle = Worker(greet_app(unique), settings, worker_id="w1").start()
    thread, stop = greeter(settings, unique).start()
    client = SagaClient(settings, unique)
    try:
        assert handle.running
        assert handle.url is not None
        assert handle.url.startswith("http://127.0.0.1:")
        client.start("greet", {"name": "ann"}, saga_id="g-1")
        assert client.result("greet", "g-1", timeout=60) == {"name": "ann", "greeted": True}
    finally:
        stop.set()
        code = handle.stop()
        client.close()
        thread.join(30)
    assert code == 0
    assert not handle.running
    assert handle.failure is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{handle.url}/health", timeout=5)  # the endpoint closed too


def test_stop_commits_the_batch_in_flight(bootstrap: str, unique: str) -> None:
    """A stop that arrives while the worker is inside a batch lets that batch finish and commit:
    its snapshot, its command and its consumed offset are all there afterwards."""
    entered, release = threading.Event(), threading.Event()

    def slow(data: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return dict(data)

    app = greet_app(unique, payload=slow)
    settings = KafkaSettings(bootstrap)
    handle = Worker(app, settings, worker_id="w1", query_host=None).start()
    client = SagaClient(settings, unique)
    client.start("greet", {"name": "bob"}, saga_id="g-2")
    assert entered.wait(60), "the worker took the start"
    stopping = threading.Thread(target=handle.stop)
    stopping.start()  # stop while the batch is in flight
    time.sleep(0.5)
    assert handle.running, "the worker waits for the batch in flight"
    release.set()
    stopping.join(60)
    assert not handle.running
    assert handle.stop() == 0

    state = client.status("greet", "g-2")  # no worker: the client reads the state topic
    client.close()
    assert state is not None
    assert state.status == "running"
    commands = read_all(bootstrap, f"{unique}.hello", expect=1)
    assert [key for key, _ in commands] == [b"g-2"]
    inbox = app.topics("greet")
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": inbox.group})
    try:
        [committed] = group.committed([TopicPartition(inbox.inbox, 0)], timeout=30)
    finally:
        group.close()
    assert committed.offset == 1


def test_a_worker_as_an_asyncio_task_stops_when_cancelled(bootstrap: str, unique: str) -> None:
    settings = KafkaSettings(bootstrap)

    async def service() -> None:
        worker = asyncio.create_task(Worker(greet_app(unique), settings, worker_id="w1").serve())
        participant = asyncio.create_task(greeter(settings, unique).serve())
        client = AsyncSagaClient(settings, unique)
        try:
            await client.start("greet", {"name": "cy"}, saga_id="g-3")
            result = await client.result("greet", "g-3", timeout=60)
            assert result == {"name": "cy", "greeted": True}
            assert not worker.done()
        finally:
            await client.close()
            for task in (worker, participant):
                task.cancel()
            outcomes = await asyncio.wait_for(
                asyncio.gather(worker, participant, return_exceptions=True), 60
            )
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes

    asyncio.run(service())


def test_the_documented_service_runs_as_written(
    tmp_path: Path, bootstrap: str, unique: str
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DEPLOY.read_text(), re.DOTALL)
    [shop] = [b for b in blocks if b.startswith("# file: shop_service.py")]
    (tmp_path / "shop.py").write_text(shop)
    port = free_port()
    env = user_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SHOP_NAMESPACE=unique, PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "shop.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/orders/o-1"
    try:
        body = json.dumps({"customer": "ann", "total": 30}).encode()
        answer = _call(proc, urllib.request.Request(url, data=body, method="POST"))
        assert answer == {"order": "o-1"}
        deadline = time.monotonic() + 60
        while (answer := _call(proc, urllib.request.Request(url)))["status"] != "completed":
            assert time.monotonic() < deadline, answer
            time.sleep(0.3)
        assert answer["data"]["hold"] == "hold-ann"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def _call(proc: subprocess.Popen[str], request: urllib.request.Request) -> dict[str, Any]:
    """The JSON answer of the service, retried while it starts (or 404 while the order is new)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except (urllib.error.URLError, ConnectionError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code != 404:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
