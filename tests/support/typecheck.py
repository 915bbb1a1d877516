"""Run mypy --strict on example files, as users' type checkers see the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on ``paths`` with the repository on its path, no cache, no config."""
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
         "--config-file", os.devnull, *map(str, paths)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=240,
    )  # fmt: skip
