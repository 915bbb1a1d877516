"""The saga DSL: what users write (blocks, retry policy, the saga type) and its compiler.

``compile`` is the former name of :func:`compile_saga`, kept as an alias.
"""

from sagas.dsl.compiler import compile, compile_saga
from sagas.dsl.nodes import (
    KINDS,
    Branch,
    Call,
    Child,
    Goto,
    Join,
    Kind,
    LongRunning,
    Merge,
    Node,
    Parallel,
    Payload,
    Sleep,
    Step,
    WaitSignal,
    branch,
    call,
    child,
    goto,
    long_running,
    parallel,
    sleep,
    step,
    wait_signal,
)
from sagas.dsl.program import RECORD_TYPES, Program, ProgramNode
from sagas.dsl.retry import Retry
from sagas.dsl.saga import Saga

__all__ = [
    "KINDS",
    "RECORD_TYPES",
    "Branch",
    "Call",
    "Child",
    "Goto",
    "Join",
    "Kind",
    "LongRunning",
    "Merge",
    "Node",
    "Parallel",
    "Payload",
    "Program",
    "ProgramNode",
    "Retry",
    "Saga",
    "Sleep",
    "Step",
    "WaitSignal",
    "branch",
    "call",
    "child",
    "compile",
    "compile_saga",
    "goto",
    "long_running",
    "parallel",
    "sleep",
    "step",
    "wait_signal",
]
