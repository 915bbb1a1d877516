"""Benchmark: the worker's state: memory per saga, restore, and timer lateness.

* memory: N order sagas in flight (each waiting for its first reply, its deadline pending), as the
  worker holds them after a restore (snapshot bytes and summaries in a ``PartitionStore``, timers
  indexed): bytes per saga by ``tracemalloc``, and the snapshot's size on the wire;
* restore: N snapshots of in-flight order sagas written to the state topic (6 partitions) with
  their summary header as the worker writes them, then a worker started in this process: restore
  seconds from its metrics, sagas/s, and the growth of this process's RSS per saga; with
  ``--restore-old M``, the same for M snapshots without the header (an older release's, decoded);
* lateness: ``pending`` sagas with a deadline a day away in the state topic, restored; then
  ``firing`` sagas started at a steady rate, each with a 2 s deadline whose participant never
  answers: lateness of every timer fired (the worker's clock at firing minus the due time).

Usage: ``python -m benchmarks.state [--memory 20000] [--restore 200000] [--restore-old 0]
[--pending 100000]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import threading
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import order_app, order_data, percentile
from sagas import Saga, step
from sagas.app import App
from sagas.engine import transition
from sagas.engine.model import JournalEvent, SagaState, Start
from sagas.partitioning import partition_for
from sagas.runtime.observe import Observer
from sagas.runtime.store import PartitionStore
from sagas.runtime.topics import ensure_topics
from sagas.runtime.worker import SagaWorker
from sagas.settings import KafkaSettings
from sagas.wire import input_record, read_summary, summary_header

DAY_MS = 86_400_000


def in_flight(app: App, saga_type: str, saga_id: str, shift_ms: int = 0) -> SagaState:
    """A saga just started (its first command sent), its timers moved by ``shift_ms``."""
    program = app.latest(saga_type)
    now = int(time.time() * 1000)
    state = transition(program, None, Start(saga_id, order_data(1)), now).state
    assert state is not None
    timers = {k: v + shift_ms for k, v in state.timers.items()}
    return dataclasses.replace(state, timers=timers)


def memory_per_saga(sagas: int) -> tuple[float, int]:
    """Bytes of worker memory per in-flight saga (tracemalloc), and one snapshot's size."""
    app = order_app("mem", 1)
    template = in_flight(app, "order", "template")
    records = []
    for i in range(sagas):
        state = dataclasses.replace(template, saga_id=f"saga-{i:08d}")
        records.append(
            (state.saga_id.encode(), app.serde.encode_state(state), summary_header(state))
        )
    store = PartitionStore(0, app.serde.decode_state)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, value, header in records:  # as a restore stores a consumed record
        summary = read_summary([header])
        assert summary is not None
        store.put_encoded(key.decode(), bytes(memoryview(value)), summary)  # a fresh copy
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / sagas, len(records[0][1])


def fill(
    bootstrap: str,
    namespace: str,
    saga_type: str,
    sagas: int,
    shift_ms: int,
    *,
    summary: bool = True,
) -> None:
    """Write ``sagas`` in-flight snapshots of ``saga_type`` to its state topic (with the summary
    header the worker writes, unless ``summary`` is false: an older release's records)."""
    app = _app(namespace, saga_type)
    template = in_flight(app, saga_type, "template", shift_ms)
    topic = app.topics(saga_type).state
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i in range(sagas):
        sid = f"saga-{i:08d}"
        key = sid.encode()
        state = dataclasses.replace(template, saga_id=sid)
        value = app.serde.encode_state(state)
        headers = [summary_header(state)] if summary else []
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=value,
                    partition=partition_for(key, app.partitions),
                    headers=headers,
                )
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(300)


def _app(namespace: str, saga_type: str) -> App:
    if saga_type == "order":
        return order_app(namespace)
    late = Saga[dict[str, Any]](
        "late",
        version=1,
        deadline=timedelta(seconds=2),
        steps=[
            step("wait", to=f"{namespace}.silent", command="Hold", kind="pivot",
                 payload=lambda d: {"order": d["order"]}),
        ],
    )  # fmt: skip
    return App(namespace, [late.compile()], partitions=6)


