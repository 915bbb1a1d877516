"""Benchmark: the same order saga on DBOS Transact over Postgres, for comparison.

Starts a Postgres server (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl``, run as the
``postgres`` user when this process is root) in a temporary folder on a free port, with its
default durability (``fsync``, ``synchronous_commit``), and runs the order saga as one DBOS
workflow of three steps (one order in ten fails at the stock step and releases its credit):

* one saga alone: ``alone`` workflows one after another (p50, p99);
* saturation: ``sagas`` workflows on ``concurrency`` threads: sagas/s.

Without Postgres binaries or the ``dbos`` package, :func:`postgres_missing` says what is missing
and the comparison is skipped. Usage: ``python -m benchmarks.dbos_bench [--sagas 1000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagas.dev.kafka import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass
class DbosFigures:
    """What one DBOS run measured."""

    sagas: int = 0
    seconds: float = 0.0
    compensated: int = 0
    alone_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.sagas / self.seconds if self.seconds else 0.0


def _pg(tool: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if (folder / tool).exists():
            return str(folder / tool)
    return shutil.which(tool)


def postgres_missing() -> str | None:
    """Why DBOS cannot run here (``None`` when it can)."""
    try:
        import dbos  # noqa: F401
    except ImportError:
        return "the dbos package is not installed (pip install -e '.[bench]')"
    if _pg("initdb") is None or _pg("pg_ctl") is None:
        return "no Postgres server binaries (apt-get install -y postgresql)"
    return None


@contextmanager
def postgres() -> Iterator[str]:
    """A Postgres server in a temporary folder; yields its URL."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="dbos-bench-"))
    data = folder / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # Postgres refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(
        [*prefix, str(_pg("initdb")), "-D", str(data), "-U", "bench", "--auth=trust"],
        check=True,
        **quiet,  # type: ignore[arg-type]
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
    ctl = str(_pg("pg_ctl"))
    subprocess.run(
        [*prefix, ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        **quiet,  # type: ignore[arg-type]
    )
    try:
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, ctl, "-D", str(data), "-m", "fast", "stop"], check=False, **quiet)  # type: ignore[arg-type]
        shutil.rmtree(folder, ignore_errors=True)


def _saga(dbos: Any) -> Any:
    """Register the order workflow with DBOS; return it."""
    DBOS = dbos.DBOS  # noqa: N806 - DBOS's own name

    @DBOS.step()
    def reserve_credit(order: str) -> str:
        return order

    @DBOS.step()
    def release_credit(order: str) -> str:
        return order

    @DBOS.step()
    def reserve_stock(order: str) -> str:
        if order.endswith("!"):
            raise RuntimeError("out of stock")
        return order

    @DBOS.step()
    def ship(order: str) -> str:
        return order

    @DBOS.workflow()
    def order_saga(order: str) -> str:
        reserve_credit(order)
        try:
            reserve_stock(order)
        except RuntimeError:
            release_credit(order)
            return "compensated"
        ship(order)
        return "completed"

    return order_saga


def run_dbos(sagas: int, alone: int, concurrency: int) -> DbosFigures:
    """Start Postgres, run the saga with DBOS, stop Postgres."""
    import logging

    import dbos

    figures = DbosFigures()
    with postgres() as url:
        dbos.DBOS(
            config={
                "name": "bench",
                "system_database_url": url,
                "sys_db_pool_size": concurrency + 10,
                "log_level": "ERROR",
            }
        )
        order_saga = _saga(dbos)
        dbos.DBOS.launch()
        logging.getLogger("dbos").setLevel(logging.ERROR)
        try:
            for i in range(alone + 1):
                began = time.monotonic()
                order_saga(f"o{i}")
                if i:
                    figures.alone_ms.append((time.monotonic() - began) * 1000)
            orders = [f"o{i}!" if i % 10 == 0 else f"o{i}" for i in range(sagas)]
            began = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(pool.map(order_saga, orders))
            figures.seconds = time.monotonic() - began
            figures.sagas = sagas
            figures.compensated = results.count("compensated")
        finally:
            dbos.DBOS.destroy()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--alone", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    missing = postgres_missing()
    if missing:
        print(f"DBOS skipped: {missing}")
        return
    f = run_dbos(args.sagas, args.alone, args.concurrency)
    ordered = sorted(f.alone_ms)
    print(
        f"DBOS: one saga alone p50 {ordered[len(ordered) // 2]:.1f} ms, "
        f"p99 {ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]:.1f} ms; "
        f"{f.sagas} sagas ({f.compensated} compensated): {f.per_second:.1f} sagas/s"
    )


if __name__ == "__main__":
    main()
