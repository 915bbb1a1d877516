"""``sagas topics plan | apply``: declarative topic specs (``topics/<app>.json``) reconciled
with a cluster."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sagas.cli.options import (
    app_dir_option,
    flag_settings,
    json_option,
    kafka_options,
    with_options,
)
from sagas.cli.output import print_json, progress, rich_table
from sagas.errors import ConfigurationError
from sagas.runtime.target import load_app

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from sagas.operate import AppSpec, Change

__all__ = ["topics"]


@click.group()
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
    from sagas.cli.options import load_participant
    from sagas.operate import read_spec, spec_of
    from sagas.participants import Participant
    from sagas.runtime.target import import_target

    if ":" not in target or target.endswith(".json"):
        if participants:
            raise ConfigurationError(
                "--participant adds to a spec made from MODULE:ATTR; write the spec again with "
                "sagas topics plan MODULE:ATTR --participant MODULE:ATTR --write"
            )
        return read_spec(Path(target)), Path(target).name
    parts = [load_participant(p, app_dir) for p in participants]
    obj = import_target(target, "processors.orders:app", app_dir)
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
    return app_dir_option(with_options(command, options))


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
    write: bool,
    folder: str,
    as_json: bool,
    participants: tuple[str, ...],
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
        print_json([c.to_dict() for c in changes])
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
    rich_table(
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
    as_json: bool,
    participants: tuple[str, ...],
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
    with progress("applying", len(todo)) as bar:
        apply_changes(admin, todo, progress=lambda c: bar.advance(bar.task_ids[0]))
    if as_json:
        print_json([c.to_dict() for c in changes])
        return 0
    _print_changes(changes)
    click.echo(
        f"applied: {sum(c.action == 'create' for c in todo)} created, "
        f"{sum(c.action == 'alter' for c in todo)} altered"
    )
    return 0
