"""A participant names its mistakes, and the settings a command gives it are the ones it uses
(no broker needed: the Kafka side is in tests/integration/test_participant_start.py)."""

from __future__ import annotations

import logging

import pytest

from sagas.engine.model import CommandOut
from sagas.operate import spec_of
from sagas.participants import Participant
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings
from sagas.wire import command_record, header_dict


def _command(command_type: str, n: int) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    cmd = CommandOut(
        f"s{n}:credit:1", f"s{n}", "order", "credit", command_type, "credit.commands", {}, 1, None
    )
    rec = command_record(cmd, "ns.order.inbox", serde=Serde())
    return rec.value, rec.headers


def test_a_command_type_without_a_handler_is_logged_once_per_topic_and_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    participant = Participant(KafkaSettings("127.0.0.1:1"), "svc")
    participant.handler("credit.commands", "ReserveCredit")(lambda payload, ctx: {})
    with caplog.at_level(logging.DEBUG, logger="sagas.participants"):
        for n in range(3):
            for command_type in ("Refund", "Audit"):
                executed = participant.execute("credit.commands", *_command(command_type, n))
                assert executed.reply is not None
                reply = header_dict(executed.reply.headers)
                assert reply["outcome"] == "failure"  # every such command is still answered
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"credit.commands: no handler for command type {t!r} (handled there: ReserveCredit); "
        "each such command is answered with a 'no-handler' failure, logged once per type. "
        "Register a handler for it, or let one service (one consumer group) read this topic"
        for t in ("Refund", "Audit")
    ]


def test_settings_given_later_point_the_serde_at_their_registry() -> None:
    participant = Participant(KafkaSettings("127.0.0.1:1"), "svc")
    assert participant.serde.registry_url is None
    flags = KafkaSettings().with_flags(None, ["schema.registry.url=http://registry:8081"])
    participant.settings = participant.settings.under(flags)
    assert participant.serde.registry_url == "http://registry:8081"


def test_settings_read_from_the_environment_at_import_give_way_to_flags() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "env:9092", "SAGAS_KAFKA_LINGER_MS": "5"}
    at_import = KafkaSettings().with_env(env)
    assert at_import.bootstrap_servers == "env:9092"
    flags = KafkaSettings().with_flags("flag:9092", ["linger.ms=9"])
    started = at_import.under(flags)
    assert started.bootstrap_servers == "flag:9092"
    assert started.options["linger.ms"] == "9"
    assert KafkaSettings("code:9092").with_env(env).under(flags).bootstrap_servers == "env:9092"


def test_a_spec_with_participants_holds_their_replies_and_dead_letter_topics() -> None:
    from processors import orders

    participant = Participant(KafkaSettings("127.0.0.1:1"), "shop.services", partitions=4)
    participant.handler("shop.credit.commands", "ReserveCredit")(lambda payload, ctx: {})
    participant.handler("shop.audit.commands", "Audit")(lambda payload, ctx: {})
    spec = spec_of(orders.app, replication_factor=1, participants=[participant])
    topics = {t.name: t for t in spec.topics}
    app_only = {t.name for t in spec_of(orders.app, replication_factor=1).topics}
    assert set(topics) - app_only == {
        "shop.services.dlq",
        "shop.services.shop.credit.commands.replies",
        "shop.services.shop.audit.commands.replies",
        "shop.audit.commands",
    }
    credit = topics["shop.services.shop.credit.commands.replies"]
    assert credit.partitions == topics["shop.credit.commands"].partitions == 6  # the app's
    assert credit.compacted
    assert credit.config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert topics["shop.audit.commands"].partitions == 4  # the participant's own
    alone = spec_of(None, replication_factor=1, participants=[participant])
    assert alone.namespace == "shop.services"
    assert {t.name for t in alone.topics} == {
        "shop.services.dlq",
        "shop.credit.commands",
        "shop.audit.commands",
        "shop.services.shop.credit.commands.replies",
        "shop.services.shop.audit.commands.replies",
    }
