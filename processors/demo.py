"""``make demo``: a broker, a real worker, the order app's participants, a few hundred sagas.

Prints a live summary (completed, compensated, in flight) and a final table, then checks the
participants' books: every reservation was either released or confirmed by a shipment.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from processors import orders
from processors.broker import broker_for_demo
from sagas.client import SagaClient
from sagas.engine.model import SagaState
from sagas.runtime.config import KafkaSettings
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.serde.records import decode_state


def read_states(settings: KafkaSettings, topic: str, ids: set[str]) -> dict[str, SagaState]:
    """The newest snapshot of each saga in ``ids``, from the state changelog."""
    consumer = Consumer(
        settings.client_config(
            **{
                "group.id": f"demo-{uuid.uuid4().hex[:6]}",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    states: dict[str, SagaState] = {}
    done: set[int] = set()
    deadline = time.monotonic() + 20
    while len(done) < len(parts) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition() or 0)
            continue
        key = (msg.key() or b"").decode()
        if key in ids and msg.value() is not None:
            states[key] = decode_state(msg.value())
    consumer.close()
    return states


def main() -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=int, default=10)
    args = parser.parse_args()
    with broker_for_demo() as bootstrap:
        settings = KafkaSettings(bootstrap)
        app = orders.app
        ensure_topics(app, settings)
        stop = threading.Event()
        worker = threading.Thread(
            target=run_worker,
            args=(app, settings),
            kwargs={"worker_id": "demo", "stop": stop, "install_signal_handlers": False},
            daemon=True,
        )
        worker.start()
        service, books = orders.participants(
            settings, failure_rate=args.failure_rate, latency_ms=args.latency_ms
        )
        service_thread, service_stop = service.start()
        client = SagaClient(settings, app.namespace)
        run = uuid.uuid4().hex[:6]
        started = time.monotonic()
        ids = set()
        for i in range(args.sagas):
            oid = f"order-{run}-{i:04d}"
            ids.add(
                client.start(
                    "order",
                    {
                        "order_id": oid,
                        "customer": f"c{i % 17}",
                        "total": 10.0 + i,
                        "items": [f"sku-{i % 5}"],
                    },
                    saga_id=oid,
                )
            )
        print(f"started {len(ids)} order sagas in {time.monotonic() - started:.1f}s", flush=True)
        counts: collections.Counter[str] = collections.Counter()
        states: dict[str, SagaState] = {}
        while time.monotonic() - started < 240:
            states = read_states(settings, app.topics("order").state, ids)
            counts = collections.Counter(s.status for s in states.values())
            in_flight = len(ids) - sum(
                n for st, n in counts.items() if st not in ("running", "compensating")
            )
            print(
                f"  {time.monotonic() - started:5.1f}s  completed {counts['completed']:4d}  "
                f"compensated {counts['compensated']:4d}  failed {counts['failed']:3d}  "
                f"in flight {in_flight:4d}",
                flush=True,
            )
            if in_flight == 0:
                break
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # let the last compensation replies land in the books
        service_stop.set()
        stop.set()
        worker.join(30)
        service_thread.join(30)
        client.close()
    print("\nstatus        sagas")
    for status in ("completed", "compensated", "failed", "cancelled", "running", "compensating"):
        print(f"{status:<13} {counts.get(status, 0):5d}")
    print(
        f"{'total':<13} {len(ids):5d}   in {elapsed:.1f}s "
        f"({len(ids) / elapsed:.0f} sagas/s end to end, participants included)"
    )
    problems = books.balanced()
    unfinished = [i for i in ids if i not in states or not states[i].terminal]
    if problems or unfinished:
        print(f"\nFAILED: {len(unfinished)} sagas unfinished; books: {problems[:5]}")
        return 1
    print("books balanced: every reservation was released or confirmed by a shipment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
