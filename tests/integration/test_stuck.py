"""A saga whose own code raises, on the real broker: it is stuck (not dead-lettered, not waiting
for its deadline), says where and why in ``status`` and the ``sagas status`` command, keeps its
inputs, and is resumed after the fix or cancelled; the services' ledgers hold what it says."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from sagas.app import App
from sagas.client import SagaClient
from sagas.dsl import Saga, call, step
from sagas.engine.model import SagaState
from sagas.errors import InputRefusedError, SagaStuckError
from sagas.participants import CommandContext, Participant
from sagas.protocol import TopicNames
from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.support.cli import SAGAS, user_env
from tests.support.kafka import read_all

pytestmark = pytest.mark.kafka

FIX = {"deployed": False}
"""The team's fix to the stock payload: off until the test deploys it."""


def _items(d: dict[str, Any]) -> dict[str, Any]:
    if FIX["deployed"]:
        return {"items": d.get("items", [])}
    return {"items": d["items"]}  # the bug: data without items raises KeyError


@dataclass
class Charge:
    amount: int


def _app(ns: str) -> App:
    order = Saga[dict[str, Any]](
        "order",
        1,
        deadline=timedelta(hours=1),
        steps=[
            step("reserve-credit", to=f"{ns}.credit", command="ReserveCredit", payload=dict,
                 compensate=call("ReleaseCredit", dict)),
            step("reserve-stock", to=f"{ns}.stock", command="ReserveStock", payload=_items,
                 compensate=call("ReleaseStock", dict)),
            step("ship", to=f"{ns}.ship", command="Ship", payload=dict, kind="pivot"),
        ],
    ).compile()  # fmt: skip
    misfit = Saga[dict[str, Any]](
        "misfit",
        1,
        deadline=timedelta(hours=1),
        steps=[
            step("charge", to=f"{ns}.ship", command="Charge", kind="pivot",
                 payload=lambda d: {"amount": "ten"}, payload_schema=Charge),
        ],
    ).compile()  # fmt: skip
    return App(ns, [order, misfit], partitions=2)


