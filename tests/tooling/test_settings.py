"""KafkaSettings: one precedence (explicit argument > CLI flag > environment > default), checked
options, and librdkafka's log through Python logging."""

from __future__ import annotations

import logging

import pytest

from sagas.errors import ConfigurationError
from sagas.settings import DEFAULT_BOOTSTRAP, KafkaSettings

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "env:9092",
    "SAGAS_SCHEMA_REGISTRY_URL": "http://env-registry:8081",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "SAGAS_KAFKA_LINGER_MS": "5",
    "SAGAS_CONNECT_TIMEOUT": "3",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENV, "SAGAS_KAFKA_ACKS"]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("env")
def test_the_default_object_honours_the_environment() -> None:
    settings = KafkaSettings()
    assert settings.bootstrap_servers == "env:9092"
    assert settings.schema_registry_url == "http://env-registry:8081"
    assert settings.options == {"security.protocol": "SASL_SSL", "linger.ms": "5"}
    assert settings.connect_timeout == 3.0


@pytest.mark.usefixtures("no_env")
def test_without_environment_the_defaults_apply() -> None:
    settings = KafkaSettings()
    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP
    assert settings.schema_registry_url is None
    assert settings.options == {}
    assert settings.connect_timeout == 10.0


@pytest.mark.usefixtures("env")
def test_an_explicit_argument_wins_over_the_environment() -> None:
    settings = KafkaSettings(
        "code:9092", {"linger.ms": "1"}, schema_registry_url="", connect_timeout=7
    )
    assert settings.bootstrap_servers == "code:9092"
    assert settings.options == {"security.protocol": "SASL_SSL", "linger.ms": "1"}
    assert settings.schema_registry_url is None  # "" turns the environment's registry off
    assert settings.connect_timeout == 7


@pytest.mark.usefixtures("env")
def test_cli_flags_win_over_the_environment_but_not_over_explicit_code() -> None:
    flags = KafkaSettings().with_flags("flag:9092", ["linger.ms=9", "acks=all"], 4)
    assert flags.bootstrap_servers == "flag:9092"
    assert flags.options["linger.ms"] == "9"
    assert flags.connect_timeout == 4
    from_code = KafkaSettings(options={"acks": "1"}).under(flags)
    assert from_code.bootstrap_servers == "flag:9092"  # the code left it open
    assert from_code.options["acks"] == "1"  # the code set it
    assert from_code.options["linger.ms"] == "9"
    assert KafkaSettings("code:9092").under(flags).bootstrap_servers == "code:9092"


def test_an_empty_bootstrap_flag_is_an_error_not_ignored() -> None:
    with pytest.raises(ConfigurationError, match="--bootstrap-servers is empty"):
        KafkaSettings().with_flags("", [])
    with pytest.raises(ConfigurationError, match=r"bootstrap\.servers is empty"):
        KafkaSettings().with_flags(None, ["bootstrap.servers="])
    with pytest.raises(ConfigurationError, match=r"bootstrap\.servers is empty"):
        KafkaSettings(" ")


@pytest.mark.usefixtures("no_env")
def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    assert KafkaSettings().bootstrap_servers == DEFAULT_BOOTSTRAP


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_a_connect_timeout_must_be_positive_seconds(value: float) -> None:
    with pytest.raises(ConfigurationError, match="seconds above 0"):
        KafkaSettings().with_flags(None, [], value)


def test_a_connect_timeout_variable_must_be_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGAS_CONNECT_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="seconds above 0"):
        KafkaSettings()


@pytest.mark.parametrize(
    ("option", "named"),
    [("linger.ms=abc", "linger.ms='abc' is refused: Invalid value"), ("no.such=1", "no.such='1'")],
)
def test_librdkafka_checks_every_option(option: str, named: str) -> None:
    settings = KafkaSettings("127.0.0.1:1").with_flags(None, [option, "acks=all"])
    with pytest.raises(ConfigurationError, match=named):
        settings.validate()


def test_valid_options_pass_the_check() -> None:
    KafkaSettings("127.0.0.1:1", {"linger.ms": "5", "fetch.wait.max.ms": "10"}).validate()


def test_librdkafkas_log_goes_to_python_logging_once_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from sagas.dev.kafka import free_port

    admin = AdminClient(KafkaSettings(f"127.0.0.1:{free_port()}").client_config())
    with caplog.at_level(logging.DEBUG, logger="sagas.librdkafka"), pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)
    admin.poll(0)  # delivers the queued log
    records = [r for r in caplog.records if r.name == "sagas.librdkafka"]
    assert records, "librdkafka's log reaches Python logging"
    assert all(r.levelno <= logging.WARNING for r in records)
    loud = [r for r in records if r.levelno == logging.WARNING]
    assert len(loud) == len({r.getMessage().split("] ", 1)[1] for r in loud})
