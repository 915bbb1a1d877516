"""Kept for imports written before the loop moved: use :mod:`sagas.participants.loop`."""

from sagas.participants.loop import *  # noqa: F403
from sagas.participants.loop import __all__  # noqa: F401
