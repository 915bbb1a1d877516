"""``make bench``: every figure of the performance targets, side by side, in one run.

Runs, on one broker (a fresh local one unless ``KAFKA_BOOTSTRAP_SERVERS`` is set), ``--repeat``
times: the order saga (one alone, then at saturation; ``benchmarks.throughput``), the bare
transactional loop writing as many records per input as a transition, Temporal's dev server and
DBOS over Postgres with the same saga (skipped with the reason when not installed); once: memory
per saga, restore, and timer lateness (``benchmarks.state``). Prints the table (ranges over the
repeats), then the profile: one saga's transactional hops and py-spy's view of the worker at
saturation. ``--smoke`` runs everything at tiny sizes (the harness's test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import state, throughput
from benchmarks.common import percentile
from benchmarks.profile import PySpy, hop_lines, hops, py_spy

MILLION = 1_000_000


def _span(values: list[float], fmt: str = "{:,.0f}") -> str:
    """``a``, or ``a-b`` (low to high) over the repeats."""
    if not values:
        return "—"
    low, high = min(values), max(values)
    if fmt.format(low) == fmt.format(high):
        return fmt.format(low)
    return f"{fmt.format(low)}-{fmt.format(high)}"


def _optional(what: str, run: Callable[[], Any]) -> tuple[Any, str | None]:
    """Run a comparison; a missing tool skips it with its reason."""
    try:
        return run(), None
    except (ImportError, RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        return None, f"{what} skipped: {exc}"


def _temporal(args: argparse.Namespace) -> Any:
    from benchmarks.temporal_bench import run_temporal  # needs the bench extra

    return run_temporal(args.temporal_sagas, args.temporal_alone, args.concurrency)


def machine() -> str:
    """nproc, memory, Python, and the load when the run began."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {total_kb / 1024 / 1024:.1f} GiB, Python "
        f"{platform.python_version()}, load average at start {load[0]:.2f} {load[1]:.2f}"
    )


