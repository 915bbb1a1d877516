"""A restore on the real broker from state records with the summary header (what this release
writes) and without it (an older release's): timers fire and the query endpoint answers alike."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from typing import Any

import pytest
from confluent_kafka import Producer

from sagas.app import App
from sagas.engine import transition
from sagas.engine.model import TERMINAL, SagaState, Start
from sagas.partitioning import partition_for
from sagas.protocol import STATE_SUMMARY
from sagas.runtime.topics import ensure_topics
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from sagas.wire import StateSummary, read_summary, summary_header
from tests.support.kafka import read_all
from tests.support.runtime import Running, owner_url, start_runtime
from tests.support.sagas_under_test import make_app

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

SILENT = {"ReserveCredit": "silent"}


def _started(app: App, saga_type: str, saga_id: str, now_ms: int) -> SagaState:
    """A saga that sent its first command at ``now_ms`` and waits for the reply."""
    state = transition(app.latest(saga_type), None, Start(saga_id, SILENT), now_ms).state
    assert state is not None
    assert state.timers
    return state


def _write(bootstrap: str, app: App, saga_type: str, states: list[tuple[SagaState, bool]]) -> None:
    """Write each snapshot to the state topic, with the summary header when its flag says so."""
    producer = Producer({"bootstrap.servers": bootstrap})
    topic = app.topics(saga_type).state
    for state, with_header in states:
        key = state.saga_id.encode()
        producer.produce(
            topic,
            key=key,
            value=SERDE.encode_state(state),
            partition=partition_for(key, app.partitions),
            headers=[summary_header(state)] if with_header else [],
        )
    assert producer.flush(10) == 0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _shown(state: SagaState) -> Any:
    """The query endpoint's JSON of a snapshot."""
    return json.loads(json.dumps(state.public_dict()))


def test_a_restore_reads_summaries_and_older_snapshots_alike(bootstrap: str, unique: str) -> None:
    app = make_app(unique, partitions=2)
    now = int(time.time() * 1000)
    # quick_order's step deadline is 3 s: started 10 s ago, it is due the moment it is restored.
    due_new = _started(app, "quick_order", "due-new", now - 10_000)
    due_old = _started(app, "quick_order", "due-old", now - 10_000)
    # order's step deadline is 60 s: these wait while the endpoint is asked.
    far_new = _started(app, "order", "far-new", now - 2)
    far_old = _started(app, "order", "far-old", now - 1)
    done_new, done_old = (
        dataclasses.replace(
            state, saga_id=sid, status="completed", updated_ms=at, timers={}, pending={}, tokens={}
        )
        for state, sid, at in ((far_new, "done-new", now - 20), (far_old, "done-old", now - 10))
    )
    settings = KafkaSettings(bootstrap)
    ensure_topics(app, settings)
    _write(bootstrap, app, "quick_order", [(due_new, True), (due_old, False)])
    _write(
        bootstrap,
        app,
        "order",
        [(far_new, True), (far_old, False), (done_new, True), (done_old, False)],
    )

    rt = start_runtime(app, settings)
    try:
        # Status and list, from the worker's store: as the old decoded store answered them.
        rt.wait_until(lambda: _answers(rt, bootstrap, "far-new") is not None, timeout=60)
        for state in (far_new, far_old, done_new, done_old):
            assert _answers(rt, bootstrap, state.saga_id) == _shown(state)
        url, _ = owner_url(rt, bootstrap, "far-new")
        rt.wait_until(lambda: len(_get(f"{url}/sagas/order")["partitions"]) == 2, timeout=60)
        completed = _get(f"{url}/sagas/order?status=completed")
        assert completed["total"] == 2
        assert completed["sagas"] == [_shown(done_old), _shown(done_new)]  # newest first
        running = _get(f"{url}/sagas/order?status=running&limit=1")
        assert running["total"] == 2
        assert running["sagas"] == [_shown(far_old)]

        # The due timers of both fire (nothing else moves them): each saga ends the same way.
        def ended(saga_id: str) -> Any:
            shown = _answers(rt, bootstrap, saga_id, "quick_order")
            return shown if shown is not None and shown["status"] in TERMINAL else None

        rt.wait_until(lambda: ended("due-new") and ended("due-old"), timeout=90)
        a, b = ended("due-new"), ended("due-old")
        assert (a["status"], a["reason"]) == (b["status"], b["reason"])
    finally:
        rt.shutdown()

    # Every snapshot the worker wrote carries a summary that matches it.
    written = read_all(bootstrap, app.topics("quick_order").state, with_headers=True)
    by_worker = [(v, h) for k, v, h in written if k == b"due-old" and STATE_SUMMARY in h]
    assert by_worker
    for value, headers in by_worker:
        assert read_summary(headers) == StateSummary.of(SERDE.decode_state(value))


def _answers(
    rt: Running, bootstrap: str, saga_id: str, saga_type: str = "order"
) -> dict[str, Any] | None:
    """The state the owning worker's endpoint shows for ``saga_id`` (``None``: not yet)."""
    try:
        url, p = owner_url(rt, bootstrap, saga_id, saga_type)
        answer = _get(f"{url}/sagas/{saga_type}/{saga_id}?partition={p}")
    except (KeyError, OSError):
        return None
    state: dict[str, Any] = answer["state"]
    return state
