"""The Kafka shell around the engine: workers, topics, settings.

Grouped by role:

- running: :class:`SagaWorker` (one saga type), :func:`run_worker` (a whole app, one process)
- settings: :class:`KafkaSettings`
- topics: :func:`ensure_topics`, :func:`plan_topics`
"""

from sagas.runtime.process import run_worker
from sagas.runtime.topics import ensure_topics, plan_topics
from sagas.runtime.worker import SagaWorker, WorkerMetrics
from sagas.settings import KafkaSettings

__all__ = [
    "KafkaSettings",
    "SagaWorker",
    "WorkerMetrics",
    "ensure_topics",
    "plan_topics",
    "run_worker",
]
