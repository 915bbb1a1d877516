"""Definition errors raised when a saga is made: each names the saga, the step and the fix.

A block does not know its saga when it is made, so it keeps its problem and the ``Saga`` raises
it, completed with both names and with the block's own error as the cause.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from sagas import DefinitionError, Retry, Saga, call, child, sleep, step, wait_signal
from sagas.dsl import (
    KINDS,
    Node,
    Step,
    branch,
    compile_saga,
    goto,
    long_running,
    parallel,
)
from sagas.dsl.nodes import RETRYABLE
from sagas.testing import SagaTestEnv, retryable_fail, silent, succeed

H = timedelta(hours=1)
ZERO = timedelta(0)
Data = dict[str, Any]


def s(name: str = "a", **kw: Any) -> Node[Data]:
    kw.setdefault("to", f"{name}.commands")
    kw.setdefault("command", f"Do-{name}")
    kw.setdefault("compensate", call(f"Undo-{name}"))
    return step(name, **kw)


def op(name: str = "op", **kw: Any) -> Node[Data]:
    for key, value in {"to": "ops.commands", "every": H}.items():
        kw.setdefault(key, value)
    for key, command in {"start": "S", "status": "G", "cancel": "C"}.items():
        kw.setdefault(key, call(command))
    return long_running(name, done=lambda r: True, **kw)


def sub(name: str = "c", **kw: Any) -> Node[Data]:
    kw.setdefault("saga", "x")
    return child(name, input=dict, **kw)


def saga(*steps: Any, name: str = "demo", **kw: Any) -> Saga[Data]:
    kw.setdefault("deadline", H)
    kw.setdefault("version", 1)
    return Saga[Data](name, steps=steps, **kw)


def rejected(build: Callable[[], object], step: str | None, *fix: str) -> DefinitionError:
    """``build()`` raises one DefinitionError naming saga 'demo', then ``step``, then the fix."""
    with pytest.raises(DefinitionError) as info:
        build()
    error = info.value
    where = "saga 'demo'" + ("" if step is None else f", step {step!r}")
    assert str(error).startswith(where + ": "), str(error)
    assert (error.saga, error.step) == ("demo", step)
    for fragment in fix:
        assert fragment in str(error)
    return error


BLOCK_PROBLEMS = [
    ("step name", lambda: saga(s("a b")), "a b", ["name 'a b' is not valid", "letters, digits"]),
    ("step topic", lambda: saga(s(to="")), "a", ["a step needs to='<topic>' and command='<type>'"]),
    ("step command", lambda: saga(s(command="")), "a", ["e.g. step('reserve', to="]),
    ("step deadline", lambda: saga(s(deadline=ZERO)), "a", ["deadline=datetime.timedelta(0)"]),
    ("step kind", lambda: saga(s(kind="pivit")), "a", ["kind='pivit' is not a step kind"]),
    ("retry attempts", lambda: saga(s(retry=Retry(max_attempts=0))), "a", ["max_attempts=0)"]),
    ("retry cap", lambda: saga(s(retry=Retry(cap=ZERO))), "a", ["0 <= initial <= cap"]),
    ("retry multiplier", lambda: saga(s(retry=Retry(multiplier=0.5))), "a", ["use 1.0 or more"]),
    ("retry jitter", lambda: saga(s(retry=Retry(jitter=1.5))), "a", ["Retry(jitter=1.5)"]),
    ("retry type", lambda: saga(s(retry=Retry(initial=1))), "a", ["need timedeltas"]),  # type: ignore[arg-type]
    ("not a duration", lambda: saga(sleep("z", 30)), "z", ["duration=30: use a positive"]),  # type: ignore[arg-type]
    ("undo command", lambda: saga(s(compensate=call(""))), "a", ["call('') needs a command"]),
    ("op name", lambda: saga(op("o p")), "o p", ["name 'o p' is not valid"]),
    ("op topic", lambda: saga(op(to="")), "op", ["long_running() needs to='<topic>'"]),
    ("op every", lambda: saga(op(every=ZERO)), "op", ["every=datetime.timedelta(0)"]),
    ("op deadline", lambda: saga(op(deadline=-H)), "op", ["deadline=", "positive timedelta"]),
    ("op checks", lambda: saga(op(checks=0)), "op", ["checks=0: use 1 or more status polls"]),
    ("op kind", lambda: saga(op(kind="pivit")), "op", ["kind='pivit' is not a step kind"]),
    ("op retry", lambda: saga(op(retry=Retry(max_attempts=-1))), "op", ["max_attempts=-1"]),
    ("op start", lambda: saga(op(start=call(""))), "op", ["call('') needs a command"]),
    ("op cancel", lambda: saga(op(cancel=call(""))), "op", ["call('') needs a command"]),
    ("op undo", lambda: saga(op(compensate=call(""))), "op", ["call('') needs a command"]),
    ("wait timeout", lambda: saga(wait_signal("w", timeout=ZERO)), "w", ["timeout="]),
    ("wait name", lambda: saga(wait_signal("w w", timeout=H)), "w w", ["name 'w w'"]),
    ("sleep duration", lambda: saga(sleep("z", ZERO)), "z", ["duration=", "positive timedelta"]),
    ("sleep name", lambda: saga(sleep("", H)), "", ["step name '' is not valid"]),
    ("one branch", lambda: saga(parallel("p", [s()])), "p", ["two branches or more"]),
    ("join", lambda: saga(parallel("p", [s()], [s("b")], join="any")), "p", ["'all' or 'first'"]),  # type: ignore[arg-type]
    ("parallel name", lambda: saga(parallel("p!", [s()], [s("b")])), "p!", ["name 'p!'"]),
    ("predicate", lambda: saga(branch("b", None, then=[s()])), "b", ["when=lambda data"]),  # type: ignore[arg-type]
    ("branch name", lambda: saga(branch("b/", lambda d: True, then=[s()])), "b/", ["name 'b/'"]),
    ("child saga", lambda: saga(sub(saga="")), "c", ["child() needs saga='<saga type name>'"]),
    ("child kind", lambda: saga(sub(kind="pivit")), "c", ["kind='pivit' is not a step kind"]),
    ("child deadline", lambda: saga(sub(deadline=ZERO)), "c", ["deadline=", "positive"]),
    ("child undo", lambda: saga(sub(compensate=call(""))), "c", ["call('') needs a command"]),
    ("child name", lambda: saga(sub("c c")), "c c", ["name 'c c'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "step", "fix"), [pytest.param(*case[1:], id=case[0]) for case in BLOCK_PROBLEMS]
)
def test_a_block_problem_is_raised_by_its_saga_naming_saga_and_step(
    build: Callable[[], object], step: str, fix: list[str]
) -> None:
    error = rejected(build, step, *fix)
    cause = error.__cause__
    assert isinstance(cause, DefinitionError)  # the block's own error, without the names
    assert cause.saga is None
    assert str(error) == f"saga 'demo', step {step!r}: {cause}"


def test_a_problem_deep_in_nested_lists_names_its_own_step() -> None:
    nested = parallel("p", [s("x")], [branch("b", lambda d: True, then=[s("y", kind="pivit")])])
    rejected(lambda: saga(s(), nested), "y", "kind='pivit'")


def test_a_block_alone_does_not_raise_and_keeps_its_problem_for_its_saga() -> None:
    bad = s(kind="pivit")  # no saga to name yet
    retry = Retry(max_attempts=0)
    assert retry.gives_up(0)  # a policy that is not valid is still an object
    rejected(lambda: saga(bad), "a", "pivit")
    rejected(lambda: saga(s("ok"), s("r", retry=retry)), "r", "Retry(max_attempts=0)")


def test_an_unknown_kind_lists_the_valid_kinds() -> None:
    error = rejected(lambda: saga(s(kind="pivit")), "a")
    assert str(error).endswith("use one of 'compensatable', 'pivot', 'retryable'")
    assert KINDS == ("compensatable", "pivot", "retryable")
    direct = Step[Data]("a", "t", "C", dict, call("U"), "pivit", None, Retry(), None)  # type: ignore[arg-type]
    rejected(lambda: saga(direct), "a", "kind='pivit' is not a step kind")


SAGA_PROBLEMS = [
    ("no steps", saga, ["a saga needs at least one step", "steps=[step(...), ...]"]),
    ("empty list", lambda: Saga[Data]("demo", version=1, steps=[]), ["at least one step"]),
    ("version", lambda: saga(s(), version=0), ["version must be a positive int, e.g. version=1"]),
    ("deadline", lambda: saga(s(), deadline=ZERO), ["deadline=datetime.timedelta(0): use"]),
    ("steps not a list", lambda: Saga[Data]("demo", 1, s()), ["steps= must be a list of"]),  # type: ignore[arg-type]
    ("not a block", lambda: saga(s(), "b"), ["steps= holds a str, not a block: use step()"]),
]  # fmt: skip


@pytest.mark.parametrize(("build", "fix"), [pytest.param(*c[1:], id=c[0]) for c in SAGA_PROBLEMS])
def test_a_saga_problem_names_the_saga(build: Callable[[], object], fix: list[str]) -> None:
    rejected(build, None, *fix)


def test_a_bad_saga_name_is_named() -> None:
    with pytest.raises(DefinitionError) as info:
        Saga[Data]("my saga", version=1, steps=[s()])
    assert str(info.value) == (
        "saga 'my saga': saga name 'my saga' is not valid: "
        "use letters, digits, '-', '_' and '.' only"
    )


def test_a_bad_list_inside_a_block_names_that_block() -> None:
    rejected(
        lambda: saga(parallel("p", s(), [s("b")])),  # type: ignore[arg-type]
        "p",
        "branch 1 of parallel() must be a list of blocks, got a Step",
    )
    rejected(
        lambda: saga(branch("b", lambda d: True, then=[s(), 3])),  # type: ignore[list-item]
        "b",
        "then= holds a int, not a block",
    )
    rejected(
        lambda: saga(branch("b", lambda d: True, then=[s()], otherwise=s("c"))),  # type: ignore[arg-type]
        "b",
        "otherwise= must be a list of blocks",
    )


def test_retryable_is_the_kind_and_retriable_still_works_with_a_warning() -> None:
    new: Step[Data] = step("r", to="r.commands", command="Do-r", kind="retryable", deadline=H)
    with pytest.warns(DeprecationWarning, match="write kind='retryable'") as caught:
        old: Step[Data] = step("r", to="r.commands", command="Do-r", kind="retriable", deadline=H)
    with pytest.warns(DeprecationWarning, match="write kind='retryable'") as more:
        make_others_with_the_old_spelling()
    warned = [w.filename for w in [*caught, *more]]
    assert warned == [__file__] * 3  # the warning points at the user's line, not the library
    assert new == old
    assert new.kind == RETRYABLE
    assert new.retry.max_attempts is None  # retried until it succeeds, either spelling
    direct = Step[Data]("r", "t", "C", dict, None, "retryable", H, Retry(max_attempts=None), None)
    assert direct.kind == RETRYABLE
    program = compile_saga(saga(s("p", kind="pivot"), new))
    assert "(retryable)" in program.mermaid()


def make_others_with_the_old_spelling() -> None:
    child("c", saga="x", input=dict, kind="retriable")
    long_running(
        "op", to="t", start=call("S"), status=call("G"), cancel=call("C"), every=H,
        done=lambda r: True, kind="retriable",
    )  # fmt: skip


def test_the_retryable_spelling_retries_until_success() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        definition = saga(
            s("p", kind="pivot"), s("r", kind="retryable", deadline=timedelta(seconds=5))
        )
    env = SagaTestEnv(definition)
    env.on("Do-p", succeed())
    env.on("Do-r", [silent(), retryable_fail(), silent(), succeed()])
    env.start("demo", "d-1", {})
    env.advance(H)
    assert env.state("d-1").status == "completed"
    assert env.command_types("d-1") == ["Do-p", "Do-r", "Do-r", "Do-r", "Do-r"]


def test_a_goto_alone_is_a_saga_with_a_step() -> None:
    # A list of only a goto is a step list; the compiler reports the unknown target.
    with pytest.raises(DefinitionError, match="saga 'demo': goto\\('a'\\) refers to an unknown"):
        compile_saga(saga(goto("a")))
