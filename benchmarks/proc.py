"""A benchmark process: ``python -m benchmarks.proc worker|participant NS [--trace FILE]``.

Runs the order saga's worker or its participant for namespace ``NS`` until SIGTERM. With
``--trace``, every transaction of the loop is timed (wall clock, ms) and appended to ``FILE`` as
one JSON line: when the poll began and returned a record, when the batch was handled, produced,
its offsets sent and the commit returned; SIGUSR1 ends the timing. The timing wraps the
library's classes in this process only; nothing in the library changes.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Any

from benchmarks.common import order_app, order_participant
from sagas.settings import KafkaSettings


def _ms() -> float:
    return time.time_ns() / 1e6


class _Tracer:
    """Times each round of the transactional loop (see the module docstring)."""

    def __init__(self, path: str, who: str) -> None:
        self.out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self.who = who
        self.row: dict[str, Any] = {}

    def install(self) -> None:
        from sagas.runtime.loop import TransactionalLoop
        from sagas.runtime.transactions import Transactions

        tracer = self
        wrapped = ("begin", "produce", "_send_offsets", "commit")
        plain = {"consumer": TransactionalLoop.consumer}
        plain.update({name: getattr(Transactions, name) for name in wrapped})

        def uninstall(*_: object) -> None:
            """SIGUSR1: time no more (the saturation run goes unwrapped)."""
            TransactionalLoop.consumer = plain["consumer"]  # type: ignore[method-assign]
            for name in wrapped:
                setattr(Transactions, name, plain[name])

        signal.signal(signal.SIGUSR1, uninstall)
        plain_consumer = TransactionalLoop.consumer.fget  # type: ignore[attr-defined]

        class Timed:
            def __init__(self, consumer: Any) -> None:
                self._c = consumer

            def poll(self, timeout: float) -> Any:
                started = _ms()
                msg = self._c.poll(timeout)
                if msg is not None:
                    tracer.row = {"who": tracer.who, "poll": started, "got": _ms(), "inputs": 1}
                return msg

            def consume(self, n: int, timeout: float) -> Any:
                msgs = self._c.consume(n, timeout)
                tracer.row["inputs"] = 1 + len(msgs)
                return msgs

            def __getattr__(self, name: str) -> Any:
                return getattr(self._c, name)

        def consumer(loop: Any) -> Any:
            return Timed(plain_consumer(loop))

        TransactionalLoop.consumer = property(consumer)  # type: ignore[assignment,method-assign]

        def wrap(name: str, before: str | None, after: str | None) -> None:
            plain = getattr(Transactions, name)

            def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
                if before is not None:
                    tracer.row.setdefault(before, _ms())
                result = plain(self, *args, **kwargs)
                if after is not None:
                    tracer.row[after] = _ms()
                return result

            setattr(Transactions, name, timed)

        wrap("begin", "begin", None)
        wrap("produce", None, "produced")
        wrap("_send_offsets", "offsets_start", "offsets")
        wrap("commit", None, "commit")
        plain_commit = Transactions.commit

        def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = plain_commit(self, *args, **kwargs)
            if "got" in tracer.row:
                tracer.out.write(json.dumps(tracer.row) + "\n")
                tracer.out.flush()
            tracer.row = {}
            return result

        Transactions.commit = commit  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker", "participant"])
    parser.add_argument("ns")
    parser.add_argument("--trace")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--worker-id", default="bench")
    args = parser.parse_args()
    if args.trace:
        _Tracer(args.trace, args.role).install()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = KafkaSettings()
    if args.role == "worker":
        from sagas.runtime.process import run_worker

        app = order_app(args.ns, args.partitions)
        run_worker(
            app,
            settings,
            worker_id=args.worker_id,
            stop=stop,
            install_signal_handlers=False,
            query_host="127.0.0.1",  # as `sagas worker` runs: clients ask it for a saga's state
        )
    else:
        order_participant(args.ns, settings).run(stop)


if __name__ == "__main__":
    main()
