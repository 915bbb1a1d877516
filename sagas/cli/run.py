"""The commands that run something until SIGTERM: ``sagas worker`` (the sagas of an app),
``sagas participant`` (a service's command handlers) and ``sagas ui`` (the web UI), with the
``--log-format`` and ``--metrics-port`` options the first two share."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sagas.cli.options import (
    LOG_LEVELS,
    app_dir_option,
    flag_settings,
    kafka_options,
    load_participant,
    membership_option,
    parse_port,
    setup_logging,
)
from sagas.errors import ConfigurationError
from sagas.runtime.signals import stop_on_signals
from sagas.runtime.supervise import WorkerProcess, supervise_workers
from sagas.runtime.target import load_app

if TYPE_CHECKING:
    from sagas.participants import Participant
    from sagas.runtime.observe import Observer

__all__ = [
    "UI_TOKEN_ENV",
    "metrics_option",
    "metrics_port_of",
    "observe_options",
    "participant",
    "participant_observer",
    "ui",
    "worker",
]

F = TypeVar("F", bound=Callable[..., Any])

UI_TOKEN_ENV = "SAGAS_UI_TOKEN"  # noqa: S105 - the variable's name, not a token
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
@click.option(
    "--worker-id",
    help="stable id of this worker process (default: host name); each live worker needs its own",
)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option(
    "--query-host",
    default="127.0.0.1",
    envvar="SAGAS_QUERY_HOST",
    show_default=True,
    help="interface of the query endpoint clients ask for status and list "
    "(env SAGAS_QUERY_HOST; 0.0.0.0 for all)",
)
@click.option(
    "--query-port",
    default="0",
    envvar="SAGAS_QUERY_PORT",
    help="its port (default: any free one, env SAGAS_QUERY_PORT)",
)
@click.option(
    "--advertise-url",
    envvar="SAGAS_ADVERTISE_URL",
    help="the URL clients reach the endpoint at, e.g. http://worker-1:8081 "
    "(default http://<query host>:<port>, env SAGAS_ADVERTISE_URL)",
)
@click.option("--no-query", is_flag=True, help="serve no query endpoint (clients read the topic)")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    envvar="SAGAS_WORKER_PROCESSES",
    show_default=True,
    help="worker processes to run, ids <worker-id>-0.. (one Python process uses one core; "
    "fixed query and metrics ports count up from the given one; env SAGAS_WORKER_PROCESSES)",
)
@membership_option
@metrics_option
@observe_options
@app_dir_option
@kafka_options
def worker(
    *,
    target: str,
    namespace: str | None,
    worker_id: str | None,
    processes: int,
    log_level: str,
    query_host: str,
    query_port: str,
    advertise_url: str | None,
    no_query: bool,
    membership: str | None,
    metrics: bool,
    log_format: str,
    metrics_port: str | None,
    app_dir: str | None,
    bootstrap_servers: str | None,
    options: tuple[str, ...],
    connect_timeout: float | None,
) -> int:
    """Run the sagas of an app (an App, a compiled saga or a list of them); SIGTERM exits 0."""
    from sagas.runtime.process import default_worker_id

    setup_logging(log_level, log_format, worker_id or default_worker_id())
    process = WorkerProcess(
        target=target,
        namespace=namespace,
        app_dir=app_dir,
        settings=flag_settings(bootstrap_servers, options, connect_timeout),
        worker_id=worker_id,
        query_host=None if no_query else query_host,
        query_port=parse_port(query_port),
        advertise_url=advertise_url,
        metrics=metrics,
        metrics_port=metrics_port_of(metrics_port),
        static_membership=membership != "dynamic",
        log_level=log_level,
        log_format=log_format,
    )
    app = load_app(target, namespace, app_dir)  # a wrong target fails here, before any child
    if processes == 1:
        return process.run(app)
    if advertise_url:
        raise ConfigurationError(
            "--advertise-url names one endpoint; with --processes each child serves its own: "
            "leave it out (each advertises http://<query host>:<port>) or run one process per id"
        )
    return supervise_workers(process, processes)


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--instance-id",
    help="stable id of this instance (default: random); each live instance needs its own",
)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option(
    "--create-topics",
    is_flag=True,
    help="create command topics that do not exist (default: a missing one is an error)",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    help="most async def handlers running at once (default: the participant's, 16); one "
    "saga's commands still run one after the other",
)
@membership_option
@observe_options
@app_dir_option
@kafka_options
def participant(
    *,
    target: str,
    instance_id: str | None,
    create_topics: bool,
    max_concurrency: int | None,
    log_level: str,
    membership: str | None,
    log_format: str,
    metrics_port: str | None,
    app_dir: str | None,
    bootstrap_servers: str | None,
    options: tuple[str, ...],
    connect_timeout: float | None,
) -> int:
    """Run a service's command handlers (a sagas.participants.Participant); SIGTERM exits 0."""
    from sagas.runtime.topics import connect

    setup_logging(log_level, log_format, instance_id)
    flags = flag_settings(bootstrap_servers, options, connect_timeout)
    loaded = load_participant(target, app_dir)
    settings = loaded.settings.under(flags)
    for key in sorted(flags.given & loaded.settings.given):
        logging.getLogger("sagas.cli").warning(
            "%s: the participant's code sets it, so the flag is not used", key
        )
    settings.validate()
    connect(settings)  # a broker answers, or one line within the connect timeout
    loaded.settings = settings
    if instance_id:
        loaded.instance_id = instance_id
        loaded.stable_instance = True
    if membership is not None:
        loaded.static_membership = membership == "static"
    if create_topics:
        loaded.create_topics = True
    if max_concurrency is not None:
        loaded.max_concurrency = max_concurrency
    metrics = participant_observer(loaded, metrics_port)
    stop = threading.Event()
    stop_on_signals(stop, "finishing the transaction in flight, then leaving")
    loaded.run(stop)
    if metrics is not None:
        metrics.shutdown()
    return 0


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--namespace", help="topic prefix when the target is not an App")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8088, show_default=True)
@click.option(
    "--token",
    envvar=UI_TOKEN_ENV,
    help=f"enables actions (signal, cancel, terminate, resume, replay), which then need it "
    f"(env {UI_TOKEN_ENV}); without it the UI is read-only",
)
@click.option("--dlq", "dlqs", multiple=True, help="another dead-letter topic to show (repeat)")
@click.option("--log-level", type=LOG_LEVELS, default="info")
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
    from sagas.ui.server import UiServer

    setup_logging(log_level)
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
