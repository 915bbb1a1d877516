"""The commands that act on sagas of a namespace: ``sagas start | status | result | list |
signal | cancel`` through a :class:`~sagas.client.SagaClient`, and ``history | terminate | resume
| settle`` through :mod:`sagas.operate`. This module only parses and prints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sagas.cli.options import (
    STATUSES,
    Operator,
    json_arg,
    json_option,
    operator_options,
    parse_time,
    who,
)
from sagas.cli.output import print_json, rich_table, state_json, text_table, when_text
from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from sagas.client import StartWait
    from sagas.engine.model import SagaState
    from sagas.operate import History

__all__ = [
    "cancel",
    "history",
    "list_",
    "result",
    "resume",
    "settle",
    "signal_",
    "start",
    "status",
    "terminate",
]


@click.command()
@click.argument("saga_type")
@click.argument("data", required=False)
@click.option(
    "--id", "saga_id", help="the saga id (default: a new one); an id that exists is refused"
)
@click.option(
    "--wait",
    type=click.Choice(["accepted", "finished"]),
    help="return once a worker journaled the start, or once the saga ended (exit 1: refused, "
    "stuck or not completed)",
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="for --wait")
@json_option
@operator_options
def start(
    *,
    saga_type: str,
    data: str | None,
    saga_id: str | None,
    wait: StartWait | None,
    timeout: float,
    as_json: bool,
    op: Operator,
) -> int:
    """Start a saga of SAGA_TYPE with DATA (a JSON object); print its id."""
    payload = json_arg(data, "DATA", '\'{"customer": "c-1"}\'')
    with op.client(saga_type) as client:
        sid = client.start(saga_type, payload, saga_id=saga_id, wait=wait, timeout=timeout)
    if as_json:
        print_json({"saga_id": sid, "saga_type": saga_type})
    else:
        click.echo(sid)
    return 0


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@json_option
@operator_options
def status(
    *,
    saga_type: str,
    saga_id: str,
    as_json: bool,
    op: Operator,
) -> int:
    """Show a saga's committed state."""
    state = op.existing(saga_type, saga_id)
    if as_json:
        print_json(state_json(state))
        return 0
    rows = [
        ("saga", state.saga_id),
        ("type", f"{state.saga_type} v{state.version}"),
        ("status", _status_line(state)),
        ("started", when_text(state.started_ms)),
        ("updated", when_text(state.updated_ms)),
        ("completed", ", ".join(state.completed) or "-"),
        ("waiting for", ", ".join(sorted(set(state.pending.values()))) or "-"),
        ("reason", state.reason or "-"),
        ("data", json.dumps(state.data, sort_keys=True, default=str)),
    ]
    if state.held is not None:  # a cancel or deadline waits for the pivot's answer
        outcome, why = state.held
        rows.append(("held", f"{why} (if the pivot was not done, the saga ends {outcome})"))
    from sagas.operate.control import stuck_lines

    rows += stuck_lines(state, op.namespace)
    if state.status == "in-doubt":
        rows.append(
            (
                "hint",
                f"settle it with: sagas settle {saga_type} {saga_id} -n {op.namespace} "
                "--done|--not-done --reason TEXT",
            )
        )
    click.echo("\n".join(f"{k + ':':<13}{v}" for k, v in rows))
    return 0


def _status_line(state: SagaState) -> str:
    """A saga's status for people; an in-doubt one names the pivot it waits on."""
    if state.status != "in-doubt":
        return state.status
    from sagas.operate.control import in_doubt_steps

    steps = ", ".join(in_doubt_steps(state)) or "?"
    return (
        f"in-doubt (pivot {steps}: no definitive answer by its deadline; its command is sent "
        "again until one comes, or an operator settles it)"
    )


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="seconds to wait for the end"
)
@json_option
@operator_options
def result(
    *,
    saga_type: str,
    saga_id: str,
    timeout: float,
    as_json: bool,
    op: Operator,
) -> int:
    """Wait for a saga to end; print its data if it completed (else one line and exit 2)."""
    with op.client(saga_type) as client:
        data = client.result(saga_type, saga_id, timeout=timeout)
    print_json(data) if as_json else click.echo(json.dumps(data, sort_keys=True, default=str))
    return 0


