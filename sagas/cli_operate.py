"""The operator commands beside ``sagas start | status | list ...``: history, terminate, resume,
settle, ``dlq list | replay`` and ``topics plan | apply``. Tables (rich) for people, ``--json`` for
scripts, progress bars on stderr for long work; errors are one line and exit 2 (see
:func:`sagas.cli.main`). The work is done by :mod:`sagas.operate`; this module only parses and
prints.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sagas.cli_base import (
    Operator,
    app_dir_option,
    cli,
    flag_settings,
    json_option,
    kafka_options,
    load_app,
    operator_options,
)
from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient
    from rich.console import Console
    from rich.progress import Progress

    from sagas.operate import AppSpec, Change, DeadLetter, History
    from sagas.settings import KafkaSettings

__all__ = ["dlq", "history", "parse_time", "resume", "settle", "terminate", "topics"]

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time(value: str | None, option: str) -> int | None:
    """A ``--since``/``--until`` value as epoch ms: ISO 8601 (UTC unless it says), epoch ms, or
    a duration ago (``90s``, ``15m``, ``2h``, ``7d``).

    Raises:
        ConfigurationError: none of these.
    """
    if value is None:
        return None
    if value.isdigit() and len(value) > 9:
        return int(value)
    relative = _RELATIVE.match(value)
    if relative:
        return int(time.time() * 1000) - int(relative[1]) * _UNIT_MS[relative[2]]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{option} {value}: give a time as 2026-05-01T12:00 (UTC), epoch ms, or a duration "
            "ago such as 15m, 2h, 7d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _console(err: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    return Console(
        file=stream, highlight=False, width=None if stream.isatty() else 240, soft_wrap=False
    )


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*("" if c is None else str(c) for c in row))
    console = _console()
    with console.capture() as captured:
        console.print(table)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()).strip("\n"))


@contextmanager
def _progress(description: str, total: int) -> Iterator[Progress]:
    """A progress bar on stderr (shown only on a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_console(err=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        progress.add_task(description, total=total)
        yield progress


def _settings(op: Operator) -> KafkaSettings:
    return flag_settings(op.bootstrap_servers, op.options, op.connect_timeout)


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


# --------------------------------------------------------------------------- history


@cli.command()
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
        _settings(op),
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
            f"no events of saga {saga_id!r} in {found.topic} between {_when(found.window_ms[0])} "
            f"and {_when(found.window_ms[1])}; widen --since/--until"
        )
    if as_json:
        _print_json({**found.to_dict(), "status": state.status if state else None})
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
        (_when(e.at_ms), e.event, e.step, e.attempt, e.command_id, e.outcome, e.reason)
        for e in found.entries
    ]
    headers = ("TIME (UTC)", "EVENT", "STEP", "ATTEMPT", "COMMAND", "OUTCOME", "REASON")
    _table(title, headers, rows)
    if found.expired:
        click.echo("its state expired after its retention; the journal keeps its history")


# ------------------------------------------------------------------ terminate, resume, settle


@cli.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--reason", required=True, help="why (journaled)")
@click.option("--by", help="who (journaled; default: your user name)")
@operator_options
def terminate(*, saga_type: str, saga_id: str, reason: str, by: str | None, op: Operator) -> int:
    """End a saga now, without compensating (cancel compensates)."""
    from sagas.operate import terminate as send_terminate

    state = _existing(op, saga_type, saga_id)
    if state.terminal:
        raise ConfigurationError(f"saga {saga_id!r} already ended {state.status}")
    send_terminate(_settings(op), op.namespace, saga_type, saga_id, by=_who(by), reason=reason)
    click.echo(f"terminate sent to {saga_type} {saga_id}")
    return 0


@cli.command()
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

    state = _existing(op, saga_type, saga_id)
    done = do_resume(_settings(op), op.namespace, state, by=_who(by), step=step)
    if as_json:
        _print_json(done.to_dict())
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


