"""The chaos scenario: order sagas under worker kills and a broker restart, then its invariants.

What runs: a broker of its own (:mod:`sagas.dev.kafka`; a three-node cluster with ``brokers=3``),
``workers`` ``sagas worker`` processes and ``participants`` ``sagas participant`` processes started
with the CLI from a folder that holds :mod:`chaos_app` (as a user runs them). ``sagas`` order sagas
start evenly over the chaos (about 15% fail so that compensations run; a fifth have 3 s step
deadlines, some with a silent participant); for ``duration`` seconds a random worker is killed
with SIGKILL every ``kill_every`` seconds and started again with the same ``--worker-id``, and
the broker (one node of a cluster) restarts in the middle.

What must hold, read from Kafka with ``read_committed`` and from the participants' own ledgers:

- every saga terminal, with the status its plan allows;
- each (command id, send) once in the command topics;
- each Kafka effect (``ctx.send``) once per command id;
- each external effect under one idempotency key: the world sees it once;
- a compensated saga's compensations are exactly those of the steps it completed (and of the one
  in flight, whose command may have done its work), newest first, each done once in the world;
  a completed saga has none;
- no timer fired before it was due (journal: ``timer_fired`` at or after the ``timer_set`` due);
- the world's books balance with each saga's end, read from the external ledger: a completed
  saga's effects are exactly those of the steps it completed (a first-wins loser's undone), a
  compensated or cancelled saga (its child sagas included) leaves none. The sagas that test it:
  pivots slower than a tight saga deadline, first-wins races, parents with a child saga, and
  operator cancels mid-flight (of orders and of parents while their child runs).

Figures (printed, never asserted): sagas finished during the chaos, the longest stall of any
partition (the largest gap between journal events of a partition while one of its sagas was not
finished), and the time from the last kill to the last terminal saga.
"""

from __future__ import annotations

import collections
import heapq
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sagas.app import App
from sagas.client import SagaClient
from sagas.dev.cluster import LocalKafkaCluster
from sagas.dev.kafka import LocalKafka, free_port
from sagas.errors import BrokerError, InputRefusedError
from sagas.runtime.topics import ensure_topics
from sagas.serde import Serde
from sagas.settings import KafkaSettings

SERDE = Serde()
"""The encodings these records are read and written with."""

HERE = Path(__file__).resolve().parent
SAGA_TYPES = ("order", "quick_order", "tight_order", "race", "parent", "hold")
ORDER_TYPES = ("order", "quick_order", "tight_order")
"""The types whose compensations are checked step by step (credit, stock, then the pivot)."""

# kind -> (saga type, behaviour, statuses it may end in)
PLANS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "ok": ("order", {}, ("completed",)),
    "retry": ("order", {"ReserveCredit": "retry:1"}, ("completed",)),
    "ship_fails": ("order", {"ScheduleShipment": "fail"}, ("compensated",)),
    "stock_fails": ("order", {"ReserveStock": "fail"}, ("compensated",)),
    # 3 s step deadlines: a kill may outlast one, and the saga then compensates.
    "quick": ("quick_order", {}, ("completed", "compensated")),
    "quick_silent": ("quick_order", {"ReserveStock": "silent"}, ("compensated",)),
    # The world's books. A pivot slower than the 2 s saga deadline is awaited: done, the saga
    # completes (it compensates only if a kill held its command back past the deadline).
    "tight_slow": ("tight_order", {"ScheduleShipment": "slow:2200"}, ("completed", "compensated")),
    "race": ("race", {"ReserveCredit": "slow:800"}, ("completed",)),
    "parent": ("parent", {}, ("completed",)),
    # Cancelled by an operator mid-flight: refused once the pivot took effect.
    "cancel_order": ("order", {"ScheduleShipment": "slow:1000"}, ("cancelled", "completed")),
    "cancel_parent": ("parent", {}, ("cancelled", "completed")),
}
CANCEL_AFTER: dict[str, tuple[float, float]] = {
    "cancel_order": (0.0, 1.5),
    "cancel_parent": (0.3, 2.0),  # the child reserves stock and holds it for 2 s
}
"""Seconds after its start when an operator cancels a saga of these kinds (uniform)."""
# 26 sagas: 3 of them (12%) fail, 4 have short deadlines, 6 test the world's books.
MIX = ["ok"] * 12 + ["retry", "ship_fails", "ship_fails", "stock_fails"]
MIX += ["quick"] * 3 + ["quick_silent"]
MIX += ["tight_slow", "race", "parent", "cancel_order", "cancel_parent", "race"]


