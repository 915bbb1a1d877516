"""Terminate, resume and settle sagas: the inputs an operator sends, and what resume replays.

``terminate`` ends a saga without compensating; the worker journals who and why (``terminated``)
and finishes it with status ``terminated``. ``resume`` brings back a saga in one of two states:

- parked: its definition version was missing on the worker, so its inputs went to the saga
  type's DLQ with reason ``unknown-definition-version``. Once that version is deployed again,
  resume replays those dead letters of that saga to the inbox, in their order (see
  :func:`sagas.operate.dlq.replay`: once each).
- failed: resume sends a ``resume`` input naming the step to run again (default: the last step
  that failed, from the saga's history); the engine enters it anew with a new attempt.

``settle`` answers for a pivot in doubt. A saga is ``in-doubt`` when its pivot's deadline passed
without a definitive answer: it keeps sending the same command and waits. An operator who found
out what happened says ``done`` (the pivot took effect: the saga goes on) or not (it did not: the
saga compensates); the worker journals ``settled`` with who and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from sagas.engine.model import Input, Resume, SagaState, Settle, Terminate
from sagas.errors import ConfigurationError
from sagas.kafka_io import INPUT_PRODUCER, produce_and_wait
from sagas.operate.dlq import PARKED, ReplayReport, list_dead_letters, replay
from sagas.operate.history import read_history
from sagas.protocol import TopicNames
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings
from sagas.wire import input_record

__all__ = [
    "Resumed",
    "failed_step",
    "in_doubt_steps",
    "resume",
    "send_input",
    "settle",
    "settle_input",
    "stuck_lines",
    "terminate",
]


def send_input(settings: KafkaSettings, namespace: str, saga_type: str, inp: Input) -> None:
    """Write one input to the saga type's inbox and wait for its acknowledgement.

    Raises:
        BrokerError: it was not acknowledged.
    """
    serde = Serde.for_settings(settings)
    rec = input_record(TopicNames(namespace, saga_type).inbox, inp, serde, saga_type=saga_type)
    produce_and_wait(Producer(settings.client_config(**INPUT_PRODUCER)), rec)


def terminate(
    settings: KafkaSettings, namespace: str, saga_type: str, saga_id: str, *, by: str, reason: str
) -> None:
    """Ask the worker to end a saga without compensating (ignored once it has ended).

    Raises:
        BrokerError: the input was not written.
    """
    send_input(settings, namespace, saga_type, Terminate(saga_id, by, reason))


def failed_step(settings: KafkaSettings, namespace: str, state: SagaState) -> str:
    """The last step that failed, from a failed saga's history.

    Raises:
        ConfigurationError: its history names no failed step.
    """
    history = read_history(
        settings,
        namespace,
        state.saga_type,
        state.saga_id,
        started_ms=state.started_ms,
        updated_ms=state.updated_ms,
    )
    failed = [e.step for e in history.entries if e.event == "step_failed" and e.step]
    if not failed:
        raise ConfigurationError(
            f"saga {state.saga_id!r} failed but its history names no failed step; "
            "give the step to run again (--step)"
        )
    return failed[-1]


@dataclass(frozen=True)
class Resumed:
    """What resume did: ``"replayed"`` parked inputs (``report``), ``"resumed"`` a failed saga
    at ``step``, or ``"retried"`` a stuck saga's kept inputs (it was stuck at ``step``)."""

    action: str
    step: str | None = None
    report: ReplayReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON-compatible primitives."""
        return {
            "action": self.action,
            "step": self.step,
            "report": self.report.to_dict() if self.report else None,
        }


def resume(
    settings: KafkaSettings,
    namespace: str,
    state: SagaState,
    *,
    by: str,
    step: str | None = None,
) -> Resumed:
    """Resume a stuck saga (its kept inputs are applied again: deploy the fix first), a failed
    saga at ``step`` (default: its last failed step), or replay the parked inputs of a saga
    whose definition version was missing.

    Raises:
        ConfigurationError: the saga is neither stuck, failed nor parked (nothing to resume).
        BrokerError: Kafka refused a read or a write.
    """
    if state.status == "stuck":  # its kept inputs are applied again, with the code deployed now
        assert state.stuck is not None  # a stuck saga has its error
        at = state.stuck["step"] or "(start)"
        send_input(settings, namespace, state.saga_type, Resume(state.saga_id, at, by))
        return Resumed("retried", step=at)
    if state.status == "failed":
        chosen = step or failed_step(settings, namespace, state)
        send_input(settings, namespace, state.saga_type, Resume(state.saga_id, chosen, by))
        return Resumed("resumed", step=chosen)
    dlq = TopicNames(namespace, state.saga_type).dlq
    parked = [
        d
        for d in list_dead_letters(settings, dlq, saga_id=state.saga_id, reason=PARKED)
        if not d.replayed
    ]
    if state.terminal or not parked:
        raise ConfigurationError(
            f"saga {state.saga_id!r} is {state.status} with no parked inputs in {dlq}: only a "
            "stuck, failed or parked saga (inputs dead-lettered for an unknown definition "
            "version) resumes"
        )
    return Resumed("replayed", report=replay(settings, parked))


def stuck_lines(state: SagaState, namespace: str) -> list[tuple[str, str]]:
    """What a person needs to see of a stuck saga: where, the error, its last frames, and the
    commands that get it going again; empty for a saga that is not stuck."""
    if state.stuck is None:
        return []
    s = state.stuck
    where = s["step"] or "its start"
    ids = f"{state.saga_type} {state.saga_id} -n {namespace}"
    return [
        ("stuck at", f"{where}: {s['message']}"),
        ("error", s["error"]),
        *(("frame", frame) for frame in s["frames"][-3:]),
        ("kept", f"{len(state.kept)} input(s), applied again when it resumes"),
        (
            "hint",
            f"fix the code and deploy it, then: sagas resume {ids} "
            f"(or undo what it did: sagas cancel {ids})",
        ),
    ]


def in_doubt_steps(state: SagaState) -> list[str]:
    """The steps an ``in-doubt`` saga waits on (its pivot), from its active blocks; empty for a
    saga in any other status."""
    if state.status != "in-doubt":
        return []
    return sorted({token.step for token in state.tokens.values()})


def settle_input(state: SagaState, *, done: bool, by: str, reason: str) -> Settle:
    """The ``settle`` input for a saga in doubt about its pivot: ``done`` if the pivot took
    effect (the saga goes on), else not (the saga compensates).

    Raises:
        ConfigurationError: the saga is not ``in-doubt`` or its pivot is a child saga (the
            worker would ignore it), or ``reason`` or ``by`` is empty (both are journaled).
    """
    if not reason.strip():
        raise ConfigurationError("give the reason for the settle: it is journaled with who")
    if not by.strip():
        raise ConfigurationError("give who settles (by): it is journaled with the reason")
    if state.status != "in-doubt":
        raise ConfigurationError(
            f"saga {state.saga_id!r} is {state.status}, not in-doubt: only a saga waiting for "
            "its pivot's answer after the pivot's deadline is settled"
        )
    for token in state.tokens.values():
        parts = (token.cmd or "").split(":")
        if len(parts) >= 4 and parts[-3] == "child":  # <saga>:<step>:child:<n>:<tag>
            raise ConfigurationError(
                f"saga {state.saga_id!r} waits on its pivot, the child saga "
                f"{state.saga_id}/{token.step}/{parts[-2]}, whose end decides: settle (or "
                "terminate) that child instead"
            )
    return Settle(state.saga_id, done, by, reason)


def settle(
    settings: KafkaSettings, namespace: str, state: SagaState, *, done: bool, by: str, reason: str
) -> None:
    """Settle a saga in doubt about its pivot (see :func:`settle_input`).

    Raises:
        ConfigurationError: the saga is not in-doubt, or ``reason`` or ``by`` is empty.
        BrokerError: the input was not written.
    """
    inp = settle_input(state, done=done, by=by, reason=reason)
    send_input(settings, namespace, state.saga_type, inp)
