"""The one exception root of kafka-sagas, and its tree.

::

    SagaError
    ├── DefinitionError          a saga definition is wrong (raised by the DSL and the compiler)
    ├── ConfigurationError       a setting, a CLI argument or a topic layout is wrong
    ├── EnvironmentSetupError    a tool the project needs (Java, Maven) is missing or fails
    ├── BrokerError              Kafka said no; ``retryable`` tells whether trying again may help
    │   └── BrokerUnavailableError   no broker answers at the configured address
    ├── DecodeError              a record could not be decoded; keeps the raw record
    ├── PayloadSchemaError       a payload does not fit the Avro schema it is written with
    ├── RegistryError            the schema registry did not answer or refused a schema
    ├── UnknownVersionError      an in-flight saga runs on a definition version this worker lacks
    ├── SagaFailedError          the saga ended compensated, failed or cancelled (client ``result``)
    ├── SagaStuckError           an error in the saga's own code stopped it (client ``result``)
    ├── InputRefusedError        the client's input was refused: no such saga, it ended, it
    │                            exists already, or the worker ignored it (the reason says)
    └── CommandFailed            raised by a participant handler; ``retryable`` picks the outcome

Errors never shadow built-ins, and errors translated from another library keep their cause
(``raise ... from exc``).
"""

from __future__ import annotations

import warnings

__all__ = [
    "BrokerError",
    "BrokerUnavailableError",
    "CommandFailed",
    "ConfigurationError",
    "DecodeError",
    "DefinitionError",
    "EnvironmentSetupError",
    "InputRefusedError",
    "PayloadSchemaError",
    "RegistryError",
    "SagaError",
    "SagaFailedError",
    "SagaStuckError",
    "UnknownVersionError",
]


class SagaError(Exception):
    """Root of every error kafka-sagas raises."""


class DefinitionError(SagaError):
    """A saga definition is invalid. The message names the saga, the step and the fix."""

    def __init__(self, message: str, *, saga: str | None = None, step: str | None = None) -> None:
        where = ""
        if saga is not None:
            where = f"saga {saga!r}"
            if step is not None:
                where += f", step {step!r}"
            where += ": "
        super().__init__(where + message)
        self.saga = saga
        self.step = step


class ConfigurationError(SagaError):
    """A setting, CLI argument or topic layout is wrong; the message says how to fix it."""


class EnvironmentSetupError(SagaError):
    """A tool the project needs is missing or failed; the message says how to install it."""


class _RetryableError(SagaError):
    """An error that says whether trying again may help (``retryable``; ``retriable`` is the
    former spelling, still accepted with a warning)."""

    retryable: bool

    @property
    def retriable(self) -> bool:
        """Deprecated spelling of :attr:`retryable`."""
        warnings.warn("use .retryable, not .retriable", DeprecationWarning, stacklevel=2)
        return self.retryable


def _spelling(retryable: bool | None, retriable: bool | None, default: bool) -> bool:
    if retriable is not None:
        warnings.warn("use retryable=, not retriable=", DeprecationWarning, stacklevel=3)
        return retriable
    return default if retryable is None else retryable


class BrokerError(_RetryableError):
    """Kafka refused an operation.

    Attributes:
        retryable: trying the same operation again may succeed.
        fatal: the client instance is unusable (e.g. a fenced transactional producer).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        fatal: bool = False,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = _spelling(retryable, retriable, False)
        self.fatal = fatal


class BrokerUnavailableError(BrokerError):
    """No broker answered at the configured bootstrap address."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class DecodeError(SagaError):
    """A record could not be decoded or validated. ``record`` is what was read, untouched."""

    def __init__(self, message: str, *, record: object = None) -> None:
        super().__init__(message)
        self.record = record


class UnknownVersionError(SagaError):
    """A saga in flight runs on a definition version that this worker was not given."""

    def __init__(self, saga_type: str, version: int, known: list[int]) -> None:
        super().__init__(
            f"saga type {saga_type!r} version {version} is in flight but this worker only has "
            f"versions {sorted(known)}; deploy a worker that registers version {version} "
            "alongside the new one until those sagas finish"
        )
        self.saga_type = saga_type
        self.version = version
        self.known = known


class SagaFailedError(SagaError):
    """A saga finished without success; ``status`` and ``reason`` say how."""

    def __init__(self, saga_id: str, status: str, reason: str | None) -> None:
        super().__init__(f"saga {saga_id!r} ended {status}" + (f": {reason}" if reason else ""))
        self.saga_id = saga_id
        self.status = status
        self.reason = reason


class SagaStuckError(SagaError):
    """A saga is ``stuck``: its own code raised (``step``, ``message``); it waits for an
    operator to resume it after a fix, or to cancel it."""

    def __init__(self, saga_type: str, saga_id: str, step: str | None, message: str) -> None:
        super().__init__(
            f"saga {saga_id!r} is stuck at {step or 'its start'}: {message}; fix the code, deploy "
            f"it, then resume it (sagas resume {saga_type} {saga_id}) or cancel it"
        )
        self.saga_id = saga_id
        self.step = step


class InputRefusedError(SagaError):
    """An input was refused: the saga does not exist, has ended, exists already (a start), or
    the worker ignored it; ``status`` is the saga's, when it has one."""

    def __init__(self, message: str, *, saga_id: str, status: str | None = None) -> None:
        super().__init__(message)
        self.saga_id = saga_id
        self.status = status


class CommandFailed(SagaError):  # noqa: N818 - reads as what happened: the command failed
    """Raised by a participant handler: the command failed.

    The reply's outcome is ``retryable-failure`` when ``retryable`` is true, else ``failure``;
    its payload is ``{"error": error, "message": message}``. A saga's ``Retry(non_retryable=...)``
    lists ``error`` values that must not be retried.
    """

    def __init__(self, message: str, *, error: str = "failed", retryable: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.retryable = retryable


class PayloadSchemaError(SagaError):
    """A payload does not fit the Avro schema it must be written with (a definition bug: the
    payload builder and the schema disagree); ``step`` names the saga's step when known."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class RegistryError(_RetryableError):
    """The schema registry did not answer, or refused a request.

    Attributes:
        retryable: trying again may succeed (the registry was unreachable or busy).
    """

    def __init__(
        self, message: str, *, retryable: bool | None = None, retriable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = _spelling(retryable, retriable, False)
