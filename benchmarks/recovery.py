"""Benchmark: how long the sagas stop after a worker is killed, and after the broker restarts.

A broker of its own, one ``sagas participant`` process and ``--workers`` ``sagas worker``
processes (the chaos scenario's app, run with the CLI from a folder of its own) under a steady
stream of order sagas. Then, ``--kills`` times: SIGKILL worker ``w1``, start it again at once with
the same ``--worker-id``, and time until every partition of the journal makes progress again (a
new committed event written after the kill; with one worker, those are the partitions it held).
Then once: stop the broker, start it again, and time from the broker answering until every
partition makes progress.

Usage: ``python -m benchmarks.recovery [--workers 1] [--kills 5] [--rate 40] [--partitions 6]``.
Figures depend on the machine and its load; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from sagas.client import SagaClient
from sagas.dev.kafka import LocalKafka, free_port
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.chaos import chaos_app
from tests.chaos.scenario import HERE, Fleet


class Progress:
    """Follows the journal (``read_committed``): when each partition's events were written (their
    timestamps, epoch seconds), so that a follower's own lag never counts as progress."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.written: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"recovery-{time.monotonic_ns()}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "log_level": 0,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if not msg.error():
                    with self._lock:
                        at = msg.timestamp()[1] / 1000
                        self.written.setdefault(msg.partition(), []).append(at)

    def wait_all_moved(self, since: float, partitions: int, timeout: float = 180.0) -> float:
        """Seconds from ``since`` (epoch seconds) until every partition had an event written
        after it (inf: not within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                after = [[t for t in ts if t > since] for ts in self.written.values()]
            moved = [min(ts) for ts in after if ts]
            if len(moved) == partitions:
                return max(moved) - since
            time.sleep(0.05)
        return float("inf")

    def close(self) -> None:
        """Stop following."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _feed(client: SagaClient, rate: float, stop: threading.Event) -> None:
    """Start ``rate`` sagas a second until stopped (ignoring a broker away for a while)."""
    i = 0
    while not stop.wait(1 / rate):
        try:
            client.start("order", {"behaviour": {}}, saga_id=f"r{i:07d}")
        except Exception:  # noqa: S112 - the broker restarts during the run
            continue
        i += 1


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(prog="benchmarks.recovery", description=__doc__)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40.0, help="sagas started per second")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sagas-recovery-"))
    (workdir / "logs").mkdir()
    (workdir / "app").mkdir()
    shutil.copy(HERE / "chaos_app.py", workdir / "app" / "chaos_app.py")
    broker = LocalKafka(data_dir=workdir / "kafka", port=free_port(), heap="512m")
    bootstrap = broker.start()
    ns = f"recovery{random.Random().randrange(16**6):06x}"
    settings = KafkaSettings(bootstrap)
    app = chaos_app.make_app(ns, args.partitions)
    ensure_topics(app, settings)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(f"{ns}.effects", args.partitions)])[f"{ns}.effects"].result(30)
    env = {"CHAOS_NS": ns, "CHAOS_PARTITIONS": str(args.partitions)}
    env["CHAOS_LEDGER"] = str(workdir / "ledger")
    fleet = Fleet(workdir / "app", workdir / "logs", bootstrap, env)
    fleet.start_participant("p1")
    for i in range(args.workers):
        fleet.start_worker(f"w{i + 1}")
    progress = Progress(bootstrap, app.topics("order").journal)
    client = SagaClient(settings, ns)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(client, args.rate, stop), daemon=True)
    feeder.start()
    kills: list[float] = []
    try:
        first = progress.wait_all_moved(time.time(), args.partitions)
        print(f"warm: every partition moved {first:.1f} s after the feed began", flush=True)
        for _ in range(args.kills):
            time.sleep(3.0)
            killed = time.time()
            fleet.kill_worker("w1")
            kills.append(progress.wait_all_moved(killed, args.partitions))
            print(f"kill -9 of w1, restarted: all partitions moved after {kills[-1]:.2f} s")
        time.sleep(3.0)
        broker.stop()
        time.sleep(2.0)
        broker.start()
        back = time.time()
        broker_back = progress.wait_all_moved(back, args.partitions)
        print(f"broker back: all partitions moved after {broker_back:.2f} s", flush=True)
    finally:
        stop.set()
        feeder.join(10)
        progress.close()
        client.close()
        fleet.stop()
        broker.stop()
    print(
        f"kill-to-progress over {len(kills)} kills ({args.workers} worker(s), "
        f"{args.partitions} partitions): p50 {statistics.median(kills):.2f} s, "
        f"max {max(kills):.2f} s"
    )
    print(f"broker-back-to-progress: {broker_back:.2f} s")
    if not os.environ.get("KEEP_RECOVERY_DIR"):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
