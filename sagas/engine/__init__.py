"""The pure, deterministic saga engine: ``transition(program, state, input, now_ms, entropy=)``.

No I/O, no clock, no randomness, no threads. The runtime feeds inputs (with random bytes for a new
saga's secret), persists ``Decision.state`` and ``Decision.events``, and sends the decision's
commands. Modules: :mod:`~sagas.engine.model` (the data), :mod:`~sagas.engine.decide` (inputs),
:mod:`~sagas.engine.flow` (control flow), :mod:`~sagas.engine.context` (the deciding context),
:mod:`~sagas.engine.evolve` (events applied), :mod:`~sagas.engine.ids` (command ids),
:mod:`~sagas.engine.jsonvalue` (checked user values), :mod:`~sagas.engine.stuck` (a saga
stopped by an error in its own code).
"""

from sagas.engine.decide import SAGA_DEADLINE, stuck_decision, transition
from sagas.engine.evolve import evolve, fold
from sagas.engine.ids import CommandRef, parse_command_id, public_command_id
from sagas.engine.model import (
    TERMINAL,
    Cancel,
    ChildCancel,
    ChildStart,
    CommandOut,
    Decision,
    Input,
    JournalEvent,
    Outcome,
    ParentRef,
    ParentReply,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    Start,
    Status,
    Terminate,
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
    "Terminate",
    "Resume",
    "Settle",
    "TimerFired",
    "ParentRef",
    # outputs
    "ChildCancel",
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
    # command ids
    "CommandRef",
    "parse_command_id",
    "public_command_id",
    # functions
    "SAGA_DEADLINE",
    "evolve",
    "fold",
    "stuck_decision",
    "transition",
]
