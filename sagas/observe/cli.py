"""The observing part of the ``sagas`` command: ``sagas ui``, and the ``--log-format`` and
``--metrics-port`` options of ``sagas worker`` and ``sagas participant``."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from sagas.participants import Participant
    from sagas.runtime.observe import Observer

__all__ = [
    "TOKEN_ENV",
    "metrics_option",
    "metrics_port_of",
    "observe_options",
    "participant_observer",
    "register",
    "ui",
    "worker_observer",
]

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_ENV = "SAGAS_UI_TOKEN"  # noqa: S105 - the variable's name, not a token
"""The environment variable ``sagas ui`` reads its action token from."""


def metrics_port_of(value: str | None) -> int | None:
    """A ``--metrics-port`` value (None: off).

    Raises:
        ConfigurationError: not a port number.
    """
    if value is None or value == "":
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ConfigurationError(
            f"--metrics-port {value}: give a port 1-65535, or 0 for any free one"
        )
    return int(value)


def observe_options(command: F) -> F:
    """Add ``--log-format`` and ``--metrics-port`` to a command."""
    command = click.option(
        "--metrics-port",
        envvar="SAGAS_METRICS_PORT",
        help="serve Prometheus metrics at http://<host>:<port>/metrics (env SAGAS_METRICS_PORT; "
        "0: any free port; needs the observe extra)",
    )(command)
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        envvar="SAGAS_LOG_FORMAT",
        show_default=True,
        help="json: one object per line with saga_id, saga_type, step, command_id",
    )(command)


def metrics_option(command: F) -> F:
    """Add ``--metrics`` (metrics on the query endpoint) to the worker command."""
    return click.option(
        "--metrics",
        is_flag=True,
        envvar="SAGAS_METRICS",
        help="serve Prometheus metrics at /metrics of the query endpoint (needs the observe "
        "extra; --metrics-port serves them on a port of their own)",
    )(command)


def worker_observer() -> Observer:
    """What ``sagas worker`` reports to besides metrics: the saga log lines."""
    from sagas.observe.logs import SagaLogObserver

    return SagaLogObserver()


def participant_observer(participant: Participant, metrics_port: str | None) -> Any:
    """Give ``participant`` the saga log lines and, with a port, metrics served there; return
    the metrics server (or None)."""
    from sagas.observe.logs import SagaLogObserver
    from sagas.runtime.observe import Observers

    observers: list[Observer] = [SagaLogObserver()]
    if participant.observer is not None:
        observers.append(participant.observer)
    server = None
    port = metrics_port_of(metrics_port)
    if port is not None:
        from sagas.observe.metrics import PrometheusObserver, serve_metrics

        metrics = PrometheusObserver(settings=participant.settings)
        observers.insert(0, metrics)
        try:
            server = serve_metrics(metrics, port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on port {port} ({exc.strerror or exc}); pick a free "
                "port, or 0 for any (--metrics-port)"
            ) from exc
    participant.observer = Observers(observers)
    return server


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--namespace", help="topic prefix when the target is not an App")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8088, show_default=True)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help=f"enables actions (signal, cancel, terminate, resume, replay), which then need it "
    f"(env {TOKEN_ENV}); without it the UI is read-only",
)
@click.option("--dlq", "dlqs", multiple=True, help="another dead-letter topic to show (repeat)")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info"
)
@click.option("--app-dir", help="folder to import MODULE from (default: the current one)")
@click.option("--bootstrap-servers", help="overrides KAFKA_BOOTSTRAP_SERVERS")
def ui(
    *,
    target: str,
    namespace: str | None,
    host: str,
    port: int,
    token: str | None,
    dlqs: tuple[str, ...],
    log_level: str,
    app_dir: str | None,
    bootstrap_servers: str | None,
) -> int:
    """Serve a web UI of an app's sagas: list, timelines, diagrams, dead letters."""
    from sagas.cli_base import flag_settings, load_app
    from sagas.observe.logs import configure_logging
    from sagas.ui.server import UiServer

    configure_logging(log_level)
    settings = flag_settings(bootstrap_servers, (), None)
    app = load_app(target, namespace, app_dir)
    server = UiServer(
        app,
        settings,
        host=host,
        port=port,
        token=token,
        dlq_topics=dlqs,
        operator=f"ui:{os.environ.get('USER', 'operator')}",
    )
    url = server.start()
    click.echo(f"sagas UI at {url}{'' if token else ' (read-only: no --token)'}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        stop.wait()
    finally:
        server.close()
    return 0


def register(group: click.Group) -> None:
    """Add ``ui`` to the ``sagas`` command."""
    group.add_command(ui)
