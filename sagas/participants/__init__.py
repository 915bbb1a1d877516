"""Participants: services that execute a saga's commands and reply.

Register a function per (command topic, command type). It receives the command's payload and a
:class:`CommandContext`; it returns the success payload, or raises
:class:`sagas.errors.CommandFailed` (retryable or not). Any other exception is a retryable
failure. The reply goes to the command's ``reply-to`` topic, keyed by saga id.

Delivery, per command id:

* **Once, with the recorded reply.** Every handled command's reply is recorded in the compacted
  topic ``<group>.<command topic>.replies`` in the same Kafka transaction as the reply itself and
  the command's consumed offset. A command id seen again (a redelivered or re-sent command) gets
  the recorded reply again; its handler does not run.
* **Kafka effects exactly once.** Records a handler writes with :meth:`CommandContext.send` go in
  that same transaction: they are committed with the reply and the offset, or not at all.
* **External effects: at least once, with a key.** Handlers run before the transaction commits.
  If the process dies (or the transaction aborts) between the handler's return and the commit,
  the command is handled again. Pass :attr:`CommandContext.idempotency_key` to the external API,
  which then sees one request however often the handler runs.

What a participant checks before it runs a handler (see the README's trust model):

* **reply-to** must name a saga inbox (``<namespace>.<saga>.inbox``, or what ``reply_to``
  allows) that exists; any other command goes to ``<group>.dlq`` with the reason, so a forged
  command can never make the participant write into a state, journal or other topic.
* **A command past its deadline** (the ``deadline`` header, epoch ms) is not executed: it gets a
  recorded ``failure`` reply with ``error = "deadline-passed"``, a definitive "not done" (a saga
  that awaits its pivot decides on it). Not when the command may have reached a handler before:
  a record below the partition's end offset when this instance took the partition over, if the
  group had committed there (its previous owner may have run the handler and died, or lost the
  partition, before committing)
  runs again with the same idempotency key, as a refusal would deny an effect that may stand.
  Set ``late_commands="execute"`` to run every late command.
* **The saga itself** cannot be checked by a participant (it does not read the worker's state):
  whoever may write a command topic may ask for its effects. Protect command topics with ACLs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sagas.dsl.nodes import SchemaSpec
from sagas.engine.ids import public_command_id
from sagas.engine.model import Outcome
from sagas.errors import CommandFailed, ConfigurationError, DecodeError, PayloadSchemaError
from sagas.protocol import (
    ATTEMPT,
    COMMAND_ID,
    COMMAND_TYPE,
    DEADLINE,
    INBOX_TOPIC,
    REPLY_TO,
    SAGA_ID,
    SAGA_TYPE,
    TRACEPARENT,
    Headers,
    RawHeaders,
    participant_dlq,
    replies_topic,
)
from sagas.runtime.observe import Observer
from sagas.serde.payloads import from_record
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings
from sagas.wire import OutRecord, header_dict, reply_record

__all__ = ["NO_REPLY", "CommandContext", "Executed", "Handler", "Job", "Participant"]

log = logging.getLogger(__name__)

Handler = Callable[[Any, "CommandContext"], Any]
"""``(payload, ctx) -> reply``: the payload is a dict, or an instance of the handler's
``payload_schema`` dataclass; the reply a dict or a dataclass (or an awaitable of one)."""


@dataclass(frozen=True)
class _Registered:
    fn: Handler
    payload_type: type[Any] | None  # a dataclass to build from the payload
    reply_schema: str | None


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
    outbox: list[OutRecord] = field(default_factory=list, repr=False, compare=False)
    serde: Serde | None = field(default=None, repr=False, compare=False)

    @property
    def log_fields(self) -> dict[str, str]:
        """The ``extra=`` of a log line about this command (saga, step, id without its tag)."""
        from sagas.observe.logs import saga_fields

        return saga_fields(self.saga_id, self.saga_type, None, self.command_id)

    @property
    def idempotency_key(self) -> str:
        """The key to pass to an external API: the command id. It is the same for every
        delivery of this command and for every resend of it because this participant was silent
        (same request); only a new attempt after an answered failure has a new one."""
        return self.command_id

    def send(
        self,
        topic: str,
        value: bytes | Mapping[str, Any],
        *,
        key: bytes | str | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Write a record in the transaction of this command's reply and offset.

        ``value`` is raw bytes, or a JSON-compatible mapping encoded as ``sagas.Payload``. The key
        defaults to the saga id. Records sent by a handler that then fails are dropped.
        """
        serde = self.serde or Serde()
        data = value if isinstance(value, bytes) else serde.encode_payload(dict(value))
        raw_key = (key or self.saga_id).encode() if not isinstance(key, bytes) else key
        self.outbox.append(OutRecord(topic, raw_key, data, list(headers or [])))


