"""Kept for imports written before the module moved: use :mod:`sagas.kafka_io`."""

from sagas.kafka_io import *  # noqa: F403
from sagas.kafka_io import __all__  # noqa: F401