@click.command("list")
@click.argument("saga_type")
@click.option(
    "--status",
    "status_",
    type=click.Choice(STATUSES),
    help="only sagas in this status",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@operator_options
def list_(
    *,
    saga_type: str,
    status_: str | None,
    limit: int,
    as_json: bool,
    op: Operator,
) -> int:
    """List sagas of SAGA_TYPE, newest update first."""
    with op.client(saga_type) as client:
        states = client.list(saga_type, status=status_, limit=limit)
    if as_json:
        print_json([state_json(s) for s in states])
        return 0
    rows = [
        (s.saga_id, s.status, s.version, when_text(s.updated_ms), s.reason or "") for s in states
    ]
    click.echo(text_table(("SAGA", "STATUS", "VERSION", "UPDATED (UTC)", "REASON"), rows))
    return 0


@click.command("signal")
@click.argument("saga_type")
@click.argument("saga_id")
@click.argument("name")
@click.argument("payload", required=False)
@click.option("--wait", is_flag=True, help="return once the worker took it (exit 1: ignored)")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="for --wait")
@operator_options
def signal_(
    *,
    saga_type: str,
    saga_id: str,
    name: str,
    payload: str | None,
    wait: bool,
    timeout: float,
    op: Operator,
) -> int:
    """Send the signal NAME (with PAYLOAD, a JSON object) to a saga; exit 1 when it is refused
    (no such saga, it ended, or with --wait the worker ignored it)."""
    body = json_arg(payload, "PAYLOAD", '\'{"by": "ann"}\'')
    with op.client(saga_type) as client:
        client.signal(saga_type, saga_id, name, body, wait=wait, timeout=timeout)
    said = "taken by" if wait else "sent to"
    click.echo(f"signal {name!r} {said} {saga_type} {saga_id}")
    return 0


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--reason", default="cancelled by an operator", show_default=True)
@click.option("--wait", is_flag=True, help="return once the worker took it (exit 1: refused)")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="for --wait")
@operator_options
def cancel(
    *,
    saga_type: str,
    saga_id: str,
    reason: str,
    wait: bool,
    timeout: float,
    op: Operator,
) -> int:
    """Cancel a saga: its completed steps are compensated; exit 1 when it is refused (no such
    saga, it ended, or with --wait the worker refused it: after its pivot)."""
    with op.client(saga_type) as client:
        client.cancel(saga_type, saga_id, reason=reason, wait=wait, timeout=timeout)
    click.echo(f"cancel {'taken by' if wait else 'sent to'} {saga_type} {saga_id}")
    return 0


# --------------------------------------------------------------------------- history


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--since", help="search the journal from this time (for a saga whose state expired)")
@click.option("--until", help="... up to this time (default: its last change, or now)")
@json_option
@operator_options
def history(
    *,
    saga_type: str,
    saga_id: str,
    since: str | None,
    until: str | None,
    as_json: bool,
    op: Operator,
) -> int:
    """Every journal event of one saga, as a timeline."""
    from sagas.operate import read_history

    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    with op.client(saga_type) as client:
        state = client.status(saga_type, saga_id)
    if state is None and since_ms is None:
        raise ConfigurationError(
            f"no state for saga {saga_id!r} of type {saga_type!r}: it never started, or it "
            "finished and was removed after its retention; search its journal by time with "
            "--since (e.g. --since 7d or --since 2026-05-01T12:00)"
        )
    found = read_history(
        op.settings(),
        op.namespace,
        saga_type,
        saga_id,
        started_ms=state.started_ms if state else None,
        updated_ms=state.updated_ms if state else None,
        since_ms=since_ms,
        until_ms=until_ms,
    )
    if state is None and not found.entries:
        raise ConfigurationError(
            f"no events of saga {saga_id!r} in {found.topic} between "
            f"{when_text(found.window_ms[0], millis=True)} "
            f"and {when_text(found.window_ms[1], millis=True)}; widen --since/--until"
        )
    if as_json:
        print_json({**found.to_dict(), "status": state.status if state else None})
        return 0
    _print_history(found, state.status if state else None)
    return 0


