"""What the commands of ``sagas`` share on the way in: loading a participant, the Kafka and
operator options, and command-line values (ports, JSON objects). Loading an app is
:func:`sagas.runtime.target.load_app`, which the worker's child processes use too.
"""

from __future__ import annotations

import functools
import getpass
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import click

from sagas.engine.model import Status
from sagas.errors import ConfigurationError
from sagas.runtime.target import import_target

if TYPE_CHECKING:
    from sagas.client import SagaClient
    from sagas.engine.model import SagaState
    from sagas.participants import Participant
    from sagas.settings import KafkaSettings

__all__ = [
    "LOG_LEVELS",
    "STATUSES",
    "Operator",
    "app_dir_option",
    "flag_settings",
    "json_arg",
    "json_option",
    "kafka_options",
    "load_participant",
    "membership_option",
    "operator_options",
    "parse_port",
    "parse_time",
    "setup_logging",
    "who",
    "with_options",
]

F = TypeVar("F", bound=Callable[..., Any])
STATUSES: tuple[str, ...] = get_args(Status)
"""Every saga status, in the engine's order (``sagas list --status``)."""
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])


def load_participant(target: str, app_dir: str | None = None) -> Participant:
    """Import ``MODULE:ATTR`` naming a :class:`sagas.participants.Participant`.

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or is of another kind.
    """
    from sagas.participants import Participant

    obj = import_target(target, "myservice.handlers:participant", app_dir)
    if not isinstance(obj, Participant):
        raise ConfigurationError(
            f"{target} is a {type(obj).__name__}; expected a sagas.participants.Participant"
        )
    return obj


def setup_logging(level: str, log_format: str = "text", instance: str | None = None) -> None:
    from sagas.observe.logs import configure_logging

    configure_logging(level, log_format, instance=instance)


# --------------------------------------------------------------------------- options


def with_options(command: F, options: Sequence[Callable[[F], F]]) -> F:
    """``command`` with ``options``, listed in ``--help`` in their order."""
    for option in reversed(options):
        command = option(command)
    return command


def kafka_options(command: F) -> F:
    """``--bootstrap-servers``, ``-X key=value`` and ``--connect-timeout``."""
    return with_options(
        command,
        [
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
                help="seconds to wait for a broker at start (default 10, env "
                "SAGAS_CONNECT_TIMEOUT)",
            ),
        ],
    )


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


_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time(value: str | None, option: str) -> int | None:
    """A ``--since``/``--until`` value as epoch ms: ISO 8601 (UTC unless it says), epoch ms, or
    a duration ago (``90s``, ``15m``, ``2h``, ``7d``).

    Raises:
        ConfigurationError: none of these.
    """
    if value is None:
        return None
    if value.isdigit() and len(value) > 9:
        return int(value)
    relative = _RELATIVE.match(value)
    if relative:
        return int(time.time() * 1000) - int(relative[1]) * _UNIT_MS[relative[2]]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{option} {value}: give a time as 2026-05-01T12:00 (UTC), epoch ms, or a duration "
            "ago such as 15m, 2h, 7d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def who(by: str | None) -> str:
    """A ``--by`` value: the operator's name (default: the user name)."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


# --------------------------------------------------------------------------- the operator


@dataclass(frozen=True)
class Operator:
    """Where the operating commands act: a namespace on a cluster (flags over environment)."""

    namespace: str
    bootstrap_servers: str | None
    options: tuple[str, ...]
    connect_timeout: float | None

    def settings(self) -> KafkaSettings:
        """The environment's settings with this operator's flags laid over.

        Raises:
            ConfigurationError: a flag is malformed or librdkafka refuses a setting.
        """
        return flag_settings(self.bootstrap_servers, self.options, self.connect_timeout)

    @contextmanager
    def client(self, saga_type: str) -> Iterator[SagaClient]:
        """A client of the namespace once a broker answered and ``saga_type``'s topics exist.

        Raises:
            ConfigurationError: a flag is wrong, or the saga type has no topics in the namespace.
            BrokerUnavailableError: no broker answered within the connect timeout.
        """
        from sagas.client import SagaClient
        from sagas.kafka_io import kafka_errors
        from sagas.protocol import TopicNames
        from sagas.runtime.topics import connect

        settings = self.settings()
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

    def existing(self, saga_type: str, saga_id: str) -> SagaState:
        """The committed state of a saga that exists.

        Raises:
            ConfigurationError: no such saga in the namespace (as :meth:`client` too).
        """
        with self.client(saga_type) as client:
            state = client.status(saga_type, saga_id)
            if state is None:
                _refused(client, saga_type, saga_id)
        if state is None:
            raise ConfigurationError(
                f"no saga {saga_id!r} of type {saga_type!r} in namespace {self.namespace!r}; "
                f"sagas list {saga_type} -n {self.namespace} shows the ones there are"
            )
        return state


_REFUSED_WITHIN_MS = 24 * 3600 * 1000


def _refused(client: SagaClient, saga_type: str, saga_id: str) -> None:
    """Raise when the journal says an input for this id was refused in the last day (a start
    that never became a saga: undecodable, or written to the wrong partition)."""
    import time

    from sagas.errors import InputRefusedError
    from sagas.protocol import TopicNames

    since = int(time.time() * 1000) - _REFUSED_WITHIN_MS
    history = client.history(saga_type, saga_id, since_ms=since)
    refused = [e for e in history.entries if e.event == "refused"]
    if refused:
        last = refused[-1]
        dlq = TopicNames(client.namespace, saga_type).dlq
        raise InputRefusedError(
            f"no saga {saga_id!r} of type {saga_type!r}: its {last.body.get('input')} was "
            f"refused ({last.reason}) and dead-lettered to {dlq} "
            f"(the record was {last.body.get('record')}); sagas dlq list shows it",
            saga_id=saga_id,
        )


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
