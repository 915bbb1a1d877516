"""``sagas dlq list | replay``: the dead letters of a saga type or a participant group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sagas.cli.options import flag_settings, json_option, kafka_options, parse_time, with_options
from sagas.cli.output import print_json, progress, rich_table, when_text
from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from sagas.operate import DeadLetter
    from sagas.settings import KafkaSettings

__all__ = ["dlq"]


@click.group()
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
    return kafka_options(with_options(command, options))


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
        print_json([d.to_dict() for d in letters])
        return 0
    rows = [
        (
            d.offset,
            when_text(d.at_ms, millis=True),
            d.saga_id,
            d.reason_class,
            "/".join(map(str, d.source)) if d.source else "-",
            "replayed" if d.replayed else ("no value: cannot replay" if d.value_dropped else ""),
            d.reason,
        )
        for d in letters
    ]
    rich_table(
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
    with progress("replaying", len(chosen)) as bar:
        report = replay(settings, chosen, progress=lambda d: bar.advance(bar.task_ids[0]))
    if as_json:
        print_json(report.to_dict())
        return 0
    click.echo(
        f"replayed {len(report.replayed)}, skipped {len(report.skipped)} (replayed before), "
        f"refused {len(report.refused)} (no value kept: they cannot be replayed)"
    )
    return 0