def _print_history(found: History, status: str | None) -> None:
    state = status or ("expired" if found.expired else "no state")
    title = (
        f"{found.saga_type} {found.saga_id} ({state}): {len(found.entries)} events, "
        f"{found.topic}[{found.partition}] offsets {found.offsets[0]}-{found.offsets[1]}"
    )
    rows = [
        (
            when_text(e.at_ms, millis=True),
            e.event,
            e.step,
            e.attempt,
            e.command_id,
            e.outcome,
            e.reason,
        )
        for e in found.entries
    ]
    headers = ("TIME (UTC)", "EVENT", "STEP", "ATTEMPT", "COMMAND", "OUTCOME", "REASON")
    rich_table(title, headers, rows)
    if found.expired:
        click.echo("its state expired after its retention; the journal keeps its history")


# ------------------------------------------------------------------ terminate, resume, settle


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--reason", required=True, help="why (journaled)")
@click.option("--by", help="who (journaled; default: your user name)")
@operator_options
def terminate(*, saga_type: str, saga_id: str, reason: str, by: str | None, op: Operator) -> int:
    """End a saga now, without compensating (cancel compensates)."""
    from sagas.operate import terminate as send_terminate

    state = op.existing(saga_type, saga_id)
    if state.terminal:
        raise ConfigurationError(f"saga {saga_id!r} already ended {state.status}")
    send_terminate(op.settings(), op.namespace, saga_type, saga_id, by=who(by), reason=reason)
    click.echo(f"terminate sent to {saga_type} {saga_id}")
    return 0


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option(
    "--step", help="for a failed saga: the step to run again (default: the one that failed)"
)
@click.option("--by", help="who (journaled; default: your user name)")
@json_option
@operator_options
def resume(
    *,
    saga_type: str,
    saga_id: str,
    step: str | None,
    by: str | None,
    as_json: bool,
    op: Operator,
) -> int:
    """Resume a stuck saga once its fix is deployed, a failed saga at a step, or replay a parked
    saga's dead-lettered inputs once its definition version is deployed again."""
    from sagas.operate import resume as do_resume

    state = op.existing(saga_type, saga_id)
    done = do_resume(op.settings(), op.namespace, state, by=who(by), step=step)
    if as_json:
        print_json(done.to_dict())
    elif done.report is not None:
        click.echo(
            f"replayed {len(done.report.replayed)} parked inputs of {saga_type} {saga_id} "
            f"to its inbox ({len(done.report.skipped)} replayed before)"
        )
    elif done.action == "retried":
        click.echo(
            f"resume sent to {saga_type} {saga_id}: the inputs it kept since it stuck at "
            f"{done.step} are applied again with the code deployed now"
        )
    else:
        click.echo(f"resume sent to {saga_type} {saga_id}: step {done.step!r} runs again")
    return 0


@click.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--done", is_flag=True, help="the in-doubt pivot took effect: the saga goes on")
@click.option(
    "--not-done", is_flag=True, help="the in-doubt pivot did not take effect: the saga compensates"
)
@click.option("--reason", required=True, help="how you know (journaled)")
@click.option("--by", help="who (journaled; default: your user name)")
@json_option
@operator_options
def settle(
    *,
    saga_type: str,
    saga_id: str,
    done: bool,
    not_done: bool,
    reason: str,
    by: str | None,
    as_json: bool,
    op: Operator,
) -> int:
    """Settle a saga in-doubt about its pivot (its deadline passed without an answer): --done
    if the pivot took effect, --not-done if it did not."""
    from sagas.operate import in_doubt_steps
    from sagas.operate import settle as send_settle

    if done == not_done:
        raise click.UsageError(
            "give --done (the pivot took effect: the saga goes on) or --not-done (it did not: "
            "the saga compensates)" + (", not both" if done else "")
        )
    if not reason.strip():
        raise click.UsageError("--reason is empty: say how you know (it is journaled)")
    state = op.existing(saga_type, saga_id)
    operator = who(by)
    send_settle(op.settings(), op.namespace, state, done=done, by=operator, reason=reason)
    steps = in_doubt_steps(state)
    answer = "done" if done else "not-done"
    if as_json:
        print_json(
            {
                "saga_type": saga_type,
                "saga_id": saga_id,
                "settled": answer,
                "steps": steps,
                "by": operator,
                "reason": reason,
            }
        )
        return 0
    goes = "goes on" if done else "compensates"
    click.echo(
        f"settle ({answer}) sent to {saga_type} {saga_id}"
        + (f" for {', '.join(steps)}" if steps else "")
        + f": the saga {goes}"
    )
    return 0
