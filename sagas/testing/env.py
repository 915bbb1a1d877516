"""The in-memory environment behind :mod:`sagas.testing`.

It runs the same :func:`sagas.engine.transition` as the Kafka worker, one input at a time, with a
virtual clock: replies, child starts, child cancels and parent replies are delivered through a
queue in time order, and ``advance`` fires every due timer in due-time order. Nothing sleeps; a
day passes in milliseconds.

Each decision goes through :func:`sagas.wire.decision_records`, the worker's own encoding of
commands with their payload schemas: a decision whose payload does not fit its schema is not
applied, and the saga is ``stuck`` holding its input, exactly as in the worker (as it is when a
payload builder raises); :meth:`SagaTestEnv.resume` applies the held inputs again.

The scripted participants behave as :mod:`sagas.participants` does:

* A command reaches its service ``lag`` after it was sent (:attr:`Response.lag`); a service
  handles the commands of one saga on one topic in the order they were sent (one Kafka
  partition), and its reply arrives ``after`` the handling.
* A command handled after its ``deadline_ms`` is refused: a ``failure`` reply with
  ``{"error": "deadline-passed", "message": ...}``, and no effect.
* A command id handled before (a resend) gets the recorded reply again, ``after`` the handling;
  its script is not consulted again and nothing happens again. Until the first reply has
  arrived the service is still at work on it (``after`` includes its work), and a resend gets no
  reply of its own. A :func:`silent` send is lost on the way (nothing is recorded), so a resend
  of it consults the script again.
* The services keep a ledger of effects (:meth:`SagaTestEnv.effects`): a successful ``do`` or
  long-running ``start`` records one; a successful ``undo`` removes its step's effects in that
  saga (for a child step, every effect of the child sagas whose end it took, not those it
  abandoned, and of theirs); a successful long-running ``cancel``, or a ``status`` reply the
  block reads as failed or cancelled, removes the operation's (that of the step's latest
  start). Failures have no effect.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sagas.app import App
from sagas.dsl.nodes import Child, LongRunning
from sagas.dsl.program import Program
from sagas.dsl.saga import Saga
from sagas.engine import (
    Cancel,
    CommandOut,
    Input,
    JournalEvent,
    Outcome,
    Reply,
    Resume,
    SagaState,
    Settle,
    Signal,
    Start,
    TimerFired,
    stuck_decision,
    transition,
)
from sagas.errors import ConfigurationError, PayloadSchemaError
from sagas.serde.records import Serde
from sagas.wire import decision_records

__all__ = [
    "Effect",
    "Responder",
    "Response",
    "SagaTestEnv",
    "fail",
    "purpose_of",
    "retryable_fail",
    "silent",
    "succeed",
]

_ZERO = timedelta(0)


@dataclass(frozen=True)
class Response:
    """A scripted participant reply; ``outcome=None`` means the command is lost (no reply).

    Attributes:
        outcome: the reply's outcome, or ``None`` for a send that never reaches the service.
        payload: the reply's payload.
        after: from the handling to the reply's arrival.
        lag: from the send to the handling (a command handled after its deadline is refused).
        duplicate: the reply arrives once more, this long after its first arrival.
    """

    outcome: Outcome | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    after: timedelta = _ZERO
    lag: timedelta = _ZERO
    duplicate: timedelta | None = None


Responder = Response | Callable[[CommandOut], Response] | Sequence[Response]
"""What :meth:`SagaTestEnv.on` accepts: one response for every command, a function of the
command, or a list used in turn (its last element repeats)."""


@dataclass(frozen=True)
class Effect:
    """An effect a service made and that stands: a successful ``do`` or ``start`` command."""

    saga_id: str
    step: str
    command_type: str
    command_id: str


def succeed(
    payload: Mapping[str, Any] | None = None,
    *,
    after: timedelta = _ZERO,
    lag: timedelta = _ZERO,
) -> Response:
    """Reply ``success`` with ``payload`` (handled ``lag`` after the send, the reply ``after``)."""
    return Response("success", dict(payload or {}), after, lag)


def fail(
    error: str = "failed", *, after: timedelta = _ZERO, lag: timedelta = _ZERO, **payload: Any
) -> Response:
    """Reply ``failure`` (not retried) with ``{"error": error, **payload}``."""
    return Response("failure", {"error": error, **payload}, after, lag)


def retryable_fail(
    error: str = "unavailable", *, after: timedelta = _ZERO, lag: timedelta = _ZERO, **payload: Any
) -> Response:
    """Reply ``retryable-failure`` with ``{"error": error, **payload}``."""
    return Response("retryable-failure", {"error": error, **payload}, after, lag)


def silent() -> Response:
    """Never reply: the send is lost (let a deadline pass; a resend is scripted again)."""
    return Response(None)


def _ms(d: timedelta) -> int:
    return round(d.total_seconds() * 1000)


_PURPOSES = frozenset({"undo", "start", "status", "cancel"})


def purpose_of(cmd: CommandOut) -> str:
    """What ``cmd`` is for: its ``purpose``, or, when that is the default ``do``, what its id
    says (``<saga>:<step>:<purpose>:<n>:<tag>``; a step's own command has no purpose part)."""
    if cmd.purpose != "do":
        return cmd.purpose
    prefix = f"{cmd.saga_id}:{cmd.step}:"
    if cmd.command_id.startswith(prefix):
        head = cmd.command_id[len(prefix) :].split(":", 1)[0]
        if head in _PURPOSES:
            return head
    return "do"


_SHARED_SERDE: Serde | None = None


def _shared_serde() -> Serde:
    """One serde for every environment whose programs declare no schemas (making one costs
    milliseconds: it loads and fingerprints the built-in schemas)."""
    global _SHARED_SERDE  # noqa: PLW0603 - a lazily made, read-only cache
    if _SHARED_SERDE is None:
        _SHARED_SERDE = Serde()
    return _SHARED_SERDE


_INPUT, _HANDLE = 0, 1


class SagaTestEnv:
    """Run sagas in memory against scripted participants and a virtual clock.

    Drive it with ``start``, ``signal``, ``cancel``, ``settle`` (an operator's answer for a saga
    in doubt about its pivot), ``reply`` by hand, ``advance``, ``jump`` (the worker was down) and
    ``run_until_idle``. Child sagas run too (register their types), and a parent's child cancels
    reach them as :class:`~sagas.engine.Cancel` inputs. Besides the sagas (``state``, ``journal``,
    ``commands``), the services' side shows: ``effects`` (the ledger), ``executions`` (handler
    runs per command id) and ``recorded`` (the reply a service recorded for a command id).

    Args:
        *sagas: the saga types (definitions or compiled programs) this environment runs.
        start_ms: the virtual clock's initial value, epoch milliseconds.
        seed: seeds the saga secrets (command ids are the same in every run with one seed).
        transit: how long each record a saga's decision writes for another saga (a child's
            start or cancel, a parent's reply) takes to arrive; those for one saga keep their
            order. Default: they arrive at once.
    """

    def __init__(
        self,
        *sagas: Saga[Any] | Program,
        start_ms: int = 0,
        seed: int = 0,
        transit: Callable[[], timedelta] | None = None,
    ) -> None:
        self.now_ms = start_ms
        self._random = random.Random(seed)
        self._transit = transit
        self._last_to: dict[str, int] = {}  # saga id -> arrival of the worker's last record
        self._app_cache: App | None = None
        self._programs: dict[str, Program] = {}
        self._states: dict[str, SagaState] = {}
        self._types: dict[str, str] = {}
        self._journals: dict[str, list[JournalEvent]] = {}
        self._script: dict[str, Responder] = {}
        self._used: dict[str, int] = {}
        # (due, seq, kind, a, b): an input (saga type, Input) or a handling (CommandOut, Response)
        self._queue: list[tuple[int, int, int, Any, Any]] = []
        self._timers: list[tuple[int, str, int, str]] = []  # (due, saga id, seq, timer id)
        self._seq = 0
        # the services' side
        self._in_flight: dict[str, Response] = {}  # command id -> its first send's response
        # command id -> the reply recorded for it, and when (its first arrival)
        self._recorded: dict[str, tuple[Response, int]] = {}
        self._fifo: dict[tuple[str, str], int] = {}  # (topic, saga id) -> last handling time
        self._ledger: list[Effect] = []
        self._executions: dict[str, dict[str, int]] = {}  # saga id -> command id -> runs
        self._starts: dict[tuple[str, str], str] = {}  # (saga, step) -> its latest start's id
        self._children: dict[tuple[str, str], list[str]] = {}  # (parent, step) -> child ids
        self._child_ids: dict[str, list[str]] = {}  # parent -> child ids
        self._child_of_cmd: dict[str, str] = {}  # a child step's command id -> the child's id
        self._on_their_own: set[str] = set()  # children of parent_close="abandon" steps...
        self._taken: set[str] = set()  # ... but for those whose end their parent took
        self.commands: list[CommandOut] = []
        """Every command sent, in order."""
        for saga in sagas:
            self.register(saga)

    # ------------------------------------------------------------------------------ setting up

    def register(self, saga: Saga[Any] | Program) -> Program:
        """Add a saga type (compiling it if needed) and return its program."""
        program = saga.compile() if isinstance(saga, Saga) else saga
        self._programs[program.name] = program
        self._app_cache = None
        return program

    def _app(self) -> App:
        """The programs as an app, as a worker would hold them (for their payload schemas)."""
        if self._app_cache is None:
            programs = list(self._programs.values())
            plain = not any(p.payload_schemas or p.reply_schemas for p in programs)
            serde = _shared_serde() if plain else None
            self._app_cache = App("test", programs, serde=serde)
        return self._app_cache

    def on(self, command_type: str, respond: Responder) -> None:
        """Script the participant of ``command_type``. Unscripted commands get no reply."""
        self._script[command_type] = respond

    # ------------------------------------------------------------------------------- driving

    def start(self, saga_type: str, saga_id: str, data: Mapping[str, Any]) -> SagaState | None:
        """Start a saga and deliver every reply due now; returns its state."""
        if saga_type not in self._programs:
            raise ConfigurationError(
                f"unknown saga type {saga_type!r}; register it: SagaTestEnv(..., {saga_type}_saga)"
            )
        self._push(self.now_ms, saga_type, Start(saga_id, dict(data)))
        self._drain(self.now_ms)
        return self._states.get(saga_id)

    def signal(self, saga_id: str, name: str, payload: Mapping[str, Any] | None = None) -> None:
        """Send a signal to a saga."""
        self._push(self.now_ms, self._type_of(saga_id), Signal(saga_id, name, dict(payload or {})))
        self._drain(self.now_ms)

    def cancel(self, saga_id: str, reason: str = "cancelled by test") -> None:
        """Ask a saga to cancel."""
        self._push(self.now_ms, self._type_of(saga_id), Cancel(saga_id, reason))
        self._drain(self.now_ms)

    def settle(
        self, saga_id: str, done: bool, by: str = "test", reason: str = "settled by test"
    ) -> None:
        """An operator's answer for a saga in doubt about its pivot: ``done`` or not."""
        self._push(self.now_ms, self._type_of(saga_id), Settle(saga_id, done, by, reason))
        self._drain(self.now_ms)

    def resume(self, saga_id: str, step: str = "", by: str = "test") -> None:
        """An operator's resume: a ``stuck`` saga applies its held inputs again; a ``failed``
        one runs on from top-level block ``step``."""
        self._push(self.now_ms, self._type_of(saga_id), Resume(saga_id, step, by))
        self._drain(self.now_ms)

    def reply(
        self,
        command_id: str,
        outcome: Outcome = "success",
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Reply by hand to a command (for instance one whose participant was silent); the
        services' ledger does not see it."""
        cmd = next(c for c in self.commands if c.command_id == command_id)
        reply = Reply(cmd.saga_id, command_id, outcome, dict(payload or {}))
        self._push(self.now_ms, cmd.saga_type, reply)
        self._drain(self.now_ms)

    def advance(self, by: timedelta) -> None:
        """Move the virtual clock forward by ``by``, firing due timers and replies in time order."""
        self._drain(self.now_ms + _ms(by))

    def jump(self, by: timedelta) -> None:
        """Move the clock forward by ``by`` at once, as if the worker had been down that long:
        the inputs and timers that came due meanwhile are handled in time order, all at the new
        time (late), while the services handle their commands at their own time."""
        self._drain(self.now_ms + _ms(by), late=True)

    def run_until_idle(self, limit: timedelta = timedelta(days=365)) -> None:
        """Advance until no timer is pending and no reply is in flight (at most ``limit``)."""
        end = self.now_ms + _ms(limit)
        while True:
            nxt = self._next_due()
            if nxt is None or nxt > end:
                return
            self._drain(nxt)

    @property
    def idle(self) -> bool:
        """No timer is pending and nothing is in flight (no command, reply or input)."""
        return self._next_due() is None

    # ----------------------------------------------------------------------------- inspection

    def state(self, saga_id: str) -> SagaState:
        """The saga's current state."""
        return self._states[saga_id]

    def saga_ids(self) -> list[str]:
        """Every saga started in this environment (children included), in start order."""
        return list(self._states)

    def journal(self, saga_id: str) -> list[JournalEvent]:
        """Every journal event of the saga, in order."""
        return list(self._journals.get(saga_id, []))

    def commands_for(self, saga_id: str) -> list[CommandOut]:
        """The commands the saga sent, in order."""
        return [c for c in self.commands if c.saga_id == saga_id]

    def command_types(self, saga_id: str) -> list[str]:
        """The types of the commands the saga sent, in order."""
        return [c.command_type for c in self.commands_for(saga_id)]

    def effects(self, saga_id: str | None = None) -> list[Effect]:
        """The effects that stand (of one saga, or all), oldest first."""
        return [e for e in self._ledger if saga_id is None or e.saga_id == saga_id]

    def executions(self, saga_id: str | None = None) -> dict[str, int]:
        """Per command id (of one saga, or all) that reached a service: how many times its
        handler ran. A resend answered from the recorded reply does not run it, nor does a
        command refused for its deadline (0)."""
        if saga_id is not None:
            return dict(self._executions.get(saga_id, {}))
        return {cid: n for runs in self._executions.values() for cid, n in runs.items()}

    def recorded(self, command_id: str) -> Response | None:
        """The reply a service recorded for ``command_id`` (a refused late command's too), or
        ``None`` if no send of it reached its service yet."""
        hit = self._recorded.get(command_id)
        return hit[0] if hit else None

    # ------------------------------------------------------------------------------- internals

    def _type_of(self, saga_id: str) -> str:
        if saga_id not in self._types:
            raise ConfigurationError(f"no saga {saga_id!r} was started in this environment")
        return self._types[saga_id]

    def _push(self, due: int, saga_type: str, inp: Input) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, _INPUT, saga_type, inp))

    def _push_handling(self, due: int, cmd: CommandOut, response: Response | None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, _HANDLE, cmd, response))

    def _next_timer(self) -> tuple[int, str, int, str] | None:
        """The earliest pending timer (dropping cleared or fired ones from the heap)."""
        while self._timers:
            due, saga_id, _, timer_id = self._timers[0]
            if self._states[saga_id].timers.get(timer_id) == due:
                return self._timers[0]
            heapq.heappop(self._timers)
        return None

    def _next_due(self) -> int | None:
        timer = self._next_timer()
        dues = [timer[0]] if timer else []
        if self._queue:
            dues.append(self._queue[0][0])
        return min(dues, default=None)

    def _drain(self, until: int, *, late: bool = False) -> None:
        while True:
            timer = self._next_timer()
            if timer is not None and timer[0] > until:
                timer = None
            queued = self._queue[0] if self._queue and self._queue[0][0] <= until else None
            if queued is not None and (timer is None or queued[0] <= timer[0]):
                heapq.heappop(self._queue)
                due, _, kind, a, b = queued
                if kind == _HANDLE:  # services keep their own time, even while the worker is down
                    if not late:
                        self.now_ms = max(self.now_ms, due)
                    self._handle(due, a, b)
                    continue
                self.now_ms = until if late else max(self.now_ms, due)
                self._apply(a, b)
            elif timer is not None:
                due, saga_id, _, timer_id = heapq.heappop(self._timers)
                self.now_ms = until if late else max(self.now_ms, due)
                self._apply(self._types[saga_id], TimerFired(saga_id, timer_id, due))
            else:
                self.now_ms = max(self.now_ms, until)
                return

    def _apply(self, saga_type: str, inp: Input) -> None:
        program = self._programs.get(saga_type)
        if program is None:
            raise ConfigurationError(f"a saga started child type {saga_type!r}; register it too")
        entropy = self._random.randbytes(16)
        decision = transition(
            program, self._states.get(inp.saga_id), inp, self.now_ms, entropy=entropy
        )
        try:
            decision_records(self._app(), program, decision)
        except PayloadSchemaError as exc:  # as the worker: the saga is stuck, holding ``inp``
            state = self._states.get(inp.saga_id)
            decision = stuck_decision(program, state, inp, self.now_ms, exc)
        self._journals.setdefault(inp.saga_id, []).extend(decision.events)
        if decision.state is not None:
            self._states[inp.saga_id] = decision.state
            self._types[inp.saga_id] = saga_type
        for e in decision.events:
            if e.type == "reply_accepted":
                child = self._child_of_cmd.get(e.body["command_id"])
                if child is not None:
                    self._taken.add(child)
            elif e.type == "timer_set":
                self._seq += 1
                entry = (e.body["due_ms"], e.saga_id, self._seq, e.body["timer_id"])
                heapq.heappush(self._timers, entry)
            elif e.type == "unstuck" and decision.state is not None:  # its timers run again
                for timer_id, due in decision.state.timers.items():
                    self._seq += 1
                    heapq.heappush(self._timers, (due, e.saga_id, self._seq, timer_id))
            elif e.type == "child_started":
                self._child_of_cmd[e.body["command_id"]] = e.body["child_id"]
                block = program.nodes[e.body["step"]].block
                if isinstance(block, Child) and block.parent_close == "abandon":
                    self._on_their_own.add(e.body["child_id"])
                kids = self._children.setdefault((e.saga_id, e.body["step"]), [])
                kids.append(e.body["child_id"])
                self._child_ids.setdefault(e.saga_id, []).append(e.body["child_id"])
        for cmd in decision.commands:
            self.commands.append(cmd)
            self._send(cmd)
        for ch in decision.children:
            self._push_between(ch.saga_type, Start(ch.saga_id, ch.data, ch.parent))
        for cc in decision.child_cancels:
            self._push_between(cc.saga_type, Cancel(cc.saga_id, cc.reason))
        for pr in decision.parent_replies:
            reply = Reply(pr.parent.saga_id, pr.parent.command_id, pr.outcome, pr.payload)
            self._push_between(pr.parent.saga_type, reply)

    def _push_between(self, saga_type: str, inp: Input) -> None:
        """A record one saga's decision writes for another: after its transit, in order."""
        due = self.now_ms
        if self._transit is not None:
            due = max(due + _ms(self._transit()), self._last_to.get(inp.saga_id, due))
            self._last_to[inp.saga_id] = due
        self._push(due, saga_type, inp)

    # ------------------------------------------------------------------------------- services

    def _send(self, cmd: CommandOut) -> None:
        """A command leaves: lost, or on its way to its service (behind the saga's earlier ones
        on that topic)."""
        cid = cmd.command_id
        if purpose_of(cmd) == "start":
            self._starts[(cmd.saga_id, cmd.step)] = cid
        recorded = self._recorded.get(cid)
        first = self._in_flight.get(cid) or (recorded[0] if recorded else None)
        response: Response | None = None
        if first is None:  # a new request, or a resend of a lost one: the script answers
            response = self._respond(cmd)
            if response.outcome is None:
                return
            self._in_flight[cid] = response
            first = response
        key = (cmd.topic, cmd.saga_id)
        due = max(self.now_ms + _ms(first.lag), self._fifo.get(key, 0))
        self._fifo[key] = due
        self._push_handling(due, cmd, response)

    def _handle(self, at: int, cmd: CommandOut, response: Response | None) -> None:
        """The service handles ``cmd`` at ``at``: once per command id, refused when late."""
        cid = cmd.command_id
        if response is None:  # a resend: the recorded reply again, once it is recorded
            recorded, ready = self._recorded[cid]
            if at >= ready:
                self._deliver(at, cmd, recorded)
            return
        del self._in_flight[cid]
        runs = self._executions.setdefault(cmd.saga_id, {})
        if cmd.deadline_ms is not None and at > cmd.deadline_ms:
            message = f"the saga stopped waiting at {cmd.deadline_ms}; the handler did not run"
            payload = {"error": "deadline-passed", "message": message}
            response = Response("failure", payload, response.after, response.lag)
            runs.setdefault(cid, 0)
        else:
            runs[cid] = runs.get(cid, 0) + 1
            if response.outcome == "success":
                self._book(cmd, response)
        self._recorded[cid] = (response, at + _ms(response.after))
        self._deliver(at, cmd, response)

    def _deliver(self, at: int, cmd: CommandOut, response: Response) -> None:
        assert response.outcome is not None  # lost sends are never handled
        reply = Reply(cmd.saga_id, cmd.command_id, response.outcome, dict(response.payload))
        arrives = at + _ms(response.after)
        self._push(arrives, cmd.saga_type, reply)
        if response.duplicate is not None:
            self._push(arrives + _ms(response.duplicate), cmd.saga_type, reply)

    def _book(self, cmd: CommandOut, response: Response) -> None:
        """The ledger after a successful handling of ``cmd``."""
        purpose = purpose_of(cmd)
        if purpose in ("do", "start"):
            effect = Effect(cmd.saga_id, cmd.step, cmd.command_type, cmd.command_id)
            self._ledger.append(effect)
        elif purpose == "undo":
            self._undo(cmd.saga_id, cmd.step)
        elif purpose == "cancel":
            self._end_operation(cmd.saga_id, cmd.step)
        elif purpose == "status":
            block = self._block(cmd)
            if isinstance(block, LongRunning) and _reads_ended(block, response.payload):
                self._end_operation(cmd.saga_id, cmd.step)

    def _block(self, cmd: CommandOut) -> object:
        program = self._programs.get(cmd.saga_type)
        node = program.nodes.get(cmd.step) if program else None
        return node.block if node else None

    def _owned(self, child: str) -> bool:
        """The child ended and is its parent's work: not abandoned (``parent_close="abandon"``)
        before its parent took its end."""
        ended = child in self._states and self._states[child].terminal
        return ended and (child not in self._on_their_own or child in self._taken)

    def _end_operation(self, saga_id: str, step: str) -> None:
        """The operation of ``step``'s latest start (a loop starts one per round) is gone."""
        start = self._starts.get((saga_id, step))
        self._ledger = [e for e in self._ledger if e.command_id != start]

    def _undo(self, saga_id: str, step: str) -> None:
        """Remove ``step``'s effects in the saga, and every effect of the child sagas it started
        whose end it took (not those it abandoned), and of theirs."""
        gone = {saga_id: {step}}
        todo = [c for c in self._children.get((saga_id, step), []) if self._owned(c)]
        while todo:  # a child step's compensation undoes its child sagas, and theirs
            child = todo.pop()
            gone[child] = set()
            todo += [c for c in self._child_ids.get(child, []) if self._owned(c)]
        self._ledger = [
            e
            for e in self._ledger
            if e.saga_id not in gone or (gone[e.saga_id] and e.step not in gone[e.saga_id])
        ]

    def _respond(self, cmd: CommandOut) -> Response:
        script = self._script.get(cmd.command_type)
        if script is None:
            return silent()
        if isinstance(script, Response):
            return script
        if callable(script):
            return script(cmd)
        i = self._used.get(cmd.command_type, 0)
        self._used[cmd.command_type] = i + 1
        return script[min(i, len(script) - 1)]


def _reads_ended(block: LongRunning[Any], payload: Mapping[str, Any]) -> bool:
    """Whether a status reply says the operation failed or was cancelled (so it is gone)."""
    try:
        return bool(block.failed(payload) or block.cancelled(payload))
    except Exception:  # a predicate that cannot read this reply: the engine will say so
        return False