@dataclass(frozen=True)
class Executed:
    """The outcome of handling one command: its reply (``None``: no reply) and the records its
    handler sent."""

    saga_id: str
    command_id: str
    reply: OutRecord | None
    effects: list[OutRecord]


@dataclass(frozen=True)
class Job:
    """A command whose handler is to run (:meth:`Participant.prepare`), and how its result or
    error becomes its :class:`Executed`."""

    serde: Serde
    ctx: CommandContext
    payload: dict[str, Any]
    registered: _Registered | None
    trace: str | None

    @property
    def asynchronous(self) -> bool:
        """Whether the handler is an ``async def`` (it may then run beside others)."""
        return self.registered is not None and inspect.iscoroutinefunction(self.registered.fn)

    async def run(self) -> Executed:
        """Run the handler on the running event loop (an ``async def`` one: awaited)."""
        h = self.registered
        if h is None:
            raise RuntimeError("a command without a handler has no job to run")
        try:
            arg = from_record(h.payload_type, self.payload) if h.payload_type else self.payload
            result = h.fn(arg, self.ctx)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return self.failed(exc)
        return self.succeeded(result)

    def reply(self, outcome: Outcome, body: dict[str, Any], schema: str | None = None) -> Executed:
        """The command's answer with this outcome and body (effects only with success)."""
        ctx = self.ctx
        rec = reply_record(
            ctx.reply_to,
            ctx.saga_id,
            ctx.command_id,
            outcome,
            body,
            schema=schema,
            serde=self.serde,
            trace=self.trace,
        )
        effects = ctx.outbox if outcome == "success" else []
        return Executed(ctx.saga_id, ctx.command_id, rec, effects)

    def failed(self, exc: Exception) -> Executed:
        """The answer to a handler that raised."""
        if isinstance(exc, CommandFailed):
            outcome: Outcome = "retryable-failure" if exc.retryable else "failure"
            return self.reply(outcome, {"error": exc.error, "message": str(exc)})
        log.exception("handler of %s failed", self.ctx.command_type, extra=self.ctx.log_fields)
        return self.reply("retryable-failure", {"error": type(exc).__name__, "message": str(exc)})

    def succeeded(self, result: Any) -> Executed:
        """The answer to a handler that returned ``result``."""
        ctx = self.ctx
        if result is NO_REPLY:
            return Executed(ctx.saga_id, ctx.command_id, None, ctx.outbox)
        is_instance = dataclasses.is_dataclass(result) and not isinstance(result, type)
        body = dataclasses.asdict(result) if is_instance else result
        schema = self.registered.reply_schema if self.registered else None
        try:
            return self.reply("success", dict(body or {}), schema)
        except PayloadSchemaError as exc:
            log.error("%s: %s", ctx.command_type, exc, extra=ctx.log_fields)
            return self.reply("failure", {"error": "reply-schema", "message": str(exc)})


