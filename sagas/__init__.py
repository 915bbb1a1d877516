"""kafka-sagas: event-sourced sagas over Kafka.

Define a saga with the DSL, compile it, and run it with a worker (``sagas.runtime``) or in memory
for tests (``sagas.testing``). Services start and watch sagas with ``sagas.client`` and execute
their commands with ``sagas.participants`` (long-running operations: ``sagas.operations``). The
pure engine is ``sagas.engine``. Nothing runs at import.
"""

from sagas.dsl import (
    Program,
    Retry,
    Saga,
    branch,
    call,
    child,
    compile,
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
    PayloadSchemaError,
    RegistryError,
    SagaError,
    SagaFailedError,
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
    "CommandFailed",
    "PayloadSchemaError",
    "RegistryError",
]
