"""The chaos scenario at full size: ``make chaos`` (see ``tests/chaos/scenario.py``).

2,000 order sagas started evenly over the chaos, three ``sagas worker`` and three ``sagas
participant`` processes, a random worker killed with SIGKILL every 1-3 s for two minutes, one
broker restart in the middle; then every invariant is checked and the figures printed. Exit 1
when an invariant broke.

Usage: ``python -m benchmarks.chaos [--sagas 2000] [--workers 3] [--participants 3]
[--duration 120] [--kill-min 1] [--kill-max 3] [--no-broker-restart] [--all-at-once]
[--brokers 1]
[--partitions 6] [--seed 1] [--workdir DIR]``; each flag's default comes from its
``CHAOS_*`` variable (``CHAOS_SAGAS``...) when set. The scenario starts a broker of its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.scenario import ChaosConfig, main_figures, run


def parse(argv: list[str] | None = None) -> ChaosConfig:
    """The scenario's configuration from flags over ``CHAOS_*`` variables."""
    base = ChaosConfig.from_env()
    parser = argparse.ArgumentParser(prog="benchmarks.chaos", description=__doc__)
    parser.add_argument("--sagas", type=int, default=base.sagas)
    parser.add_argument("--workers", type=int, default=base.workers)
    parser.add_argument("--participants", type=int, default=base.participants)
    parser.add_argument("--duration", type=float, default=base.duration, help="seconds of kills")
    parser.add_argument("--kill-min", type=float, default=base.kill_every[0])
    parser.add_argument("--kill-max", type=float, default=base.kill_every[1])
    parser.add_argument(
        "--no-broker-restart", action="store_false", dest="broker_restart",
        default=base.broker_restart,
    )  # fmt: skip
    parser.add_argument(
        "--all-at-once", action="store_false", dest="spread", default=base.spread,
        help="start every saga before the chaos, not evenly during it",
    )  # fmt: skip
    parser.add_argument("--brokers", type=int, default=base.brokers, help="1, or 3 for a cluster")
    parser.add_argument("--partitions", type=int, default=base.partitions)
    parser.add_argument("--seed", type=int, default=base.seed)
    parser.add_argument("--drain-timeout", type=float, default=base.drain_timeout)
    parser.add_argument("--workdir", type=Path, help="logs and ledgers (default: a new temp dir)")
    args = parser.parse_args(argv)
    return ChaosConfig(
        sagas=args.sagas,
        workers=args.workers,
        participants=args.participants,
        duration=args.duration,
        kill_every=(args.kill_min, args.kill_max),
        broker_restart=args.broker_restart,
        brokers=args.brokers,
        partitions=args.partitions,
        seed=args.seed,
        spread=args.spread,
        drain_timeout=args.drain_timeout,
        workdir=(args.workdir or Path(tempfile.mkdtemp(prefix="sagas-chaos-"))).resolve(),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the scenario, print its figures; 0 when every invariant held."""
    config = parse(argv)
    began = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {line}", flush=True)

    report = run(config, log=log)
    return main_figures(report, log)


if __name__ == "__main__":
    sys.exit(main())