@dataclass
class ChaosConfig:
    """The scenario's size; :meth:`from_env` reads ``CHAOS_*`` variables."""

    sagas: int = 2000
    workers: int = 3
    participants: int = 3
    duration: float = 120.0
    kill_every: tuple[float, float] = (1.0, 3.0)
    broker_restart: bool = True
    brokers: int = 1
    partitions: int = 6
    seed: int = 1
    spread: bool = True
    """Start the sagas evenly over the chaos (False: all at once, before it)."""
    drain_timeout: float = 900.0
    workdir: Path | None = None

    @classmethod
    def from_env(cls, **defaults: Any) -> ChaosConfig:
        """``defaults`` overridden by ``CHAOS_SAGAS``, ``CHAOS_WORKERS``, ``CHAOS_PARTICIPANTS``,
        ``CHAOS_DURATION``, ``CHAOS_KILL_MIN``/``CHAOS_KILL_MAX``, ``CHAOS_BROKER_RESTART``
        (0/1), ``CHAOS_SPREAD`` (0/1), ``CHAOS_BROKERS``, ``CHAOS_PARTITIONS``, ``CHAOS_SEED``."""
        config = cls(**defaults)
        env = os.environ
        for name, cast in (
            ("sagas", int),
            ("workers", int),
            ("participants", int),
            ("duration", float),
            ("brokers", int),
            ("partitions", int),
            ("seed", int),
            ("drain_timeout", float),
        ):
            if (value := env.get(f"CHAOS_{name.upper()}")) is not None:
                setattr(config, name, cast(value))
        low, high = config.kill_every
        config.kill_every = (
            float(env.get("CHAOS_KILL_MIN", low)),
            float(env.get("CHAOS_KILL_MAX", high)),
        )
        for flag in ("broker_restart", "spread"):
            if (value := env.get(f"CHAOS_{flag.upper()}")) is not None:
                setattr(config, flag, value not in ("0", "false", "no"))
        return config


@dataclass
class Report:
    """What the run saw: figures, and the invariants that did not hold."""

    sagas: int
    statuses: dict[str, int]
    finished_during_chaos: int
    longest_stall_s: float
    longest_stall_where: str
    last_kill_to_last_terminal_s: float
    kills: int
    broker_restart_s: float | None
    handler_reruns: int
    commands: int
    compensations: int
    timers_fired: int
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The figures, one per line, for people."""
        restart = "none" if self.broker_restart_s is None else f"{self.broker_restart_s:.1f} s"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        broken = f"{len(self.violations)} broken" if self.violations else "all held"
        return [
            f"sagas: {self.sagas} ({statuses})",
            f"kills: {self.kills}; broker restart took {restart}",
            f"sagas finished during the chaos: {self.finished_during_chaos}",
            f"longest stall of any partition: {self.longest_stall_s:.1f} s "
            f"({self.longest_stall_where})",
            f"last kill to last terminal saga: {self.last_kill_to_last_terminal_s:.1f} s"
            + (
                " (every saga ended before the last kill)"
                if self.last_kill_to_last_terminal_s < 0
                else ""
            ),
            f"commands sent: {self.commands}; compensations done: {self.compensations}; "
            f"timers fired: {self.timers_fired}",
            f"handler re-runs absorbed by idempotency keys: {self.handler_reruns}",
            f"invariants: {broken}",
            *(f"  BROKEN: {v}" for v in self.violations[:20]),
        ]


# ------------------------------------------------------------------------------ processes


def _sagas_cli() -> list[str]:
    """The ``sagas`` command of this environment."""
    script = Path(sys.executable).with_name("sagas")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sagas.cli"]


_COMMON = ["--connect-timeout", "120", "--log-level", "info"]


class Fleet:
    """The workers and participants, as subprocesses started with the CLI from ``app_dir``."""

    def __init__(self, app_dir: Path, logs: Path, bootstrap: str, env: dict[str, str]) -> None:
        self.app_dir, self.logs, self.bootstrap = app_dir, logs, bootstrap
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | env
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.participants: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.logs / log).open("ab") as out:
            return subprocess.Popen(
                [*_sagas_cli(), *args, "--bootstrap-servers", self.bootstrap],
                cwd=self.app_dir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_worker(self, worker_id: str) -> None:
        """``sagas worker chaos_app:app --worker-id <id>``."""
        self.workers[worker_id] = self._spawn(
            ["worker", "chaos_app:app", "--worker-id", worker_id, "--no-query", *_COMMON],
            f"{worker_id}.log",
        )

    def start_participant(self, instance_id: str) -> None:
        """``sagas participant chaos_app:participant --instance-id <id>``."""
        self.participants[instance_id] = self._spawn(
            ["participant", "chaos_app:participant", "--instance-id", instance_id, *_COMMON],
            f"{instance_id}.log",
        )

    def kill_worker(self, worker_id: str) -> None:
        """SIGKILL a worker and start it again with the same id."""
        proc = self.workers[worker_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        self.start_worker(worker_id)

    def dead(self) -> list[str]:
        """The processes that exited by themselves."""
        procs = {**self.workers, **self.participants}
        return [
            f"{name} (exit {p.returncode})" for name, p in procs.items() if p.poll() is not None
        ]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM everything, then wait; return each exit code (None: had to be killed)."""
        procs = {**self.workers, **self.participants}
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes[name] = None
        return codes


