"""Many sagas awaited at once by one ``AsyncSagaClient``: the journal reader's load test.

One worker process and one participant process run the order saga; one client starts ``--sagas``
orders and awaits every ``result()`` at once with ``asyncio.gather``. Prints how long that took,
the threads the client process used, and the results' outcomes.
Usage: ``python -m benchmarks.waiters [--sagas 10000]``; a local broker unless
``KAFKA_BOOTSTRAP_SERVERS`` is set.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from pathlib import Path

from benchmarks.common import order_app, order_data, spawn, stop_all
from sagas import AsyncSagaClient, KafkaSettings, SagaFailedError
from sagas.runtime.topics import ensure_topics


async def await_all(
    bootstrap: str, ns: str, sagas: int
) -> tuple[float, float, int, dict[str, int]]:
    """Start ``sagas`` orders, then await them all; (start s, await s, threads, outcomes)."""
    client = AsyncSagaClient(KafkaSettings(bootstrap), ns)
    outcomes: dict[str, int] = {}

    async def one(sid: str) -> None:
        try:
            await client.result("order", sid, timeout=600)
            outcomes["completed"] = outcomes.get("completed", 0) + 1
        except SagaFailedError as exc:
            outcomes[exc.status] = outcomes.get(exc.status, 0) + 1

    try:
        began = time.monotonic()
        ids = [await client.start("order", order_data(i)) for i in range(sagas)]
        started = time.monotonic() - began
        began = time.monotonic()
        peak = 0

        async def count_threads() -> None:
            nonlocal peak
            while True:
                peak = max(peak, threading.active_count())
                await asyncio.sleep(0.2)

        counter = asyncio.create_task(count_threads())
        await asyncio.gather(*(one(sid) for sid in ids))
        counter.cancel()
        return started, time.monotonic() - began, peak, outcomes
    finally:
        await client.close()


def main() -> None:
    from processors.broker import broker_for_demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=10_000)
    args = parser.parse_args()
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        ns = f"wait{uuid.uuid4().hex[:6]}"
        ensure_topics(order_app(ns), KafkaSettings(bootstrap))
        procs = [
            spawn("worker", ns, bootstrap, "--worker-id", "w1"),
            spawn("participant", ns, bootstrap),
        ]
        try:
            started, waited, threads, outcomes = asyncio.run(await_all(bootstrap, ns, args.sagas))
        finally:
            stop_all(procs)
    print(
        f"{args.sagas:,} sagas: started in {started:.1f} s, all results awaited at once in "
        f"{waited:.1f} s by one AsyncSagaClient ({threads} threads in the client process at "
        f"most); outcomes {outcomes}"
    )


if __name__ == "__main__":
    main()
