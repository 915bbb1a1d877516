"""Kept for imports written before the settings moved: use :mod:`sagas.settings`."""

from sagas.settings import *  # noqa: F403
from sagas.settings import __all__  # noqa: F401
