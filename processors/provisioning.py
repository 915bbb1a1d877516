"""The VM provisioning reference app: the seed story, a long-running operation, on Kafka.

The ``provision-vm`` saga reserves an IP address, allocates a VM through a slow cloud API and
polls it until it runs, then registers its DNS name (the pivot). When the saga deadline passes
first it cancels the allocation, polls until the cloud confirms the cancel, and releases the IP;
a VM that finished booting while being cancelled is released too.

The cloud here is simulated in process and keeps its own books (every VM allocated, running,
cancelled, failed or released), so a run can prove that nothing leaked. It is slow
(``latency_ms`` per call, VMs boot in 0.3-2 s) and unreliable: ``failure_rate`` of allocations
are throttled (retried) and as many again refused or failed while booting, status and cancel
calls fail transiently, and ``hang_rate`` of allocations hang: half never finish booting, half
boot but the API never answers the allocation call (the cancel then comes before any reply).

Run the worker with ``sagas worker processors.provisioning:app`` and the participants with
``python -m processors.provisioning --failure-rate 0.1 --hang-rate 0.1 --latency-ms 20``.
``make demo`` runs both, beside the order app.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypedDict

from sagas import Retry, Saga, call, step
from sagas.app import App
from sagas.dsl import long_running
from sagas.dsl.nodes import LongRunning
from sagas.errors import CommandFailed
from sagas.long_running_adapter import (
    OperationCommands,
    Operations,
    OperationState,
    OperationStatus,
    is_cancelled,
    is_failed,
    is_ready,
)
from sagas.participants import NO_REPLY, CommandContext, Participant
from sagas.settings import KafkaSettings

NAMESPACE = "infra"
SAGA = "provision-vm"


class Vm(TypedDict, total=False):
    name: str
    size: str
    ip: str
    vm_id: str
    operation: str
    state: str
    fqdn: str


def _name(d: Vm) -> dict[str, Any]:
    return {"name": d["name"]}


def _spec(d: Vm) -> dict[str, Any]:
    return {"name": d["name"], "size": d["size"]}


def allocate_vm(
    ns: str = NAMESPACE, every: timedelta = timedelta(milliseconds=250)
) -> LongRunning[Vm]:
    """The long-running block; the cloud participant registers its handlers from it too."""
    return long_running(
        "allocate-vm", to=f"{ns}.cloud.commands",
        start=call("AllocateVm", _spec), status=call("GetVm", _name),
        cancel=call("CancelVm", _name), every=every,
        done=is_ready, failed=is_failed, cancelled=is_cancelled,
        compensate=call("ReleaseVm", _name),
        retry=Retry(max_attempts=4, initial=timedelta(milliseconds=200)),
    )  # fmt: skip


def provision_saga(
    ns: str = NAMESPACE,
    *,
    deadline: timedelta = timedelta(seconds=8),
    every: timedelta = timedelta(milliseconds=250),
) -> Saga[Vm]:
    """The saga, its topics under ``ns``; ``deadline`` bounds everything before the DNS name."""
    return Saga[Vm](
        SAGA,
        version=1,
        deadline=deadline,
        steps=[
            step("reserve-ip", to=f"{ns}.network.commands", command="ReserveIp", payload=_name,
                 compensate=call("ReleaseIp", _name)),
            allocate_vm(ns, every),
            step("register-dns", to=f"{ns}.dns.commands", command="RegisterDns",
                 payload=lambda d: {"name": d["name"], "ip": d["ip"]}, kind="pivot",
                 deadline=timedelta(seconds=30)),
        ],
    )  # fmt: skip


def make_app(ns: str = NAMESPACE, **timing: timedelta) -> App:
    """The app a worker runs; ``timing`` goes to :func:`provision_saga`."""
    return App(ns, [provision_saga(ns, **timing).compile()], partitions=6)


app = make_app()

# ------------------------------------------------------------------------- the simulated cloud


class CloudError(Exception):
    """An error of the simulated cloud API; ``transient`` ones are worth trying again."""

    def __init__(self, message: str, *, code: str, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


@dataclass
class CloudVm:
    """One VM, keyed in the cloud by the client token it was allocated with."""

    name: str
    size: str
    vm_id: str
    ready_at: float | None  # None: its boot hangs
    boot_fails: bool
    cancel_at: float | None = None
    released: bool = False

    def state(self, now: float) -> str:
        """``provisioning``, ``cancelling``, ``running``, ``failed``, ``cancelled``, ``released``.

        A cancel takes effect at ``cancel_at`` unless the boot finished first.
        """
        if self.released:
            return "released"
        booted = self.ready_at is not None and now >= self.ready_at
        if self.cancel_at is not None and now >= self.cancel_at and not booted:
            return "cancelled"
        if booted:
            return "failed" if self.boot_fails else "running"
        return "provisioning" if self.cancel_at is None else "cancelling"


@dataclass
class Cloud:
    """A slow, unreliable cloud API with its own books. Thread-safe.

    Args:
        failure_rate: the share of allocations throttled, and as many refused or failed while
            booting; a quarter of it for transient status and cancel errors.
        hang_rate: the share of VMs that never finish booting.
        latency_ms: each call takes up to this long.
    """

    failure_rate: float = 0.1
    hang_rate: float = 0.1
    latency_ms: int = 20
    boot_s: tuple[float, float] = (0.3, 2.0)
    cancel_s: tuple[float, float] = (0.1, 0.6)
    seed: int = 1
    vms: dict[str, CloudVm] = field(default_factory=dict)
    cancelled_before_allocation: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _call(self, name: str, transient_error_rate: float = 0.0) -> float:
        """Count the call, wait its latency, maybe fail transiently; return the time."""
        with self._lock:
            self.calls[name] += 1
            pause = self._rng.uniform(0, self.latency_ms) / 1000
            flaky = self._rng.random() < transient_error_rate
        time.sleep(pause)
        if flaky:
            raise CloudError(f"{name}: service unavailable", code="Unavailable", transient=True)
        return time.monotonic()

    def allocate(self, token: str, name: str, size: str) -> CloudVm:
        """Allocate a VM; a token seen before returns its VM (the call is idempotent)."""
        now = self._call("allocate")
        with self._lock:
            if token in self.vms:
                self.calls["allocate-repeated"] += 1
                return self.vms[token]
            if token in self.cancelled_before_allocation:
                raise CloudError(f"{token} was cancelled", code="Cancelled", transient=False)
            roll = self._rng.random()
            if roll < self.failure_rate:
                raise CloudError("too many requests", code="Throttled", transient=True)
            if roll < self.failure_rate * 1.5:
                raise CloudError(f"no quota for a {size} VM", code="QuotaExceeded", transient=False)
            hangs = self._rng.random() < self.hang_rate
            boot = None if hangs else now + self._rng.uniform(*self.boot_s)
            fails = self._rng.random() < self.failure_rate / 2
            vm = CloudVm(name, size, f"i-{len(self.vms):05d}", boot, fails)
            self.vms[token] = vm
            return vm

    def describe(self, token: str) -> tuple[CloudVm, str] | None:
        """The VM and its state, or ``None`` for an unknown token."""
        now = self._call("describe", self.failure_rate / 4)
        with self._lock:
            vm = self.vms.get(token)
            return None if vm is None else (vm, vm.state(now))

    def cancel(self, token: str) -> None:
        """Stop a VM still booting, after a while; a no-op on one that booted or ended."""
        now = self._call("cancel", self.failure_rate / 4)
        with self._lock:
            vm = self.vms.get(token)
            if vm is None:
                self.cancelled_before_allocation.add(token)
            elif vm.state(now) == "provisioning":
                vm.cancel_at = now + self._rng.uniform(*self.cancel_s)

    def release(self, token: str) -> None:
        """Delete a VM; a no-op on an unknown or released one."""
        self._call("release")
        with self._lock:
            vm = self.vms.get(token)
            if vm is not None:
                vm.released = True

    def final_states(self) -> dict[str, str]:
        """VM name -> state, now."""
        now = time.monotonic()
        with self._lock:
            return {vm.name: vm.state(now) for vm in self.vms.values()}


# ------------------------------------------------------------------------------ participants


@dataclass
class Books:
    """The network's IPs, the cloud's VMs and the DNS names, by VM name (= saga id)."""

    cloud: Cloud
    ips: dict[str, bool] = field(default_factory=dict)  # name -> still reserved
    dns: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self, outcomes: Mapping[str, str]) -> list[str]:
        """What does not balance, given each saga's terminal status by saga id (= VM name).

        A completed saga keeps a running VM, its IP and its DNS name; any other saga holds
        nothing: its VM never existed, or ended cancelled, failed or released.
        """
        vms = self.cloud.final_states()
        with self.lock:
            ips = {n for n, held in self.ips.items() if held}
            dns = set(self.dns)
        found = [f"VM {n} ({s}) belongs to no saga of this run" for n, s in vms.items()
                 if n not in outcomes]  # fmt: skip
        for name, status in sorted(outcomes.items()):
            vm = vms.get(name, "none")
            if status == "completed":
                if vm != "running" or name not in ips or name not in dns:
                    found.append(f"{name} completed with VM {vm}, IP {name in ips}, DNS "
                                 f"{name in dns}")  # fmt: skip
            elif vm in ("provisioning", "cancelling", "running") or name in ips or name in dns:
                found.append(f"{name} ended {status} but holds VM {vm}, IP {name in ips}, DNS "
                             f"{name in dns}")  # fmt: skip
        return found

    def summary(self) -> str:
        """VMs by final state, and the cloud's call counts."""
        states = Counter(self.cloud.final_states().values())
        vms = ", ".join(f"{s} {n}" for s, n in states.most_common())
        calls = ", ".join(f"{c} {n}" for c, n in sorted(self.cloud.calls.items()))
        return f"VMs {vms}; cloud calls {calls}"