class Participant:
    """Executes commands from one or more command topics.

    Args:
        settings: Kafka connection settings.
        group: the consumer group of this service's instances; also the prefix of its topics
            (``<group>.<command topic>.replies``, ``<group>.dlq``).
        instance_id: this instance's part of the ``transactional.id``. Stable across restarts of
            one instance lets a restarted instance abort what its previous life left open at once
            (otherwise the broker does after 10 s). Two live instances must never share one.
            Default: random.
        partitions: partition count of command topics that do not exist yet.
        max_batch: most commands handled per transaction.
        max_concurrency: most ``async def`` handlers running at once (at least 1). The async
            handlers of a batch run concurrently on the participant's event loop, the commands of
            one saga one after the other, in their order; the batch then commits in one
            transaction as usual. Plain (``def``) handlers run one at a time, as they come.
        replies_retention: how long a recorded reply is kept to answer a re-sent command.
        reply_to: the topics a command may name as ``reply-to`` (a regular expression matched
            against the whole name). Default: any saga inbox, ``<namespace>.<saga>.inbox``.
        late_commands: ``"reject"`` (default) answers a command whose deadline has passed with a
            ``deadline-passed`` failure without running its handler; ``"execute"`` runs it.
        clock_ms: the wall clock in epoch milliseconds (for deadlines).
        observer: told of each handled and replayed command, transactions and dead letters
            (:class:`sagas.runtime.observe.Observer`: metrics, tracing, logs).
        static_membership: with a given ``instance_id`` (the default), join as a static group
            member with it, so an instance restarted with its id gets its partitions back at
            once; ``False``: a dynamic member. Without an ``instance_id`` it is always dynamic.
        create_topics: create command topics that do not exist (with ``partitions``). Default:
            a missing command topic stops the participant at start, after waiting up to three
            connect timeouts for it (the worker of the saga that sends to it creates it, and so
            does ``sagas topics apply``), so a misspelt topic is reported, not waited on.

    The participant refuses to start when another consumer group reads one of its command topics
    (see :mod:`sagas.participants.checks`).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group: str,
        *,
        instance_id: str | None = None,
        partitions: int = 6,
        max_batch: int = 100,
        max_concurrency: int = 16,
        replies_retention: timedelta = timedelta(days=7),
        reply_to: str | re.Pattern[str] = INBOX_TOPIC,
        late_commands: Literal["reject", "execute"] = "reject",
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        observer: Observer | None = None,
        static_membership: bool = True,
        create_topics: bool = False,
    ) -> None:
        if not group:
            raise ConfigurationError("a participant needs a consumer group name")
        if late_commands not in ("reject", "execute"):
            raise ConfigurationError(
                f"late_commands must be 'reject' or 'execute', not {late_commands!r}"
            )
        try:
            self.reply_to = re.compile(reply_to) if isinstance(reply_to, str) else reply_to
        except re.error as exc:
            raise ConfigurationError(f"reply_to is not a regular expression: {exc}") from exc
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency must be a positive int (1: one handler at a time), not "
                f"{max_concurrency!r}"
            )
        self.max_concurrency = max_concurrency
        """Most ``async def`` handlers running at once."""
        self.late_commands = late_commands
        self.clock_ms = clock_ms
        self.serde = Serde.for_settings(settings)
        """The encodings of this participant's commands and replies (its own schemas)."""
        self.observer = observer
        self.settings = settings
        self.create_topics = create_topics
        """Whether missing command topics are created at start (else: reported)."""
        self.group = group
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.static_membership = static_membership
        self.stable_instance = instance_id is not None
        """Whether the instance id was given (with ``static_membership``, the group member id)."""
        self.partitions = partitions
        self.max_batch = max_batch
        self.replies_retention = replies_retention
        self._handlers: dict[tuple[str, str], _Registered] = {}
        self._unhandled: set[tuple[str, str]] = set()  # (topic, command type) logged as such
        self._loops = threading.local()
        self.handled = 0
        """Commands whose handler ran (counted once the transaction committed)."""
        self.replayed = 0
        """Commands answered from the recorded replies, their handler not run."""

    @property
    def settings(self) -> KafkaSettings:
        """Kafka connection settings. Setting them (as ``sagas participant`` does with its
        flags) also points the serde at their schema registry."""
        return self._settings

    @settings.setter
    def settings(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self.serde = self.serde.with_registry(settings.schema_registry_url)

    @property
    def topics(self) -> list[str]:
        """The command topics this participant reads."""
        return sorted({topic for topic, _ in self._handlers})

    @property
    def dlq(self) -> str:
        """Where commands that cannot be read go, with the reason in their headers."""
        return participant_dlq(self.group)

    def replies_topic(self, topic: str) -> str:
        """The compacted topic recording the replies to the commands of ``topic``."""
        return replies_topic(self.group, topic)

    def handler(
        self,
        topic: str,
        command_type: str,
        *,
        payload_schema: SchemaSpec | None = None,
        reply_schema: SchemaSpec | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: run the function for ``command_type`` commands read from ``topic``.

        Args:
            topic: the command topic.
            command_type: the ``command-type`` header it handles.
            payload_schema: the payload's Avro schema, when the saga sends one (a dataclass, an
                ``.avsc`` path or a dict). A dataclass handler receives an instance of it.
            reply_schema: the Avro schema of success replies (failures are ``sagas.Payload``).

        Raises:
            DefinitionError: a schema is invalid.
            ConfigurationError: the command type on that topic has a handler already.
        """
        if payload_schema is not None:
            self.serde.register(payload_schema)
        reply_name = self.serde.register(reply_schema) if reply_schema is not None else None
        payload_type = (
            payload_schema
            if isinstance(payload_schema, type) and dataclasses.is_dataclass(payload_schema)
            else None
        )

        def register(fn: Handler) -> Handler:
            if (topic, command_type) in self._handlers:
                raise ConfigurationError(f"{command_type!r} on {topic!r} has a handler already")
            self._handlers[(topic, command_type)] = _Registered(fn, payload_type, reply_name)
            return fn

        return register

    def _call(self, h: _Registered, payload: dict[str, Any], ctx: CommandContext) -> Any:
        arg = from_record(h.payload_type, payload) if h.payload_type is not None else payload
        result = h.fn(arg, ctx)
        if not inspect.isawaitable(result):
            return result

        async def wait() -> Any:
            return await result

        return self.event_loop().run_until_complete(wait())

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop ``async def`` handlers run on: one per thread that runs handlers,
        kept for its life (closed when :meth:`run` returns)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._loops, "loop", None)
        if loop is None:
            loop = self._loops.loop = asyncio.new_event_loop()
        return loop

    def execute(
        self,
        topic: str,
        value: bytes | None,
        headers: RawHeaders,
        *,
        seen_before: bool = False,
    ) -> Executed:
        """Run the handler of one command record; never raises for a handler's failure.

        ``seen_before``: the record may have reached a handler before (a redelivery after its
        partition changed hands): it runs even past its deadline, with the same idempotency key.

        Raises:
            DecodeError: the record is not a command (headers missing, payload unreadable), or
                its ``reply-to`` is not a topic replies may go to.
        """
        job = self.prepare(topic, value, headers, seen_before=seen_before)
        return job if isinstance(job, Executed) else self.run_job(job)

    def run_job(self, job: Job) -> Executed:
        """Run a job's handler on this thread (an ``async def`` one on :meth:`event_loop`)."""
        if job.registered is None:
            raise RuntimeError("a command without a handler has no job to run")
        try:
            result = self._call(job.registered, job.payload, job.ctx)
        except Exception as exc:
            return job.failed(exc)
        return job.succeeded(result)

    def prepare(
        self,
        topic: str,
        value: bytes | None,
        headers: RawHeaders,
        *,
        seen_before: bool = False,
    ) -> Executed | Job:
        """Check one command record: its answer when no handler is to run (past its deadline,
        no handler), else the :class:`Job` that runs its handler (see :meth:`execute`).

        Raises:
            DecodeError: as :meth:`execute`.
        """
        h = header_dict(headers)
        try:
            ctx = CommandContext(
                h[SAGA_ID],
                h.get(SAGA_TYPE, ""),
                h[COMMAND_ID],
                h[COMMAND_TYPE],
                int(h.get(ATTEMPT, "1")),
                int(h[DEADLINE]) if DEADLINE in h else None,
                h[REPLY_TO],
                serde=self.serde,
            )
        except KeyError as exc:
            raise DecodeError(f"not a command: no {exc.args[0]} header", record=value) from None
        except ValueError as exc:
            raise DecodeError(f"not a command: {exc}", record=value) from None
        if not self.reply_to.fullmatch(ctx.reply_to):
            raise DecodeError(
                f"reply-to {ctx.reply_to[:300]!r} is not a saga inbox (allowed: "
                f"{self.reply_to.pattern!r})",
                record=value,
            )
        payload = self.serde.decode_payload(value)
        registered = self._handlers.get((topic, ctx.command_type))
        job = Job(self.serde, ctx, payload, registered, h.get(TRACEPARENT))
        if (
            self.late_commands == "reject"
            and not seen_before
            and ctx.deadline_ms is not None
            and ctx.deadline_ms < self.clock_ms()
        ):
            log.warning(
                "%s: command %s came after its deadline",
                topic,
                public_command_id(ctx.command_id),
                extra=ctx.log_fields,
            )
            message = f"the saga stopped waiting at {ctx.deadline_ms}; the handler did not run"
            return job.reply("failure", {"error": "deadline-passed", "message": message})
        if registered is None:
            self._no_handler(topic, ctx)
            message = f"no handler for {ctx.command_type} on {topic}"
            return job.reply("failure", {"error": "no-handler", "message": message})
        return job

    def _no_handler(self, topic: str, ctx: CommandContext) -> None:
        """Log a command type without a handler: once per topic and type at ERROR, then at
        DEBUG (each such command gets a ``no-handler`` failure)."""
        key = (topic, ctx.command_type)
        first = key not in self._unhandled
        self._unhandled.add(key)
        handled = ", ".join(sorted(t for top, t in self._handlers if top == topic))
        log.log(
            logging.ERROR if first else logging.DEBUG,
            "%s: no handler for command type %r (handled there: %s); each such command is "
            "answered with a 'no-handler' failure, logged once per type. Register a handler for "
            "it, or let one service (one consumer group) read this topic",
            topic,
            ctx.command_type,
            handled or "nothing",
            extra=ctx.log_fields,
        )

    def run(self, stop: threading.Event) -> None:
        """Consume and handle commands until ``stop`` is set.

        Raises:
            ConfigurationError: no handlers, or a replies topic does not match its command topic.
            BrokerError: a fatal Kafka error.
        """
        if not self._handlers:
            raise ConfigurationError("the participant has no handlers; register some first")
        from sagas.participants.loop import ParticipantLoop

        self.serde.connect()  # a registry that is down or refuses a schema stops us here

        try:
            ParticipantLoop(self).run(stop)
        finally:
            loop = getattr(self._loops, "loop", None)
            if loop is not None:  # the event loop async handlers ran on, in this thread
                loop.close()
                self._loops.loop = None

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Run in a background thread inside an existing service; set the event to stop."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.run, args=(stop,), name=f"participant-{self.group}", daemon=True
        )
        thread.start()
        return thread, stop

    async def serve(self) -> None:
        """Run as an asyncio task until cancelled (Kafka I/O and handlers run on a thread;
        ``async def`` handlers run on that thread's own event loop)."""
        stop = threading.Event()
        try:
            await asyncio.to_thread(self.run, stop)
        finally:
            stop.set()
