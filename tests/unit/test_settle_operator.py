"""An operator's settle of an in-doubt saga and a parent's cancel of its child, without a broker:
their inbox records, the CLI's arguments, the status views, the UI and the in-flight metric."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from typing import Any

import click
import pytest

from sagas import App, Saga, step
from sagas.cli import cli, main
from sagas.cli.operate import _status_line
from sagas.engine.model import (
    Cancel,
    ChildCancel,
    ChildStart,
    CommandOut,
    Decision,
    JournalEvent,
    ParentRef,
    SagaState,
    Settle,
    Token,
)
from sagas.errors import ConfigurationError, DecodeError
from sagas.operate import in_doubt_steps, settle_input
from sagas.operate.history import entry
from sagas.protocol import Headers
from sagas.serde import Serde
from sagas.wire import (
    child_cancel_record,
    decision_records,
    decode_input,
    header_dict,
    input_record,
)

SERDE = Serde()
"""The encodings these records are read and written with."""

SHIP = Saga[dict[str, Any]](
    "ship",
    version=1,
    deadline=timedelta(minutes=5),
    steps=[step("send", to="ns.svc", command="Send", kind="pivot")],
).compile()
APP = App("ns", [SHIP])


def _state(status: str = "in-doubt", saga_id: str = "s1") -> SagaState:
    held = ("compensated", "Send got no reply within 0:00:02") if status == "in-doubt" else None
    token = Token("send", "waiting", cmd=f"{saga_id}:send:1", sends=3)
    return SagaState(
        saga_id,
        "ship",
        1,
        status,  # type: ignore[arg-type]
        {"to": "ann"},
        {"send:deadline:1": 99_000},
        42,
        1000,
        2000,
        tokens={"send": token} if status in ("running", "in-doubt") else {},
        pending={f"{saga_id}:send:1": "send"} if status in ("running", "in-doubt") else {},
        held=held,
    )


# --------------------------------------------------------------------------- wire


@pytest.mark.parametrize("done", [True, False])
def test_a_settle_round_trips_through_its_inbox_record(done: bool) -> None:
    inp = Settle("s1", done, "ann", "the carrier confirmed it")
    rec = input_record("ns.ship.inbox", inp, SERDE)
    assert rec.key == b"s1"
    assert header_dict(rec.headers) == {
        "sagas-input": "settle",
        "saga-id": "s1",
        "settled": "done" if done else "not-done",
        "settled-by": "ann",
        "reason": "the carrier confirmed it",
    }
    assert decode_input(rec.key, rec.value, rec.headers, SERDE) == inp


@pytest.mark.parametrize(
    ("settled", "said"),
    [
        (None, "settle with no settled header: it must be 'done'"),
        (b"yes", "settle with settled header 'yes': it must be 'done'"),
        (b"", "settle with settled header '': it must be 'done'"),
        (b"Done", "settle with settled header 'Done'"),
    ],
)
def test_a_settle_without_a_valid_settled_header_is_refused(
    settled: bytes | None, said: str
) -> None:
    headers: Headers = [("sagas-input", b"settle"), ("saga-id", b"s1"), ("settled-by", b"ann")]
    if settled is not None:
        headers.append(("settled", settled))
    with pytest.raises(DecodeError, match=said) as caught:
        decode_input(b"s1", SERDE.encode_payload({}), headers, SERDE)
    assert "'not-done'" in str(caught.value)


def test_a_settle_without_who_or_why_still_decodes() -> None:
    headers: Headers = [("sagas-input", b"settle"), ("saga-id", b"s1"), ("settled", b"not-done")]
    assert decode_input(b"s1", SERDE.encode_payload({}), headers, SERDE) == Settle(
        "s1", False, "unknown", ""
    )


def test_an_unknown_input_kind_lists_settle() -> None:
    with pytest.raises(DecodeError, match="terminate, resume or settle"):
        decode_input(b"s1", SERDE.encode_payload({}), [("sagas-input", b"settel")], SERDE)


def test_a_child_cancel_is_a_cancel_record_for_the_child_types_inbox() -> None:
    rec = child_cancel_record(
        ChildCancel("pay", "c-1", "parent compensates"), "ns.pay.inbox", SERDE
    )
    assert rec.topic == "ns.pay.inbox"
    assert rec.key == b"c-1"
    assert header_dict(rec.headers) == {
        "sagas-input": "cancel",
        "saga-id": "c-1",
        "reason": "parent compensates",
    }
    assert decode_input(rec.key, rec.value, rec.headers, SERDE) == Cancel(
        "c-1", "parent compensates"
    )
    client = input_record("ns.pay.inbox", Cancel("c-1", "parent compensates"), SERDE)
    assert (rec.key, rec.value, rec.headers) == (client.key, client.value, client.headers)


def test_a_decisions_child_cancels_become_records_beside_its_commands_and_starts() -> None:
    parent = ParentRef("ship", "s1", "s1:child:1")
    decision = Decision(
        state=None,
        events=[],
        commands=[CommandOut("s1:send:1", "s1", "ship", "send", "Send", "ns.svc", {}, 1, None)],
        children=[ChildStart("pay", "c-2", {"n": 1}, parent)],
        parent_replies=[],
        child_cancels=[
            ChildCancel("pay", "c-1", "parent cancelled"),
            ChildCancel("box", "b-1", ""),
        ],
    )
    records = decision_records(APP, SHIP, decision)
    assert [r.topic for r in records] == ["ns.svc", "ns.pay.inbox", "ns.pay.inbox", "ns.box.inbox"]
    decoded = [decode_input(r.key, r.value, r.headers, SERDE) for r in records[2:]]
    assert decoded == [Cancel("c-1", "parent cancelled"), Cancel("b-1", "cancelled")]


# --------------------------------------------------------------------------- operate


def test_settle_input_wants_an_in_doubt_saga_a_reason_and_who() -> None:
    assert settle_input(_state(), done=True, by="ann", reason="seen") == Settle(
        "s1", True, "ann", "seen"
    )
    with pytest.raises(ConfigurationError, match="'s1' is running, not in-doubt"):
        settle_input(_state("running"), done=True, by="ann", reason="seen")
    with pytest.raises(ConfigurationError, match="is completed, not in-doubt"):
        settle_input(_state("completed"), done=False, by="ann", reason="seen")
    with pytest.raises(ConfigurationError, match="give the reason"):
        settle_input(_state(), done=True, by="ann", reason="  ")
    with pytest.raises(ConfigurationError, match="give who settles"):
        settle_input(_state(), done=True, by="", reason="seen")


def test_the_pivot_an_in_doubt_saga_waits_on_comes_from_its_tokens() -> None:
    assert in_doubt_steps(_state()) == ["send"]
    assert in_doubt_steps(_state("running")) == []


def test_a_settled_event_reads_as_a_history_row_with_the_answer() -> None:
    body = {"step": "send", "done": False, "by": "ann", "reason": "the carrier lost it"}
    row = entry(JournalEvent("settled", "s1", 5, body), 7)
    assert (row.event, row.step, row.outcome, row.reason) == (
        "settled",
        "send",
        "not-done",
        "the carrier lost it",
    )
    assert row.body["by"] == "ann"


# --------------------------------------------------------------------------- CLI


def _cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sagas: error: ")
    return err[0]


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        ((), "give --done (the pivot took effect: the saga goes on) or --not-done"),
        (("--done", "--not-done"), "or --not-done (it did not: the saga compensates), not both"),
        (("--done", "--reason", " "), "--reason is empty"),
    ],
)
def test_settle_needs_one_of_done_or_not_done_and_a_reason(
    capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], said: str
) -> None:
    args = ("settle", "ship", "s1", "-n", "ns", "--reason", "seen", *flags)
    line = _cli_error(capsys, *args)
    assert said in line
    assert line.endswith("(see sagas settle --help)")


def test_settle_without_a_reason_or_a_saga_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "Missing option '--reason'" in _cli_error(
        capsys, "settle", "ship", "s1", "-n", "ns", "--done"
    )
    assert "Missing argument 'SAGA_ID'" in _cli_error(capsys, "settle", "ship", "-n", "ns")
    assert "No such option: --yes" in _cli_error(
        capsys, "settle", "ship", "s1", "-n", "ns", "--yes", "--reason", "x"
    )


def test_list_takes_in_doubt_and_names_the_statuses_for_a_typo(
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = cli.commands["list"]
    ctx = command.make_context("list", ["ship", "-n", "ns", "--status", "in-doubt"])
    assert ctx.params["status_"] == "in-doubt"
    line = _cli_error(capsys, "list", "ship", "-n", "ns", "--status", "indoubt")
    assert "'indoubt' is not one of" in line
    assert "'in-doubt'" in line
    assert command.make_context("list", ["ship", "-n", "ns", "--status", "stuck"])
    with pytest.raises(click.UsageError):
        command.make_context("list", ["ship", "-n", "ns", "--status", "stuk"])


def test_status_names_the_pivot_an_in_doubt_saga_waits_on() -> None:
    line = _status_line(_state())
    assert line.startswith("in-doubt (pivot send: no definitive answer by its deadline")
    assert _status_line(_state("running")) == "running"


# --------------------------------------------------------------------------- UI


def test_the_ui_shows_in_doubt_with_its_own_badge_the_pivot_and_the_settle_hint() -> None:
    from sagas.ui import pages

    assert "in-doubt" in pages.STATUSES
    state = _state()
    listed = pages.list_page(
        [state], {"in-doubt": 1}, types=["ship"], filters={}, now_ms=3000, capped=False
    )
    assert '<span class="status s-in-doubt">in-doubt</span>' in listed
    assert '<option value="in-doubt">in-doubt</option>' in listed
    assert "1 in doubt" in listed
    assert "sagas settle TYPE ID --done|--not-done --reason TEXT" in listed
    shown = pages.saga_page(
        state,
        "ship",
        "s1",
        [],
        diagram="",
        note="",
        actions=True,
        steps=["send"],
        now_ms=3000,
        namespace="ns",
    )
    assert '<span class="status s-in-doubt">in-doubt</span>' in shown
    assert "waiting on pivot <b>send</b>" in shown
    assert "held: Send got no reply within 0:00:02 (if the pivot was not done" in shown
    assert "sagas settle ship s1 -n ns --done|--not-done --reason TEXT" in shown
    assert 'data-action="settle"' in shown
    running = pages.saga_page(
        _state("running"),
        "ship",
        "s1",
        [],
        diagram="",
        note="",
        actions=True,
        steps=["send"],
        now_ms=3000,
    )
    assert "in-doubt" not in running
    assert 'data-action="settle"' not in running
    css = resources.files("sagas.ui").joinpath("static", "style.css").read_text()
    assert ".s-in-doubt {" in css


# --------------------------------------------------------------------------- metrics


class _Worker:
    """What the metrics read of a worker: its name, saga type, topics and stores."""

    def __init__(self, states: list[SagaState]) -> None:
        from sagas.protocol import TopicNames
        from sagas.runtime.store import PartitionStore

        self.name = "ns.ship.workers"
        self.saga_type = "ship"
        self.topics = TopicNames("ns", "ship")
        store = PartitionStore(0, SERDE.decode_state)
        for state in states:
            store.put(state, SERDE.encode_state(state))
        self.stores = {0: store}


def test_in_doubt_sagas_are_counted_in_flight_by_status() -> None:
    from sagas.observe.metrics import PrometheusObserver

    observer = PrometheusObserver()
    states = [
        _state("in-doubt", "a"),
        _state("in-doubt", "b"),
        _state("running", "c"),
        _state("completed", "d"),
    ]
    observer.track(_Worker(states))  # type: ignore[arg-type]
    assert observer.in_flight() == {
        ("ship", "in-doubt"): 2,
        ("ship", "running"): 1,
        ("ship", "stuck"): 0,
        ("ship", "compensating"): 0,
    }
    text = observer.exposition().decode()
    assert 'sagas_in_flight{saga_type="ship",status="in-doubt"} 2.0' in text
    assert 'sagas_in_flight{saga_type="ship",status="running"} 1.0' in text
    assert 'sagas_in_flight{saga_type="ship",status="compensating"} 0.0' in text
    assert 'status="completed"' not in text.split("sagas_in_flight")[-1].split("# HELP")[0]