# ---------------------------------------------------------------------------------- reading


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every committed record of ``topic`` (``read_committed``, from the start to the end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Any] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} was not read to its end in {timeout:.0f} s")
            batch = consumer.consume(1000, 0.5)
            for msg in batch:
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                        continue
                    raise RuntimeError(msg.error())
                at_eof.discard(msg.partition())
                records.append(msg)
        return records
    finally:
        consumer.close()


def _types(app: App) -> list[str]:
    """The scenario's saga types that ``app`` has (the cluster tests check another app)."""
    return [t for t in SAGA_TYPES if t in app.saga_types]


def latest_states(bootstrap: str, app: App) -> dict[str, Any]:
    """The newest snapshot of every saga, by saga id."""
    states: dict[str, Any] = {}
    for saga_type in _types(app):
        for msg in read_topic(bootstrap, app.topics(saga_type).state):
            if msg.key() is not None and msg.value() is not None:
                states[msg.key().decode()] = SERDE.decode_state(msg.value())
    return states


# ------------------------------------------------------------------------------------- run


def run(config: ChaosConfig, *, log: Any = print) -> Report:
    """Run the scenario and check its invariants; the report lists what broke."""
    workdir = config.workdir or Path.cwd() / ".chaos"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "logs").mkdir(parents=True)
    app_dir = workdir / "app"
    app_dir.mkdir()
    shutil.copy(HERE / "chaos_app.py", app_dir / "chaos_app.py")
    broker: LocalKafka | LocalKafkaCluster
    if config.brokers == 1:
        broker = LocalKafka(data_dir=workdir / "kafka", port=free_port(), heap="512m")
    else:
        broker = LocalKafkaCluster(workdir / "kafka", brokers=config.brokers, heap="384m")
    bootstrap = broker.start()
    log(f"broker: {bootstrap}; work folder {workdir}")
    try:
        return _run(config, broker, bootstrap, workdir, app_dir, log)
    finally:
        broker.stop()


def _restart_broker(broker: LocalKafka | LocalKafkaCluster) -> None:
    if isinstance(broker, LocalKafka):
        broker.stop()
        broker.start()
        return
    node = broker.running_nodes()[-1]
    broker.stop_node(node)
    broker.start_node(node)


