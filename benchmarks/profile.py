"""Where the time goes: a sampling profile of the worker and one saga's transactional hops.

* :class:`PySpy` attaches ``py-spy record`` (raw collapsed stacks) to a process and, once
  stopped, sums the samples by the innermost Python frame (self) and by function (inclusive);
* :func:`hops` reads the transaction timings that ``benchmarks.proc --trace`` wrote and splits one
  saga's critical path (client start -> worker -> participant -> worker ... -> finished) into its
  hops, each into: wait (from the previous hop's commit, or the client's start, until the poll
  returned the record), processing (handling the batch), produce, ``send_offsets`` and commit.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.common import percentile

PHASES = ("wait", "processing", "produce", "send_offsets", "commit")


def py_spy() -> str | None:
    """The ``py-spy`` executable, or ``None``."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpy:
    """``py-spy record`` of one process until :meth:`stop`."""

    def __init__(self, pid: int, rate: int = 250) -> None:
        self.out = Path(tempfile.mkdtemp(prefix="bench-pyspy-")) / "stacks.txt"
        exe = py_spy()
        if exe is None:
            raise RuntimeError("no py-spy: pip install -e '.[bench]'")
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--nonblocking", "--output", str(self.out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop sampling (py-spy writes its file on SIGINT)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def summary(self, top: int = 15) -> list[str]:
        """Lines: total samples, the top frames by self samples, the top functions inclusive."""
        if not self.out.exists():
            return ["py-spy wrote no profile (is ptrace allowed here?)"]
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text(encoding="utf-8").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            if not frames:
                continue
            total += n
            own[_short(frames[-1])] += n
            for name in {_function(f) for f in frames}:
                inclusive[name] += n
        lines = [f"{total} samples of the worker's Python threads while they ran"]
        lines += ["self (innermost Python frame):"]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
        lines += ["inclusive (the function or what it called):"]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
        return lines


def _short(frame: str) -> str:
    """``func (path/to/sagas/x.py:12)`` -> ``func (sagas/x.py:12)``."""
    name, _, where = frame.partition(" (")
    for anchor in ("/sagas/", "/site-packages/", "/benchmarks/", "/lib/python"):
        if anchor in where:
            where = anchor.strip("/") + "/" + where.split(anchor, 1)[1]
            break
    return f"{name} ({where}" if where else name


def _function(frame: str) -> str:
    short = _short(frame)
    return short.rsplit(":", 1)[0] + ")" if ":" in short else short


def hops(trace: Path, starts: dict[str, float], end_ms: float) -> list[dict[str, float]]:
    """Per hop of one saga alone, the median of each phase (ms) over the sagas of ``starts``.

    ``starts``: saga id -> wall-clock ms its start was written, in order; the first is a warm-up
    and is skipped. ``end_ms``: when the last saga's window closes.
    """
    rows = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines() if line]
    rows.sort(key=lambda r: r["got"])
    bounds = [*sorted(starts.values())[1:], end_ms]
    per_hop: dict[int, dict[str, list[float]]] = {}
    for begin, end in itertools.pairwise(bounds):
        visible = begin
        path = [r for r in rows if begin <= r["got"] < end and "commit" in r]
        for i, r in enumerate(path):
            offsets_start = r.get("offsets_start", r["commit"])
            phases = per_hop.setdefault(i, {k: [] for k in ("who", *PHASES)})
            phases["who"].append(0.0 if r["who"] == "worker" else 1.0)
            phases["wait"].append(r["got"] - visible)
            phases["processing"].append(r.get("begin", offsets_start) - r["got"])
            phases["produce"].append(r.get("produced", r.get("begin", 0)) - r.get("begin", 0))
            phases["send_offsets"].append(r.get("offsets", offsets_start) - offsets_start)
            phases["commit"].append(r["commit"] - r.get("offsets", offsets_start))
            visible = r["commit"]
    table = []
    for i in sorted(per_hop):
        phases = per_hop[i]
        row = {k: percentile(v, 0.5) for k, v in phases.items() if k != "who"}
        row["hop"] = i + 1
        row["participant"] = percentile(phases["who"], 0.5)
        row["n"] = len(phases["wait"])
        table.append(row)
    return table


def hop_lines(table: list[dict[str, float]]) -> list[str]:
    """The hop table as Markdown rows."""
    lines = [
        "| hop | process | wait | processing | produce | send_offsets | commit | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sums = dict.fromkeys(PHASES, 0.0)
    for row in table:
        who = "participant" if row["participant"] >= 0.5 else "worker"
        total = sum(row[k] for k in PHASES)
        for k in PHASES:
            sums[k] += row[k]
        cells = " | ".join(f"{row[k]:.1f}" for k in PHASES)
        lines.append(f"| {int(row['hop'])} | {who} | {cells} | {total:.1f} |")
    cells = " | ".join(f"{sums[k]:.1f}" for k in PHASES)
    lines.append(f"| all | | {cells} | {sum(sums.values()):.1f} |")
    return lines
