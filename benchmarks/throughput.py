"""Benchmark: saga throughput and single-saga latency, and the bare transactional loop's ceiling.

Three measurements on one broker (DESIGN targets: half the bare loop's records/s; 50x Temporal's
durable throughput, about 1,000 sagas/s; a quarter of its 200 ms single-saga latency):

1. the ceiling: a bare confluent-kafka consume-transform-produce loop, one output per input, one
   transaction per batch of up to 1,000, ``send_offsets_to_transaction``, ``read_committed``;
2. throughput: N order sagas (three steps, each a command and its reply) through one
   ``sagas worker`` process and one ``sagas participant`` process; sagas/s from the first start to
   the last ``finished`` event, and Kafka records/s over every topic the run wrote;
3. latency: one saga at a time, start to ``finished`` in the journal.

Usage: ``python -m benchmarks.throughput [--sagas 2000] [--records 100000] [--alone 20]``. A local
broker is started unless ``KAFKA_BOOTSTRAP_SERVERS`` is set. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from sagas import Saga, call, step
from sagas.app import App
from sagas.engine.model import Start
from sagas.participants import Participant
from sagas.runtime.config import KafkaSettings
from sagas.runtime.topics import TopicSpec, create_missing, ensure_topics
from sagas.serde.records import decode_event
from sagas.wire import input_record

NS = os.environ.get("SAGAS_BENCH_NS", "bench")
PARTITIONS = 6


def _order(ns: str) -> App:
    def same(d: dict[str, Any]) -> dict[str, Any]:
        return {"order": d["order"]}

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
    return App(ns, [saga.compile()], partitions=PARTITIONS)


app = _order(NS)
participant = Participant(KafkaSettings(), f"{NS}.services", instance_id="bench-1", max_batch=500)


for _topic, _command in [
    (f"{NS}.credit", "Reserve"),
    (f"{NS}.credit", "Release"),
    (f"{NS}.stock", "Reserve"),
    (f"{NS}.stock", "Release"),
    (f"{NS}.shipping", "Ship"),
]:
    participant.handler(_topic, _command)(lambda payload, ctx: {"ok": True})


# ----------------------------------------------------------------------------- the ceiling


def bare_loop(bootstrap: str, records: int) -> float:
    """Records/s of a bare transactional consume-transform-produce loop."""
    run = uuid.uuid4().hex[:6]
    source, sink = f"bare-{run}.in", f"bare-{run}.out"
    settings = KafkaSettings(bootstrap)
    from confluent_kafka.admin import AdminClient

    create_missing(
        AdminClient(settings.client_config()),
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
    txn = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bare-{run}",
            "linger.ms": 2,
        }
    )
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
            txn.produce(sink, key=msg.key(), value=msg.value())
            offsets[msg.partition() or 0] = (msg.offset() or 0) + 1
            done += 1
        txn.send_offsets_to_transaction(
            [TopicPartition(source, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(),
        )
        txn.commit_transaction(30)
    elapsed = time.monotonic() - started
    consumer.close()
    return records / elapsed


# ----------------------------------------------------------------------------- sagas


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagas.cli", *args, "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class Finished:
    """Follows the journal: which sagas finished, and when (local monotonic clock)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.at: dict[str, float] = {}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-journal-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self._consumer.subscribe([topic])

    def poll(self, timeout: float = 0.05) -> None:
        for msg in self._consumer.consume(5000, timeout):
            if msg.error() is not None:
                continue
            if b"finished" not in (msg.value() or b""):
                continue  # cheap pre-filter; decode only candidates
            event, _, _ = decode_event(msg.value())
            if event.type == "finished":
                self.at.setdefault(event.saga_id, time.monotonic())

    def close(self) -> None:
        self._consumer.close()


def _records_written(bootstrap: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    total = 0
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
    consumer.close()
    return total


def sagas_run(bootstrap: str, sagas: int, alone: int, logs: Path) -> None:
    ns = f"bench{uuid.uuid4().hex[:6]}"
    local = _order(ns)
    settings = KafkaSettings(bootstrap)
    ensure_topics(local, settings)
    env = {
        **os.environ,
        "SAGAS_BENCH_NS": ns,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    worker = _spawn(["worker", "benchmarks.throughput:app", "--worker-id", "bench"], env, logs)
    services = _spawn(["participant", "benchmarks.throughput:participant"], env, logs)
    finished = Finished(bootstrap, local.topics("order").journal)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    inbox = local.topics("order").inbox
    try:
        # Warm up (group joins, restores) with one saga, then time single sagas.
        latencies = []
        for i in range(alone + 1):
            sid = f"alone-{i}"
            rec = input_record(inbox, Start(sid, {"order": sid}))
            started = time.monotonic()
            producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
            producer.flush(10)
            deadline = started + 120
            while sid not in finished.at and time.monotonic() < deadline:
                finished.poll(0.005)
            if sid not in finished.at:
                raise RuntimeError(f"saga {sid} did not finish; see {logs}")
            if i:
                latencies.append((finished.at[sid] - started) * 1000)
        latencies.sort()
        print(
            f"single saga, start to finished ({alone} one at a time): "
            f"p50 {statistics.median(latencies):.0f} ms, max {latencies[-1]:.0f} ms"
        )

        before = _records_written(bootstrap, _topics(local, ns))
        ids = [f"s{i:06d}" for i in range(sagas)]
        started = time.monotonic()
        for sid in ids:
            rec = input_record(inbox, Start(sid, {"order": sid}))
            producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
        producer.flush(30)
        deadline = started + 600
        while len([s for s in ids if s in finished.at]) < sagas:
            finished.poll(0.2)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all sagas finished in 600 s; see {logs}")
        last = max(finished.at[s] for s in ids)
        elapsed = last - started
        written = _records_written(bootstrap, _topics(local, ns)) - before
        print(
            f"{sagas} sagas through one worker process: {elapsed:.1f}s, "
            f"{sagas / elapsed:,.0f} sagas/s; {written:,} Kafka records written, "
            f"{written / elapsed:,.0f} records/s ({written / sagas:.1f} per saga)"
        )
    finally:
        finished.close()
        for proc in (worker, services):
            proc.terminate()
            proc.wait(30)


def _topics(local: App, ns: str) -> list[str]:
    names = local.topics("order")
    commands = [f"{ns}.credit", f"{ns}.stock", f"{ns}.shipping"]
    replies = [f"{ns}.services.{t}.replies" for t in commands]
    return [names.inbox, names.state, names.journal, *commands, *replies]


def main() -> None:
    from processors.broker import broker_for_demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--alone", type=int, default=20)
    args = parser.parse_args()
    logs = Path(".kafka/bench-logs.txt")
    logs.parent.mkdir(parents=True, exist_ok=True)
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        rate = bare_loop(bootstrap, args.records)
        print(f"bare transactional loop: {args.records:,} records, {rate:,.0f} records/s")
        sagas_run(bootstrap, args.sagas, args.alone, logs)


if __name__ == "__main__":
    main()
