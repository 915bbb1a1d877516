"""One simulated world: random definitions, random services, random operators; its invariants.

A world (``run_world(seed, index)``, deterministic in both) draws a parent saga type and the
child types it starts (:mod:`tests.sim.generate`), starts a few sagas in a
:class:`~sagas.testing.SagaTestEnv` (the engine's transition and the worker's record encoding,
services that handle a command after its lag, refuse it past its deadline and handle one
command id once), and for a chaos window lets the services answer at random: success, failure,
retryable failure, lags past the deadline, outages (the commands wait in their topic until the
service is back), late replies, duplicate replies, a pivot's reply that never comes. How rough
the chaos is varies per world, and so does the transit of child starts, child cancels and parent
replies. Cancels (of sagas and of children), signals and clock jumps (the worker down for a
while) come at random times. Then the services heal (each new send succeeds at once) except, in
some worlds, a pivot's service, which stays down for good; the world runs until it is idle or
an hour has passed; an operator may settle the sagas left in doubt, truthfully (from the
ledger); and the invariants are checked for every saga, children included:

* it ended, or it is ``in-doubt`` (waiting on its pivot), or it waits on a child that is;
* ``fold(journal) == state``; no command id ran its handler twice; each command's ``purpose``
  is what its id says (``do``, ``undo``, ``start``, ``status``, ``cancel``);
* the books balance with its end state: ``completed``: the effects standing are exactly those of
  the steps and operations in ``state.completed``; ``compensated``/``cancelled``: none stand,
  nor any of its children's (save a child abandoned by ``parent_close="abandon"`` before it
  ended); ``failed`` after the pivot: every completed action's effect stands and nothing was
  undone; ``failed`` before it: only an operation whose cancellation was never confirmed may
  stand. A child undone by its parent's compensation has no effect left either.
"""

from __future__ import annotations

import json
import random
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sagas.dsl.nodes import Child, LongRunning, Step
from sagas.dsl.program import Program
from sagas.engine import CommandOut, Input, JournalEvent, Outcome, fold, public_command_id
from sagas.errors import DefinitionError
from sagas.testing import Response, SagaTestEnv, silent
from sagas.testing.env import purpose_of
from tests.sim.generate import FLAGS, Spec, blocks_of, build, draw_world

NEVER_MS = 10 * 365 * 24 * 3600 * 1000
"""A reply this late never comes within a run."""
HEAL_WINDOW = timedelta(hours=1)
_OK = Response("success")


def _ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


@dataclass
class Op:
    """A long-running operation as its service knows it."""

    start_id: str
    created_ms: int
    duration_ms: int
    final: str  # done | failed
    ended: str | None = None  # cancelled | failed: it is gone


