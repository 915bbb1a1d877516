"""Every mistake a user makes on the command line gets one line that says what to do, and exit 2:
no traceback, no raw librdkafka log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sagas.dev.kafka import free_port
from tests.support.cli import MYAPP, finish, sagas, user_env


@pytest.fixture
def folder(tmp_path: Path, unique: str) -> Path:
    """A user's folder: a good app, a module with a syntax error, one that raises on import."""
    (tmp_path / "myapp.py").write_text(MYAPP.format(ns=unique))
    (tmp_path / "broken.py").write_text("app = [\n")
    (tmp_path / "raising.py").write_text("import os\n\napp = os.environ['NO_SUCH_VARIABLE_X']\n")
    return tmp_path


def one_line_error(folder: Path, *args: str, **env: str) -> str:
    """Run ``sagas ARGS``; check it exits 2 with a single line; return that line."""
    code, out = finish(sagas(*args, cwd=folder, env=user_env(**env)))
    lines = out.splitlines()
    assert code == 2, out
    assert len(lines) == 1, out
    assert lines[0].startswith("sagas: error: "), out
    return lines[0]


UNREACHABLE = f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("command", ["worker", "participant"])
def test_a_syntax_error_in_the_users_module_names_file_and_line(folder: Path, command: str) -> None:
    line = one_line_error(folder, command, "broken:app")
    assert f"{folder / 'broken.py'}:1: syntax error in 'broken'" in line


def test_an_exception_while_importing_names_it_and_where(folder: Path) -> None:
    line = one_line_error(folder, "worker", "raising:app")
    assert "importing 'raising' raised KeyError: 'NO_SUCH_VARIABLE_X'" in line
    assert f"{folder / 'raising.py'}:3" in line


@pytest.mark.parametrize("command", ["worker myapp:app", "participant myapp:p"])
@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("linger.ms=abc", "Kafka setting linger.ms='abc' is refused: Invalid value"),
        ("no.such.key=1", "Kafka setting no.such.key='1' is refused: No such configuration"),
        ("linger.ms", "must be key=value"),
    ],
)
def test_a_bad_librdkafka_setting_is_named(
    folder: Path, command: str, option: str, said: str
) -> None:
    assert said in one_line_error(folder, *command.split(), "-X", option)


@pytest.mark.parametrize("command", ["worker myapp:app", "participant myapp:p"])
def test_an_empty_bootstrap_flag_is_an_error(folder: Path, command: str) -> None:
    line = one_line_error(folder, *command.split(), "--bootstrap-servers", "")
    assert "--bootstrap-servers is empty" in line


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_query_port_out_of_range_is_named(folder: Path, port: str) -> None:
    line = one_line_error(folder, "worker", "myapp:app", "--query-port", port)
    assert f"--query-port {port}: give a port 1-65535" in line


def test_a_query_port_in_use_says_pick_another(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(folder, "worker", "myapp:app", "--query-port", str(port))
    assert f"the query port 127.0.0.1:{port} is in use; pick another" in line


@pytest.mark.parametrize("host", ["no-such-host.invalid", "203.0.113.7"])
def test_a_query_host_this_machine_cannot_listen_on_is_named(folder: Path, host: str) -> None:
    line = one_line_error(folder, "worker", "myapp:app", "--query-host", host)
    assert host in line
    assert "--query-host" in line


@pytest.mark.parametrize("command", ["worker myapp:app", "participant myapp:p"])
def test_an_unreachable_broker_is_one_line_not_a_flood(folder: Path, command: str) -> None:
    line = one_line_error(
        folder, *command.split(), "--bootstrap-servers", UNREACHABLE, "--connect-timeout", "2"
    )
    assert f"no Kafka broker answers at {UNREACHABLE} within 2 s" in line


def test_the_connect_timeout_defaults_to_ten_seconds_and_follows_the_environment(
    folder: Path,
) -> None:
    line = one_line_error(folder, "worker", "myapp:app", KAFKA_BOOTSTRAP_SERVERS=UNREACHABLE)
    assert "within 10 s" in line
    line = one_line_error(
        folder,
        "worker",
        "myapp:app",
        KAFKA_BOOTSTRAP_SERVERS=UNREACHABLE,
        SAGAS_CONNECT_TIMEOUT="1.5",
    )
    assert "within 1.5 s" in line


def test_processes_needs_a_count_of_one_or_more(folder: Path) -> None:
    line = one_line_error(folder, "worker", "myapp:app", "--processes", "0")
    assert "--processes" in line, line
    assert "0 is not in the range 1<=x<=256" in line, line


def test_processes_with_one_advertised_url_says_what_to_do(folder: Path) -> None:
    line = one_line_error(
        folder, "worker", "myapp:app", "--processes", "2", "--advertise-url", "http://w:8081"
    )
    assert "with --processes each child serves its own: leave it out" in line, line
