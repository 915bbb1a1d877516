"""Benchmark: restore and ``status`` / ``list`` with many sagas in the state changelog.

Writes N synthetic snapshots (90% running with a timer a day away, 10% completed) straight to the
state topic of a fresh namespace, starts a worker (which restores them), then times:

* the worker's restore (records/s, from its metrics);
* ``SagaClient.status`` of random sagas through the query endpoint (p50, p99, max);
* ``SagaClient.list(status="completed", limit=100)``;
* one ``status`` read from the state partition itself (the fallback when no worker answers).

Usage: ``python -m benchmarks.status_lookup [--sagas 1000000] [--partitions 6] [--lookups 2000]``
(a local broker is started unless ``KAFKA_BOOTSTRAP_SERVERS`` is set). Figures depend on the
machine; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import statistics
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from confluent_kafka import Producer

from processors.broker import broker_for_demo
from sagas import Saga, step
from sagas.app import App
from sagas.client import SagaClient
from sagas.engine import transition
from sagas.engine.model import Start
from sagas.partitioning import partition_for
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings


def make_app(namespace: str, partitions: int) -> App:
    program = Saga(
        "bench",
        1,
        deadline=timedelta(days=2),
        steps=[
            step(
                "reserve",
                to=f"{namespace}.svc",
                command="Reserve",
                payload=lambda d: {"amount": d["amount"]},
                deadline=timedelta(days=1),
                kind="pivot",
            )
        ],
    ).compile()
    return App(namespace, [program], partitions=partitions)


def fill(app: App, settings: KafkaSettings, sagas: int) -> float:
    """Write ``sagas`` snapshots to the state topic; return the seconds it took."""
    program = app.latest("bench")
    now = int(time.time() * 1000)
    template = transition(program, None, Start("template", {"amount": 10}), now).state
    assert template is not None
    done = dataclasses.replace(template, status="completed", timers={})
    topic = app.topics("bench").state
    producer = Producer(
        settings.client_config(
            **{"linger.ms": 50, "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000}
        )
    )
    started = time.monotonic()
    for i in range(sagas):
        sid = f"saga-{i:08d}"
        base = done if i % 10 == 0 else template
        state = dataclasses.replace(base, saga_id=sid, updated_ms=now + i)
        key = sid.encode()
        while True:
            try:
                producer.produce(
                    topic,
                    key=key,
                    value=app.serde.encode_state(state),
                    partition=partition_for(key, app.partitions),
                )
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        settings = KafkaSettings(bootstrap)
        app = make_app(f"bench-{uuid.uuid4().hex[:6]}", args.partitions)
        ensure_topics(app, settings)
        took = fill(app, settings, args.sagas)
        print(f"wrote {args.sagas} snapshots in {took:.1f}s ({args.sagas / took:,.0f}/s)")

        stop = threading.Event()
        started = time.monotonic()
        worker = threading.Thread(
            target=run_worker,
            args=(app, settings),
            kwargs={"worker_id": "bench", "stop": stop, "install_signal_handlers": False},
            daemon=True,
        )
        worker.start()
        client = SagaClient(settings, app.namespace)
        probe = f"saga-{args.sagas - 1:08d}"
        while client.status("bench", probe) is None or client._owner("bench", 0) is None:
            time.sleep(1)
        restored = time.monotonic() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"worker restored and answering after {restored:.1f}s "
            f"({args.sagas / restored:,.0f} sagas/s); peak RSS of this process {rss:,.0f} MiB"
        )

        cold = SagaClient(settings, app.namespace)
        t = time.perf_counter()
        assert cold.status("bench", probe) is not None
        took_ms = (time.perf_counter() - t) * 1000
        print(f"first status of a new client (reads <ns>.workers): {took_ms:.0f} ms")
        cold.close()

        ids = [f"saga-{random.randrange(args.sagas):08d}" for _ in range(args.lookups)]
        times = []
        for sid in ids:
            t = time.perf_counter()
            state = client.status("bench", sid)
            times.append((time.perf_counter() - t) * 1000)
            assert state is not None
            assert state.saga_id == sid
        times.sort()
        print(
            f"status via the query endpoint, {len(ids)} lookups: "
            f"p50 {statistics.median(times):.2f} ms, p99 {times[int(len(times) * 0.99)]:.2f} ms, "
            f"max {times[-1]:.2f} ms"
        )
        t = time.perf_counter()
        listed = client.list("bench", status="completed", limit=100)
        print(
            f"list(status=completed, limit=100): {len(listed)} sagas in "
            f"{(time.perf_counter() - t) * 1000:.0f} ms"
        )
        stop.set()
        worker.join(60)
        fallback = SagaClient(settings, app.namespace, http_timeout=0.5)
        t = time.perf_counter()
        state = fallback.status("bench", ids[0])
        assert state is not None
        print(
            f"status read from the state partition (no worker): "
            f"{(time.perf_counter() - t) * 1000:.0f} ms"
        )
        client.close()
        fallback.close()


if __name__ == "__main__":
    main()
