"""Benchmark: the order saga's throughput and one saga's latency, and the bare loop beside them.

1. one saga alone: ``alone`` sagas one after another, each from its start record to its
   ``finished`` journal event (p50, p99);
2. saturation: ``sagas`` starts written at once, sagas/s from the first start to the last
   ``finished``; Kafka records written per second and per saga, over every topic of the run;
3. the bare loop: a confluent-kafka consume-transform-produce loop in transactions
   (``send_offsets_to_transaction``, ``read_committed``, batches of up to 1,000) that writes as
   many records per input as a saga transition did in step 2 (records written / inputs read).

One worker process and one participant process (``benchmarks.proc``), 10% of sagas compensating.
Usage: ``python -m benchmarks.throughput [--sagas 2000] [--alone 200] [--records 50000]``; a local
broker is started unless ``KAFKA_BOOTSTRAP_SERVERS`` is set. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import (
    PARTITIONS,
    Finished,
    order_app,
    order_data,
    order_topics,
    percentile,
    records_written,
    spawn,
    stop_all,
)
from sagas.client import SagaClient
from sagas.engine.model import Start
from sagas.runtime.topics import TopicSpec, create_missing, ensure_topics
from sagas.settings import KafkaSettings
from sagas.wire import input_record


@dataclass
class SagaFigures:
    """What one run of the order saga measured."""

    sagas: int = 0
    seconds: float = 0.0
    records: int = 0
    inbox_records: int = 0
    compensated: int = 0
    alone_ms: list[float] = field(default_factory=list)
    user_ms: list[float] = field(default_factory=list)
    """``client.start`` then ``client.result``, as a user measures one saga (in turn)."""
    starts: dict[str, float] = field(default_factory=dict)
    """Wall-clock ms at which each one-alone saga's start was written (for the hop analysis)."""
    saturation_ms: float = 0.0
    """Wall-clock ms at which the saturation run began."""

    @property
    def per_second(self) -> float:
        return self.sagas / self.seconds if self.seconds else 0.0

    @property
    def records_per_saga(self) -> float:
        return self.records / self.sagas if self.sagas else 0.0

    @property
    def outputs_per_input(self) -> float:
        """Records written per input the worker and the participant read."""
        return self.records / self.inbox_records if self.inbox_records else 0.0


def run_sagas(
    bootstrap: str,
    sagas: int,
    alone: int,
    *,
    trace: Path | None = None,
    on_saturation: Any = None,
    worker_processes: int = 1,
) -> SagaFigures:
    """Run the order saga: ``alone`` one at a time, then ``sagas`` at once.

    ``trace``: both processes time their transactions into this file (``benchmarks.proc``).
    ``on_saturation(worker_pid)``: called just before the saturation run (to attach a profiler
    to the first worker); it returns a callable called when the run ends.
    ``worker_processes``: worker processes sharing the saga type's partitions.
    """
    ns = f"bench{uuid.uuid4().hex[:6]}"
    app = order_app(ns)
    ensure_topics(app, KafkaSettings(bootstrap))
    extra = ["--trace", str(trace)] if trace else []
    workers = [
        spawn("worker", ns, bootstrap, "--worker-id", f"bench-{i}", *extra)
        for i in range(worker_processes)
    ]
    worker = workers[0]
    services = spawn("participant", ns, bootstrap, *extra)
    finished = Finished(bootstrap, app.topics("order").journal, app.serde)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 0}
    )
    inbox = app.topics("order").inbox
    figures = SagaFigures()

    def start(sid: str, i: int) -> None:
        rec = input_record(inbox, Start(sid, order_data(i)), app.serde)
        producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)

    try:
        # The first saga waits out the group joins and restores; it is not counted.
        for i in range(alone + 1):
            sid = f"alone-{i}"
            figures.starts[sid] = time.time_ns() / 1e6
            began = time.monotonic()
            start(sid, i + 1)  # never a failing one: one saga alone is the happy path
            producer.flush(10)
            finished.wait([sid], 120)
            if i:
                figures.alone_ms.append((finished.at[sid] - began) * 1000)
        client = SagaClient(KafkaSettings(bootstrap), ns)  # what a user sees, after the above
        try:
            for i in range(alone):
                began = time.monotonic()
                client.result("order", client.start("order", order_data(i * 10 + 1)), timeout=60)
                figures.user_ms.append((time.monotonic() - began) * 1000)
        finally:
            client.close()
        before = records_written(bootstrap, order_topics(app))
        inbox_before = _inputs(bootstrap, app)
        ids = [f"s{i:07d}" for i in range(sagas)]
        if trace:  # the saturation run goes untimed
            for proc in (*workers, services):
                proc.send_signal(signal.SIGUSR1)
        stop_profile = on_saturation(worker.pid) if on_saturation else None
        figures.saturation_ms = time.time_ns() / 1e6
        began = time.monotonic()
        for i, sid in enumerate(ids):
            start(sid, i)
        producer.flush(30)
        finished.wait(ids, 600)
        if stop_profile:
            stop_profile()
        figures.sagas = sagas
        figures.seconds = max(finished.at[s] for s in ids) - began
        figures.records = records_written(bootstrap, order_topics(app)) - before
        figures.inbox_records = _inputs(bootstrap, app) - inbox_before
        figures.compensated = sum(1 for s in ids if finished.status[s] != "completed")
    finally:
        finished.close()
        stop_all([*workers, services])
    return figures


