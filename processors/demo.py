"""``make demo``: a broker, real workers and the participants of both reference apps, a few
hundred sagas of each.

The order app (:mod:`processors.orders`) and the VM provisioning app
(:mod:`processors.provisioning`) run side by side, each with its own worker and participants.
The demo prints a live summary per app (completed, compensated, in flight) and a final table, then
checks each app's books: every order reservation released or confirmed by a shipment; every VM
running for a completed saga, and cancelled, failed or released for the others. It exits 1 when a
saga did not end or the books do not balance.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors import orders, provisioning
from processors.broker import broker_for_demo
from sagas.app import App
from sagas.client import SagaClient
from sagas.engine.model import TERMINAL, SagaState, Status
from sagas.participants import Participant
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.runtime.transactions import changelog_reader
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from sagas.ui.server import UiServer

STATUSES: tuple[Status, ...] = (
    "completed",
    "compensated",
    "failed",
    "cancelled",
    "running",
    "compensating",
)


def read_states(
    settings: KafkaSettings, topic: str, ids: set[str], serde: Serde
) -> dict[str, SagaState]:
    """The newest snapshot of each saga in ``ids``, from the state changelog (read with
    ``serde``)."""
    reader = changelog_reader(settings, f"demo-{uuid.uuid4().hex[:6]}")
    states: dict[str, SagaState] = {}
    try:
        partitions = reader.probe.list_topics(topic, timeout=10).topics[topic].partitions
        for partition in partitions:
            for msg in reader.read(topic, partition):
                key = (msg.key() or b"").decode()
                if key in ids and msg.value() is not None:
                    states[key] = serde.decode_state(msg.value())
    finally:
        reader.close()
    return states


@dataclass
class AppRun:
    """A reference app under way: its worker, its participants and the sagas it was given.

    Args:
        label: the name the summary uses.
        app: what the worker runs; ``saga_type`` is the saga type started.
        services: the participants, each run in a thread.
        books: ``(final states by saga id) -> problems``: the participants' books check.
    """

    label: str
    app: App
    saga_type: str
    services: list[Participant]
    books: Callable[[Mapping[str, SagaState]], list[str]]
    ids: list[str] = field(default_factory=list)
    states: dict[str, SagaState] = field(default_factory=dict)
    exit_codes: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    def launch(self, settings: KafkaSettings, worker_id: str) -> None:
        """Create the topics, start the worker thread and the participants."""
        ensure_topics(self.app, settings)

        def work() -> None:
            self.exit_codes.append(
                run_worker(
                    self.app,
                    settings,
                    worker_id=worker_id,
                    stop=self._stop,
                    install_signal_handlers=False,
                )
            )

        worker = threading.Thread(target=work, name=f"worker-{self.label}", daemon=True)
        worker.start()
        self._threads = [(worker, self._stop), *(s.start() for s in self.services)]

    def start_sagas(self, settings: KafkaSettings, inputs: Mapping[str, dict[str, Any]]) -> None:
        """Start one saga per ``saga id -> data``."""
        client = SagaClient(settings, self.app.namespace)
        try:
            for saga_id, data in inputs.items():
                self.ids.append(client.start(self.saga_type, data, saga_id=saga_id))
        finally:
            client.close()

    def refresh(self, settings: KafkaSettings) -> collections.Counter[str]:
        """Read the sagas' states; count them by status."""
        topic = self.app.topics(self.saga_type).state
        self.states = read_states(settings, topic, set(self.ids), self.app.serde)
        return collections.Counter(s.status for s in self.states.values())

    @property
    def in_flight(self) -> int:
        """Sagas not ended yet (as of the last :meth:`refresh`)."""
        return len(self.ids) - sum(1 for s in self.states.values() if s.status in TERMINAL)

    def shutdown(self) -> None:
        """Stop the worker and the participants, and wait for them."""
        for _, stop in self._threads:
            stop.set()
        for thread, _ in self._threads:
            thread.join(30)

    def problems(self) -> list[str]:
        """Sagas that did not end or ended ``failed``, a worker that failed, and the books'
        problems."""
        unfinished = [i for i in self.ids if i not in self.states or not self.states[i].terminal]
        found = (
            [f"{len(unfinished)} sagas did not end, e.g. {unfinished[:3]}"] if unfinished else []
        )
        found += [f"{i} failed: {s.reason}" for i, s in self.states.items() if s.status == "failed"]
        if any(self.exit_codes):
            found.append(f"the worker exited with {self.exit_codes}")
        return found + self.books(self.states)


def orders_run(
    settings: KafkaSettings, *, namespace: str, failure_rate: float, latency_ms: int
) -> AppRun:
    """The order app, ready to launch."""
    service, books = orders.participants(
        settings, failure_rate=failure_rate, latency_ms=latency_ms, namespace=namespace
    )
    return AppRun(
        "orders", orders.make_app(namespace), "order", [service], lambda _: books.balanced()
    )


def order_inputs(run: str, n: int) -> dict[str, dict[str, Any]]:
    """``n`` orders, by saga id."""
    return {
        f"order-{run}-{i:04d}": {
            "order_id": f"order-{run}-{i:04d}",
            "customer": f"c{i % 17}",
            "total": 10.0 + i,
            "items": [f"sku-{i % 5}"],
        }
        for i in range(n)
    }


