"""A bounded sample of the world simulation (``make simulate`` runs the large one).

One test holds the invariants over the sample; another makes sure the sample is worth something
(it reaches every end state and takes the paths the invariants are about); the last that the
check does find unbalanced books.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from sagas import Saga, call, step
from sagas.testing import Effect, SagaTestEnv, fail, succeed
from tests.sim.run import summary
from tests.sim.world import WorldResult, check, run_many

SEED = 1
WORLDS = range(1000)


@pytest.fixture(scope="module")
def sample() -> tuple[list[WorldResult], float]:
    started = time.perf_counter()
    results = run_many(SEED, WORLDS)
    return results, time.perf_counter() - started


def test_the_books_balance_in_every_world_of_the_sample(
    sample: tuple[list[WorldResult], float],
) -> None:
    results, seconds = sample
    text, ok = summary(list(results), seconds, shown=3)
    assert ok, text


def test_the_sample_reaches_every_end_and_every_path(
    sample: tuple[list[WorldResult], float],
) -> None:
    results, _ = sample
    statuses: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for result in results:
        assert result.skipped is None, result.skipped
        statuses.update(result.statuses)
        events.update(result.events)
    for status in ("completed", "compensated", "cancelled", "failed", "in-doubt"):
        assert statuses[status] > 0, statuses
    paths = (
        "pivot_awaited",  # a deadline or cancel while the pivot was in flight
        "cancel_refused",  # ... then the pivot's answer was done
        "settled",  # an operator settled an in-doubt saga
        "child_cancelled",  # a parent stopped its child
        "unwinding",  # a first-wins parallel undid its losers
        "signal_received",
        "signal_consumed",
        "refused",  # services refused commands that came after their deadline
    )
    for path in paths:
        assert events[path] > 0, f"no {path} in the sample: {sorted(events.items())}"
    assert sum(r.children for r in results) > 0


def test_the_check_passes_balanced_books_and_flags_what_stands_too_many() -> None:
    saga = Saga[dict[str, Any]](
        "main",
        version=1,
        deadline=timedelta(minutes=1),
        steps=[
            step("a", to="a", command="Do-a", compensate=call("Undo-a")),
            step("b", to="b", command="Do-b", kind="pivot"),
        ],
    )
    program = saga.compile()
    env = SagaTestEnv(program)
    env.on("Do-a", succeed())
    env.on("Undo-a", succeed())
    env.on("Do-b", [succeed(), fail("no")])
    env.start("main", "done", {})
    env.start("main", "undone", {})
    assert [env.state(s).status for s in ("done", "undone")] == ["completed", "compensated"]
    assert check(env, {"main": program}) == []

    env._ledger.append(Effect("undone", "a", "Do-a", "forged"))  # what the engine failed to undo
    env._ledger.append(Effect("done", "a", "Do-a", "forged-too"))  # an effect done twice
    kinds = sorted(v.kind for v in check(env, {"main": program}))
    assert kinds == ["completed: books", "effects stand (compensated)"]
