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

import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import click

from sagas.errors import ConfigurationError, SagaError
from sagas.runtime.signals import stop_on_signals

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.engine.model import SagaState
    from sagas.settings import KafkaSettings

from sagas.cli_base import (
    LOG_LEVELS,
    STATUSES,
    Operator,
    app_dir_option,
    cli,
    flag_settings,
    json_arg,
    json_option,
    kafka_options,
    load_app,
    load_participant,
    membership_option,
    operator_options,
    parse_port,
    print_json,
    setup_logging,
    state_json,
    text_table,
    when_text,
)
from sagas.observe.cli import metrics_option, observe_options
from sagas.observe.cli import register as register_observe

__all__ = ["cli", "load_app", "load_participant", "main"]


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

    setup_logging(log_level, log_format)
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
    setup_logging(process.log_level, process.log_format)
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
@click.option(
    "--create-topics",
    is_flag=True,
    help="create command topics that do not exist (default: a missing one is an error)",
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

    setup_logging(log_level, log_format)
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
    metrics = participant_observer(loaded, metrics_port)
    stop = threading.Event()
    stop_on_signals(stop, "finishing the transaction in flight, then leaving")
    loaded.run(stop)
    if metrics is not None:
        metrics.shutdown()
    return 0


# --------------------------------------------------------------------------- operating sagas


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
    payload = json_arg(data, "DATA", '\'{"customer": "c-1"}\'')
    with op.client(saga_type) as client:
        sid = client.start(saga_type, payload, saga_id=saga_id)
    if as_json:
        print_json({"saga_id": sid, "saga_type": saga_type})
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
    print_json(data) if as_json else click.echo(json.dumps(data, sort_keys=True, default=str))
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
        print_json([state_json(s) for s in states])
        return 0
    rows = [
        (s.saga_id, s.status, s.version, when_text(s.updated_ms), s.reason or "") for s in states
    ]
    click.echo(text_table(("SAGA", "STATUS", "VERSION", "UPDATED (UTC)", "REASON"), rows))
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
    body = json_arg(payload, "PAYLOAD", '\'{"by": "ann"}\'')
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
        print_json(described)
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
        out.append(text_table(("STEP", "BLOCK", "KIND", "COMMAND", "TOPIC", "COMPENSATION"), rows))
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
