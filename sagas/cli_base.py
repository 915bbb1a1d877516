"""What the ``sagas`` command's modules share: the command group, loading an app or a
participant, the Kafka and operator options, and output helpers. The commands live in
:mod:`sagas.cli` (run, dev, start...), :mod:`sagas.cli_operate` and :mod:`sagas.observe.cli`,
which import this module; :mod:`sagas.cli` imports them to register their commands.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import click

from sagas.engine.model import Status
from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from sagas.app import App
    from sagas.client import SagaClient
    from sagas.engine.model import SagaState
    from sagas.participants import Participant
    from sagas.settings import KafkaSettings

__all__ = [
    "STATUSES",
    "Operator",
    "app_dir_option",
    "cli",
    "flag_settings",
    "json_option",
    "kafka_options",
    "load_app",
    "load_participant",
    "membership_option",
    "operator_options",
]

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


def setup_logging(level: str, log_format: str = "text") -> None:
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


def parse_port(value: str) -> int:
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


def json_arg(value: str | None, what: str, example: str) -> dict[str, Any]:
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


def when_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def state_json(state: SagaState) -> dict[str, Any]:
    """A saga's state for scripts, without the secret of its command ids."""
    raw = state.to_dict()
    raw.pop("secret", None)
    return raw


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned for people."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
