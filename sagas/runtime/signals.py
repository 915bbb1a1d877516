"""Stopping on SIGTERM or Ctrl-C, the same way for every long-running command."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["stop_on_signals"]

log = logging.getLogger(__name__)


def stop_on_signals(stop: threading.Event, what: str = "stopping") -> None:
    """Set ``stop`` when the process gets SIGTERM or SIGINT (Ctrl-C), and log ``what`` happens
    then. Call it from the main thread."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: %s", signum, what)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
