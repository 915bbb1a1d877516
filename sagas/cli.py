"""The ``sagas`` command.

::

    sagas dev kafka [start] [--port N] [--data-dir D] [--detach]   run a local broker
    sagas dev kafka stop [--data-dir D]                             stop a detached broker
    sagas dev kafka status [--data-dir D]                           is it running, and where
    sagas worker MODULE:ATTR [--bootstrap-servers B] [-X k=v] [--worker-id W]   run sagas

Errors of kafka-sagas are printed as one line that says what to do, with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sagas.errors import ConfigurationError, SagaError

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.dev.kafka import LocalKafka
    from sagas.participants import Participant
    from sagas.runtime.config import KafkaSettings

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _default_data_dir() -> Path:
    from sagas.dev.kafka import default_cache_dir

    return default_cache_dir() / "broker"


def _local_kafka(args: argparse.Namespace, *, detach: bool) -> LocalKafka:
    from sagas.dev.kafka import KafkaDistribution, LocalKafka

    dist = KafkaDistribution(version=args.kafka_version)
    if args.cache_dir:
        dist = KafkaDistribution(version=args.kafka_version, cache_dir=Path(args.cache_dir))
    return LocalKafka(
        data_dir=Path(args.data_dir) if args.data_dir else _default_data_dir(),
        port=args.port,
        distribution=dist,
        die_with_parent=not detach,
    )


def _kafka_start(args: argparse.Namespace) -> int:
    broker = _local_kafka(args, detach=args.detach)
    if broker.is_running():
        print(f"a broker already runs from {broker.data_dir} (pid file {broker.pid_file})")
        return 0
    print(
        f"starting Kafka {broker.distribution.version} on {broker.bootstrap_servers} "
        f"(data in {broker.data_dir}, log in {broker.log_file})",
        flush=True,
    )
    address = broker.start()
    print(f"Kafka is ready: KAFKA_BOOTSTRAP_SERVERS={address}", flush=True)
    if args.detach:
        return 0

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and broker.is_running():
        time.sleep(0.5)
    print("stopping Kafka", flush=True)
    broker.stop()
    return 0


def _kafka_stop(args: argparse.Namespace) -> int:
    broker = _local_kafka(args, detach=True)
    if not broker.is_running():
        print(f"no broker runs from {broker.data_dir}")
        return 0
    broker.stop()
    print("Kafka stopped")
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    broker = _local_kafka(args, detach=True)
    running = broker.is_running()
    print(f"{'running' if running else 'stopped'}: {broker.data_dir}")
    return 0 if running else 1


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
        "(sagas.compile(...)) or a list of them"
    )


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _flag_settings(args: argparse.Namespace) -> KafkaSettings:
    """The settings of the environment with the command's flags laid over."""
    from sagas.runtime.config import KafkaSettings

    return KafkaSettings().with_flags(args.bootstrap_servers, args.option, args.connect_timeout)


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