def provisioning_run(
    settings: KafkaSettings,
    *,
    namespace: str,
    failure_rate: float,
    hang_rate: float,
    latency_ms: int,
    **timing: Any,
) -> tuple[AppRun, provisioning.Books]:
    """The provisioning app, ready to launch, and its books; ``timing`` shapes the saga."""
    services, books = provisioning.participants(
        settings,
        namespace=namespace,
        failure_rate=failure_rate,
        hang_rate=hang_rate,
        latency_ms=latency_ms,
    )
    app = provisioning.make_app(namespace, **timing)

    def check(states: Mapping[str, SagaState]) -> list[str]:
        return books.problems({i: s.status for i, s in states.items()})

    return AppRun("provisioning", app, provisioning.SAGA, services, check), books


def vm_inputs(run: str, n: int) -> dict[str, dict[str, Any]]:
    """``n`` VM requests, by saga id (= VM name)."""
    sizes = ("small", "medium", "large")
    return {
        f"vm-{run}-{i:04d}": {"name": f"vm-{run}-{i:04d}", "size": sizes[i % 3]} for i in range(n)
    }


def wait_until_ended(
    settings: KafkaSettings,
    runs: list[AppRun],
    *,
    timeout: float,
    report: Callable[[float, AppRun, collections.Counter[str]], None] | None = None,
) -> float:
    """Poll the states until every saga ended or ``timeout`` passed; return the seconds taken."""
    started = time.monotonic()
    while True:
        for run in runs:
            counts = run.refresh(settings)
            if report is not None:
                report(time.monotonic() - started, run, counts)
        if all(run.in_flight == 0 for run in runs) or time.monotonic() - started > timeout:
            return time.monotonic() - started
        time.sleep(1.0)


def _print_progress(elapsed: float, run: AppRun, counts: collections.Counter[str]) -> None:
    print(
        f"  {elapsed:5.1f}s  {run.label:<13} completed {counts['completed']:4d}  "
        f"compensated {counts['compensated']:4d}  failed {counts['failed']:3d}  "
        f"in flight {run.in_flight:4d}",
        flush=True,
    )


def main() -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--hang-rate", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=150.0)
    args = parser.parse_args()
    rates = {"failure_rate": args.failure_rate, "latency_ms": args.latency_ms}
    with broker_for_demo() as bootstrap:
        settings = KafkaSettings(bootstrap)
        shop = orders_run(settings, namespace=orders.NAMESPACE, **rates)
        infra, books = provisioning_run(
            settings, namespace=provisioning.NAMESPACE, hang_rate=args.hang_rate, **rates
        )
        runs = [shop, infra]
        for run in runs:
            run.launch(settings, "demo")
        uis = [UiServer(run.app, settings, port=0) for run in runs]
        for run, ui in zip(runs, uis, strict=True):
            print(f"{run.label}: the web UI is at {ui.start()} while the demo runs", flush=True)
        tag = uuid.uuid4().hex[:6]
        t0 = time.monotonic()
        shop.start_sagas(settings, order_inputs(tag, args.orders))
        infra.start_sagas(settings, vm_inputs(tag, args.vms))
        print(
            f"started {len(shop.ids)} orders and {len(infra.ids)} VM provisionings in "
            f"{time.monotonic() - t0:.1f}s",
            flush=True,
        )
        elapsed = wait_until_ended(settings, runs, timeout=args.timeout, report=_print_progress)
        time.sleep(1.0)  # let the last compensation replies land in the books
        for run in runs:
            run.shutdown()
        for ui in uis:
            ui.close()
        code = report(runs, books, elapsed)
        print_history(shop, bootstrap)
    return code


def print_history(run: AppRun, bootstrap: str) -> None:
    """One saga's timeline, as ``sagas history`` prints it (a compensated one if any)."""
    from sagas.cli import main as sagas_main

    ids = sorted(run.states, key=lambda sid: run.states[sid].status != "compensated")
    if not ids:
        return
    args = [run.saga_type, ids[0], "-n", run.app.namespace, "--bootstrap-servers", bootstrap]
    print(f"\n$ sagas history {' '.join(args[:4])}", flush=True)
    sagas_main(["history", *args])


def report(runs: list[AppRun], books: provisioning.Books, elapsed: float) -> int:
    """Print the final table and the books; return the exit code."""
    counts = [collections.Counter(s.status for s in run.states.values()) for run in runs]
    print("\n" + f"{'status':<13}" + "".join(f"{run.label:>14}" for run in runs))
    for status in STATUSES:
        print(f"{status:<13}" + "".join(f"{c.get(status, 0):>14d}" for c in counts))
    print(f"{'total':<13}" + "".join(f"{len(run.ids):>14d}" for run in runs))
    total = sum(len(run.ids) for run in runs)
    print(f"\n{total} sagas in {elapsed:.1f}s ({total / elapsed:.0f} sagas/s end to end)")
    deadline = sum(1 for s in runs[1].states.values() if s.reason == "the saga deadline passed")
    print(f"provisioning: {deadline} sagas reached their deadline. {books.summary()}")
    failed = False
    for run in runs:
        problems = run.problems()
        if problems:
            failed = True
            print(f"FAILED {run.label}: {len(problems)} problems, e.g. {problems[:5]}")
    if failed:
        return 1
    print(
        "books balanced: every reservation released or confirmed by a shipment; every VM "
        "running for a completed saga, else cancelled, failed or released"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
