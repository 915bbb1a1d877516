"""The world simulation's command line.

::

    python -m tests.sim.run --sagas 20000 --seed 1 --workers 2   # worlds until 20,000 sagas
    python -m tests.sim.run --seed 1 --index 42 -v                # one world, every journal

Worlds ``0, 1, 2...`` of a seed are run in chunks of 50 across ``--workers`` processes until
their top-level sagas reach ``--sagas`` (the chunks under way finish too); each world is
deterministic in (seed, index), so a failing one is replayed alone with ``--index``. Exit status
1 if any invariant was violated.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence

from tests.sim.world import WorldResult, run_many, run_world

CHUNK = 50


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (the pool's workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def summary(
    results: list[WorldResult], seconds: float, shown: int, cpu: float | None = None
) -> tuple[str, bool]:
    """What the worlds found (the first ``shown`` failing ones in full), and whether every
    invariant held."""
    results.sort(key=lambda r: r.index)
    sagas = sum(r.sagas for r in results)
    children = sum(r.children for r in results)
    events = sum(r.transitions for r in results)
    skipped = [r for r in results if r.skipped]
    bad = [r for r in results if r.violations]
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
        notes.update(r.notes)
        kinds.update(v.kind for v in r.violations)
    lines = [r.report for r in bad[:shown]]
    seed = results[0].seed if results else 0
    lines += [
        f"seed {seed}: {len(results)} worlds, {sagas} sagas and {children} child sagas, "
        f"{events} journal events in {seconds:.1f} s",
        f"rate: {sagas / seconds:.0f} sagas/s ({(sagas + children) / seconds:.0f} with children), "
        f"{len(results) / seconds:.1f} seeds (worlds)/s"
        + (f"; {cpu:.0f} CPU s, {sagas / cpu:.0f} sagas per CPU second" if cpu else ""),
        "end states: " + ", ".join(f"{k} {n}" for k, n in statuses.most_common()),
    ]
    for note, n in notes.most_common():
        lines.append(f"note: {n} sagas {note}")
    if skipped:
        lines.append(f"skipped {len(skipped)} worlds the compiler refused: {skipped[0].skipped}")
    if bad:
        lines.append(f"VIOLATIONS in {len(bad)} worlds: " + ", ".join(
            f"{k} {n}" for k, n in kinds.most_common()
        ))  # fmt: skip
        for kind in kinds:
            worlds = [r.index for r in bad if any(v.kind == kind for v in r.violations)]
            more = f" (+{len(worlds) - 10} more)" if len(worlds) > 10 else ""
            lines.append(f"  {kind}: worlds {worlds[:10]}{more}")
        lines.append(f"replay one: python -m tests.sim.run --seed {seed} --index WORLD -v")
    else:
        lines.append("no violations")
    return "\n".join(lines), not bad


def simulate(sagas: int, seed: int, workers: int, shown: int = 3) -> tuple[str, bool]:
    """Run worlds of ``seed`` until ``sagas`` top-level sagas ran; the summary and whether
    every invariant held."""
    started = time.perf_counter()
    cpu = _cpu_seconds()
    results: list[WorldResult] = []
    done = 0
    next_index = 0
    last_print = started

    def chunk() -> range:
        nonlocal next_index
        r = range(next_index, next_index + CHUNK)
        next_index += CHUNK
        return r

    if workers <= 1:
        while done < sagas:
            batch = run_many(seed, chunk())
            results += batch
            done += sum(r.sagas for r in batch)
    else:
        with multiprocessing.Pool(workers) as pool:
            pending = [pool.apply_async(run_many, (seed, chunk())) for _ in range(workers * 2)]
            while pending:
                batch = pending.pop(0).get()
                results += batch
                done += sum(r.sagas for r in batch)
                if done < sagas:
                    pending.append(pool.apply_async(run_many, (seed, chunk())))
                now = time.perf_counter()
                if now - last_print > 30:
                    last_print = now
                    print(
                        f"... {done} sagas, {done / (now - started):.0f} sagas/s",
                        file=sys.stderr,
                        flush=True,
                    )
    seconds = time.perf_counter() - started
    return summary(results, seconds, shown, _cpu_seconds() - cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000, help="top-level sagas to run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--index", type=int, help="run only this world, and report it")
    parser.add_argument("--show", type=int, default=3, help="failing worlds to print in full")
    parser.add_argument("-v", "--verbose", action="store_true", help="with --index: every journal")
    args = parser.parse_args(argv)
    if args.index is not None:
        result = run_world(args.seed, args.index, verbose=args.verbose)
        print(result.report or f"seed {args.seed} world {args.index}: no violations")
        print("end states: " + ", ".join(f"{k} {n}" for k, n in result.statuses.most_common()))
        return 1 if result.violations else 0
    text, ok = simulate(args.sagas, args.seed, args.workers, args.show)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
