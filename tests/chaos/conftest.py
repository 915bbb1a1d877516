"""The chaos tests: marked ``chaos`` (``pytest -m 'not chaos'`` leaves them out)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: kills workers and restarts a broker of its own (minutes)"
    )
