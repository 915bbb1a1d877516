"""A participant run as its own process by ``sagas participant participant_proc:participant``.

Configured by environment: ``SAGAS_TEST_GROUP`` and ``SAGAS_TEST_COMMANDS`` (the command topic).
Its handler writes one effect record per command with ``ctx.send`` to ``<commands>.effects``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sagas.participants import CommandContext, Participant
from sagas.settings import KafkaSettings

participant = Participant(KafkaSettings(), os.environ.get("SAGAS_TEST_GROUP", "test.participant"))
COMMANDS = os.environ.get("SAGAS_TEST_COMMANDS", "test.commands")


@participant.handler(COMMANDS, "Charge")
def charge(payload: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Record the charge as a Kafka effect and reply with its amount."""
    ctx.send(f"{COMMANDS}.effects", {"command_id": ctx.command_id, "amount": payload["amount"]})
    time.sleep(0.005)  # a little work, so that kills land mid-batch
    return {"charged": payload["amount"]}
