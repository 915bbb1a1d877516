"""The ``sagas`` command: one click group, a module per command group.

::

    sagas worker | participant | ui MODULE:ATTR ...                 run (sagas.cli.run)
    sagas start | status | result | list | signal | cancel             operate sagas
    sagas history | terminate | resume | settle  -n NAMESPACE ...       (sagas.cli.operate)
    sagas dlq list | replay                                            (sagas.cli.dlq)
    sagas topics plan | apply                                          (sagas.cli.topics)
    sagas describe MODULE:ATTR      steps, topics, schemas and diagram (sagas.cli.describe)
    sagas dev kafka [start|stop|status] ...          a local broker    (sagas.cli.dev)
    sagas --version

Read commands print tables for people and JSON with ``--json``. Errors of kafka-sagas are printed
as one line that says what to do, with exit code 2 (:func:`main`). ``MODULE`` is imported from
the working directory (or ``--app-dir``), as ``python`` would. The shared options are in
:mod:`sagas.cli.options`, the shared printing in :mod:`sagas.cli.output`; the command modules
import those and nothing from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from sagas.cli import describe, dev, dlq, operate, run, topics
from sagas.errors import InputRefusedError, SagaError, SagaFailedError, SagaStuckError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kafka-sagas", prog_name="sagas")
def cli() -> None:
    """Event-sourced sagas over Kafka."""


for _command in (
    run.worker,
    run.participant,
    run.ui,
    operate.start,
    operate.status,
    operate.result,
    operate.list_,
    operate.signal_,
    operate.cancel,
    operate.history,
    operate.terminate,
    operate.resume,
    operate.settle,
    describe.describe,
    dlq.dlq,
    topics.topics,
    dev.dev,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sagas`` command; return its exit code."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="sagas",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "sagas"
        click.echo(f"sagas: error: {exc.format_message()} (see {where} --help)", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"sagas: error: {exc.format_message()}", err=True)
        return 2
    except click.Abort:
        return 130
    except (InputRefusedError, SagaStuckError, SagaFailedError) as exc:  # an answer: refused
        click.echo(f"sagas: {exc}", err=True)
        return 1
    except SagaError as exc:
        click.echo(f"sagas: error: {exc}", err=True)
        return 2
    except TimeoutError as exc:
        click.echo(f"sagas: error: {exc}; wait longer with --timeout", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)
