"""Command ids carry a tag keyed by the saga's secret: a reply with a guessed id changes nothing."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest

import sagas
from sagas import ConfigurationError, Saga, call, child, step
from sagas.engine import (
    Decision,
    JournalEvent,
    Reply,
    SagaState,
    Start,
    fold,
    parse_command_id,
    public_command_id,
    transition,
)
from sagas.engine.ids import CommandRef
from sagas.serde import Serde

SERDE = Serde()
"""The encodings these records are read and written with."""

PROGRAM = sagas.compile(
    Saga[dict[str, Any]](
        "order",
        version=1,
        deadline=timedelta(hours=1),
        steps=[
            step("reserve", to="stock.commands", command="Reserve", compensate=call("Release")),
            step("ship", to="ship.commands", command="Ship", kind="pivot"),
        ],
    )
)
ENTROPY = random.Random(7).randbytes(16)


def started(saga_id: str = "o-1", entropy: bytes | None = ENTROPY) -> Decision:
    return transition(PROGRAM, None, Start(saga_id, {}), 0, entropy=entropy)


def test_command_ids_are_tagged_by_a_secret_chosen_at_the_start() -> None:
    first = started()
    assert first.state is not None
    (cmd,) = first.commands
    ref = parse_command_id(cmd.command_id)
    assert ref == CommandRef("o-1", "reserve", "do", 1, tagged=True)
    assert public_command_id(cmd.command_id) == "o-1:reserve:1"
    # the secret is in the started event and the state, so replay is deterministic
    secret = first.events[0].body["secret"]
    assert first.state.secret == secret
    assert len(secret) == 32
    assert fold(PROGRAM, first.events) == first.state
    # other entropy, other tag; the same entropy, the same tag
    other = started(entropy=random.Random(8).randbytes(16)).commands[0].command_id
    assert other != cmd.command_id
    assert started().commands[0].command_id == cmd.command_id


@pytest.mark.parametrize("forge", ["o-1:reserve:1", "o-1:reserve:1:0000000000000000", "tagless"])
def test_a_reply_with_a_forged_command_id_is_ignored(forge: str) -> None:
    first = started()
    state = first.state
    assert state is not None
    decision = transition(PROGRAM, state, Reply("o-1", forge, "success", {"evil": 1}), 5)
    assert decision.state == state
    assert [e.type for e in decision.events] == ["ignored"]
    assert "forged" in decision.events[0].body["reason"]
    # the real id still completes the step
    real = first.commands[0].command_id
    ok = transition(PROGRAM, state, Reply("o-1", real, "success", {}), 6)
    assert ok.state is not None
    assert ok.state.completed == ("reserve",)


def test_without_entropy_the_secret_is_derived_from_the_saga_id() -> None:
    a = started(entropy=None).commands[0].command_id
    assert a == started(entropy=None).commands[0].command_id
    assert a != started().commands[0].command_id
    with pytest.raises(ConfigurationError, match=r"os\.urandom\(16\)"):
        started(entropy=b"short")
    state = started().state
    with pytest.raises(ConfigurationError, match="too short"):
        transition(PROGRAM, state, Reply("o-1", "x", "success", {}), 1, entropy=b"")


def test_child_command_ids_are_tagged_and_the_child_answers_its_parent() -> None:
    h = timedelta(hours=1)
    kid = Saga[dict[str, Any]](
        "kid", version=1, deadline=h, steps=[step("k", to="k.commands", command="K", kind="pivot")]
    )
    parent = sagas.compile(
        Saga[dict[str, Any]](
            "parent",
            version=1,
            deadline=h,
            steps=[child("sub", saga="kid", input=lambda d: {}, kind="pivot")],
        )
    )
    first = transition(parent, None, Start("p-1", {}), 0, entropy=ENTROPY)
    (start,) = first.children
    ref = parse_command_id(start.parent.command_id)
    assert ref == CommandRef("p-1", "sub", "child", 1, tagged=True)
    assert first.state is not None
    assert start.parent.command_id in first.state.pending
    kid_program = sagas.compile(kid)
    k = transition(kid_program, None, Start(start.saga_id, {}, start.parent), 0, entropy=ENTROPY)
    assert k.state is not None
    assert k.state.parent == start.parent


def test_a_saga_from_a_release_without_secrets_keeps_its_commands_and_gets_a_secret() -> None:
    first = started(entropy=None)
    assert first.state is not None
    old = first.state.to_dict()
    del old["secret"]
    for token in old["tokens"].values():
        del token["sends"]
    # what the earlier release had pending: an untagged id
    old["pending"] = {"o-1:reserve:1": "reserve"}
    old["tokens"]["reserve"]["cmd"] = "o-1:reserve:1"
    legacy = SagaState.from_dict(json.loads(json.dumps(old)))
    assert legacy.secret == ""
    assert legacy.tokens["reserve"].sends == 1
    decision = transition(PROGRAM, legacy, Reply("o-1", "o-1:reserve:1", "success", {}), 5,
                          entropy=ENTROPY)  # fmt: skip
    assert decision.state is not None
    types = [e.type for e in decision.events]
    assert types.index("secret_set") < types.index("command_sent")
    assert decision.state.secret
    (ship,) = decision.commands
    assert parse_command_id(ship.command_id) == CommandRef("o-1", "ship", "do", 1, tagged=True)
    history: list[JournalEvent] = [
        JournalEvent("started", "o-1", 0, {**first.events[0].body, "secret": ""}),
        *first.events[1:],
    ]
    replayed = fold(PROGRAM, [*history, *decision.events])
    assert replayed is not None
    assert replayed.secret == decision.state.secret


def test_status_views_show_no_secret_and_no_usable_command_id() -> None:
    state = started().state
    assert state is not None
    public = state.public_dict()
    text = json.dumps(public)
    assert "secret" not in public
    assert state.secret not in text
    (cid,) = state.pending
    assert cid not in text
    assert public["pending"] == {"o-1:reserve:1": "reserve"}
    assert public["tokens"]["reserve"]["cmd"] == "o-1:reserve:1"
    back = SagaState.from_dict(json.loads(text))
    assert back.secret == ""
    assert back.data == state.data


@pytest.mark.parametrize(
    ("cid", "ref"),
    [
        ("a:b:c:alloc:start:3", CommandRef("a:b:c", "alloc", "start", 3, tagged=False)),
        ("s:step:12:0123456789abcdef", CommandRef("s", "step", "do", 12, tagged=True)),
        ("s:x:undo:2:0123456789abcdef", CommandRef("s", "x", "undo", 2, tagged=True)),
        ("s:undo:1", CommandRef("s", "undo", "do", 1, tagged=False)),
        ("nocolons", None),
        ("s:x:notanumber", None),
    ],
)
def test_command_ids_parse_from_the_right(cid: str, ref: CommandRef | None) -> None:
    assert parse_command_id(cid) == ref


def test_the_secret_survives_the_state_and_journal_records() -> None:
    first = started()
    assert first.state is not None
    assert SERDE.decode_state(SERDE.encode_state(first.state)) == first.state
    events, _, _ = SERDE.decode_events(SERDE.encode_events(first.events, "order", 1))
    assert fold(PROGRAM, events) == first.state