def bench(bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run every benchmark; return the figures (lists over repeats) and notes."""
    out: dict[str, Any] = {"ours": [], "temporal": [], "dbos": [], "bare": [], "notes": []}
    trace = Path(tempfile.mkdtemp(prefix="bench-trace-")) / "transactions.jsonl"
    profile: list[str] = []
    for repeat in range(args.repeat):
        spy: list[PySpy] = []

        def attach(pid: int, spy: list[PySpy] = spy) -> Callable[[], None]:
            spy.append(PySpy(pid))
            return spy[0].stop

        first = repeat == 0
        profiling = first and args.profile and py_spy() is not None
        f = throughput.run_sagas(
            bootstrap,
            args.sagas,
            args.alone,
            trace=trace if first else None,
            on_saturation=attach if profiling else None,
        )
        out["ours"].append(f)
        if first:
            out["hops"] = hops(trace, f.starts, f.saturation_ms)
            profile = spy[0].summary() if spy else ["py-spy not installed: no profile"]
        k = max(1, round(f.outputs_per_input))
        out["bare"].append((k, throughput.bare_loop(bootstrap, args.records, k)))
        if not args.no_temporal:
            t, note = _optional("Temporal", lambda: _temporal(args))
            out["temporal"].append(t) if t else out["notes"].append(note)
        if not args.no_dbos:
            from benchmarks.dbos_bench import postgres_missing, run_dbos

            missing = postgres_missing()
            if missing:
                out["notes"].append(f"DBOS skipped: {missing}")
            else:
                d, note = _optional(
                    "DBOS", lambda: run_dbos(args.dbos_sagas, args.dbos_alone, args.concurrency)
                )
                out["dbos"].append(d) if d else out["notes"].append(note)
    out["profile"] = profile
    out["memory"] = state.memory_per_saga(args.memory)
    out["restore"] = state.restore(bootstrap, args.restore)
    out["lateness"] = state.lateness(bootstrap, args.pending, args.firing)
    out["notes"] = sorted(set(out["notes"]))
    return out


def table(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The side-by-side table as Markdown lines."""
    ours, tmp, dbos, bare = r["ours"], r["temporal"], r["dbos"], r["bare"]

    def p(fs: list[Any], q: float) -> list[float]:
        return [percentile(x.alone_ms, q) for x in fs]

    rate = [x.per_second for x in ours]
    records = [x.records / x.seconds for x in ours]
    bare_rate = [b for _, b in bare]
    ratio = [a / b for a, b in zip(records, bare_rate, strict=True)]
    vs_t = [a / b.per_second for a, b in zip(rate, tmp, strict=False) if b.per_second]
    vs_d = [a / b.per_second for a, b in zip(rate, dbos, strict=False) if b.per_second]
    per_saga, _snapshot = r["memory"]
    seconds, rss = r["restore"]
    late = [float(x) for x in r["lateness"]]
    return [
        "| figure | kafka-sagas | Temporal | DBOS + Postgres | bare loop | target |",
        "|---|---|---|---|---|---|",
        f"| sagas/s at saturation | {_span(rate)} ({args.sagas:,} sagas) "
        f"| {_span([x.per_second for x in tmp], '{:,.1f}')} ({args.temporal_sagas:,}) "
        f"| {_span([x.per_second for x in dbos], '{:,.1f}')} ({args.dbos_sagas:,}) | — "
        f"| ≥ 2,000 |",
        f"| ratio of our sagas/s | 1 | {_span(vs_t, '{:,.0f}x')} | {_span(vs_d, '{:,.1f}x')} "
        f"| — | |",
        f"| one saga alone, p50 (ms) | {_span(p(ours, 0.5))} | {_span(p(tmp, 0.5))} "
        f"| {_span(p(dbos, 0.5), '{:,.1f}')} | — | ≤ 30 |",
        f"| one saga alone, p99 (ms) | {_span(p(ours, 0.99))} | {_span(p(tmp, 0.99))} "
        f"| {_span(p(dbos, 0.99), '{:,.1f}')} | — | ≤ 60 |",
        f"| a user's start then result, p50 / p99 (ms; {args.alone} in turn) "
        f"| {_span([percentile(x.user_ms, 0.5) for x in ours])} / "
        f"{_span([percentile(x.user_ms, 0.99) for x in ours])} | — | — | — | |",
        f"| Kafka records written/s | {_span(records)} "
        f"({_span([x.records_per_saga for x in ours], '{:.1f}')} per saga, "
        f"{_span([x.outputs_per_input for x in ours], '{:.1f}')} per input) | — | — "
        f"| {_span(bare_rate)} ({bare[0][0]} outputs per input) | |",
        f"| records/s, ratio to the bare loop | {_span(ratio, '{:.2f}')} | — | — | 1 | ≥ 0.5 |",
        f"| worker memory per in-flight saga | {per_saga:,.0f} B (tracemalloc, "
        f"{args.memory:,} sagas); {rss:,.0f} B (RSS growth over the restore) | — | — | — "
        f"| ≤ 1 KB |",
        f"| restore of {args.restore:,} states | {seconds:.1f} s "
        f"({args.restore / seconds:,.0f}/s: 1,000,000 in ~{MILLION / args.restore * seconds:.0f} s"
        f" at that rate) | — | — | — | 1M in ≤ 15 s |",
        f"| deadline lateness, {len(late):,} deadlines with {args.pending:,} timers pending "
        f"| p50 {percentile(late, 0.5):.0f} ms, p99 {percentile(late, 0.99):.0f} ms | — | — "
        f"| — | p99 ≤ 100 ms (100,000) |",
    ]


SIZES = {
    "sagas": (2000, 30),
    "alone": (200, 3),
    "records": (50_000, 500),
    "temporal_sagas": (1000, 10),
    "temporal_alone": (50, 2),
    "dbos_sagas": (1000, 10),
    "dbos_alone": (50, 2),
    "memory": (20_000, 200),
    "restore": (200_000, 500),
    "pending": (100_000, 200),
    "firing": (2000, 20),
}


def main(argv: list[str] | None = None) -> None:
    from processors.broker import broker_for_demo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--no-temporal", action="store_true")
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    for name in SIZES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args(argv)
    for name, (full, tiny) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.smoke else full)
    if args.smoke:
        args.repeat = 1
    began = time.monotonic()
    print(f"machine: {machine()}", flush=True)
    with broker_for_demo(Path(".kafka/bench")) as bootstrap:
        r = bench(bootstrap, args)
    lines = [
        f"machine: {machine()}; {args.repeat} repeats, {time.monotonic() - began:.0f} s",
        "",
        *table(r, args),
        "",
        *r["notes"],
        "",
        "one saga alone, its transactional hops (median ms over the sagas):",
        "",
        *hop_lines(r["hops"]),
        "",
        "the worker at saturation (py-spy):",
        *r["profile"],
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"lines": lines}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
