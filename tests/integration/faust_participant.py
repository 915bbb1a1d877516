"""A Faust participant process for the Faust tests: ``python faust_participant.py``.

Configured by environment: ``SAGAS_TEST_GROUP`` (the Faust app id and participant group),
``SAGAS_TEST_COMMANDS`` (the command topic), ``SAGAS_TEST_PARTS``, ``SAGAS_TEST_DATADIR`` and
``KAFKA_BOOTSTRAP_SERVERS``. Every handler writes one effect record per command with
``ctx.send`` to ``<commands>.effects``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust

from sagas.faust import FaustParticipant
from sagas.participants import CommandContext, Participant
from sagas.settings import KafkaSettings

GROUP = os.environ.get("SAGAS_TEST_GROUP", "test.faust")
COMMANDS = os.environ.get("SAGAS_TEST_COMMANDS", "test.commands")
EFFECTS = f"{COMMANDS}.effects"

participant = Participant(KafkaSettings(), GROUP, instance_id="faust-1")


def effect(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Record the command as a Kafka effect and reply."""
    ctx.send(EFFECTS, {"command_id": ctx.command_id, "type": ctx.command_type})
    time.sleep(0.002)  # a little work, so that kills land mid-run
    return {f"{ctx.command_type}_done": True}


for command_type in ("Charge", "ReserveCredit", "ReleaseCredit"):
    participant.handler(COMMANDS, command_type)(effect)

app = faust.App(
    GROUP,
    broker=f"kafka://{KafkaSettings().bootstrap_servers}",
    datadir=os.environ.get("SAGAS_TEST_DATADIR", "/tmp/sagas-faust-test"),
    web_enabled=False,
    topic_replication_factor=1,
    broker_session_timeout=float(os.environ.get("SAGAS_TEST_SESSION_TIMEOUT", "10")),  # not 60
    broker_heartbeat_interval=1,
)
faust_participant = FaustParticipant(
    app, participant, partitions=int(os.environ["SAGAS_TEST_PARTS"])
)


if __name__ == "__main__":
    # SAGAS_TEST_LOG=DEBUG shows each command's fate, whatever Faust does to the root logger.
    ours = logging.getLogger("sagas.faust")
    ours.addHandler(logging.StreamHandler())
    ours.setLevel(os.environ.get("SAGAS_TEST_LOG", "INFO"))
    ours.propagate = False
    faust.Worker(app, loglevel="info").execute_from_commandline()