def _run(
    config: ChaosConfig,
    broker: LocalKafka | LocalKafkaCluster,
    bootstrap: str,
    workdir: Path,
    app_dir: Path,
    log: Any,
) -> Report:
    sys.path.insert(0, str(HERE))
    try:
        import chaos_app
    finally:
        sys.path.remove(str(HERE))
    ns = f"chaos{random.Random().randrange(16**6):06x}"
    settings = KafkaSettings(bootstrap)
    app = chaos_app.make_app(ns, config.partitions)
    ensure_topics(app, settings)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(f"{ns}.effects", config.partitions)])[f"{ns}.effects"].result(30)
    env = {
        "CHAOS_NS": ns,
        "CHAOS_PARTITIONS": str(config.partitions),
        "CHAOS_LEDGER": str(workdir / "ledger"),
    }
    fleet = Fleet(app_dir, workdir / "logs", bootstrap, env)
    halt = threading.Event()
    try:
        for i in range(config.participants):
            fleet.start_participant(f"p{i + 1}")
        worker_ids = [f"w{i + 1}" for i in range(config.workers)]
        for worker_id in worker_ids:
            fleet.start_worker(worker_id)
        rng = random.Random(config.seed)
        kinds = {f"o{i:06d}": MIX[i % len(MIX)] for i in range(config.sagas)}
        chaos_start_ms = int(time.time() * 1000)
        spread = config.duration if config.spread else 0.0
        feeder = threading.Thread(
            target=_start_sagas, args=(settings, ns, kinds, spread), name="feeder", daemon=True
        )
        feeder.start()
        how = f"over {spread:.0f} s" if spread else "at once"
        log(f"starting {config.sagas} sagas {how}; chaos for {config.duration:.0f} s")
        kills: list[int] = []
        restart: dict[str, float] = {}

        end = time.monotonic() + config.duration

        def kill_until_the_end() -> None:
            while True:
                pause = rng.uniform(*config.kill_every)
                if time.monotonic() + pause > end or halt.wait(pause):
                    return
                fleet.kill_worker(rng.choice(worker_ids))
                kills.append(int(time.time() * 1000))

        killer = threading.Thread(target=kill_until_the_end, daemon=True)
        killer.start()
        if config.broker_restart:
            # From this thread: a broker dies with the thread that started it (see LocalKafka).
            time.sleep(config.duration / 2)
            began = time.monotonic()
            _restart_broker(broker)
            restart["seconds"] = time.monotonic() - began
            at = began - (end - config.duration)
            log(f"broker restarted {at:.1f} s into the chaos, in {restart['seconds']:.1f} s")
        killer.join()
        chaos_end_ms = int(time.time() * 1000)
        feeder.join()  # it catches up on the starts a broker restart held back
        log(f"chaos over: {len(kills)} kills; waiting for every saga to end")
        violations: list[str] = []
        states = _wait_terminal(bootstrap, app, set(kinds), config.drain_timeout, violations)
        violations += [f"{name} died" for name in fleet.dead()]
    except BaseException:
        halt.set()
        fleet.stop()  # no process outlives a failed run
        raise
    codes = fleet.stop()
    violations += [f"{n} did not stop cleanly (exit {c})" for n, c in codes.items() if c != 0]
    return check(
        app,
        bootstrap,
        {sid: PLANS[kind][2] for sid, kind in kinds.items()},
        states,
        read_ledger(workdir / "ledger"),
        chaos_start_ms,
        chaos_end_ms,
        kills,
        restart.get("seconds"),
        violations,
    )


def _start_sagas(settings: KafkaSettings, ns: str, kinds: dict[str, str], spread: float) -> None:
    """Start the sagas evenly over ``spread`` seconds (0: at once), retrying a start the broker
    did not take (it restarts meanwhile; a second start of an id starts nothing new)."""
    client = SagaClient(settings, ns)
    began = time.monotonic()
    rng = random.Random(len(kinds))
    cancels: list[tuple[float, str, str]] = []  # (when, saga id, type), a heap

    def retried(send: Any, *args: Any, **kwargs: Any) -> None:
        while True:
            try:
                send(*args, **kwargs)
                return
            except BrokerError:
                time.sleep(0.5)
            except InputRefusedError:  # started by the try the broker took, or already ended
                return

    def cancel_due(until: float) -> None:
        while cancels and cancels[0][0] <= until:
            when, sid, saga_type = heapq.heappop(cancels)
            time.sleep(max(0.0, when - time.monotonic()))
            retried(client.cancel, saga_type, sid, "an operator changed their mind")

    try:
        for i, (sid, kind) in enumerate(kinds.items()):
            if spread:
                due = began + i * spread / len(kinds)
                cancel_due(due)
                time.sleep(max(0.0, due - time.monotonic()))
            saga_type, behaviour, _ = PLANS[kind]
            retried(client.start, saga_type, {"behaviour": behaviour}, saga_id=sid)
            if kind in CANCEL_AFTER:
                low, high = CANCEL_AFTER[kind]
                heapq.heappush(cancels, (time.monotonic() + rng.uniform(low, high), sid, saga_type))
        cancel_due(float("inf"))
    finally:
        client.close()


