"""Fixtures of the runtime tests: a running app (worker threads, participants, client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from runtime_util import Running, start_runtime
from sagas_under_test import make_app

from sagas.settings import KafkaSettings


@pytest.fixture
def rt(bootstrap: str, unique: str) -> Iterator[Running]:
    """The test app of :mod:`sagas_under_test`, run by a worker thread on the real broker."""
    running = start_runtime(make_app(unique), KafkaSettings(bootstrap))
    yield running
    running.shutdown()