def _inputs(bootstrap: str, app: Any) -> int:
    """Records the worker and the participant read: the inbox and the command topics."""
    ns = app.namespace
    topics = [app.topics("order").inbox, f"{ns}.credit", f"{ns}.stock", f"{ns}.shipping"]
    return records_written(bootstrap, topics)


def bare_loop(bootstrap: str, records: int, outputs_per_input: int) -> float:
    """Output records/s of a bare transactional loop writing ``outputs_per_input`` per input."""
    run = uuid.uuid4().hex[:6]
    source, sink = f"bare-{run}.in", f"bare-{run}.out"
    from confluent_kafka.admin import AdminClient

    create_missing(
        AdminClient({"bootstrap.servers": bootstrap}),
        [TopicSpec(source, PARTITIONS), TopicSpec(sink, PARTITIONS)],
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    value = b"x" * 200
    for i in range(records):
        while True:
            try:
                producer.produce(source, key=str(i).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bare-{run}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bare-{run}"})
    txn.init_transactions(30)
    consumer.subscribe([source])
    done = 0
    started = 0.0
    while done < records:
        first = consumer.poll(1.0)
        if first is None or first.error():
            continue
        if not started:
            started = time.monotonic()
        batch = [first, *consumer.consume(999, 0)]
        txn.begin_transaction()
        offsets: dict[int, int] = {}
        for msg in batch:
            if msg.error():
                continue
            for n in range(outputs_per_input):
                txn.produce(sink, key=msg.key(), value=msg.value(), partition=n % PARTITIONS)
            offsets[msg.partition() or 0] = (msg.offset() or 0) + 1
            done += 1
        txn.send_offsets_to_transaction(
            [TopicPartition(source, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(),
        )
        txn.commit_transaction(30)
    elapsed = time.monotonic() - started
    consumer.close()
    txn.flush(10)
    return records * outputs_per_input / elapsed


def main() -> None:
    from processors.broker import broker_for_demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--alone", type=int, default=200)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument(
        "--worker-processes", type=int, default=1, help="worker processes (as --processes runs)"
    )
    args = parser.parse_args()
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        f = run_sagas(bootstrap, args.sagas, args.alone, worker_processes=args.worker_processes)
        print(
            f"one saga alone ({args.alone} in turn): p50 {percentile(f.alone_ms, 0.5):.0f} ms, "
            f"p99 {percentile(f.alone_ms, 0.99):.0f} ms"
        )
        print(
            f"a user's start then result ({args.alone} in turn, after those): p50 "
            f"{percentile(f.user_ms, 0.5):.0f} ms, p90 {percentile(f.user_ms, 0.9):.0f} ms, "
            f"p99 {percentile(f.user_ms, 0.99):.0f} ms, min {min(f.user_ms):.0f} ms"
        )
        print(
            f"{f.sagas} sagas ({f.compensated} compensated): {f.per_second:,.0f} sagas/s; "
            f"{f.records / f.seconds:,.0f} records/s, {f.records_per_saga:.1f} per saga, "
            f"{f.outputs_per_input:.1f} per input"
        )
        k = max(1, round(f.outputs_per_input))
        rate = bare_loop(bootstrap, args.records, k)
        print(f"bare loop, {k} outputs per input: {rate:,.0f} records/s")


if __name__ == "__main__":
    main()
