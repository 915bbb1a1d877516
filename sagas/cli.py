"""The ``sagas`` command.

::

    sagas dev kafka [start|stop|status] [--brokers N] [--port N] [--data-dir D] [--detach]
    sagas worker MODULE:ATTR [--app-dir D] [--bootstrap-servers B] [-X k=v] ...  run sagas
    sagas participant MODULE:ATTR [...]                                    run a participant
    sagas start | status | result | list | signal | cancel  -n NAMESPACE ...  operate sagas
    sagas describe MODULE:ATTR                       steps, topics, schemas and diagram of an app
    sagas --version

Read commands print tables for people and JSON with ``--json``. Errors of kafka-sagas are printed
as one line that says what to do, with exit code 2. ``MODULE`` is imported from the working
directory (or ``--app-dir``), as ``python`` would.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import click

from sagas.engine.model import Status
from sagas.errors import ConfigurationError, SagaError
from sagas.observe.cli import metrics_option, observe_options
from sagas.observe.cli import register as register_observe
from sagas.runtime.signals import stop_on_signals

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.client import SagaClient
    from sagas.engine.model import SagaState
    from sagas.participants import Participant
    from sagas.settings import KafkaSettings

__all__ = ["cli", "load_app", "load_participant", "main"]

F = TypeVar("F", bound=Callable[..., Any])
STATUSES: tuple[str, ...] = get_args(Status)
"""Every saga status, in the engine's order (``sagas list --status``)."""
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])


# --------------------------------------------------------------------------- loading user code


def _on_import_path(app_dir: str | None) -> None:
    """Put ``app_dir`` (default: the working directory) first on the import path, as
    ``python myapp.py`` would.

    Raises:
        ConfigurationError: ``app_dir`` is not a folder.
    """
    folder = Path(app_dir) if app_dir else Path.cwd()
    if not folder.is_dir():
        raise ConfigurationError(
            f"--app-dir {app_dir}: no such folder; name the folder of your module"
        )
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _import_target(target: str, example: str, app_dir: str | None = None) -> object:
    """The object ``MODULE:ATTR`` names, imported from ``app_dir`` (default: the working directory).

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or fails while importing.
    """
    import importlib

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{target!r}: expected MODULE:ATTR, e.g. {example}")
    _on_import_path(app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r} ({exc}); run from the folder that holds it, "
                "pass --app-dir FOLDER, or install it in this environment"
            ) from exc
        raise ConfigurationError(_import_failure(module_name, exc)) from exc
    except SyntaxError as exc:
        raise ConfigurationError(
            f"{exc.filename}:{exc.lineno}: syntax error in {module_name!r}: {exc.msg}; fix the "
            "module and start again"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(_import_failure(module_name, exc)) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None


def _import_failure(module_name: str, exc: BaseException) -> str:
    """One line for an exception raised while a user's module was imported: what, and where."""
    import traceback

    installed = (str(Path(__file__).parent), sys.prefix, sys.base_prefix, "<")
    frames = traceback.extract_tb(exc.__traceback__)
    users = [f for f in frames if not f.filename.startswith(installed)] or frames
    where = f" at {users[-1].filename}:{users[-1].lineno}" if users else ""
    return (
        f"importing {module_name!r} raised {type(exc).__name__}: {exc}{where}; fix the module "
        f"(python -c 'import {module_name}' shows the traceback)"
    )


def load_app(target: str, namespace: str | None, app_dir: str | None = None) -> App:
    """Import ``MODULE:ATTR``: an App, a compiled saga, or a list of compiled sagas.

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or is of another kind.
    """
    from sagas.app import App
    from sagas.dsl.program import Program

    obj = _import_target(target, "processors.orders:app", app_dir)
    if isinstance(obj, App):
        return obj
    programs = [obj] if isinstance(obj, Program) else obj
    if isinstance(programs, list | tuple) and all(isinstance(p, Program) for p in programs):
        return App(namespace or "sagas", programs)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a sagas.App, a compiled saga "
        "(saga.compile()) or a list of them"
    )


def load_participant(target: str, app_dir: str | None = None) -> Participant:
    """Import ``MODULE:ATTR`` naming a :class:`sagas.participants.Participant`.

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or is of another kind.
    """
    from sagas.participants import Participant

    obj = _import_target(target, "myservice.handlers:participant", app_dir)
    if not isinstance(obj, Participant):
        raise ConfigurationError(
            f"{target} is a {type(obj).__name__}; expected a sagas.participants.Participant"
        )
    return obj


