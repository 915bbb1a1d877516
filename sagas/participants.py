"""Participants: services that execute a saga's commands and reply.

Register a function per (command topic, command type). It receives the command's payload and a
:class:`CommandContext`; it returns the success payload, or raises
:class:`sagas.errors.CommandFailed` (retryable or not). Any other exception is a retryable
failure. The reply goes to the command's ``reply-to`` topic, keyed by saga id.

Delivery: the reply is flushed before the command's offset is committed, so a crash between the
two re-runs the handler for that command (at least once). Use ``ctx.command_id`` as the
idempotency key of the external call: it is the same for every delivery of one command attempt.
"""

from __future__ import annotations

import inspect
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from sagas.engine.model import Outcome
from sagas.errors import BrokerError, CommandFailed, ConfigurationError, DecodeError
from sagas.runtime.config import KafkaSettings
from sagas.serde.records import decode_payload
from sagas.wire import header_dict, reply_record

__all__ = ["NO_REPLY", "CommandContext", "Participant"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], "CommandContext"], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class _NoReply(dict[str, Any]):
    """The type of :data:`NO_REPLY`."""


NO_REPLY: dict[str, Any] = _NoReply()
"""Return this from a handler to send no reply now (the saga waits until its deadline, or until a
reply is sent later to ``ctx.reply_to`` with ``sagas.wire.reply_record``)."""


@dataclass(frozen=True)
class CommandContext:
    """What a handler knows about the command besides its payload."""

    saga_id: str
    saga_type: str
    command_id: str
    command_type: str
    attempt: int
    deadline_ms: int | None
    reply_to: str


class Participant:
    """Executes commands from one or more command topics.

    Args:
        settings: Kafka connection settings.
        group: the consumer group of this service's instances.
    """

    def __init__(self, settings: KafkaSettings, group: str) -> None:
        self.settings = settings
        self.group = group
        self._handlers: dict[tuple[str, str], Handler] = {}
        self.handled = 0

    def handler(self, topic: str, command_type: str) -> Callable[[Handler], Handler]:
        """Decorator: run the function for ``command_type`` commands read from ``topic``."""

        def register(fn: Handler) -> Handler:
            if (topic, command_type) in self._handlers:
                raise ConfigurationError(f"{command_type!r} on {topic!r} has a handler already")
            self._handlers[(topic, command_type)] = fn
            return fn

        return register

    def _execute(self, fn: Handler, payload: dict[str, Any], ctx: CommandContext) -> Any:
        result = fn(payload, ctx)
        if inspect.isawaitable(result):
            import asyncio

            async def wait() -> Any:
                return await result

            return asyncio.run(wait())
        return result

    def _handle(self, msg: Message) -> tuple[str, str, str, Outcome, dict[str, Any]] | None:
        try:
            h = header_dict(msg.headers())
            payload = decode_payload(msg.value())
            topic = str(msg.topic())
            ctx = CommandContext(
                h["saga-id"],
                h.get("saga-type", ""),
                h["command-id"],
                h["command-type"],
                int(h.get("attempt", "1")),
                int(h["deadline"]) if "deadline" in h else None,
                h["reply-to"],
            )
            reply_to = ctx.reply_to
        except (DecodeError, KeyError, ValueError) as exc:
            log.error("%s@%d: not a valid command, skipped: %r", msg.topic(), msg.offset(), exc)
            return None
        fn = self._handlers.get((topic, ctx.command_type))
        if fn is None:
            log.error("%s: no handler for command type %r", topic, ctx.command_type)
            return (
                reply_to,
                ctx.saga_id,
                ctx.command_id,
                "failure",
                {"error": "no-handler", "message": f"no handler for {ctx.command_type}"},
            )
        try:
            result = self._execute(fn, payload, ctx)
        except CommandFailed as exc:
            outcome: Outcome = "retryable-failure" if exc.retryable else "failure"
            return (
                reply_to,
                ctx.saga_id,
                ctx.command_id,
                outcome,
                {"error": exc.error, "message": str(exc)},
            )
        except Exception as exc:
            log.exception("handler of %s failed", ctx.command_type)
            return (
                reply_to,
                ctx.saga_id,
                ctx.command_id,
                "retryable-failure",
                {"error": type(exc).__name__, "message": str(exc)},
            )
        if result is NO_REPLY:
            return None
        return reply_to, ctx.saga_id, ctx.command_id, "success", dict(result or {})

    def run(self, stop: threading.Event) -> None:
        """Consume and handle commands until ``stop`` is set."""
        topics = sorted({topic for topic, _ in self._handlers})
        if not topics:
            raise ConfigurationError("the participant has no handlers; register some first")
        consumer = Consumer(
            self.settings.client_config(
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "session.timeout.ms": 10000,
                    "client.id": f"{self.group}-{uuid.uuid4().hex[:6]}",
                }
            )
        )
        producer = Producer(
            self.settings.client_config(
                **{"partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 1}
            )
        )
        consumer.subscribe(topics)
        try:
            while not stop.is_set():
                first = consumer.poll(0.2)
                msgs = [first, *consumer.consume(499, 0)] if first is not None else []
                good = [m for m in msgs if m.error() is None]
                for m in msgs:
                    err = m.error()
                    if err is not None and err.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", err)
                for msg in good:
                    reply = self._handle(msg)
                    if reply is not None:
                        rec = reply_record(*reply)
                        producer.produce(
                            rec.topic, key=rec.key, value=rec.value, headers=rec.headers
                        )
                    self.handled += 1
                if good:
                    if producer.flush(30) > 0:
                        raise BrokerError("replies not acknowledged; the commands will be redone")
                    try:
                        consumer.commit(asynchronous=False)
                    except KafkaException as exc:  # e.g. the partitions moved meanwhile
                        log.warning("offsets not committed, commands will be redelivered: %s", exc)
        finally:
            consumer.close()
            producer.flush(10)

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Run in a background thread inside an existing service; set the event to stop."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(stop,), name=f"participant-{self.group}", daemon=True
        )
        thread.start()
        return thread, stop