@cli.command()
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
    state = _existing(op, saga_type, saga_id)
    who = _who(by)
    send_settle(_settings(op), op.namespace, state, done=done, by=who, reason=reason)
    steps = in_doubt_steps(state)
    answer = "done" if done else "not-done"
    if as_json:
        _print_json(
            {
                "saga_type": saga_type,
                "saga_id": saga_id,
                "settled": answer,
                "steps": steps,
                "by": who,
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


def _existing(op: Operator, saga_type: str, saga_id: str) -> Any:
    with op.client(saga_type) as client:
        state = client.status(saga_type, saga_id)
    if state is None:
        raise ConfigurationError(
            f"no saga {saga_id!r} of type {saga_type!r} in namespace {op.namespace!r}; "
            f"sagas list {saga_type} -n {op.namespace} shows the ones there are"
        )
    return state


# --------------------------------------------------------------------------- dead letters


@cli.group()
def dlq() -> None:
    """Dead letters of a saga type or a participant group: list and replay."""


def _dlq_options(command: Any) -> Any:
    options = [
        click.argument("saga_type", required=False),
        click.option("--group", help="a participant group's DLQ (<group>.dlq) instead"),
        click.option(
            "-n",
            "--namespace",
            envvar="SAGAS_NAMESPACE",
            help="the app's namespace, for a saga type (env SAGAS_NAMESPACE)",
        ),
        click.option("--saga", "saga_id", help="only this saga's"),
        click.option("--reason", help="only reasons starting so, e.g. unknown-definition-version"),
    ]
    for option in reversed(options):
        command = option(command)
    return kafka_options(command)


def _dlq_topic(saga_type: str | None, group: str | None, namespace: str | None) -> str:
    from sagas.protocol import TopicNames, participant_dlq

    if group and saga_type:
        raise ConfigurationError("give a SAGA_TYPE or --group GROUP, not both")
    if group:
        return participant_dlq(group)
    if not saga_type:
        raise ConfigurationError("give a SAGA_TYPE (with -n NAMESPACE) or --group GROUP")
    if not namespace:
        raise ConfigurationError(
            "a saga type's DLQ needs its namespace: give -n NAMESPACE or set SAGAS_NAMESPACE"
        )
    return TopicNames(namespace, saga_type).dlq


def _letters(
    kw: dict[str, Any], since_ms: int | None = None, until_ms: int | None = None
) -> tuple[KafkaSettings, list[DeadLetter]]:
    from sagas.operate import list_dead_letters
    from sagas.runtime.topics import connect

    settings = flag_settings(kw["bootstrap_servers"], kw["options"], kw["connect_timeout"])
    connect(settings)
    topic = _dlq_topic(kw["saga_type"], kw["group"], kw["namespace"])
    letters = list_dead_letters(
        settings,
        topic,
        saga_id=kw["saga_id"],
        reason=kw["reason"],
        since_ms=since_ms,
        until_ms=until_ms,
    )
    return settings, letters


@dlq.command("list")
@_dlq_options
@click.option("--since", help="dead-lettered at or after (ISO time, epoch ms, or 2h ago)")
@click.option("--until", help="dead-lettered before")
@json_option
def dlq_list(*, since: str | None, until: str | None, as_json: bool, **kw: Any) -> int:
    """List dead letters, oldest first, with their reason class, saga and source."""
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    _, letters = _letters(kw, since_ms, until_ms)
    if as_json:
        _print_json([d.to_dict() for d in letters])
        return 0
    rows = [
        (
            d.offset,
            _when(d.at_ms),
            d.saga_id,
            d.reason_class,
            "/".join(map(str, d.source)) if d.source else "-",
            "replayed" if d.replayed else ("no value: cannot replay" if d.value_dropped else ""),
            d.reason,
        )
        for d in letters
    ]
    _table(
        f"{len(letters)} dead letters",
        ("OFFSET", "TIME (UTC)", "SAGA", "CLASS", "SOURCE", "STATE", "REASON"),
        rows,
    )
    return 0


@dlq.command("replay")
@_dlq_options
@click.option("--offset", "offsets", type=int, multiple=True, help="only these DLQ offsets")
@click.option("--all", "everything", is_flag=True, help="every dead letter (when no filter)")
@json_option
def dlq_replay(*, offsets: tuple[int, ...], everything: bool, as_json: bool, **kw: Any) -> int:
    """Write chosen dead letters back to their source topics, once each."""
    from sagas.operate import replay, select

    if not (everything or offsets or kw["saga_id"] or kw["reason"]):
        raise ConfigurationError(
            "choose what to replay: --saga ID, --reason PREFIX, --offset N, or --all"
        )
    settings, letters = _letters(kw)
    chosen = select(letters, offsets=offsets)
    with _progress("replaying", len(chosen)) as bar:
        report = replay(settings, chosen, progress=lambda d: bar.advance(bar.task_ids[0]))
    if as_json:
        _print_json(report.to_dict())
        return 0
    click.echo(
        f"replayed {len(report.replayed)}, skipped {len(report.skipped)} (replayed before), "
        f"refused {len(report.refused)} (no value kept: they cannot be replayed)"
    )
    return 0


# --------------------------------------------------------------------------- topics


@cli.group()
def topics() -> None:
    """Declarative topic specs (topics/<app>.json): plan and apply."""


def _spec(
    target: str,
    app_dir: str | None,
    replication_factor: int,
    min_insync: int | None,
    participants: Sequence[str] = (),
) -> tuple[AppSpec, str]:
    """The spec a TARGET names (MODULE:ATTR of an app or a participant, or a spec file), with
    the topics of the ``--participant`` ones, and the file name it goes in."""
    from sagas.cli_base import _import_target, load_participant
    from sagas.operate import read_spec, spec_of
    from sagas.participants import Participant

    if ":" not in target or target.endswith(".json"):
        if participants:
            raise ConfigurationError(
                "--participant adds to a spec made from MODULE:ATTR; write the spec again with "
                "sagas topics plan MODULE:ATTR --participant MODULE:ATTR --write"
            )
        return read_spec(Path(target)), Path(target).name
    parts = [load_participant(p, app_dir) for p in participants]
    obj = _import_target(target, "processors.orders:app", app_dir)
    app = None
    if isinstance(obj, Participant):
        parts.insert(0, obj)
    else:
        app = load_app(target, None, app_dir)
    name = target.partition(":")[0].rsplit(".", 1)[-1]
    spec = spec_of(
        app, replication_factor=replication_factor, min_insync=min_insync, participants=parts
    )
    return spec, f"{name}.json"


def _spec_options(command: Any) -> Any:
    options = [
        click.argument("target", metavar="MODULE:ATTR|SPEC.json"),
        click.option(
            "--replication-factor",
            type=click.IntRange(1),
            default=3,
            show_default=True,
            help="for a spec made from an app",
        ),
        click.option(
            "--min-insync",
            type=click.IntRange(1),
            help="min.insync.replicas for a spec made from an app (default: replication - 1)",
        ),
        click.option(
            "--participant",
            "participants",
            multiple=True,
            metavar="MODULE:ATTR",
            help="add a participant's topics (commands, replies, DLQ) to the app's (repeat)",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return app_dir_option(command)


@topics.command("plan")
@_spec_options
@click.option("--write", is_flag=True, help="write the app's spec to DIR/<module>.json instead")
@click.option("--dir", "folder", default="topics", show_default=True, help="where --write writes")
@kafka_options
@json_option
def topics_plan(
    *,
    target: str,
    replication_factor: int,
    min_insync: int | None,
    app_dir: str | None,
    participants: tuple[str, ...],
    write: bool,
    folder: str,
    as_json: bool,
    **kafka: Any,
) -> int:
    """Show what apply would change on the cluster; with --write, write the app's spec. Exits 1
    when a topic is refused (apply would change nothing)."""
    from sagas.operate import write_spec

    spec, name = _spec(target, app_dir, replication_factor, min_insync, participants)
    if write:
        path = Path(folder) / name
        write_spec(spec, path)
        click.echo(f"wrote {path} ({len(spec.topics)} topics)")
        return 0
    _, changes = _plan(spec, kafka)
    if as_json:
        _print_json([c.to_dict() for c in changes])
    else:
        _print_changes(changes)
    refused = sum(c.action == "refuse" for c in changes)
    if refused:
        click.echo(
            f"{refused} refused: sagas topics apply changes nothing until they are fixed; "
            "each DETAIL says how (or write a spec that matches the cluster)",
            err=True,
        )
        return 1
    return 0


def _plan(spec: AppSpec, kafka: dict[str, Any]) -> tuple[AdminClient, list[Change]]:
    from sagas.operate import plan_changes
    from sagas.runtime.topics import connect

    settings = flag_settings(kafka["bootstrap_servers"], kafka["options"], kafka["connect_timeout"])
    admin = connect(settings)
    return admin, plan_changes(admin, spec)


def _print_changes(changes: Sequence[Change]) -> None:
    count = {a: sum(c.action == a for c in changes) for a in ("create", "alter", "refuse")}
    _table(
        f"{count['create']} to create, {count['alter']} to alter, {count['refuse']} refused",
        ("TOPIC", "ACTION", "DETAIL"),
        [(c.topic, c.action, c.detail) for c in changes],
    )


@topics.command("apply")
@_spec_options
@kafka_options
@json_option
def topics_apply(
    *,
    target: str,
    replication_factor: int,
    min_insync: int | None,
    app_dir: str | None,
    participants: tuple[str, ...],
    as_json: bool,
    **kafka: Any,
) -> int:
    """Create missing topics and alter configs to match the spec; refuse, changing nothing,
    what Kafka cannot do."""
    from sagas.operate import apply_changes

    spec, _ = _spec(target, app_dir, replication_factor, min_insync, participants)
    admin, changes = _plan(spec, kafka)
    refused = [c for c in changes if c.action == "refuse"]
    if refused:
        raise ConfigurationError(
            "nothing changed; refused: " + "; ".join(f"{c.topic} {c.detail}" for c in refused)
        )
    todo = [c for c in changes if c.action in ("create", "alter")]
    with _progress("applying", len(todo)) as bar:
        apply_changes(admin, todo, progress=lambda c: bar.advance(bar.task_ids[0]))
    if as_json:
        _print_json([c.to_dict() for c in changes])
        return 0
    _print_changes(changes)
    click.echo(
        f"applied: {sum(c.action == 'create' for c in todo)} created, "
        f"{sum(c.action == 'alter' for c in todo)} altered"
    )
    return 0