# --------------------------------------------------------------------------- shared options


def _logging(level: str, log_format: str = "text") -> None:
    from sagas.observe.logs import configure_logging

    configure_logging(level, log_format)


def kafka_options(command: F) -> F:
    """``--bootstrap-servers``, ``-X key=value`` and ``--connect-timeout``."""
    options = [
        click.option("--bootstrap-servers", help="overrides KAFKA_BOOTSTRAP_SERVERS"),
        click.option(
            "-X",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            help="any librdkafka setting (overrides SAGAS_KAFKA_* variables)",
        ),
        click.option(
            "--connect-timeout",
            type=float,
            help="seconds to wait for a broker at start (default 10, env SAGAS_CONNECT_TIMEOUT)",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def app_dir_option(command: F) -> F:
    """``--app-dir``: where MODULE is imported from."""
    return click.option(
        "--app-dir", help="the folder to import MODULE from (default: the working directory)"
    )(command)


def membership_option(command: F) -> F:
    """``--membership static|dynamic``: how the process's consumers join their groups."""
    return click.option(
        "--membership",
        type=click.Choice(["static", "dynamic"]),
        envvar="SAGAS_MEMBERSHIP",
        help="static (the default): a process restarted with its id takes its partitions back "
        "at once; dynamic: they come back after the 10 s session timeout (env SAGAS_MEMBERSHIP)",
    )(command)


def json_option(command: F) -> F:
    """``--json``: JSON for scripts instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="print JSON")(command)


def flag_settings(
    bootstrap_servers: str | None, options: Sequence[str], connect_timeout: float | None
) -> KafkaSettings:
    """The environment's settings with the command's flags laid over, checked by librdkafka.

    Raises:
        ConfigurationError: a flag is malformed or librdkafka refuses a setting.
    """
    from sagas.settings import KafkaSettings

    settings = KafkaSettings().with_flags(bootstrap_servers, options, connect_timeout)
    settings.validate()
    return settings


def _port(value: str) -> int:
    """A ``--query-port`` value.

    Raises:
        ConfigurationError: not a port number.
    """
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(
            f"--query-port {value}: give a port 1-65535, or 0 for any free one"
        )
    return port


# --------------------------------------------------------------------------- the command group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kafka-sagas", prog_name="sagas")
def cli() -> None:
    """Event-sourced sagas over Kafka."""


@cli.group()
def dev() -> None:
    """Developer tools."""


@dev.command("kafka")
@click.argument(
    "action", required=False, default="start", type=click.Choice(["start", "stop", "status"])
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="how many KRaft nodes (3 gives replication factor 3, min.insync.replicas 2)",
)
@click.option(
    "--port",
    type=int,
    default=9092,
    envvar="SAGAS_KAFKA_PORT",
    show_default=True,
    help="client port on 127.0.0.1, the first node's in a cluster (env SAGAS_KAFKA_PORT)",
)
@click.option("--data-dir", help="data folder (default: <cache>/broker, or <cache>/cluster-N)")
@click.option("--cache-dir", help="jar cache (default: $KAFKA_SAGAS_CACHE or ~/.cache/kafka-sagas)")
@click.option("--kafka-version", help="Apache Kafka 4.x release")
@click.option("--detach", is_flag=True, help="return once the broker is ready and leave it running")
def dev_kafka(
    *,
    action: str,
    brokers: int,
    port: int,
    data_dir: str | None,
    cache_dir: str | None,
    kafka_version: str | None,
    detach: bool,
) -> int:
    """A local Kafka broker or cluster (jars from Maven, no Docker)."""
    from sagas.dev.cli import describe, local_kafka

    local = local_kafka(
        brokers=brokers,
        port=port,
        data_dir=data_dir,
        cache_dir=cache_dir,
        kafka_version=kafka_version,
        detach=detach or action != "start",
    )
    if action == "stop":
        if not local.is_running():
            click.echo(f"no broker runs from {local.data_dir}")
            return 0
        local.stop()
        click.echo("Kafka stopped")
        return 0
    if action == "status":
        running = local.is_running()
        click.echo(f"{'running' if running else 'stopped'}: {local.data_dir}")
        return 0 if running else 1
    if local.is_running():
        click.echo(f"a broker already runs from {local.data_dir}")
        return 0
    click.echo(f"starting {describe(local)}, data in {local.data_dir}")
    address = local.start()
    click.echo(f"Kafka is ready: KAFKA_BOOTSTRAP_SERVERS={address}")
    if detach:
        return 0
    stop = threading.Event()
    stop_on_signals(stop, "stopping the broker")
    while not stop.is_set() and local.is_running():
        stop.wait(0.5)
    click.echo("stopping Kafka")
    local.stop()
    return 0


@cli.command()
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
    from sagas.observe.cli import metrics_port_of

    _logging(log_level, log_format)
    process = WorkerProcess(
        target=target,
        namespace=namespace,
        app_dir=app_dir,
        settings=flag_settings(bootstrap_servers, options, connect_timeout),
        worker_id=worker_id,
        query_host=None if no_query else query_host,
        query_port=_port(query_port),
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
    return _supervise_workers(process, processes)


@dataclass(frozen=True)
class WorkerProcess:
    """What one ``sagas worker`` process runs (picklable: ``--processes`` sends it to each
    child)."""

    target: str
    namespace: str | None
    app_dir: str | None
    settings: KafkaSettings
    worker_id: str | None
    query_host: str | None
    query_port: int
    advertise_url: str | None
    metrics: bool
    metrics_port: int | None
    static_membership: bool
    log_level: str
    log_format: str

    def run(self, app: App | None = None) -> int:
        """Run the worker in this process until SIGTERM or Ctrl-C."""
        from sagas.observe.cli import worker_observer
        from sagas.runtime.process import run_worker

        return run_worker(
            app or load_app(self.target, self.namespace, self.app_dir),
            self.settings,
            worker_id=self.worker_id,
            query_host=self.query_host,
            query_port=self.query_port,
            advertise_url=self.advertise_url,
            observer=worker_observer(),
            metrics=self.metrics,
            metrics_port=self.metrics_port,
            static_membership=self.static_membership,
        )

    def child(self, index: int) -> WorkerProcess:
        """The ``index``-th of several: its own worker id, and fixed ports counted up."""
        from sagas.runtime.process import default_worker_id

        def nth(port: int | None) -> int | None:
            return port + index if port else port

        return replace(
            self,
            worker_id=f"{self.worker_id or default_worker_id()}-{index}",
            query_port=nth(self.query_port) or 0,
            metrics_port=nth(self.metrics_port),
        )


def _run_worker_child(process: WorkerProcess) -> None:
    """A ``--processes`` child: logging as the parent's, then the worker; exits with its code."""
    _logging(process.log_level, process.log_format)
    sys.exit(process.run())


def _supervise_workers(process: WorkerProcess, count: int) -> int:
    from sagas.runtime.supervise import supervise

    if process.advertise_url:
        raise ConfigurationError(
            "--advertise-url names one endpoint; with --processes each child serves its own: "
            "leave it out (each advertises http://<query host>:<port>) or run one process per id"
        )
    stop = threading.Event()
    stop_on_signals(stop, "stopping every worker process")
    children = [(f"worker-{i}", (process.child(i),)) for i in range(count)]
    return supervise(_run_worker_child, children, stop)


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--instance-id",
    help="stable id of this instance (default: random); each live instance needs its own",
)
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@membership_option
@observe_options
@app_dir_option
@kafka_options
def participant(
    *,
    target: str,
    instance_id: str | None,
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
    import logging
    import threading

    from sagas.observe.cli import participant_observer
    from sagas.runtime.topics import connect

    _logging(log_level, log_format)
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
    metrics = participant_observer(loaded, metrics_port)
    stop = threading.Event()
    stop_on_signals(stop, "finishing the transaction in flight, then leaving")
    loaded.run(stop)
    if metrics is not None:
        metrics.shutdown()
    return 0


# --------------------------------------------------------------------------- operating sagas


@dataclass(frozen=True)
class Operator:
    """Where the operating commands act: a namespace on a cluster (flags over environment)."""

    namespace: str
    bootstrap_servers: str | None
    options: tuple[str, ...]
    connect_timeout: float | None

    @contextmanager
    def client(self, saga_type: str) -> Iterator[SagaClient]:
        """A client of the namespace once a broker answered and ``saga_type``'s topics exist.

        Raises:
            ConfigurationError: a flag is wrong, or the saga type has no topics in the namespace.
            BrokerUnavailableError: no broker answered within the connect timeout.
        """
        from sagas.app import TopicNames
        from sagas.client import SagaClient
        from sagas.kafka_io import kafka_errors
        from sagas.runtime.topics import connect

        settings = flag_settings(self.bootstrap_servers, self.options, self.connect_timeout)
        admin = connect(settings)
        inbox = TopicNames(self.namespace, saga_type).inbox
        with kafka_errors("listing topics"):
            topics = admin.list_topics(timeout=settings.connect_timeout).topics
        if inbox not in topics:
            raise ConfigurationError(
                f"no saga type {saga_type!r} in namespace {self.namespace!r} (topic {inbox} does "
                "not exist); check the type and --namespace, or start its worker once"
            )
        client = SagaClient(settings, self.namespace)
        try:
            yield client
        finally:
            client.close()


def operator_options(command: Callable[..., int]) -> Callable[..., int]:
    """``--namespace`` and the Kafka flags, handed to the command as ``op``."""

    @functools.wraps(command)
    def with_operator(
        *,
        namespace: str,
        bootstrap_servers: str | None,
        options: tuple[str, ...],
        connect_timeout: float | None,
        **kwargs: Any,
    ) -> int:
        op = Operator(namespace, bootstrap_servers, tuple(options), connect_timeout)
        return command(op=op, **kwargs)

    wrapped = kafka_options(with_operator)
    return click.option(
        "-n",
        "--namespace",
        envvar="SAGAS_NAMESPACE",
        required=True,
        help="the app's namespace (topic prefix), e.g. shop (env SAGAS_NAMESPACE)",
    )(wrapped)


def _json_arg(value: str | None, what: str, example: str) -> dict[str, Any]:
    """A JSON object given on the command line.

    Raises:
        ConfigurationError: not a JSON object.
    """
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{what} is not JSON ({exc}); give an object, e.g. {example}"
        ) from exc
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{what} must be a JSON object, e.g. {example}")
    return parsed


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _state_json(state: SagaState) -> dict[str, Any]:
    """A saga's state for scripts, without the secret of its command ids."""
    raw = state.to_dict()
    raw.pop("secret", None)
    return raw


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned for people."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@cli.command()
@click.argument("saga_type")
@click.argument("data", required=False)
@click.option(
    "--id", "saga_id", help="the saga id (default: a new one); the same id starts nothing new"
)
@json_option
@operator_options
def start(
    *,
    saga_type: str,
    data: str | None,
    saga_id: str | None,
    as_json: bool,
    op: Operator,
) -> int:
    """Start a saga of SAGA_TYPE with DATA (a JSON object); print its id."""
    payload = _json_arg(data, "DATA", '\'{"customer": "c-1"}\'')
    with op.client(saga_type) as client:
        sid = client.start(saga_type, payload, saga_id=saga_id)
    if as_json:
        _print_json({"saga_id": sid, "saga_type": saga_type})
    else:
        click.echo(sid)
    return 0


@cli.command()
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
    with op.client(saga_type) as client:
        state = client.status(saga_type, saga_id)
    if state is None:
        raise ConfigurationError(
            f"no saga {saga_id!r} of type {saga_type!r} in namespace {op.namespace!r}; "
            f"sagas list {saga_type} -n {op.namespace} shows the ones there are"
        )
    if as_json:
        _print_json(_state_json(state))
        return 0
    rows = [
        ("saga", state.saga_id),
        ("type", f"{state.saga_type} v{state.version}"),
        ("status", _status_line(state)),
        ("started", _when(state.started_ms)),
        ("updated", _when(state.updated_ms)),
        ("completed", ", ".join(state.completed) or "-"),
        ("waiting for", ", ".join(sorted(set(state.pending.values()))) or "-"),
        ("reason", state.reason or "-"),
        ("data", json.dumps(state.data, sort_keys=True, default=str)),
    ]
    if state.held is not None:  # a cancel or deadline waits for the pivot's answer
        outcome, why = state.held
        rows.append(("held", f"{why} (if the pivot was not done, the saga ends {outcome})"))
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


@cli.command()
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
    _print_json(data) if as_json else click.echo(json.dumps(data, sort_keys=True, default=str))
    return 0


@cli.command("list")
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
        _print_json([_state_json(s) for s in states])
        return 0
    rows = [(s.saga_id, s.status, s.version, _when(s.updated_ms), s.reason or "") for s in states]
    click.echo(_table(("SAGA", "STATUS", "VERSION", "UPDATED (UTC)", "REASON"), rows))
    return 0


@cli.command("signal")
@click.argument("saga_type")
@click.argument("saga_id")
@click.argument("name")
@click.argument("payload", required=False)
@operator_options
def signal_(
    *,
    saga_type: str,
    saga_id: str,
    name: str,
    payload: str | None,
    op: Operator,
) -> int:
    """Send the signal NAME (with PAYLOAD, a JSON object) to a saga."""
    body = _json_arg(payload, "PAYLOAD", '\'{"by": "ann"}\'')
    with op.client(saga_type) as client:
        client.signal(saga_type, saga_id, name, body)
    click.echo(f"signal {name!r} sent to {saga_type} {saga_id}")
    return 0


@cli.command()
@click.argument("saga_type")
@click.argument("saga_id")
@click.option("--reason", default="cancelled by an operator", show_default=True)
@operator_options
def cancel(
    *,
    saga_type: str,
    saga_id: str,
    reason: str,
    op: Operator,
) -> int:
    """Cancel a saga: its completed steps are compensated."""
    with op.client(saga_type) as client:
        client.cancel(saga_type, saga_id, reason=reason)
    click.echo(f"cancel sent to {saga_type} {saga_id}")
    return 0


# --------------------------------------------------------------------------- describe


def describe_app(app: App) -> dict[str, Any]:
    """Every saga type and version of ``app``: steps, topics, schemas and Mermaid diagram."""
    sagas: list[dict[str, Any]] = []
    for saga_type in app.saga_types:
        names = app.topics(saga_type)
        for version in app.versions(saga_type):
            program = app.program(saga_type, version)
            steps = []
            for node in program.nodes.values():
                block = node.block
                undo = node.compensation
                steps.append(
                    {
                        "name": node.name,
                        "block": type(block).__name__,
                        "kind": getattr(block, "kind", None),
                        "command": getattr(block, "command", None)
                        or getattr(getattr(block, "start", None), "command", None),
                        "topic": getattr(block, "topic", None),
                        "compensation": undo.command if undo is not None else None,
                    }
                )
            sagas.append(
                {
                    "saga_type": saga_type,
                    "version": version,
                    "deadline_ms": program.deadline_ms,
                    "steps": steps,
                    "topics": {
                        "inbox": names.inbox,
                        "state": names.state,
                        "journal": names.journal,
                        "dlq": names.dlq,
                        "commands": list(program.topics),
                    },
                    "schemas": {
                        "records": list(program.record_types),
                        "payloads": {
                            command: _schema_name(schema)
                            for command, schema in program.payload_schemas.items()
                        },
                    },
                    "mermaid": program.mermaid(),
                }
            )
    return {"namespace": app.namespace, "partitions": app.partitions, "sagas": sagas}


def _schema_name(schema: object) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name", "record"))
    if isinstance(schema, type):
        return f"{schema.__module__}.{schema.__qualname__}"
    return str(schema)


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--namespace", help="topic prefix when the target is not an App")
@app_dir_option
@json_option
def describe(*, target: str, namespace: str | None, app_dir: str | None, as_json: bool) -> int:
    """Steps, topics, schemas and the Mermaid diagram of each saga in an app."""
    described = describe_app(load_app(target, namespace, app_dir))
    if as_json:
        _print_json(described)
        return 0
    out = [f"namespace {described['namespace']} ({described['partitions']} partitions)"]
    for saga in described["sagas"]:
        deadline = saga["deadline_ms"]
        out.append("")
        out.append(
            f"{saga['saga_type']} v{saga['version']}"
            + (f" (deadline {deadline / 1000:g} s)" if deadline else "")
        )
        rows = [
            (
                s["name"],
                s["block"],
                s["kind"] or "",
                s["command"] or "",
                s["topic"] or "",
                s["compensation"] or "",
            )
            for s in saga["steps"]
        ]
        out.append(_table(("STEP", "BLOCK", "KIND", "COMMAND", "TOPIC", "COMPENSATION"), rows))
        topics = saga["topics"]
        out.append(
            f"topics: {topics['inbox']}, {topics['state']}, {topics['journal']}, {topics['dlq']}"
            f"; commands to {', '.join(topics['commands']) or '-'}"
        )
        payloads = saga["schemas"]["payloads"]
        out.append(
            f"schemas: {', '.join(saga['schemas']['records'])}"
            + "".join(f"; {c}: {n}" for c, n in sorted(payloads.items()))
        )
        out.append("```mermaid")
        out.append(saga["mermaid"].rstrip())
        out.append("```")
    click.echo("\n".join(out))
    return 0


from sagas import cli_operate  # noqa: E402, F401 - registers history, terminate, resume, dlq, topics

register_observe(cli)

# --------------------------------------------------------------------------- entry point


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
    except SagaError as exc:
        click.echo(f"sagas: error: {exc}", err=True)
        return 2
    except TimeoutError as exc:
        click.echo(f"sagas: error: {exc}; wait longer with --timeout", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
