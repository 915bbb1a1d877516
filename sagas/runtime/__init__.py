"""The Kafka shell around the engine: workers and topics (settings: :mod:`sagas.settings`).

Grouped by role (each loads on first use, so importing a submodule such as
``sagas.runtime.signals`` does not load the Kafka client):

- running: :class:`Worker` (an app, embedded or as a process), :class:`SagaWorker` (one saga
  type), :func:`run_worker` (a whole app, one process)
- topics: :func:`ensure_topics`, :func:`plan_topics`
"""

from typing import TYPE_CHECKING

from sagas._lazy import lazy_exports

__all__ = [
    "SagaWorker",
    "Worker",
    "WorkerMetrics",
    "ensure_topics",
    "plan_topics",
    "run_worker",
]

_LAZY = {
    "SagaWorker": "sagas.runtime.worker",
    "Worker": "sagas.runtime.process",
    "WorkerMetrics": "sagas.runtime.worker",
    "ensure_topics": "sagas.runtime.topics",
    "plan_topics": "sagas.runtime.topics",
    "run_worker": "sagas.runtime.process",
}

if TYPE_CHECKING:
    from sagas.runtime.process import Worker, run_worker
    from sagas.runtime.topics import ensure_topics, plan_topics
    from sagas.runtime.worker import SagaWorker, WorkerMetrics


__getattr__ = lazy_exports("sagas.runtime", _LAZY, globals())