class World:
    """A worker, the credit, stock and shipping services with their ledgers, and a client."""

    def __init__(self, bootstrap: str, ns: str) -> None:
        self.ns = ns
        self.settings = KafkaSettings(bootstrap)
        self.app = _app(ns)
        ensure_topics(self.app, self.settings)
        self.held: dict[str, set[str]] = {"credit": set(), "stock": set(), "ship": set()}
        self.runs: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.participant = Participant(self.settings, f"{ns}.services")
        for service, do, undo in (
            ("credit", "ReserveCredit", "ReleaseCredit"),
            ("stock", "ReserveStock", "ReleaseStock"),
            ("ship", "Ship", None),
        ):
            self.participant.handler(f"{ns}.{service}", do)(self._do(service, add=True))
            if undo:
                self.participant.handler(f"{ns}.{service}", undo)(self._do(service, add=False))
        self.stop = threading.Event()
        self.worker = threading.Thread(
            target=run_worker,
            args=(self.app, self.settings),
            kwargs={"worker_id": "w1", "stop": self.stop, "install_signal_handlers": False},
            daemon=True,
        )
        self.worker.start()
        self.services, self.services_stop = self.participant.start()
        self.client = SagaClient(self.settings, ns)

    def _do(self, service: str, *, add: bool) -> Any:
        def handle(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
            with self.lock:
                key = (ctx.saga_id, ctx.command_type)
                self.runs[key] = self.runs.get(key, 0) + 1
                ledger = self.held[service]
                (ledger.add if add else ledger.discard)(ctx.saga_id)
            return {}

        return handle

    def ledger(self, saga_id: str) -> list[str]:
        with self.lock:
            return [s for s, ids in self.held.items() if saga_id in ids]

    def wait(self, saga_type: str, saga_id: str, status: str, timeout: float = 60.0) -> SagaState:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.client.status(saga_type, saga_id)
            if state is not None and state.status == status:
                return state
            time.sleep(0.2)
        raise AssertionError(f"{saga_id} not {status} in {timeout}s: {state}")

    def close(self) -> None:
        self.stop.set()
        self.worker.join(60)
        self.services_stop.set()
        self.services.join(30)
        self.client.close()


@pytest.fixture
def world(bootstrap: str, unique: str) -> Iterator[World]:
    FIX["deployed"] = False
    w = World(bootstrap, unique)
    yield w
    w.close()


def test_a_payload_that_raises_is_stuck_visible_and_resumed_after_the_fix(world: World) -> None:
    world.client.start("order", {"customer": "c-1"}, saga_id="o-1")  # no items: the bug
    state = world.wait("order", "o-1", "stuck")
    assert state.stuck is not None
    assert state.stuck["step"] == "reserve-stock"
    assert state.stuck["error"] == "KeyError"
    assert "KeyError('items')" in state.stuck["message"]
    assert any("in _items" in frame for frame in state.stuck["frames"])
    assert world.ledger("o-1") == ["credit"]
    assert state.timers == {}

    out = subprocess.run(
        [SAGAS, "status", "order", "o-1", "-n", world.ns, "--bootstrap-servers",
         world.settings.bootstrap_servers],
        capture_output=True, text=True, env=user_env(), timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "stuck at:    reserve-stock: saga 'order', step 'reserve-stock'" in out.stdout
    assert "KeyError('items')" in out.stdout
    assert f"sagas resume order o-1 -n {world.ns}" in out.stdout

    # nothing went to the dead-letter topic: the input is kept with the saga
    dlq = TopicNames(world.ns, "order").dlq
    assert read_all(world.settings.bootstrap_servers, dlq, timeout=2) == []

    world.client.signal("order", "o-1", "note", {"x": 1})
    deadline = time.monotonic() + 30
    while len(world.wait("order", "o-1", "stuck").kept) < 2:  # the reply, then the signal
        assert time.monotonic() < deadline, "the signal was not kept"
        time.sleep(0.2)
    FIX["deployed"] = True
    done = world.client.resume("order", "o-1", by="ops")
    assert done.action == "retried"
    final = world.wait("order", "o-1", "completed")
    assert final.stuck is None
    assert world.ledger("o-1") == ["credit", "stock", "ship"]
    assert world.runs[("o-1", "ReserveCredit")] == 1
    assert world.runs[("o-1", "ReserveStock")] == 1
    events = [e.event for e in world.client.history("order", "o-1").entries]
    assert events.count("stuck") == 1
    assert "unstuck" in events


def test_a_stuck_saga_cancelled_releases_what_it_holds(world: World) -> None:
    world.client.start("order", {"customer": "c-2"}, saga_id="o-2")
    world.wait("order", "o-2", "stuck")
    assert world.ledger("o-2") == ["credit"]
    world.client.cancel("order", "o-2", "the customer gave up")
    world.wait("order", "o-2", "cancelled")
    assert world.ledger("o-2") == []
    assert world.runs[("o-2", "ReleaseCredit")] == 1


def test_a_payload_that_does_not_fit_its_schema_is_stuck_with_the_reason(world: World) -> None:
    world.client.start("misfit", {}, saga_id="m-1")
    state = world.wait("misfit", "m-1", "stuck")
    assert state.stuck is not None
    assert state.stuck["step"] == "charge"
    assert state.stuck["error"] == "PayloadSchemaError"
    assert state.stuck["status"] is None  # the start is kept: the saga never began
    assert world.ledger("m-1") == []


# ------------------------------------------------------------------ answers the client gets


def test_start_waits_for_the_worker_and_every_refusal_says_why(world: World) -> None:
    c = world.client
    sid = c.start("order", {"customer": "c-3", "items": ["x"]}, saga_id="o-3", wait="accepted")
    assert sid == "o-3"
    assert c.result("order", "o-3", timeout=60) == {"customer": "c-3", "items": ["x"]}
    with pytest.raises(
        InputRefusedError, match=r"'o-3' of type 'order' already exists \(completed\)"
    ):
        c.start("order", {"customer": "c-3"}, saga_id="o-3")
    with pytest.raises(SagaStuckError, match=r"stuck at charge: .*does not fit"):
        c.start("misfit", {}, saga_id="m-2", wait="accepted")
    with pytest.raises(SagaStuckError, match=r"stuck at reserve-stock: .*KeyError\('items'\)"):
        c.start("order", {"customer": "c-4"}, wait="finished")
    assert c.start("order", {"customer": "c-5", "items": []}, wait="finished")


def test_signals_and_cancels_are_answered(world: World) -> None:
    c = world.client
    with pytest.raises(InputRefusedError, match="no saga 'nope' of type 'order'"):
        c.signal("order", "nope", "go", {})
    with pytest.raises(InputRefusedError, match="no saga 'nope'"):
        c.cancel("order", "nope")
    c.start("order", {"customer": "c-6", "items": []}, saga_id="o-6", wait="finished")
    with pytest.raises(InputRefusedError, match="'o-6' already ended completed: the signal"):
        c.signal("order", "o-6", "go", {})
    with pytest.raises(InputRefusedError, match="already ended completed: the cancel was not"):
        c.cancel("order", "o-6")

    c.start("order", {"customer": "c-7"}, saga_id="o-7")  # stuck at reserve-stock
    with pytest.raises(SagaStuckError, match="stuck at reserve-stock"):
        c.result("order", "o-7", timeout=60)
    c.signal("order", "o-7", "note", {}, wait=True)  # kept by the stuck saga
    assert world.wait("order", "o-7", "stuck").kept[-1]["name"] == "note"
    c.cancel("order", "o-7", "no items", wait=True)  # taken: it compensates
    world.wait("order", "o-7", "cancelled")
    assert world.ledger("o-7") == []


def test_an_input_written_to_the_wrong_partition_is_refused_in_the_sagas_history(
    world: World,
) -> None:
    from confluent_kafka import Producer

    from sagas.engine.model import Start
    from sagas.partitioning import partition_for
    from sagas.wire import input_record

    inbox = TopicNames(world.ns, "order").inbox
    record = input_record(inbox, Start("o-9", {"customer": "c-9"}), world.client.serde)
    wrong = (partition_for(b"o-9", 2) + 1) % 2
    before = int(time.time() * 1000) - 1000
    producer = Producer({"bootstrap.servers": world.settings.bootstrap_servers})
    producer.produce(inbox, record.value, b"o-9", partition=wrong, headers=record.headers)
    producer.flush(10)
    deadline = time.monotonic() + 60
    while True:
        history = world.client.history("order", "o-9", since_ms=before)
        refused = [e for e in history.entries if e.event == "refused"]
        if refused:
            break
        assert time.monotonic() < deadline, "no refused event"
        time.sleep(0.3)
    assert refused[0].reason is not None
    assert refused[0].reason.startswith("misplaced input")
    assert refused[0].body["record"] == f"{inbox}[{wrong}]@0"
    assert world.client.status("order", "o-9") is None
    said = subprocess.run(
        [SAGAS, "status", "order", "o-9", "-n", world.ns, "--bootstrap-servers",
         world.settings.bootstrap_servers],
        capture_output=True, text=True, env=user_env(), timeout=60, check=False,
    )  # fmt: skip
    assert said.returncode == 1, said.stderr
    assert "no saga 'o-9' of type 'order': its start was refused (misplaced input" in said.stderr
    assert f"dead-lettered to {world.ns}.order.dlq (the record was {inbox}[{wrong}]@0)" in (
        said.stderr
    )


def test_the_cli_answers_with_exit_codes_0_accepted_1_refused(world: World) -> None:
    def sagas(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [SAGAS, *args, "-n", world.ns, "--bootstrap-servers",
               world.settings.bootstrap_servers]  # fmt: skip
        return subprocess.run(
            cmd, capture_output=True, text=True, env=user_env(), timeout=90, check=False
        )

    done = sagas("start", "order", '{"customer": "c-8", "items": []}', "--id", "o-8",
                 "--wait", "finished")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "o-8"
    again = sagas("start", "order", '{"customer": "c-8"}', "--id", "o-8")
    assert again.returncode == 1
    assert "'o-8' of type 'order' already exists (completed)" in again.stderr
    unknown = sagas("signal", "order", "nope", "go")
    assert unknown.returncode == 1
    assert "no saga 'nope' of type 'order'" in unknown.stderr
    ended = sagas("cancel", "order", "o-8", "--wait")
    assert ended.returncode == 1
    assert "already ended completed: the cancel was not sent" in ended.stderr
    stuck = sagas("start", "order", '{"customer": "c-9"}', "--wait", "finished")
    assert stuck.returncode == 1
    assert "is stuck at reserve-stock" in stuck.stderr
    usage = sagas("start", "order", "{}", "--wait", "soon")
    assert usage.returncode == 2