def _fill_elsewhere(
    bootstrap: str, namespace: str, saga_type: str, n: int, shift: int, *, summary: bool = True
) -> None:
    """Fill from another process, so that its buffers do not count in this one's RSS."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=fill,
        args=(bootstrap, namespace, saga_type, n, shift),
        kwargs={"summary": summary},
    )
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"filling the state topic failed (exit {proc.exitcode})")


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Lateness(Observer):
    def __init__(self) -> None:
        self.late_ms: list[int] = []

    def timer_fired(self, saga_type: str, *, lateness_ms: int) -> None:
        self.late_ms.append(lateness_ms)

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        pass


class _Running:
    """A worker of one saga type on a thread of this process."""

    def __init__(self, app: App, saga_type: str, bootstrap: str, observer: Observer) -> None:
        self.worker = SagaWorker(
            app,
            saga_type,
            KafkaSettings(bootstrap),
            worker_id=f"bench-{uuid.uuid4().hex[:6]}",
            observer=observer,
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def wait_restored(self, sagas: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        m = self.worker.metrics
        while m.restored_sagas < sagas or len(m.owned_partitions) < self.worker.app.partitions:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"restored {m.restored_sagas} of {sagas} sagas")
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


def restore(bootstrap: str, sagas: int, *, summary: bool = True) -> tuple[float, float]:
    """Seconds to restore ``sagas`` in-flight order sagas (written with their summary header, or
    without: decoded), and RSS bytes per saga."""
    ns = f"restore{uuid.uuid4().hex[:6]}"
    app = order_app(ns)
    ensure_topics(app, KafkaSettings(bootstrap))
    _fill_elsewhere(bootstrap, ns, "order", sagas, 0, summary=summary)
    rss = _rss()
    running = _Running(app, "order", bootstrap, Observer())
    try:
        running.wait_restored(sagas)
        grown = _rss() - rss
        return running.worker.metrics.restore_seconds, grown / sagas
    finally:
        running.close()


def lateness(bootstrap: str, pending: int, firing: int, rate: float = 200.0) -> list[int]:
    """Lateness (ms) of ``firing`` deadlines with ``pending`` other timers pending."""
    ns = f"late{uuid.uuid4().hex[:6]}"
    app = _app(ns, "late")
    ensure_topics(app, KafkaSettings(bootstrap))
    _fill_elsewhere(bootstrap, ns, "late", pending, DAY_MS)
    observer = _Lateness()
    running = _Running(app, "late", bootstrap, observer)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    inbox = app.topics("late").inbox
    try:
        running.wait_restored(pending)
        began = time.monotonic()
        for i in range(firing):
            rec = input_record(inbox, Start(f"live-{i}", order_data(i)), app.serde)
            producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
            producer.poll(0)
            time.sleep(max(0.0, began + (i + 1) / rate - time.monotonic()))
        producer.flush(10)
        deadline = time.monotonic() + 60
        while len(observer.late_ms) < firing and time.monotonic() < deadline:
            time.sleep(0.1)
        return observer.late_ms
    finally:
        running.close()


def main() -> None:
    from processors.broker import broker_for_demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", type=int, default=20_000)
    parser.add_argument("--restore", type=int, default=200_000)
    parser.add_argument("--restore-old", type=int, default=0)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--firing", type=int, default=2000)
    args = parser.parse_args()
    per_saga, snapshot = memory_per_saga(args.memory)
    print(f"memory per in-flight saga: {per_saga:,.0f} B (snapshot {snapshot} B)")
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        for n, summary in ((args.restore, True), (args.restore_old, False)):
            if n <= 0:
                continue
            seconds, rss = restore(bootstrap, n, summary=summary)
            kind = "sagas" if summary else "sagas without the summary header (decoded)"
            print(
                f"restore of {n:,} {kind}: {seconds:.1f}s ({n / seconds:,.0f}/s),"
                f" RSS {rss:,.0f} B per saga"
            )
        late = lateness(bootstrap, args.pending, args.firing)
        print(
            f"lateness of {len(late)} deadlines with {args.pending:,} timers pending: "
            f"p50 {percentile([float(x) for x in late], 0.5):.0f} ms, "
            f"p99 {percentile([float(x) for x in late], 0.99):.0f} ms"
        )


if __name__ == "__main__":
    main()
