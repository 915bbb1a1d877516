"""Logs for people (text, the default) or machines (``--log-format json``), standard library.

:func:`configure_logging` is the one setup the CLI and embedding services call. In JSON, each line
is one object: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the process's
``instance`` (a worker's id, a participant's instance id) when known, and the saga's
``saga_id``, ``saga_type``, ``step`` and ``command_id`` when the line is about one (any other
``extra=`` fields a caller gives come along too).

:class:`SagaLogObserver` writes the lines about sagas: each journal event a worker commits
(``started``, ``step_completed``, ``compensating``, ``finished`` at INFO; the rest at DEBUG) and
each command a participant handles, with those fields set. Command ids are logged without their
tags: a log reader cannot answer a command.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, Literal

from sagas.engine.ids import parse_command_id, public_command_id
from sagas.engine.model import JournalEvent
from sagas.protocol import COMMAND_ID, SAGA_ID, SAGA_TYPE, STEP
from sagas.runtime.observe import Observer

__all__ = [
    "LOG_FORMATS",
    "SAGA_FIELDS",
    "JsonFormatter",
    "SagaLogObserver",
    "configure_logging",
    "saga_fields",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
SAGA_FIELDS = ("saga_id", "saga_type", "step", "command_id")
"""The fields every line about a saga carries (when known)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

_INFO_EVENTS = frozenset(
    {"started", "step_completed", "step_failed", "compensating", "finished", "parked", "expired"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(
    level: str | int = "info",
    log_format: str = "text",
    stream: IO[str] | None = None,
    *,
    instance: str | None = None,
) -> None:
    """Send the process's logs to ``stream`` (default stderr) at ``level``, as text or JSON;
    replaces what an earlier call set up. ``instance`` (a worker's id, a participant's instance
    id) goes on every line: a JSON field ``instance``, and ``[instance]`` in text.

    Raises:
        ConfigurationError: an unknown format.
    """
    if log_format not in LOG_FORMATS:
        from sagas.errors import ConfigurationError

        raise ConfigurationError(f"log format {log_format!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    text = (
        TEXT_FORMAT
        if instance is None
        else TEXT_FORMAT.replace("%(name)s", "[%(instance)s] %(name)s")
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text))
    if instance is not None:
        handler.addFilter(_Instance(instance))
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True
    )


class _Instance(logging.Filter):
    """Puts the process's instance id on every record its handler writes."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True


def saga_fields(
    saga_id: str, saga_type: str, step: str | None = None, command_id: str | None = None
) -> dict[str, str]:
    """The ``extra=`` of a log line about a saga (command id shown without its tag; the step
    read from the command id when not given)."""
    fields = {"saga_id": saga_id, "saga_type": saga_type}
    if not step and command_id and (ref := parse_command_id(command_id)) is not None:
        step = ref.step
    if step:
        fields["step"] = step
    if command_id:
        fields["command_id"] = public_command_id(command_id)
    return fields


class SagaLogObserver(Observer):
    """Logs what happens to each saga, with its fields (see the module docstring).

    Args:
        logger: where the lines go (default ``sagas.saga``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("sagas.saga")

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        """One line per event."""
        for event in events:
            level = logging.INFO if event.type in _INFO_EVENTS else logging.DEBUG
            if not self.log.isEnabledFor(level):
                continue
            body = event.body
            step = body.get("step")
            fields = saga_fields(
                event.saga_id,
                saga_type,
                step if isinstance(step, str) else None,
                str(body.get("command_id") or "") or None,
            )
            detail = _detail(event)
            self.log.log(
                level,
                "%s %s: %s%s",
                saga_type,
                event.saga_id,
                event.type.replace("_", " "),
                f" ({detail})" if detail else "",
                extra={**fields, "event": event.type},
            )

    def command_failed(
        self,
        group: str,
        command_type: str,
        *,
        outcome: str,
        error: str,
        message: str,
        headers: Any,
    ) -> None:
        """A WARNING line per failed command, with the reply's error and message."""
        if not self.log.isEnabledFor(logging.WARNING) or not isinstance(headers, dict):
            return
        fields = _command_fields(headers)
        self.log.warning(
            "%s: %s for saga %s failed: %s%s",
            group,
            command_type,
            fields["saga_id"],
            error,
            f" ({message})" if message else "",
            extra={**fields, "command_type": command_type, "outcome": outcome, "error": error},
        )

    def command_handled(
        self, group: str, command_type: str, *, outcome: str, seconds: float, headers: Any
    ) -> None:
        """One line per handled command: DEBUG when it succeeded, INFO otherwise (no reply yet,
        a late command); a failure is logged by :meth:`command_failed`, with its error."""
        if outcome in ("failure", "retryable-failure"):
            return
        level = {"success": logging.DEBUG}.get(outcome, logging.INFO)
        if not self.log.isEnabledFor(level) or not isinstance(headers, dict):
            return
        fields = _command_fields(headers)
        self.log.log(
            level,
            "%s: %s for saga %s: %s in %.3fs",
            group,
            command_type,
            fields["saga_id"],
            outcome,
            seconds,
            extra={**fields, "command_type": command_type, "outcome": outcome},
        )


def _detail(event: JournalEvent) -> str:
    body = event.body
    if event.type == "command_sent":
        return f"{body.get('command_type')} to {body.get('topic')}, attempt {body.get('attempt')}"
    if event.type in ("finished", "compensating", "step_failed", "parked"):
        return str(body.get("reason") or body.get("status") or "")
    if event.type == "reply_accepted":
        return str(body.get("outcome", ""))
    return ""


def _command_fields(headers: dict[str, Any]) -> dict[str, str]:
    """The saga fields of a line about a command, from the command's headers."""
    return saga_fields(
        str(headers.get(SAGA_ID, "")),
        str(headers.get(SAGA_TYPE, "")),
        headers.get(STEP) or None,
        headers.get(COMMAND_ID) or None,
    )
