"""What a participant checks and uses at start, on the real broker: a missing command topic is
reported (created only when asked), a second consumer group on a command topic is refused, and
``sagas participant``'s flags win over the environment a module read at import."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sagas.dev.kafka import free_port
from sagas.errors import ConfigurationError
from sagas.participants import Participant
from sagas.settings import KafkaSettings
from tests.support.kafka import create_topic

pytestmark = pytest.mark.kafka

SAGAS = str(Path(sys.executable).parent / "sagas")


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def _members(bootstrap: str, group: str) -> list[tuple[str, set[str]]]:
    """(client id, assigned topics) of each member of ``group`` on the broker at ``bootstrap``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        described = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:  # e.g. the group coordinator of a new broker still loading
        return []
    return [
        (m.client_id, {tp.topic for tp in m.assignment.topic_partitions}) for m in described.members
    ]


def _ok(payload: object, ctx: object) -> dict[str, bool]:
    return {"ok": True}


def test_a_missing_command_topic_is_reported_and_created_only_when_asked(
    bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.credti.commands"  # a typo: nobody sends there
    participant = Participant(KafkaSettings(bootstrap, connect_timeout=2), f"{unique}.svc")
    participant.handler(topic, "ReserveCredit")(_ok)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as raised:
        participant.run(threading.Event())
    assert 5 < time.monotonic() - started < 12  # three connect timeouts of 2 s
    assert str(raised.value) == (
        f"command topic {topic} does not exist (no saga has sent to it); check the topic name of "
        "the handler, start the worker of the saga that sends to it (it creates it) or run sagas "
        "topics apply, or let the participant create it: Participant(create_topics=True), sagas "
        "participant --create-topics"
    )
    assert not {topic, participant.replies_topic(topic), participant.dlq} & _topics(bootstrap)

    participant.create_topics = True
    thread, stop = participant.start()
    try:
        _until(lambda: topic in _topics(bootstrap), "the participant creates its command topic")
        _until(lambda: bool(_members(bootstrap, participant.group)), "it joins its group")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)


def test_a_second_group_on_a_command_topic_is_refused_and_a_second_instance_is_not(
    bootstrap: str, unique: str
) -> None:
    topic = f"{unique}.credit.commands"
    create_topic(bootstrap, topic, 2)
    first = Participant(KafkaSettings(bootstrap), f"{unique}.services")
    first.handler(topic, "ReserveCredit")(_ok)
    running = [first.start()]
    try:
        _until(
            lambda: any(topic in topics for _, topics in _members(bootstrap, first.group)),
            "the first group reads the topic",
        )
        other = Participant(KafkaSettings(bootstrap), f"{unique}.credit-service")
        other.handler(topic, "ReleaseCredit")(_ok)
        with pytest.raises(ConfigurationError) as raised:
            other.run(threading.Event())
        [(client_id, _)] = _members(bootstrap, first.group)
        assert str(raised.value).startswith(
            f"another consumer group, {first.group} (client {client_id} on "
        )
        assert str(raised.value).endswith(
            f"reads the command topic {topic}; so does this participant's group "
            f"{other.group}, and each group gets every command: the one without its handler "
            "answers it with a failure that can make the other's saga compensate. Serve a "
            "command topic from one group (one Participant), or give the other app its own "
            "namespace"
        )
        assert not _members(bootstrap, other.group)  # it never joined

        again = Participant(KafkaSettings(bootstrap), first.group)  # one more instance
        again.handler(topic, "ReserveCredit")(_ok)
        running.append(again.start())
        _until(lambda: len(_members(bootstrap, first.group)) == 2, "the second instance joins")
        assert all(thread.is_alive() for thread, _ in running)
    finally:
        for _, stop in running:
            stop.set()
        for thread, _ in running:
            thread.join(30)


MODULE = """\
from sagas import KafkaSettings, Participant

from_env = Participant(KafkaSettings().with_env(), "{unique}.from-env")  # at import
explicit = Participant(KafkaSettings("{bootstrap}"), "{unique}.explicit")

for p in (from_env, explicit):
    p.handler("{unique}.{{}}.commands".format(p.group.rsplit(".", 1)[1]), "Hello")(
        lambda payload, ctx: {{}}
    )
"""


def _participant(folder: Path, attr: str, env_bootstrap: str, *flags: str) -> subprocess.Popen[str]:
    env = {"PATH": str(Path(sys.executable).parent), "KAFKA_BOOTSTRAP_SERVERS": env_bootstrap}
    return subprocess.Popen(
        [SAGAS, "participant", f"svc:{attr}", "--create-topics", *flags],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("attr", ["from_env", "explicit"])
def test_the_flag_wins_over_the_environment_and_loses_to_the_code(
    tmp_path: Path, bootstrap: str, unique: str, attr: str
) -> None:
    (tmp_path / "svc.py").write_text(MODULE.format(unique=unique, bootstrap=bootstrap))
    nowhere = f"127.0.0.1:{free_port()}"
    group = f"{unique}.{attr.replace('_', '-')}"
    if attr == "from_env":  # the environment points nowhere, the flag at the broker
        proc = _participant(tmp_path, attr, nowhere, "--bootstrap-servers", bootstrap)
    else:  # the code names the broker, the flag (and the environment) point nowhere
        proc = _participant(tmp_path, attr, nowhere, "--bootstrap-servers", nowhere)
    try:
        _until(
            lambda: proc.poll() is None and bool(_members(bootstrap, group)),
            f"the participant joins {group} on the test broker",
        )
        assert f"{unique}.{group.rsplit('.', 1)[1]}.commands" in _topics(bootstrap)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    warned = "bootstrap.servers: the participant's code sets it, so the flag is not used"
    assert (warned in out) == (attr == "explicit"), out
