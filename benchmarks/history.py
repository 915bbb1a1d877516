"""Benchmark: ``sagas history`` of one saga in a large journal.

Writes N synthetic journal events (sagas of 10 events each, 100 ms apart, one saga starting
every ``--spacing-ms``; record timestamps as the worker writes them) to the journal of a fresh
namespace, then times :func:`sagas.operate.read_history` for random sagas, given the times their
snapshot holds (``started_ms``, ``updated_ms``), against reading the saga's whole journal
partition (what a history without the time index would do).

Usage: ``python -m benchmarks.history [--events 200000] [--partitions 6] [--lookups 20]``
(a local broker is started unless ``KAFKA_BOOTSTRAP_SERVERS`` is set). Figures depend on the
machine; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from processors.broker import broker_for_demo
from sagas.engine.model import JournalEvent
from sagas.operate import read_history
from sagas.operate._io import read_range, reader
from sagas.partitioning import partition_for
from sagas.protocol import TopicNames
from sagas.serde import Serde
from sagas.settings import KafkaSettings

EVENTS_PER_SAGA = 10
STEP_MS = 100


def fill(settings: KafkaSettings, topic: str, sagas: int, start_ms: int, spacing_ms: int) -> None:
    """Write every saga's events in time order, timestamped like the worker's records."""
    serde = Serde()
    producer = Producer(
        settings.client_config(
            **{"partitioner": "murmur2_random", "linger.ms": 20, "compression.type": "lz4"}
        )
    )
    window = EVENTS_PER_SAGA * STEP_MS // spacing_ms + 1  # sagas overlapping in time
    for first in range(0, sagas, window):
        batch = range(first, min(first + window, sagas))
        rows = [
            (start_ms + i * spacing_ms + j * STEP_MS, i, j)
            for i in batch
            for j in range(EVENTS_PER_SAGA)
        ]
        for at, i, j in sorted(rows):
            event = JournalEvent("phase" if j else "started", f"s-{i}", at, {"step": "a", "n": j})
            value = serde.encode_events([event], "bench", 1)
            while True:
                try:
                    producer.produce(topic, key=f"s-{i}".encode(), value=value, timestamp=at)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--spacing-ms", type=int, default=50, help="between saga starts")
    args = parser.parse_args()
    sagas = args.events // EVENTS_PER_SAGA
    ns = f"bench{uuid.uuid4().hex[:8]}"
    topic = TopicNames(ns, "bench").journal
    with broker_for_demo() as bootstrap:
        settings = KafkaSettings(bootstrap)
        admin = AdminClient(settings.client_config())
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)
        start_ms = int(time.time() * 1000) - sagas * args.spacing_ms - 3_600_000
        t0 = time.monotonic()
        fill(settings, topic, sagas, start_ms, args.spacing_ms)
        print(
            f"wrote {sagas * EVENTS_PER_SAGA} events of {sagas} sagas to {args.partitions} "
            f"partitions in {time.monotonic() - t0:.1f}s",
            flush=True,
        )
        picks = random.Random(7).sample(range(sagas), min(args.lookups, sagas))
        times, scanned = [], []
        for i in picks:
            started = start_ms + i * args.spacing_ms
            updated = started + (EVENTS_PER_SAGA - 1) * STEP_MS
            t = time.perf_counter()
            found = read_history(
                settings, ns, "bench", f"s-{i}", started_ms=started, updated_ms=updated
            )
            times.append(time.perf_counter() - t)
            scanned.append(found.scanned)
            assert len(found.entries) == EVENTS_PER_SAGA, found
        consumer = reader(settings)
        p = partition_for(f"s-{picks[0]}".encode(), args.partitions)
        t = time.perf_counter()
        whole = sum(1 for _ in read_range(consumer, topic, p, 0))
        full = time.perf_counter() - t
        consumer.close()
    scale = 1_000_000 * EVENTS_PER_SAGA / (sagas * EVENTS_PER_SAGA)  # to a million sagas
    print(
        f"history of one saga ({args.lookups} lookups, 60 s slack each side): "
        f"p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms, "
        f"{statistics.median(scanned):.0f} records read (of {whole} in its partition)"
    )
    print(
        f"reading its whole partition instead: {full * 1000:.0f} ms for {whole} records; at a "
        f"million sagas ({1_000_000 * EVENTS_PER_SAGA:,} events) about {full * scale:.1f} s for "
        f"the partition and {full * scale * args.partitions:.0f} s for the journal, while the "
        "windowed read stays as above: it grows with one partition's traffic during the "
        "saga's life, not with the journal"
    )


if __name__ == "__main__":
    main()
