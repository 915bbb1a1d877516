"""Fixtures of the runtime tests: a running app (worker threads, participants, client), and the
operator app run by the installed ``sagas`` command."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sagas.settings import KafkaSettings
from tests.support.cli import OPSAPP, Ops, running
from tests.support.runtime import Running, start_runtime
from tests.support.sagas_under_test import make_app


@pytest.fixture
def rt(bootstrap: str, unique: str) -> Iterator[Running]:
    """The test app of :mod:`tests.support.sagas_under_test`, run by a worker thread on the real
    broker."""
    running = start_runtime(make_app(unique), KafkaSettings(bootstrap))
    yield running
    running.shutdown()


@pytest.fixture(scope="module")
def ops(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    """``opsapp.py`` in a folder of its own, its worker and participant running (one per test
    module)."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("ops")
    (folder / "opsapp.py").write_text(OPSAPP.format(ns=ns))
    yield from running(Ops(folder, ns, kafka.bootstrap_servers), "opsapp", "hold")
