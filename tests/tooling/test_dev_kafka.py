"""The local broker's tooling: clear errors when Java or Maven is missing, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagas.cli import main
from sagas.dev.kafka import KafkaDistribution, LocalKafka
from sagas.errors import EnvironmentSetupError


def test_missing_maven_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java here
    with pytest.raises(EnvironmentSetupError, match=r"'mvn' was not found.*apt-get install maven"):
        KafkaDistribution(cache_dir=tmp_path / "cache").resolve()


def test_missing_java_is_named_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(
        data_dir=tmp_path / "data", distribution=KafkaDistribution(cache_dir=tmp_path / "cache")
    )
    with pytest.raises(EnvironmentSetupError, match=r"'java' was not found.*openjdk-17"):
        broker.start()


def test_a_java_older_than_17_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java = tmp_path / "java"
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalKafka(data_dir=tmp_path / "data")
    with pytest.raises(EnvironmentSetupError, match=r"needs Java 17 or newer.*Java 11"):
        broker.prepare()


def test_a_maven_failure_shows_its_output_and_leaves_no_half_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mvn = tmp_path / "mvn"
    fake_mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies' >&2\nexit 1\n")
    fake_mvn.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    dist = KafkaDistribution(version="4.1.1", cache_dir=tmp_path / "cache")
    with pytest.raises(EnvironmentSetupError, match=r"(?s)exit 1.*Could not resolve dependencies"):
        dist.resolve()
    assert not dist.is_resolved()


def test_cli_prints_one_line_errors_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(
        [
            "dev",
            "kafka",
            "start",
            "--data-dir",
            str(tmp_path / "d"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--port",
            "19999",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("sagas: error: 'java' was not found")
    assert "Traceback" not in err


def test_cli_rejects_a_wrong_argument_with_usage() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sagas.cli", "dev", "kafka", "--port", "many"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "sagas: error: Invalid value for '--port': 'many' is not a valid integer. "
        "(see sagas dev kafka --help)"
    ]


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sagas.dev.kafka import default_cache_dir

    monkeypatch.setenv("KAFKA_SAGAS_CACHE", str(tmp_path / "jars"))
    assert default_cache_dir() == tmp_path / "jars"
    monkeypatch.delenv("KAFKA_SAGAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kafka-sagas"
