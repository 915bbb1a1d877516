"""kafka-sagas: event-sourced sagas over Kafka.

One import place for what a user touches: the DSL (``Saga``, ``step``...), ``App``, the
``Worker`` that runs an app, ``SagaClient`` / ``AsyncSagaClient`` to start and watch sagas,
``Participant`` to execute their commands, ``KafkaSettings``, and the errors. In-memory tests use
``sagas.testing``; the participant side of long-running operations
``sagas.long_running_adapter``; the pure engine is ``sagas.engine``. The Kafka-facing names load
on first use, so ``import sagas`` imports no Kafka client, and nothing runs at import.
"""

from typing import TYPE_CHECKING

from sagas._lazy import lazy_exports
from sagas.dsl import (
    Program,
    Retry,
    Saga,
    branch,
    call,
    child,
    compile,
    compile_saga,
    goto,
    long_running,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.errors import (
    BrokerError,
    BrokerUnavailableError,
    CommandFailed,
    ConfigurationError,
    DecodeError,
    DefinitionError,
    EnvironmentSetupError,
    InputRefusedError,
    PayloadSchemaError,
    RegistryError,
    SagaError,
    SagaFailedError,
    SagaStuckError,
    UnknownVersionError,
)

__all__ = [  # noqa: RUF022 - grouped by role
    # DSL: what users write
    "Saga",
    "step",
    "call",
    "long_running",
    "wait_signal",
    "sleep",
    "parallel",
    "branch",
    "goto",
    "child",
    "Retry",
    # compiler
    "compile_saga",
    "compile",
    "Program",
    # errors (sagas.errors)
    "SagaError",
    "DefinitionError",
    "ConfigurationError",
    "EnvironmentSetupError",
    "BrokerError",
    "BrokerUnavailableError",
    "DecodeError",
    "UnknownVersionError",
    "SagaFailedError",
    "SagaStuckError",
    "InputRefusedError",
    "CommandFailed",
    "PayloadSchemaError",
    "RegistryError",
]
__all__ += [  # noqa: RUF022 - grouped by role; loaded on first use (they bring the Kafka client)
    # running sagas
    "App",
    "Worker",
    "KafkaSettings",
    # services
    "SagaClient",
    "AsyncSagaClient",
    "Participant",
    "CommandContext",
    "NO_REPLY",
]

_LAZY = {
    "App": "sagas.app",
    "Worker": "sagas.runtime.process",
    "KafkaSettings": "sagas.settings",
    "SagaClient": "sagas.client",
    "AsyncSagaClient": "sagas.async_client",
    "Participant": "sagas.participants",
    "CommandContext": "sagas.participants",
    "NO_REPLY": "sagas.participants",
}

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.async_client import AsyncSagaClient
    from sagas.client import SagaClient
    from sagas.participants import NO_REPLY, CommandContext, Participant
    from sagas.runtime.process import Worker
    from sagas.settings import KafkaSettings


__getattr__ = lazy_exports("sagas", _LAZY, globals())