_OPERATION_STATE: dict[str, OperationState] = {
    "provisioning": "running",
    "cancelling": "cancelling",
    "running": "ready",
    "failed": "failed",
    "cancelled": "cancelled",
    "released": "cancelled",
}


def _api(call_it: Any) -> Any:
    """Run a cloud call; its errors become the command's failure (retryable when transient)."""
    try:
        return call_it()
    except CloudError as exc:
        raise CommandFailed(str(exc), error=exc.code, retryable=exc.transient) from exc


def participants(
    settings: KafkaSettings,
    *,
    namespace: str = NAMESPACE,
    failure_rate: float = 0.1,
    hang_rate: float = 0.1,
    latency_ms: int = 20,
    seed: int = 1,
) -> tuple[list[Participant], Books]:
    """The network, cloud and DNS services, one participant (consumer group) each."""
    cloud = Cloud(failure_rate, hang_rate / 2, latency_ms, seed=seed)
    books = Books(cloud)
    rng = random.Random(seed + 1)
    network = Participant(settings, f"{namespace}.network")
    compute = Participant(settings, f"{namespace}.cloud")
    dns = Participant(settings, f"{namespace}.dns")

    @network.handler(f"{namespace}.network.commands", "ReserveIp")
    def reserve_ip(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        name = payload["name"]
        with books.lock:
            if name not in books.ips and rng.random() < failure_rate / 2:
                raise CommandFailed("the address pool is empty", error="PoolExhausted")
            books.ips[name] = True
            n = len(books.ips)
            return {"ip": f"10.0.{n // 250}.{n % 250 + 2}"}

    @network.handler(f"{namespace}.network.commands", "ReleaseIp")
    def release_ip(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        with books.lock:
            if payload["name"] in books.ips:
                books.ips[payload["name"]] = False
        return {}

    @dns.handler(f"{namespace}.dns.commands", "RegisterDns")
    def register_dns(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        name = payload["name"]
        with books.lock:
            if name not in books.dns and rng.random() < failure_rate:
                raise CommandFailed(f"{name} is taken", error="NameTaken")
            books.dns.add(name)
        return {"fqdn": f"{name}.{namespace}.example"}

    def start(key: str, payload: dict[str, Any]) -> dict[str, Any]:
        vm = _api(lambda: cloud.allocate(key, payload["name"], payload["size"]))
        with books.lock:
            lost = rng.random() < hang_rate / 2
        return NO_REPLY if lost else {"vm_id": vm.vm_id}

    def status(key: str, payload: dict[str, Any]) -> OperationStatus | None:
        found = _api(lambda: cloud.describe(key))
        if found is None:
            return None
        vm, state = found
        return OperationStatus(_OPERATION_STATE[state], {"vm_id": vm.vm_id})

    operations = Operations(
        start=start,
        status=status,
        cancel=lambda key, payload: _api(lambda: cloud.cancel(key)),
        release=lambda key, payload: _api(lambda: cloud.release(key)),
    )
    operations.register(compute, OperationCommands.of(allocate_vm(namespace)))
    return [network, compute, dns], books


def main() -> None:
    """Run the network, cloud and DNS participants until Ctrl-C (or one of them stops)."""
    parser = argparse.ArgumentParser(description="the provisioning app's participants")
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--hang-rate", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    services, _ = participants(
        KafkaSettings().with_env(),
        failure_rate=args.failure_rate,
        hang_rate=args.hang_rate,
        latency_ms=args.latency_ms,
    )
    running = [service.start() for service in services]
    try:
        while all(thread.is_alive() for thread, _ in running):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, stop in running:
            stop.set()
        for thread, _ in running:
            thread.join(30)


if __name__ == "__main__":
    main()