def _wait_terminal(
    bootstrap: str, app: App, ids: set[str], timeout: float, violations: list[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = latest_states(bootstrap, app)
        pending = [i for i in ids if i not in states or not states[i].terminal]
        if not pending:
            return states
        if time.monotonic() > deadline:
            violations.append(f"{len(pending)} sagas not terminal, e.g. {sorted(pending)[:5]}")
            return states
        time.sleep(2.0)


# ---------------------------------------------------------------------------------- checks


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    """Every call the participants made to the external API (see :mod:`chaos_app`)."""
    calls = [
        json.loads(line)
        for path in sorted(folder.glob("external-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    for seq, call in enumerate(calls):  # a file's order is its process's: it breaks ms ties
        call.setdefault("seq", seq)
    return calls


def check(
    app: App,
    bootstrap: str,
    allowed: dict[str, tuple[str, ...]],
    states: dict[str, Any],
    calls: list[dict[str, Any]],
    chaos_start_ms: int = 0,
    chaos_end_ms: int = 0,
    kills: list[int] | None = None,
    restart_s: float | None = None,
    violations: list[str] | None = None,
) -> Report:
    """Check every invariant of the module docstring for the sagas of ``allowed`` (saga id ->
    the statuses it may end in) and the external ``calls`` (dicts with ``key``, ``saga_id``,
    ``type`` and ``at_ms``); return the figures and what broke.

    The app's participants write ``{"command_id": ...}`` records to ``<namespace>.effects``, and
    its compensatable steps are ``reserve_credit`` and ``reserve_stock`` (undone by
    ``ReleaseCredit`` and ``ReleaseStock``), as in :mod:`chaos_app`.
    """
    violations = [] if violations is None else violations
    kills = kills or []
    statuses = collections.Counter(states[s].status if s in states else "missing" for s in allowed)
    for sid, may_end in allowed.items():
        status = states[sid].status if sid in states else "missing"
        if status not in may_end:
            violations.append(f"saga {sid} ended {status}, not {' or '.join(may_end)}")
    commands = _check_commands(app, bootstrap, violations)
    _check_kafka_effects(app, bootstrap, violations)
    external, reruns = _external_effects(calls, violations)
    journal = _journal(app, bootstrap)
    fired = _check_timers(journal, violations)
    orders = [sid for sid in allowed if sid in states and states[sid].saga_type in ORDER_TYPES]
    compensations = _check_compensations(orders, states, journal, external, violations)
    _check_books(allowed, states, external, violations)
    finished = [e.at_ms for _, _, e in journal if e.type == "finished"]
    during = sum(chaos_start_ms <= at <= chaos_end_ms for at in finished)
    stall, where, stall_began = _longest_stall(journal)
    if stall_began and chaos_start_ms:
        where += f", from {(stall_began - chaos_start_ms) / 1000:.1f} s into the chaos"
    last = (max(finished) - kills[-1]) / 1000 if kills and finished else 0.0
    return Report(
        sagas=len(allowed),
        statuses=dict(statuses),
        finished_during_chaos=during,
        longest_stall_s=stall,
        longest_stall_where=where,
        last_kill_to_last_terminal_s=last,
        kills=len(kills),
        broker_restart_s=restart_s,
        handler_reruns=reruns,
        commands=commands,
        compensations=compensations,
        timers_fired=fired,
        violations=violations,
    )


def _check_commands(app: App, bootstrap: str, violations: list[str]) -> int:
    """Each (command id, send) once in the command topics; return how many commands."""
    topics = sorted({t for saga_type in _types(app) for t in app.latest(saga_type).topics})
    sends: collections.Counter[tuple[str, str]] = collections.Counter()
    for topic in topics:
        for msg in read_topic(bootstrap, topic):
            h = {k: (v or b"").decode() for k, v in msg.headers() or []}
            sends[(h["command-id"], h.get("send", "1"))] += 1
    twice = [c for c, n in sends.items() if n > 1]
    if twice:
        violations.append(f"{len(twice)} command sends twice in the command topics: {twice[:3]}")
    return sum(sends.values())


def _check_kafka_effects(app: App, bootstrap: str, violations: list[str]) -> None:
    """Each ``ctx.send`` effect once per command id."""
    ids = collections.Counter(
        SERDE.decode_payload(msg.value())["command_id"]
        for msg in read_topic(bootstrap, f"{app.namespace}.effects")
    )
    twice = [c for c, n in ids.items() if n > 1]
    if twice:
        violations.append(f"{len(twice)} Kafka effects written twice: {twice[:3]}")


def _external_effects(
    calls: list[dict[str, Any]], violations: list[str]
) -> tuple[dict[str, list[tuple[int, str]]], int]:
    """The effects the world saw: per saga, (first time, command type) of each key, in time
    order; and how many calls repeated a key (handler re-runs the key made harmless). An effect
    (saga, command type) made under two keys happened twice in the world."""
    first: dict[str, dict[str, Any]] = {}
    for call in calls:
        seen = first.get(call["key"])
        if seen is None or call["at_ms"] < seen["at_ms"]:
            first[call["key"]] = call
    keys: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    ordered: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
    for key, call in first.items():
        keys[(call["saga_id"], call["type"])].add(key)
        ordered[call["saga_id"]].append((call["at_ms"], call.get("seq", 0), call["type"]))
    split = {effect: k for effect, k in keys.items() if len(k) > 1}
    if split:
        violations.append(
            f"{len(split)} external effects made twice, under different idempotency keys: "
            f"{list(split.items())[:3]}"
        )
    per_saga = {sid: [(at, kind) for at, _, kind in sorted(c)] for sid, c in ordered.items()}
    return per_saga, len(calls) - len(first)


def _journal(app: App, bootstrap: str) -> list[tuple[str, int, Any]]:
    """Every journal event as (saga type, partition, event)."""
    out = []
    for saga_type in _types(app):
        for msg in read_topic(bootstrap, app.topics(saga_type).journal):
            events, _, _ = SERDE.decode_events(msg.value())
            out.extend((saga_type, msg.partition(), event) for event in events)
    return out


def _check_timers(journal: list[tuple[str, int, Any]], violations: list[str]) -> int:
    """No timer fired before its due time; return how many fired."""
    due: dict[tuple[str, str], int] = {}
    fired = 0
    for _, _, event in journal:
        if event.type == "timer_set":
            due[(event.saga_id, event.body["timer_id"])] = event.body["due_ms"]
        elif event.type == "timer_fired":
            fired += 1
            due_ms = due.get((event.saga_id, event.body["timer_id"]))
            if due_ms is None or event.at_ms < due_ms:
                violations.append(f"timer fired early: {event} (due {due_ms})")
    return fired


def _check_compensations(
    sagas: Iterable[str],
    states: dict[str, Any],
    journal: list[tuple[str, int, Any]],
    external: dict[str, list[tuple[int, str]]],
    violations: list[str],
) -> int:
    """A compensated saga undid exactly its completed steps (and the one in flight), newest
    first, each once in the world; a completed saga undid nothing. Return how many undos."""
    completed: dict[str, list[str]] = collections.defaultdict(list)
    queue: dict[str, list[str]] = {}
    for _, _, event in journal:
        if event.type == "step_completed" and event.body["step"] in UNDO_OF:
            completed[event.saga_id].append(event.body["step"])
        elif event.type == "compensating":
            queue[event.saga_id] = list(event.body["queue"])
    undos = 0
    for sid in sagas:
        done_undos = [t for _, t in external.get(sid, []) if t.startswith("Release")]
        undos += len(done_undos)
        status = states[sid].status if sid in states else "missing"
        if status == "completed":
            if done_undos:
                violations.append(f"saga {sid} completed but undid {done_undos}")
            continue
        if status != "compensated":
            continue
        planned = queue.get(sid)
        if planned is None:
            violations.append(f"saga {sid} compensated without a compensating event")
            continue
        newest_first = list(reversed(completed[sid]))
        if [s for s in planned if s in completed[sid]] != newest_first or not set(
            newest_first
        ) <= set(planned):
            violations.append(f"saga {sid}: undo queue {planned}, completed {completed[sid]}")
        expected = [UNDO_OF[s] for s in planned]
        if done_undos != expected:
            violations.append(f"saga {sid}: undone in the world {done_undos}, expected {expected}")
        reserved = {t for _, t in external.get(sid, []) if t.startswith("Reserve")}
        leaked = {t for t in reserved if t.replace("Reserve", "Release") not in done_undos}
        if leaked:
            violations.append(f"saga {sid}: {sorted(leaked)} done and never undone")
    return undos


UNDO_OF = {"reserve_credit": "ReleaseCredit", "reserve_stock": "ReleaseStock"}
EFFECT_OF = {
    "reserve_credit": "ReserveCredit",
    "reserve_stock": "ReserveStock",
    "schedule_shipment": "ScheduleShipment",
}
UNDOES = {"ReleaseCredit": "ReserveCredit", "ReleaseStock": "ReserveStock"}


def _standing(calls: list[tuple[int, str]]) -> set[str]:
    """The effects left standing by one saga's calls, in time order (an undo before its
    effect, as a compensation that overtook its command would be, undoes nothing)."""
    now: dict[str, bool] = {}
    for _, kind in calls:
        if kind in EFFECT_OF.values():
            now[kind] = True
        elif kind in UNDOES:
            now[UNDOES[kind]] = False
    return {kind for kind, stands in now.items() if stands}


def _check_books(
    sagas: Iterable[str],
    states: dict[str, Any],
    external: dict[str, list[tuple[int, str]]],
    violations: list[str],
) -> None:
    """The world's books balance with each saga's end: a completed saga's effects are exactly
    those of the steps its state says it completed; a compensated or cancelled one (with its
    child sagas, unless ``ReleaseHold`` undid them after they ran) leaves nothing."""
    for sid in sagas:
        state = states.get(sid)
        if state is None:
            continue
        mine = _standing(external.get(sid, []))
        released = [at for at, kind in external.get(sid, []) if kind == "ReleaseHold"]
        kids = {k: c for k, c in external.items() if k.startswith(f"{sid}/")}
        kid_effects = {
            k: _standing([c for c in calls if not released or c[0] > max(released)])
            for k, calls in kids.items()
        }
        if state.status == "completed":
            expected = {EFFECT_OF[s] for s in state.completed if s in EFFECT_OF}
            if mine != expected:
                violations.append(
                    f"books: {state.saga_type} {sid} completed {list(state.completed)} but the "
                    f"world holds {sorted(mine)}"
                )
            for kid, left in kid_effects.items():
                kid_state = states.get(kid)
                done = set() if kid_state is None else set(kid_state.completed)
                if left != {EFFECT_OF[s] for s in done if s in EFFECT_OF}:
                    violations.append(f"books: child {kid} of completed {sid} holds {left}")
        elif state.status in ("compensated", "cancelled"):
            left_kids = {k: v for k, v in kid_effects.items() if v}
            if mine or left_kids:
                violations.append(
                    f"books: {state.saga_type} {sid} ended {state.status} but the world holds "
                    f"{sorted(mine)} and of its children {left_kids}"
                )


def _longest_stall(journal: list[tuple[str, int, Any]]) -> tuple[float, str, int]:
    """The largest gap between journal events of one partition while a saga of it was open:
    seconds, which partition, and when it began (epoch ms)."""
    by_partition: dict[tuple[str, int], list[Any]] = collections.defaultdict(list)
    for saga_type, partition, event in journal:
        by_partition[(saga_type, partition)].append(event)
    worst, where, began = 0, "none", 0
    for (saga_type, partition), events in by_partition.items():
        events.sort(key=lambda e: e.at_ms)
        open_sagas: set[str] = set()
        previous: int | None = None
        for event in events:
            if open_sagas and previous is not None and event.at_ms - previous > worst:
                worst, where = event.at_ms - previous, f"{saga_type} partition {partition}"
                began = previous
            if event.type == "finished":
                open_sagas.discard(event.saga_id)
            else:
                open_sagas.add(event.saga_id)
            previous = event.at_ms
    return worst / 1000, where, began


def main_figures(report: Report, log: Any = print) -> int:
    """Print the report; 0 when every invariant held, else 1."""
    for line in report.lines():
        log(line)
    return 0 if not report.violations else 1
