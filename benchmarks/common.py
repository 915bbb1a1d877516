"""What the benchmarks share: the order saga, its participant, processes, the journal follower.

The workload of every comparison (ours, Temporal, DBOS): an order saga of three steps (reserve
credit, reserve stock, ship), each a command and its reply; one order in ten fails at the stock
step and releases its credit (a compensation), the rest finish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from sagas import Saga, call, step
from sagas.app import App
from sagas.errors import CommandFailed
from sagas.participants import CommandContext, Participant
from sagas.serde import Serde
from sagas.settings import KafkaSettings

PARTITIONS = 6
ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".kafka" / "bench-logs"


def order_app(ns: str, partitions: int = PARTITIONS) -> App:
    """The order saga of namespace ``ns``: three steps, the first two compensable."""

    def same(d: dict[str, Any]) -> dict[str, Any]:
        return {"order": d["order"], "fail": d.get("fail", False)}

    saga = Saga[dict[str, Any]](
        "order",
        version=1,
        deadline=timedelta(minutes=10),
        steps=[
            step("credit", to=f"{ns}.credit", command="Reserve", payload=same,
                 compensate=call("Release", same)),
            step("stock", to=f"{ns}.stock", command="Reserve", payload=same,
                 compensate=call("Release", same)),
            step("ship", to=f"{ns}.shipping", command="Ship", payload=same, kind="pivot"),
        ],
    )  # fmt: skip
    return App(ns, [saga.compile()], partitions=partitions)


def order_data(i: int) -> dict[str, Any]:
    """The data of order ``i``: every tenth one fails at the stock step."""
    return {"order": f"o{i}", "fail": i % 10 == 0}


def fails(order: dict[str, Any]) -> bool:
    """Whether this order's stock step fails (so its credit is released)."""
    return bool(order.get("fail"))


def order_participant(ns: str, settings: KafkaSettings) -> Participant:
    """One participant process answering the three services' commands."""
    participant = Participant(settings, f"{ns}.services", instance_id="bench-1", max_batch=500)

    def ok(payload: Any, ctx: CommandContext) -> dict[str, Any]:
        return {"ok": True}

    def stock(payload: Any, ctx: CommandContext) -> dict[str, Any]:
        if fails(payload):
            raise CommandFailed("out of stock", error="OutOfStock")
        return {"ok": True}

    for topic, command in [
        (f"{ns}.credit", "Reserve"),
        (f"{ns}.credit", "Release"),
        (f"{ns}.stock", "Release"),
        (f"{ns}.shipping", "Ship"),
    ]:
        participant.handler(topic, command)(ok)
    participant.handler(f"{ns}.stock", "Reserve")(stock)
    return participant


def order_topics(app: App) -> list[str]:
    """Every topic one run of the order saga writes."""
    ns = app.namespace
    names = app.topics("order")
    commands = [f"{ns}.credit", f"{ns}.stock", f"{ns}.shipping"]
    replies = [f"{ns}.services.{t}.replies" for t in commands]
    return [names.inbox, names.state, names.journal, *commands, *replies]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def records_written(bootstrap: str, topics: list[str]) -> int:
    """Records (and transaction markers) in ``topics``, from their watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    total = 0
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
    consumer.close()
    return total


def spawn(role: str, ns: str, bootstrap: str, *extra: str) -> subprocess.Popen[bytes]:
    """Start ``python -m benchmarks.proc ROLE`` (a worker or the participant) for ``ns``."""
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
    with (LOGS / f"{ns}-{role}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.proc", role, ns, *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, then wait for it (SIGKILL after 30 s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Finished:
    """Follows a journal on a thread: when each saga finished (monotonic clock), and how."""

    def __init__(self, bootstrap: str, topic: str, serde: Serde) -> None:
        self._serde = serde
        self.at: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-journal-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 500,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            done = []
            first = self._consumer.poll(0.1)
            if first is None:
                continue
            for msg in [first, *self._consumer.consume(5000, 0)]:
                if msg.error() is not None or b"finished" not in (msg.value() or b""):
                    continue  # cheap pre-filter; decode only candidates
                events, _, _ = self._serde.decode_events(msg.value())
                for event in events:
                    if event.type == "finished":
                        done.append((event.saga_id, str(event.body.get("status"))))
            if done:
                now = time.monotonic()
                with self._changed:
                    for sid, status in done:
                        self.at.setdefault(sid, now)
                        self.status.setdefault(sid, status)
                    self._changed.notify_all()

    def wait(self, ids: list[str], timeout: float) -> None:
        """Block until every saga of ``ids`` finished.

        Raises:
            RuntimeError: some did not finish within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(s in self.at for s in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sum(1 for s in ids if s not in self.at)
                    raise RuntimeError(f"{missing} sagas did not finish in {timeout:.0f}s")
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        """Stop following."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