def _worker(args: argparse.Namespace) -> int:
    from sagas.runtime.process import run_worker

    _logging(args.log_level)
    port = _port(args.query_port)
    settings = _flag_settings(args)
    settings.validate()
    app = load_app(args.target, args.namespace, args.app_dir)
    host = None if args.no_query else args.query_host
    return run_worker(
        app,
        settings,
        worker_id=args.worker_id,
        query_host=host,
        query_port=port,
        advertise_url=args.advertise_url,
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


def _participant(args: argparse.Namespace) -> int:
    import logging
    import threading

    from sagas.runtime.topics import connect

    _logging(args.log_level)
    flags = _flag_settings(args)
    flags.validate()
    participant = load_participant(args.target, args.app_dir)
    settings = participant.settings.under(flags)
    for key in sorted(flags.given & participant.settings.given):
        logging.getLogger("sagas.cli").warning(
            "%s: the participant's code sets it, so the flag is not used", key
        )
    settings.validate()
    connect(settings)  # a broker answers, or one line within the connect timeout
    participant.settings = settings
    if args.instance_id:
        participant.instance_id = args.instance_id
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    participant.run(stop)
    return 0


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app-dir",
        help="the folder to import MODULE from (default: the working directory)",
    )
    parser.add_argument("--bootstrap-servers", help="overrides KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument(
        "-X",
        dest="option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any librdkafka setting (overrides SAGAS_KAFKA_* variables)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        help="seconds to wait for a broker at start (default 10, env SAGAS_CONNECT_TIMEOUT)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sagas`` command."""
    parser = argparse.ArgumentParser(prog="sagas", description="Event-sourced sagas over Kafka.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="developer tools")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True, metavar="TOOL")
    kafka = dev_commands.add_parser(
        "kafka", help="a local single-node Kafka broker (jars from Maven, no Docker)"
    )
    kafka.add_argument("action", nargs="?", default="start", choices=["start", "stop", "status"])
    kafka.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SAGAS_KAFKA_PORT", "9092")),
        help="client port on 127.0.0.1 (default 9092, env SAGAS_KAFKA_PORT)",
    )
    kafka.add_argument("--data-dir", help="broker data folder (default: <cache>/broker)")
    kafka.add_argument(
        "--cache-dir", help="jar cache (default: $KAFKA_SAGAS_CACHE or ~/.cache/kafka-sagas)"
    )
    kafka.add_argument("--kafka-version", default=None, help="Apache Kafka 4.x release")
    kafka.add_argument(
        "--detach", action="store_true", help="return once the broker is ready and leave it running"
    )
    kafka.set_defaults(
        handler={"start": _kafka_start, "stop": _kafka_stop, "status": _kafka_status}
    )
    worker = commands.add_parser("worker", help="run the sagas of an app")
    worker.add_argument(
        "target", metavar="MODULE:ATTR", help="an App, a compiled saga or a list of them"
    )
    worker.add_argument("--namespace", help="topic prefix when the target is not an App")
    worker.add_argument(
        "--worker-id",
        help="stable id of this worker process (default: host "
        "name); each live worker needs its own",
    )
    worker.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.add_argument(
        "--query-host",
        default=os.environ.get("SAGAS_QUERY_HOST", "127.0.0.1"),
        help="interface of the query endpoint clients ask for status and list "
        "(default 127.0.0.1, env SAGAS_QUERY_HOST; 0.0.0.0 for all)",
    )
    worker.add_argument(
        "--query-port",
        default=os.environ.get("SAGAS_QUERY_PORT") or "0",
        help="its port (default: any free one, env SAGAS_QUERY_PORT)",
    )
    worker.add_argument(
        "--advertise-url",
        default=os.environ.get("SAGAS_ADVERTISE_URL"),
        help="the URL clients reach the endpoint at, e.g. http://worker-1:8081 "
        "(default http://<query host>:<port>, env SAGAS_ADVERTISE_URL)",
    )
    worker.add_argument(
        "--no-query", action="store_true", help="serve no query endpoint (clients read the topic)"
    )
    _kafka_flags(worker)
    worker.set_defaults(handler=_worker)
    participant = commands.add_parser(
        "participant", help="run a service's command handlers (a sagas.participants.Participant)"
    )
    participant.add_argument("target", metavar="MODULE:ATTR", help="a Participant")
    participant.add_argument(
        "--instance-id",
        help="stable id of this instance (default: random); each live instance needs its own",
    )
    participant.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    _kafka_flags(participant)
    participant.set_defaults(handler=_participant)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sagas`` command; return its exit code."""
    from sagas.dev.kafka import DEFAULT_KAFKA_VERSION

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "kafka_version", "x") is None:
        args.kafka_version = DEFAULT_KAFKA_VERSION
    handler = args.handler
    if isinstance(handler, dict):
        handler = handler[args.action]
    try:
        return int(handler(args))
    except SagaError as exc:
        print(f"sagas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