class Services:
    """Every participant of a world: random answers during the chaos window, then healed."""

    def __init__(self, rng: random.Random, specs: list[Spec], env: SagaTestEnv) -> None:
        self.rng = rng
        self.env = env
        self.healed = False
        self.heal_ms = 0
        self.harsh = rng.random() ** 2
        """How rough the chaos is, 0 to 1: failures, lags and outages scale with it."""
        self.blocks = {b["name"]: b for spec in specs for b in blocks_of(spec)}
        self.ops: dict[tuple[str, str], Op] = {}
        self.down: set[str] = set()
        """Command types whose sends are all lost once healed (a pivot's service gone)."""
        for spec in specs:
            pivot = spec["pivot"]
            if pivot is not None and pivot["t"] == "step" and rng.random() < 0.15:
                self.down.add(f"Do-{pivot['name']}")
        for name, b in self.blocks.items():
            if b["t"] == "step":
                types = [f"Do-{name}"]
            elif b["t"] == "lr":
                types = [f"Start-{name}", f"Status-{name}", f"Cancel-{name}"]
            else:
                types = []
            if b.get("kind") == "compensatable" and b["t"] in ("step", "lr", "child"):
                types.append(f"Undo-{name}")
            for t in types:
                env.on(t, self.respond)

    # ------------------------------------------------------------------------------ answers

    def respond(self, cmd: CommandOut) -> Response:
        purpose = purpose_of(cmd)
        if purpose == "status":
            return self.status(cmd)
        if purpose == "cancel":
            return self.cancel(cmd)
        if self.healed:
            if cmd.command_type in self.down:
                return silent()
            response = Response("success", self.flags(), _ms(self.rng.randint(0, 500)))
        else:
            response = self.chaotic(cmd, purpose)
        if purpose == "start" and response.outcome == "success":
            self.ops[(cmd.saga_id, cmd.step)] = Op(
                cmd.command_id,
                self.env.now_ms + round(response.lag.total_seconds() * 1000),
                self.rng.randint(0, 20_000),
                "done" if self.rng.random() < 0.8 else "failed",
            )
        elif purpose == "start":  # a start that fails starts nothing (nor is an earlier round's)
            self.ops.pop((cmd.saga_id, cmd.step), None)
        return response

    def flags(self) -> dict[str, Any]:
        return {f: self.rng.random() < 0.5 for f in FLAGS if self.rng.random() < 0.5}

    def down_until_healed(self) -> timedelta:
        """A lag that has the command wait in its topic until the service is back (a command
        is never lost on Kafka: a service down during the chaos handles it when healed)."""
        return _ms(max(0, self.heal_ms - self.env.now_ms) + self.rng.randint(0, 5000))

    def chaotic(self, cmd: CommandOut, purpose: str) -> Response:
        r = self.rng
        x = r.random()
        ok = 1 - self.harsh * {"do": 0.4, "undo": 0.3, "start": 0.4}[purpose]
        outcome: Outcome
        if x < ok:
            outcome, payload = "success", self.flags()
        elif x < ok + (1 - ok) / 3:
            outcome, payload = "failure", {"error": "NoGood"}
        else:
            payload = {"error": "Fatal" if r.random() < 0.2 else "Busy"}
            if purpose == "start" and r.random() < 0.5:
                payload["started"] = False
            outcome = "retryable-failure"
        left = None if cmd.deadline_ms is None else cmd.deadline_ms - self.env.now_ms
        # Late: up to half again the time left before the deadline (sent late: any lag at all).
        late = 5000 if left is None else max(round(1.5 * left), 1)
        lag = r.randint(0, late) if r.random() < 0.5 * self.harsh else 0
        if r.random() < 0.08 * self.harsh:
            lag = round(self.down_until_healed().total_seconds() * 1000)
        y = r.random()
        pivot = self.blocks[cmd.step].get("kind") == "pivot"
        if pivot and purpose == "do" and y < 0.1 * self.harsh:
            after = NEVER_MS
        elif y > 0.4 * self.harsh:
            after = r.randint(0, 1000)
        else:
            after = r.randint(3000, 40_000)
        duplicate = _ms(r.randint(0, 10_000)) if r.random() < 0.05 else None
        return Response(outcome, payload, _ms(after), _ms(lag), duplicate)

    def _op_state(self, cmd: CommandOut) -> str:
        op = self.ops.get((cmd.saga_id, cmd.step))
        if op is None:
            return "cancelled"  # nothing was started: nothing to find
        if op.ended is not None:
            return op.ended
        standing = {e.command_id for e in self.env.effects(cmd.saga_id)}
        if op.start_id not in standing:
            return "cancelled"  # refused when late, or not handled yet
        if self.env.now_ms >= op.created_ms + op.duration_ms:
            return op.final
        return "running"

    def status(self, cmd: CommandOut) -> Response:
        """How the operation is when the poll is sent (it may wait out an outage: the later
        commands of the operation wait behind it, so the answer stays true when handled)."""
        r = self.rng
        rough = 0 if self.healed else 0.1 * self.harsh
        lag = self.down_until_healed() if r.random() < rough else _ms(0)
        if r.random() < rough:
            return Response("retryable-failure", {"error": "Busy"}, _ms(r.randint(0, 2000)), lag)
        state = self._op_state(cmd)
        op = self.ops.get((cmd.saga_id, cmd.step))
        if state == "failed" and op is not None:
            op.ended = "failed"  # the ledger drops it when this reply is handled
        after = 0 if self.healed else r.randint(0, 2000)
        return Response("success", {"state": state}, _ms(after), lag)

    def cancel(self, cmd: CommandOut) -> Response:
        """A finished operation cannot be cancelled; a running one, or none, can."""
        r = self.rng
        rough = 0 if self.healed else 0.15 * self.harsh
        lag = self.down_until_healed() if r.random() < rough else _ms(0)
        if r.random() < rough:
            return Response("retryable-failure", {"error": "Busy"}, _ms(r.randint(0, 2000)), lag)
        after = _ms(0 if self.healed else r.randint(0, 3000))
        if self._op_state(cmd) == "done":
            return Response("failure", {"error": "AlreadyDone"}, after, lag)
        op = self.ops.get((cmd.saga_id, cmd.step))
        if op is not None:
            op.ended = "cancelled"
        return Response("success", {"state": "cancelling"}, after, lag)


