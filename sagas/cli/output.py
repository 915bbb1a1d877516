"""What the commands of ``sagas`` share on the way out: tables for people (plain, or rich with a
title), JSON for scripts, times in UTC, and progress bars on stderr for long work."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from sagas.engine.model import SagaState

__all__ = ["print_json", "progress", "rich_table", "state_json", "text_table", "when_text"]


def when_text(ms: int, *, millis: bool = False) -> str:
    """Epoch ``ms`` as a UTC time, to the second (or to the millisecond)."""
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text[:-3] if millis else text[:-7]


def state_json(state: SagaState) -> dict[str, Any]:
    """A saga's state for scripts, without the secret of its command ids."""
    raw = state.to_dict()
    raw.pop("secret", None)
    return raw


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned for people."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _console(err: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    return Console(
        file=stream, highlight=False, width=None if stream.isatty() else 240, soft_wrap=False
    )


def rich_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a titled table whose long cells fold (rich), its lines stripped."""
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
def progress(description: str, total: int) -> Iterator[Progress]:
    """A progress bar on stderr (shown only on a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_console(err=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        bar.add_task(description, total=total)
        yield bar
