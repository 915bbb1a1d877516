"""Operator tools, as library functions the CLI and a web UI both call.

- :mod:`~sagas.operate.history`: one saga's journal as a timeline, read from one partition
  between the saga's start and its last change (:func:`read_history`).
- :mod:`~sagas.operate.dlq`: dead letters by reason, saga and time; replay to their source,
  once (:func:`list_dead_letters`, :func:`replay`).
- :mod:`~sagas.operate.control`: :func:`terminate` (no compensation), :func:`resume` (a failed
  saga at a step, or a parked one's dead-lettered inputs) and :func:`settle` (a pivot in doubt:
  done or not).
- :mod:`~sagas.operate.topics_spec`: declarative topic specs (:func:`spec_of`) and their
  reconciliation with a cluster (:func:`plan_changes`, :func:`apply_changes`).

Nothing here is imported by ``import sagas``.
"""

from sagas.operate.control import (
    Resumed,
    failed_step,
    in_doubt_steps,
    resume,
    send_input,
    settle,
    settle_input,
    terminate,
)
from sagas.operate.dlq import (
    PARKED,
    DeadLetter,
    ReplayReport,
    list_dead_letters,
    replay,
    select,
)
from sagas.operate.history import History, HistoryEntry, read_history
from sagas.operate.topics_spec import (
    AppSpec,
    Change,
    TopicDecl,
    apply_changes,
    plan_changes,
    read_spec,
    spec_of,
    write_spec,
)

__all__ = [  # noqa: RUF022 - grouped by role
    # history
    "History",
    "HistoryEntry",
    "read_history",
    # dead letters
    "PARKED",
    "DeadLetter",
    "ReplayReport",
    "list_dead_letters",
    "replay",
    "select",
    # control
    "Resumed",
    "failed_step",
    "in_doubt_steps",
    "resume",
    "send_input",
    "settle",
    "settle_input",
    "terminate",
    # topics
    "AppSpec",
    "Change",
    "TopicDecl",
    "apply_changes",
    "plan_changes",
    "read_spec",
    "spec_of",
    "write_spec",
]