# ------------------------------------------------------------------------------------ running

BUDGET = 200_000
"""Inputs a world may take: a saga that never quiesces (a loop of timers) is a finding."""


class BoundedEnv(SagaTestEnv):
    """A :class:`SagaTestEnv` that stops a world taking more than :data:`BUDGET` inputs."""

    inputs = 0

    def _apply(self, saga_type: str, inp: Input) -> None:
        self.inputs += 1
        if self.inputs > BUDGET:
            raise RuntimeError(f"no quiescence: over {BUDGET} inputs, the last {inp!r}")
        super()._apply(saga_type, inp)


@dataclass(frozen=True)
class Violation:
    saga_id: str
    kind: str
    detail: str


@dataclass
class WorldResult:
    seed: int
    index: int
    sagas: int = 0
    children: int = 0
    transitions: int = 0
    skipped: str | None = None
    violations: list[Violation] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    """Journal event types seen, and ``refused`` for the late commands services refused."""
    notes: Counter[str] = field(default_factory=Counter)
    """Outcomes that break no invariant but may deserve a look."""
    report: str = ""


def world_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def run_world(seed: int, index: int, *, verbose: bool = False) -> WorldResult:
    """Run world ``index`` of ``seed`` and check its invariants."""
    result = WorldResult(seed, index)
    rng = world_rng(seed, index)
    specs = draw_world(rng)
    try:
        programs = [build(spec).compile() for spec in specs]
    except DefinitionError as exc:
        result.skipped = str(exc)
        return result
    transit_ms = rng.choice([0, 0, 200, 3000])  # the worker's own records between sagas

    def transit() -> timedelta:
        return _ms(rng.randint(0, transit_ms))

    env = BoundedEnv(*programs, seed=rng.randrange(2**32), transit=transit)
    services = Services(rng, specs, env)
    log: list[str] = []
    chaos_ms = services.heal_ms = rng.randint(20_000, 300_000)
    waits = [b["name"] for spec in specs for b in blocks_of(spec) if b["t"] == "wait"]
    plan: list[tuple[int, int, str, Any]] = []

    def at(when: int, what: str, arg: Any = None) -> None:
        plan.append((when, len(plan), what, arg))

    for i in range(rng.randint(1, 4)):
        sid = f"w{index}.{i}"
        begin = rng.randint(0, chaos_ms // 3)
        at(begin, "start", sid)
        if rng.random() < 0.3:
            at(rng.randint(begin, chaos_ms), "cancel", sid)
        if rng.random() < 0.1:
            at(rng.randint(begin, chaos_ms), "cancel-child", sid)
        for name in waits:  # about when the waits come, or any time
            if rng.random() < 0.75:
                at(begin + rng.randint(0, 20_000), "signal", (sid, name))
        for _ in range(rng.randint(0, 2)):
            name = rng.choice([*waits, "junk"])
            at(rng.randint(begin, chaos_ms), "signal", (sid, name))
    for _ in range(rng.randint(1, 2) if rng.random() < 0.3 else 0):
        at(rng.randint(0, chaos_ms), "jump", rng.randint(1000, 60_000))
    for when, _, what, arg in sorted(plan):
        if when > env.now_ms:
            env.advance(_ms(when - env.now_ms))
        log.append(f"{env.now_ms}: {what} {arg}")
        if what == "start":
            env.start("main", arg, {})
        elif what == "cancel":
            env.cancel(arg, "the simulation's customer")
        elif what == "cancel-child":
            kids = [s for s in env.saga_ids() if s.startswith(f"{arg}/")]
            if kids:
                env.cancel(rng.choice(kids), "the simulation's operator")
        elif what == "signal":
            sid, name = arg
            targets = [sid, *(s for s in env.saga_ids() if s.startswith(f"{sid}/"))]
            env.signal(rng.choice(targets), name, services.flags())
        elif what == "jump":
            env.jump(_ms(arg))
    if chaos_ms > env.now_ms:
        env.advance(_ms(chaos_ms - env.now_ms))
    services.healed = True
    log.append(f"{env.now_ms}: services healed (down: {sorted(services.down)})")
    env.run_until_idle(HEAL_WINDOW)
    if rng.random() < 0.5:
        for sid in env.saga_ids():
            pivot = _pivot_in_doubt(env, programs, sid)
            if pivot is not None:
                done = any(e.step == pivot for e in env.effects(sid))
                log.append(f"{env.now_ms}: settle {sid} done={done}")
                env.settle(sid, done, by="simulation", reason="the ledger says so")
        env.run_until_idle(HEAL_WINDOW)
    result.violations = check(env, {p.name: p for p in programs})
    states = [env.state(s) for s in env.saga_ids()]
    result.sagas = sum(1 for s in states if s.parent is None)
    result.children = len(states) - result.sagas
    for sid in env.saga_ids():
        journal = env.journal(sid)
        result.transitions += len(journal)
        result.events.update(e.type for e in journal)
    result.events["refused"] = sum(
        1
        for c in env.commands
        if (env.recorded(c.command_id) or _OK).payload.get("error") == "deadline-passed"
    )
    result.statuses = Counter(s.status for s in states)
    result.notes = notes(env, {p.name: p for p in programs})
    if result.violations or verbose:
        result.report = report(result, specs, env, log, verbose)
    return result


def _pivot_in_doubt(env: SagaTestEnv, programs: list[Program], sid: str) -> str | None:
    st = env.state(sid)
    if st.status != "in-doubt":
        return None
    program = next(p for p in programs if p.name == st.saga_type)
    for name in st.tokens:
        b = program.nodes[name].block
        if isinstance(b, Step) and b.kind == "pivot":
            return name
    return None


# --------------------------------------------------------------------------------- invariants


@dataclass(frozen=True)
class Kid:
    saga_id: str
    step: str
    command_id: str


def check(env: SagaTestEnv, programs: dict[str, Program]) -> list[Violation]:
    """Every invariant, for every saga of the world (see the module's docstring)."""
    out: list[Violation] = []
    states = {sid: env.state(sid) for sid in env.saga_ids()}
    journals = {sid: env.journal(sid) for sid in states}
    kids: dict[str, list[Kid]] = {sid: [] for sid in states}
    for sid, journal in journals.items():
        for e in journal:
            if e.type == "child_started":
                kids[sid].append(Kid(e.body["child_id"], e.body["step"], e.body["command_id"]))

    def ok_waiting(sid: str) -> bool:
        st = states[sid]
        if st.terminal or st.status == "in-doubt":
            return True
        program = programs[st.saga_type]
        for name in st.tokens:
            if isinstance(program.nodes[name].block, Child):
                mine = [k for k in kids[sid] if k.step == name]
                child = states.get(mine[-1].saga_id) if mine else None
                if child is not None and not child.terminal and ok_waiting(child.saga_id):
                    return True
        return False

    for cmd in env.commands:
        said = purpose_of(replace(cmd, purpose="do"))  # what its id says
        if cmd.purpose != said:
            detail = f"{cmd.command_type} ({public_command_id(cmd.command_id)}) says {cmd.purpose}"
            out.append(Violation(cmd.saga_id, "purpose", f"{detail}, its id {said}"))
            break
    for sid, st in states.items():
        program = programs[st.saga_type]
        if fold(program, journals[sid]) != st:
            out.append(Violation(sid, "fold", "fold(journal) differs from the state"))
        twice = {c: n for c, n in env.executions(sid).items() if n > 1}
        if twice:
            out.append(Violation(sid, "twice", f"handlers ran more than once: {twice}"))
        if not ok_waiting(sid):
            waits = sorted(st.tokens)
            out.append(
                Violation(sid, f"stuck {st.status}", f"not ended nor in doubt; active: {waits}")
            )

    def accepted(parent: str, cid: str) -> bool:
        return any(
            e.type == "reply_accepted"
            and e.body["command_id"] == cid
            and e.body["outcome"] == "success"
            for e in journals[parent]
        )

    def undone(parent: str, step: str) -> list[int]:
        """When ``parent`` sent each compensation of ``step`` that succeeded (a loop may run
        and undo a step more than once)."""
        undos = {
            e.body["command_id"]: e.at_ms
            for e in journals[parent]
            if e.type == "command_sent" and e.body["step"] == step and e.body["undo"]
        }
        return [
            undos[e.body["command_id"]]
            for e in journals[parent]
            if e.type == "reply_accepted"
            and e.body["outcome"] == "success"
            and e.body["command_id"] in undos
        ]

    def ended_by(sid: str, at_ms: int) -> bool:
        return any(e.type == "finished" and e.at_ms <= at_ms for e in journals.get(sid, []))

    def abandoned(parent: str, kid: Kid) -> bool:
        """The parent stopped waiting for the child (``parent_close="abandon"``) before its end
        came: the child runs on its own."""
        block = programs[states[parent].saga_type].nodes[kid.step].block
        assert isinstance(block, Child)
        took = any(
            e.type == "reply_accepted" and e.body["command_id"] == kid.command_id
            for e in journals[parent]
        )
        return block.parent_close == "abandon" and not took

    def standing(sid: str) -> str:
        return ", ".join(f"{e.step} ({e.command_type})" for e in env.effects(sid)) or "none"

    def owned(sid: str) -> list[str]:
        """``sid`` and its children, theirs..., but those abandoned (they run on their own)."""
        mine = [k for k in kids.get(sid, []) if not abandoned(sid, k)]
        return [sid, *(t for kid in mine for t in owned(kid.saga_id))]

    def empty(sid: str, why: str) -> None:
        """Nothing of ``sid`` may stand, nor of its children (but those it abandoned)."""
        if sid not in states:
            return
        st = states[sid]
        if st.status == "failed" and (st.parent is not None and why.startswith("its parent")):
            left = [f"{t}: {standing(t)}" for t in owned(sid) if env.effects(t)]
            if left:  # one finding for the whole subtree: the child could not be undone
                past = "past its pivot" if st.pivoted else "before its pivot"
                kind = f"a child that failed {past} under a parent that left nothing"
                dropped = {e.body["step"] for e in journals[sid] if e.type == "abandoned"}
                if {e.step for e in env.effects(sid)} <= dropped and len(left) == 1:
                    kind = (
                        "a failed child's command in flight took effect after its parent undid it"
                    )
                detail = f"{why}, yet it failed ({st.reason}); standing: {'; '.join(left)}"
                out.append(Violation(sid, kind, detail))
            for t in owned(sid):  # what it abandoned runs on: its own books
                for kid in kids[t]:
                    if abandoned(t, kid):
                        books(kid.saga_id)
            return
        if env.effects(sid):
            kind = f"effects stand ({st.status})"
            out.append(Violation(sid, kind, f"{why}, yet ({st.status}): {standing(sid)}"))
        for kid in kids[sid]:
            child(sid, kid, f"its parent {sid} left nothing ({why})")

    def child(parent: str, kid: Kid, why: str | None) -> None:
        """Check ``kid`` of ``parent``; ``why``: the parent may leave nothing of it."""
        mine = not abandoned(parent, kid)
        if mine and any(ended_by(kid.saga_id, sent) for sent in undone(parent, kid.step)):
            # the compensation of its step undid it: the child had ended when it was sent
            empty(kid.saga_id, f"its parent {parent} undid step {kid.step}")
        elif abandoned(parent, kid):
            books(kid.saga_id)
        elif why is not None:
            empty(kid.saga_id, why)
        else:
            books(kid.saga_id)

    def books(sid: str) -> None:
        if sid not in states:
            return
        st = states[sid]
        program = programs[st.saga_type]
        actions = Counter(
            s for s in st.completed if isinstance(program.nodes[s].block, Step | LongRunning)
        )
        have = Counter(e.step for e in env.effects(sid))
        journal = journals[sid]
        if st.status in ("compensated", "cancelled"):
            empty(sid, f"it ended {st.status}")
            return
        if st.status == "completed" and have != actions:
            detail = f"standing: {standing(sid)}; completed actions: {dict(actions)}"
            out.append(Violation(sid, "completed: books", detail))
        elif st.status == "failed" and st.pivoted:
            missing = actions - have
            if missing:
                out.append(Violation(sid, "failed: forward effects undone", f"{dict(missing)}"))
            pivot_at = next(
                i for i, e in enumerate(journal) if e.type == "step_completed" and e.body["pivot"]
            )
            undone_after = [e.body["step"] for e in journal[pivot_at:] if e.type == "undo_started"]
            if undone_after:
                detail = f"undid {undone_after} after its pivot ({st.reason})"
                out.append(Violation(sid, "failed: undid after its pivot", detail))
        elif st.status == "failed":
            unconfirmed = {
                e.body["step"]
                for e in journal
                if e.type == "step_failed" and "not confirmed" in e.body["reason"]
            }
            extra = [e.step for e in env.effects(sid) if e.step not in unconfirmed]
            if extra:
                detail = f"before its pivot, yet standing: {standing(sid)} ({st.reason})"
                out.append(Violation(sid, "failed: effects stand", detail))
        for kid in kids[sid]:
            without = st.status == "completed" and not accepted(sid, kid.command_id)
            child(sid, kid, f"its parent {sid} completed without it" if without else None)

    for sid, st in states.items():
        if st.parent is None:
            books(sid)
    return out


def notes(env: SagaTestEnv, programs: dict[str, Program]) -> Counter[str]:
    """Sagas that failed because a retryable step's command was refused as late: a retryable
    step is meant to be retried until it succeeds."""
    out: Counter[str] = Counter()
    for sid in env.saga_ids():
        st = env.state(sid)
        if st.status != "failed" or "deadline-passed" not in (st.reason or ""):
            continue  # failed for another reason (a draining step may be refused meanwhile)
        for e in env.journal(sid):
            if e.type == "step_failed" and "deadline-passed" in e.body["reason"]:
                b = programs[st.saga_type].nodes[e.body["step"]].block
                if isinstance(b, Step) and b.kind == "retriable":
                    out["failed: a retryable step's command refused as late"] += 1
    return out


# ----------------------------------------------------------------------------------- reports


def _event(e: JournalEvent) -> str:
    body = {k: v for k, v in e.body.items() if k not in ("payload", "data", "secret")}
    return f"{e.at_ms:>9} {e.type} {json.dumps(body, default=str)[:200]}"


def report(
    result: WorldResult, specs: list[Spec], env: SagaTestEnv, log: list[str], verbose: bool
) -> str:
    """What a failing world did, with the command that runs it again."""
    lines = [f"seed {result.seed} world {result.index}: {len(result.violations)} violation(s)"]
    lines += [f"  {v.saga_id} [{v.kind}] {v.detail}" for v in result.violations]
    lines.append(
        f"  reproduce: python -m tests.sim.run --seed {result.seed} --index {result.index} -v"
    )
    lines.append("  definition:")
    lines += [f"    {json.dumps(spec)}" for spec in specs]
    lines.append("  inputs: " + "; ".join(log))
    shown = sorted({v.saga_id for v in result.violations})
    for sid in env.saga_ids() if verbose else shown:
        st = env.state(sid)
        journal = env.journal(sid)
        tail = journal if verbose else journal[-25:]
        lines.append(f"  journal of {sid} ({st.status}, {len(journal)} events, last {len(tail)}):")
        lines += [f"    {_event(e)}" for e in tail]
        lines.append(f"  effects of {sid}: {[(e.step, e.command_type) for e in env.effects(sid)]}")
    return "\n".join(lines)


def run_many(seed: int, indexes: range) -> list[WorldResult]:
    """Run worlds ``indexes`` of ``seed``; a crash in one is a violation of that world."""
    out = []
    for index in indexes:
        try:
            out.append(run_world(seed, index))
        except Exception as exc:  # an engine or env crash is a finding, not the end of the run
            crash = WorldResult(seed, index, violations=[Violation("-", "crash", repr(exc))])
            where = traceback.format_exc(limit=-4)
            crash.report = (
                f"seed {seed} world {index}: crash {exc!r}\n{where}"
                f"  reproduce: python -m tests.sim.run --seed {seed} --index {index} -v"
            )
            out.append(crash)
    return out
