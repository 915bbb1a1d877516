"""``async def`` handlers run concurrently on the real broker, one saga's commands in order."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any, TypedDict

import pytest

from sagas import App, Saga, step
from sagas.client import SagaClient
from sagas.participants import CommandContext, Participant
from sagas.runtime.process import Worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from tests.support.kafka import create_topic
from tests.support.participants import command, replies_by_command, send_commands, wait_for

pytestmark = pytest.mark.kafka


class Tracker:
    """Handlers in flight: at most how many at once, and whether one saga's overlapped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.sagas_in_flight: set[str] = set()
        self.overlaps: list[str] = []
        self.order: dict[str, list[int]] = {}

    async def run(self, ctx: CommandContext, seconds: float) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            if ctx.saga_id in self.sagas_in_flight:
                self.overlaps.append(ctx.command_id)
            self.sagas_in_flight.add(ctx.saga_id)
            self.order.setdefault(ctx.saga_id, []).append(ctx.attempt)
        await asyncio.sleep(seconds)
        with self.lock:
            self.now -= 1
            self.sagas_in_flight.discard(ctx.saga_id)


def test_a_batch_runs_its_async_handlers_at_once_up_to_the_bound_one_saga_at_a_time(
    bootstrap: str, unique: str
) -> None:
    topic, inbox = f"{unique}.work", f"{unique}.inbox"
    create_topic(bootstrap, topic, 3)
    create_topic(bootstrap, inbox, 3)
    tracker = Tracker()
    participant = Participant(KafkaSettings(bootstrap), f"{unique}.svc", max_concurrency=4)

    @participant.handler(topic, "Work")
    async def work(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        await tracker.run(ctx, 0.2)
        return {"i": payload["i"]}

    # Ten sagas, and three commands of s0 (attempts 1-3), all there before the participant reads.
    commands = [command(topic, f"s{i}", 1, "Work", i=i) for i in range(10)]
    commands += [command(topic, "s0", n, "Work", i=n) for n in (2, 3)]
    send_commands(bootstrap, commands, inbox)
    thread, stop = participant.start()
    try:
        wait_for(lambda: participant.handled >= len(commands))
        send_commands(bootstrap, commands[:1], inbox)  # re-sent: answered from the record
        wait_for(lambda: participant.replayed >= 1)
    finally:
        stop.set()
        thread.join(30)

    assert 1 < tracker.most <= 4, tracker.most
    assert tracker.overlaps == []
    assert tracker.order["s0"] == [1, 2, 3]
    replies = replies_by_command(bootstrap, inbox, expect=len(commands) + 1)
    assert len(replies) == len(commands)
    assert [r["outcome"] for r in replies["s0:charge:1"]] == ["success", "success"]
    assert replies["s7:charge:1"][0]["payload"] == {"i": 7}


class Job(TypedDict):
    n: int


def test_ten_sagas_with_a_slow_async_handler_overlap_end_to_end(
    bootstrap: str, unique: str
) -> None:
    settings = KafkaSettings(bootstrap)
    saga = Saga[Job](
        "job",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step(
                "work",
                to=f"{unique}.work",
                command="Work",
                payload=lambda d: {"n": d["n"]},
                kind="pivot",
            )
        ],
    )
    app = App(unique, [saga.compile()], partitions=3)
    ensure_topics(app, settings)
    tracker = Tracker()
    participant = Participant(settings, f"{unique}.svc")

    @participant.handler(f"{unique}.work", "Work")
    async def work(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        await tracker.run(ctx, 0.3)
        return {}

    worker = Worker(app, settings).start()
    thread, stop = participant.start()
    client = SagaClient(settings, unique)
    try:
        warm = client.start(saga, {"n": -1})  # the first saga waits for the group joins
        client.result(saga, warm)
        started = time.monotonic()
        ids = [client.start(saga, {"n": i}) for i in range(10)]
        for sid in ids:
            assert client.result(saga, sid)["n"] == ids.index(sid)
        elapsed = time.monotonic() - started
    finally:
        client.close()
        stop.set()
        thread.join(30)
        worker.stop()
    print(f"10 sagas, 0.3 s async handler: {elapsed:.2f} s, {tracker.most} handlers at once")
    assert tracker.most > 1
    assert tracker.overlaps == []
