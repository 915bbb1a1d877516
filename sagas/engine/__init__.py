"""The pure, deterministic saga engine: ``transition(program, state, input, now_ms)``.

No I/O, no clock, no randomness, no threads. The runtime feeds inputs, persists
``Decision.state`` and ``Decision.events``, and sends the decision's commands.
"""

from sagas.engine.decide import SAGA_DEADLINE, transition
from sagas.engine.evolve import evolve, fold
from sagas.engine.model import (
    TERMINAL,
    Cancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
    JournalEvent,
    Outcome,
    ParentRef,
    ParentReply,
    Reply,
    SagaState,
    Signal,
    Start,
    Status,
    TimerFired,
    Token,
)

__all__ = [  # noqa: RUF022 - grouped by role
    # inputs
    "Cancel",
    "Input",
    "Reply",
    "Signal",
    "Start",
    "TimerFired",
    "ParentRef",
    # outputs
    "ChildStart",
    "CommandOut",
    "Decision",
    "ParentReply",
    # state and journal
    "TERMINAL",
    "JournalEvent",
    "Outcome",
    "SagaState",
    "Status",
    "Token",
    # functions
    "SAGA_DEADLINE",
    "evolve",
    "fold",
    "transition",
]
