"""Property-based tests: random interleavings of replies, duplicates, timers, signals and cancels.

After every transition: ``fold(journal) == state``, a command id is sent again only as the same
request (still pending, same step, type and attempt, the next send number), no timer fires early,
and a reply with a forged command id (no tag, or a wrong one) changes nothing.
After driving each saga to quiescence: exactly one terminal state, and the compensations issued
are exactly those of the completed compensatable steps, in reverse completion order, each once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sagas
from sagas import Retry, Saga, branch, call, goto, long_running, parallel, sleep, step, wait_signal
from sagas.dsl import Node, Program
from sagas.engine import (
    Cancel,
    CommandOut,
    Input,
    JournalEvent,
    Reply,
    SagaState,
    Signal,
    Start,
    TimerFired,
    fold,
    public_command_id,
    transition,
)

SEC = timedelta(seconds=1)


def s(name: str, **kw: Any) -> Node[dict[str, Any]]:
    if kw.get("kind", "compensatable") == "compensatable":
        kw.setdefault("compensate", call(f"Undo-{name}"))
    kw.setdefault("retry", Retry(max_attempts=3, initial=SEC, cap=10 * SEC))
    return step(name, to=f"{name}.commands", command=f"Do-{name}", **kw)


PROGRAMS: list[Program] = [
    sagas.compile(
        Saga[dict[str, Any]](
            "linear",
            version=1,
            deadline=timedelta(minutes=2),
            steps=[
                s("a", deadline=10 * SEC),
                parallel("both", [s("b")], [s("c"), sleep("nap", 3 * SEC)]),
                wait_signal("go", timeout=30 * SEC),
                s("d", kind="pivot"),
                s("e", kind="retryable", deadline=5 * SEC, retry=Retry(max_attempts=None)),
            ],
        )
    ),
    sagas.compile(
        Saga[dict[str, Any]](
            "flow",
            version=2,
            deadline=timedelta(minutes=5),
            steps=[
                parallel("race", [s("x")], [s("y"), s("z")], join="first"),
                long_running(
                    "op",
                    to="ops.commands",
                    start=call("Start"),
                    status=call("Status"),
                    cancel=call("Stop"),
                    every=2 * SEC,
                    deadline=20 * SEC,
                    checks=3,
                    done=lambda r: r.get("state") == "done",
                    failed=lambda r: r.get("state") == "failed",
                    compensate=call("Undo-op"),
                ),
                s("loop", merge=lambda d, r: {**d, "n": d.get("n", 0) + 1}),
                branch("again", lambda d: d["n"] < 2, then=[goto("loop")]),
            ],
        )
    ),
]

STATUS = st.sampled_from([{"state": "done"}, {"state": "failed"}, {"state": "running"}, {}])
OUTCOME = st.sampled_from(["success", "success", "failure", "retryable-failure"])
ACTION = st.one_of(
    st.tuples(st.just("reply"), st.integers(0, 50), OUTCOME, STATUS),
    st.tuples(st.just("dup"), st.integers(0, 50), OUTCOME, STATUS),
    st.tuples(st.just("forge"), st.integers(0, 50), OUTCOME, st.booleans()),
    st.tuples(st.just("timer"), st.integers(0, 50), st.booleans(), st.none()),
    st.tuples(st.just("signal"), st.sampled_from(["go", "other"]), st.none(), st.none()),
    st.tuples(st.just("cancel"), st.none(), st.none(), st.none()),
    st.tuples(st.just("advance"), st.integers(1, 40_000), st.none(), st.none()),
)


class Run:
    def __init__(self, program: Program) -> None:
        self.p = program
        self.state: SagaState | None = None
        self.now = 1_000
        self.events: list[JournalEvent] = []
        self.commands: list[CommandOut] = []
        self.sent: dict[str, CommandOut] = {}

    def feed(self, inp: Input) -> None:
        before = self.state
        decision = transition(self.p, before, inp, self.now)
        if isinstance(inp, TimerFired) and before is not None:
            fired = [e for e in decision.events if e.type == "timer_fired"]
            for e in fired:
                assert before.timers[e.body["timer_id"]] <= self.now, "a timer fired early"
        if decision.events and decision.events[0].type == "ignored":
            assert decision.state == before
            assert len(decision.events) == 1
        self.events += decision.events
        self.state = decision.state
        assert fold(self.p, self.events) == self.state
        for cmd in decision.commands:
            first = self.sent.get(cmd.command_id)
            if first is None:
                assert cmd.send == 1, cmd
            else:  # sent again: only the same request, still awaiting its reply
                assert before is not None
                assert cmd.command_id in before.pending, f"{cmd.command_id} re-sent, not pending"
                same = (cmd.step, cmd.command_type, cmd.topic, cmd.attempt)
                assert same == (first.step, first.command_type, first.topic, first.attempt)
                assert cmd.send == first.send + 1, (cmd, first)
            self.sent[cmd.command_id] = cmd
            self.commands.append(cmd)

    def pending(self) -> list[str]:
        return sorted(self.state.pending) if self.state else []

    def act(self, action: tuple[Any, ...]) -> None:
        kind, arg, opt, payload = action
        sid = "s-1"
        if kind == "reply" and self.pending():
            cid = self.pending()[arg % len(self.pending())]
            self.feed(Reply(sid, cid, opt, dict(payload)))
        elif kind == "dup" and self.commands:
            cid = self.commands[arg % len(self.commands)].command_id
            self.feed(Reply(sid, cid, opt, dict(payload)))
        elif kind == "forge" and self.pending():
            real = self.pending()[arg % len(self.pending())]
            untagged = public_command_id(real)
            forged = f"{untagged}:{'0' * 16}" if payload else untagged
            before = self.state
            self.feed(Reply(sid, forged, opt, {"forged": True}))
            assert self.state == before
            assert self.events[-1].type == "ignored"
        elif kind == "timer" and self.state and self.state.timers:
            timers = sorted(self.state.timers.items())
            timer_id, due = timers[arg % len(timers)]
            if opt and due > self.now:  # an early attempt: must be ignored
                self.feed(TimerFired(sid, timer_id, due))
            else:
                self.now = max(self.now, due)
                self.feed(TimerFired(sid, timer_id, due))
        elif kind == "signal":
            self.feed(Signal(sid, arg, {"signalled": True}))
        elif kind == "cancel":
            self.feed(Cancel(sid, "property test"))
        elif kind == "advance":
            self.now += arg

    def quiesce(self) -> None:
        for _ in range(2_000):
            assert self.state is not None
            if self.state.terminal:
                return
            if self.pending():
                cid = self.pending()[0]
                self.feed(Reply("s-1", cid, "success", {"state": "done"}))
            elif self.state.timers:
                timer_id, due = min(self.state.timers.items(), key=lambda kv: (kv[1], kv[0]))
                self.now = max(self.now, due)
                self.feed(TimerFired("s-1", timer_id, due))
            else:
                raise AssertionError(f"saga stuck: {self.state}")
        raise AssertionError("saga did not end")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=st.sampled_from(PROGRAMS),
    actions=st.lists(ACTION, max_size=40),
)
def test_random_interleavings_keep_the_invariants(
    program: Program, actions: list[tuple[Any, ...]]
) -> None:
    run = Run(program)
    run.feed(Start("s-1", {"n": 0}))
    for action in actions:
        run.act(action)
    run.quiesce()
    state = run.state
    assert state is not None
    assert state.terminal
    event(f"{program.name}: {state.status}, {len(state.completed)} completed")
    finished = [e for e in run.events if e.type == "finished"]
    assert len(finished) == 1
    assert finished[0].body["status"] == state.status
    assert state.version == program.version

    undone = [e.body["step"] for e in run.events if e.type == "undo_started"]
    all_undone = list(undone)
    # First-wins losers are undone as the saga goes on, each once; the rest is compensation.
    unwound = [n for e in run.events if e.type == "unwinding" for n in e.body["queue"]]
    for n in unwound:
        assert n in undone, f"loser step {n} queued for undo but never undone"
        undone.remove(n)
    compensatable = [n for n in reversed(state.completed) if program.nodes[n].compensation]
    if state.status == "completed" or state.pivoted:
        assert undone == []
    else:
        # First what may have happened (a command sent, no reply), then what completed.
        maybe = undone[: len(undone) - len(compensatable)]
        assert undone[len(maybe) :] == compensatable
        answered = {e.body["command_id"] for e in run.events if e.type == "reply_accepted"}
        unanswered = {
            e.body["step"]
            for e in run.events
            if e.type == "command_sent"
            and not e.body["undo"]
            and e.body["command_id"] not in answered
        }
        assert set(maybe) <= unanswered - set(state.completed)
    undo_types = [c.command_type for c in run.commands if ":undo:" in c.command_id]
    assert set(undo_types) <= {f"Undo-{n}" for n in all_undone}

    # after the end, every input is ignored and changes nothing
    late: list[Input] = [Reply("s-1", "s-1:a:1", "success", {}), Cancel("s-1", "late")]
    for inp in late:
        decision = transition(program, state, inp, run.now)
        assert decision.state == state
        assert [e.type for e in decision.events] == ["ignored"]
        assert decision.commands == []
