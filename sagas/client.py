"""Start, signal, cancel, find and list sagas from a service.

Writes go to the saga type's inbox (key = saga id). Starting is idempotent on the saga id: the
worker ignores a second start of an existing saga.

Reads come from the saga's committed state, the way a key-value store answers: the key fixes the
partition, the workers' query endpoints (:mod:`sagas.runtime.query`, advertised in
``<ns>.workers``) say who holds it, and its owner answers from memory. That takes milliseconds
however many sagas there are. When no worker answers for a partition (none running, or all started
with the endpoint off), the client reads that state partition itself: correct, but its cost grows
with the partition.

When the workers' endpoints want a bearer token (``SAGAS_QUERY_TOKEN`` on the workers), the client
sends its own ``query_token`` (default: the same environment variable).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from confluent_kafka import Consumer, KafkaException, Producer

from sagas.client_http import ask
from sagas.dsl.datatype import problems
from sagas.dsl.saga import Saga
from sagas.engine.model import Cancel, Input, SagaState, Signal, Start, Terminate
from sagas.errors import (
    BrokerError,
    ConfigurationError,
    DecodeError,
    InputRefusedError,
)
from sagas.kafka_io import INPUT_PRODUCER, kafka_errors, produce_and_wait, read_to_end
from sagas.partitioning import partition_for
from sagas.protocol import (
    DEFINITION_PREFIX,
    MAX_LIMIT,
    TopicNames,
    owner_key,
    private_group,
    token_from,
    workers_topic,
)
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings
from sagas.typed import TypedState, saga_type_of
from sagas.watch import (
    Events,
    JournalWatch,
    Verdict,
    accepted_start,
    at_rest,
    ended,
    no_answer,
    not_ended,
    outcome,
    took_cancel,
    took_signal,
)
from sagas.wire import input_record

if TYPE_CHECKING:
    from sagas.operate.control import Resumed
    from sagas.operate.history import History

__all__ = ["SagaClient", "StartWait"]

D = TypeVar("D")
StartWait = Literal["accepted", "finished"]
"""What ``start(wait=...)`` waits for: the worker journaled the start, or the saga ended."""


class SagaClient:
    """A synchronous client for one namespace; safe to share between threads.

    Args:
        settings: Kafka connection settings.
        namespace: the app's namespace (topic prefix).
        owners_ttl: how long the map of partition owners is trusted before it is read again
            (it is also read again whenever an owner does not answer for its partition).
        http_timeout: how long to wait for a worker's query endpoint (seconds).
        query_token: the bearer token the workers' query endpoints want; ``None`` reads
            ``SAGAS_QUERY_TOKEN``, ``""`` sends none.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        namespace: str,
        *,
        owners_ttl: float = 30.0,
        http_timeout: float = 2.0,
        query_token: str | None = None,
    ) -> None:
        self.settings = settings
        self.namespace = namespace
        self.owners_ttl = owners_ttl
        self.http_timeout = http_timeout
        self._headers = {"Authorization": f"Bearer {t}"} if (t := token_from(query_token)) else {}
        self.serde = Serde.for_settings(settings)
        """The encodings this client writes and reads (its own; the registry its settings name)."""
        self._producer = Producer(settings.client_config(**INPUT_PRODUCER))
        self._lock = threading.Lock()
        self._reader: Consumer | None = None
        self._owners: dict[bytes, str] = {}
        self._owners_read = -1e9
        self._partitions: dict[str, int] = {}
        self._journal: JournalWatch | None = None
        self._definitions: dict[str, dict[int, dict[str, Any]]] = {}

    # ------------------------------------------------------------------------- writes

    def send(self, saga_type: str, inp: Input) -> None:
        """Write one engine input (``Start``, ``Signal``, ``Cancel``, ``Terminate``, ``Resume``,
        ``Settle``) to the saga type's inbox and wait until Kafka has it.

        Raises:
            BrokerError: it was not acknowledged.
        """
        rec = input_record(
            TopicNames(self.namespace, saga_type).inbox, inp, self.serde, saga_type=saga_type
        )
        produce_and_wait(self._producer, rec, settings=self.settings)

    def start(
        self,
        saga_type: Saga[Any] | str,
        data: Mapping[str, Any],
        *,
        saga_id: str | None = None,
        wait: StartWait | None = None,
        timeout: float = 30.0,
    ) -> str:  # fmt: skip
        """Start a saga; return its id. ``saga_type``: its name, or its definition
        (``Saga[Order]``); ``data`` is any mapping (an ``Order``).

        Data that does not fit the saga's data type (``Saga[Order]`` with ``Order`` a
        ``TypedDict``, as its workers recorded it) is refused, and so is ``saga_id`` of a saga
        that exists: nothing is written. ``wait``:
        ``"accepted"`` returns once a worker has journaled the start, ``"finished"`` once the
        saga ended completed (see :meth:`result` for its data); both learn it from the journal,
        pushed, within milliseconds of the worker's commit.

        Raises:
            InputRefusedError: the data does not fit (each problem named), a saga with this id
                exists (its status is in the error), or the worker refused the start.
            SagaStuckError: (with ``wait``) the saga's own code raised; it waits for an operator.
            SagaFailedError: (``wait="finished"``) it ended compensated, failed or cancelled.
            TimeoutError: (with ``wait``) no answer within ``timeout`` seconds (is a worker for
                this saga type running?).
        """
        if wait not in (None, "accepted", "finished"):
            raise ConfigurationError(f"wait={wait!r}: give 'accepted', 'finished' or None")
        saga_type, data = saga_type_of(saga_type), dict(data)
        sid = saga_id or uuid.uuid4().hex
        state_topic = TopicNames(self.namespace, saga_type).state
        state_partitions = self._partitions_of(state_topic)  # no broker: said within its timeout
        self._check_data(saga_type, data)
        if saga_id is not None and state_partitions is not None:
            existing = self.status(saga_type, sid)
            if existing is not None:
                raise InputRefusedError(
                    f"saga {sid!r} of type {saga_type!r} already exists ({existing.status}): a "
                    "start with its id starts nothing; give another id, or look at it with "
                    f"sagas status {saga_type} {sid}",
                    saga_id=sid,
                    status=existing.status,
                )
        if wait is None:
            self.send(saga_type, Start(sid, data))
            return sid
        with self._watching(saga_type, sid) as events:
            self.send(saga_type, Start(sid, data))
            deadline = time.monotonic() + timeout
            self._await(saga_type, sid, events, deadline, accepted_start)
            if wait == "finished":
                self._await(saga_type, sid, events, deadline, ended, recheck=True)
                outcome(saga_type, self._settled(saga_type, sid))
        return sid

    def signal(
        self,
        saga_type: str,
        saga_id: str,
        name: str,
        payload: dict[str, Any],
        *,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Send a signal to a saga waiting for it (or about to); with ``wait``, return once
        the worker took it (received, buffered for a later wait, or kept by a stuck saga).

        Raises:
            InputRefusedError: no such saga, it has ended, or (with ``wait``) the worker
                ignored the signal; the message says which.
            TimeoutError: (with ``wait``) no answer within ``timeout`` seconds.
        """
        self._alive(saga_type, saga_id, "signal")
        self._answered(saga_type, saga_id, Signal(saga_id, name, payload), wait, timeout)

    def cancel(
        self,
        saga_type: str,
        saga_id: str,
        reason: str = "cancelled by client",
        *,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """Ask a saga to stop and compensate; with ``wait``, return once the worker took the
        cancel (it compensates, or holds the cancel until its pivot in flight answers).

        Raises:
            InputRefusedError: no such saga, it has ended, or (with ``wait``) the worker
                refused the cancel (after its pivot: the message says so).
            TimeoutError: (with ``wait``) no answer within ``timeout`` seconds.
        """
        self._alive(saga_type, saga_id, "cancel")
        self._answered(saga_type, saga_id, Cancel(saga_id, reason), wait, timeout)

    # ------------------------------------------------------------------------- reads

    def terminate(self, saga_type: str, saga_id: str, reason: str, *, by: str) -> None:
        """End a saga without compensating; the worker journals ``by`` and ``reason``."""
        self.send(saga_type, Terminate(saga_id, by, reason))

    def resume(self, saga_type: str, saga_id: str, *, by: str, step: str | None = None) -> Resumed:
        """Resume a failed saga at ``step`` (default: the step that failed), or replay the
        dead-lettered inputs of a parked one (see :func:`sagas.operate.control.resume`).

        Raises:
            ConfigurationError: no such saga, or it is neither failed nor parked.
        """
        from sagas.operate.control import resume

        state = self.status(saga_type, saga_id)
        if state is None:
            raise ConfigurationError(f"no saga {saga_id!r} of type {saga_type!r}")
        return resume(self.settings, self.namespace, state, by=by, step=step)

    def settle(
        self, saga_type: str, saga_id: str, *, done: bool, reason: str, by: str
    ) -> SagaState:
        """Settle a saga that is ``in-doubt`` (its pivot's deadline passed without a definitive
        answer): ``done`` says the pivot took effect (the saga goes on), else it did not (the
        saga compensates). The worker journals ``settled`` with ``by`` and ``reason``. Returns
        the state it was settled from (see :func:`sagas.operate.control.settle_input`).

        Raises:
            ConfigurationError: no such saga, it is not in-doubt (the worker would ignore the
                settle), or ``reason`` or ``by`` is empty.
            BrokerError: the input was not written.
        """
        from sagas.operate.control import settle_input

        state = self.status(saga_type, saga_id)
        if state is None:
            raise ConfigurationError(f"no saga {saga_id!r} of type {saga_type!r}")
        self.send(saga_type, settle_input(state, done=done, by=by, reason=reason))
        return state

    def history(
        self,
        saga_type: str,
        saga_id: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> History:
        """Every journal event of one saga, oldest first, read from the one journal partition
        it lives in, around its lifetime (give ``since_ms`` for a saga that expired).

        Raises:
            ConfigurationError: no such saga and no ``since_ms`` to search from.
        """
        from sagas.operate.history import read_history

        state = self.status(saga_type, saga_id)
        return read_history(
            self.settings,
            self.namespace,
            saga_type,
            saga_id,
            started_ms=state.started_ms if state else None,
            updated_ms=state.updated_ms if state else None,
            since_ms=since_ms,
            until_ms=until_ms,
            serde=self.serde,
        )

    @overload
    def status(self, saga_type: Saga[D], saga_id: str) -> TypedState[D] | None: ...
    @overload
    def status(self, saga_type: str, saga_id: str) -> SagaState | None: ...
    def status(self, saga_type: Saga[Any] | str, saga_id: str) -> SagaState | None:
        """The saga's latest committed snapshot, or ``None`` if none was written yet; given
        the saga's definition (``Saga[Order]``), its ``data`` is an ``Order`` for mypy.

        Without the saga's secret, and its command ids without their tags (see
        :meth:`SagaState.public_dict`), whether a worker answered or the state topic was read.
        """
        saga_type = saga_type_of(saga_type)
        topic = TopicNames(self.namespace, saga_type).state
        p = partition_for(saga_id.encode(), self._partition_count(topic))
        path = f"/sagas/{_quote(saga_type)}/{_quote(saga_id)}?partition={p}"
        for refresh in (False, True):
            url = self._owner(saga_type, p, refresh=refresh)
            answer = self._ask(url + path) if url else None
            if answer is not None and answer[0] == 200:
                return SagaState.from_dict(answer[1]["state"])
            if answer is not None and answer[0] == 404:
                return None
        latest = self._scan(topic, p, saga_id.encode())
        return latest.get(saga_id)

    def list(
        self, saga_type: str, *, status: str | None = None, limit: int = 100
    ) -> list[SagaState]:
        """Sagas of a type, newest update first; only those in ``status`` if given
        (running, completed, compensating, compensated, failed, cancelled, ...).

        At most ``limit`` of them, and never more than 1000 (what a worker answers at most).
        """
        limit = min(limit, MAX_LIMIT)
        topic = TopicNames(self.namespace, saga_type).state
        partitions = self._partition_count(topic)
        query = urllib.parse.urlencode({"limit": limit, **({"status": status} if status else {})})
        found: dict[str, SagaState] = {}
        covered: set[int] = set()
        urls = {self._owner(saga_type, p) for p in range(partitions)} - {None}
        for url in sorted(u for u in urls if u):
            answer = self._ask(f"{url}/sagas/{_quote(saga_type)}?{query}")
            if answer is None or answer[0] != 200:
                continue
            for raw in answer[1]["sagas"]:
                state = SagaState.from_dict(raw)
                found[state.saga_id] = state
            covered.update(answer[1]["partitions"])
        for p in sorted(set(range(partitions)) - covered):
            for state in self._scan(topic, p, None).values():
                if status is None or state.status == status:
                    found[state.saga_id] = state
        ordered = sorted(found.values(), key=lambda s: (-s.updated_ms, s.saga_id))
        return ordered[:limit]

    @overload
    def result(self, saga_type: Saga[D], saga_id: str, *, timeout: float = ...) -> D: ...
    @overload
    def result(self, saga_type: str, saga_id: str, *, timeout: float = ...) -> dict[str, Any]: ...
    def result(self, saga_type: Saga[Any] | str, saga_id: str, *, timeout: float = 60.0) -> Any:
        """Wait for the saga to end; return its data if it completed (given the saga's
        definition, ``Saga[Order]``, an ``Order`` for mypy). The end is pushed from
        the journal (no polling): it returns within milliseconds of the worker's commit.

        Raises:
            SagaFailedError: it ended compensated, failed, cancelled or terminated.
            SagaStuckError: its own code raised; it waits for an operator.
            TimeoutError: it did not end within ``timeout`` seconds.
        """
        saga_type = saga_type_of(saga_type)
        deadline = time.monotonic() + timeout
        with self._watching(saga_type, saga_id) as events:
            state = self.status(saga_type, saga_id)
            if state is None or not at_rest(state):
                try:
                    self._await(saga_type, saga_id, events, deadline, ended, recheck=True)
                except TimeoutError:
                    raise not_ended(saga_id, timeout, seen=state is not None) from None
                state = self._settled(saga_type, saga_id)
        return outcome(saga_type, state)

    def close(self) -> None:
        """Flush pending writes and release the clients."""
        self._producer.flush(30)
        if self._journal is not None:
            self._journal.close()
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ------------------------------------------------------------------------- internals

    def journal(self) -> JournalWatch:
        """This client's one journal reader (made on first use)."""
        with self._lock:
            if self._journal is None:
                self._journal = JournalWatch(
                    self.settings, self.namespace, self.serde, self._partition_count
                )
            return self._journal

    @contextlib.contextmanager
    def _watching(self, saga_type: str, saga_id: str) -> Iterator[Events]:
        events = Events()
        stop = self.journal().watch(saga_type, saga_id, events)
        try:
            yield events
        finally:
            stop()

    def _await(
        self,
        saga_type: str,
        saga_id: str,
        events: Events,
        deadline: float,
        verdict: Verdict,
        *,
        recheck: bool = False,
    ) -> None:
        """Wait for the event ``verdict`` accepts (it raises for a refusal). ``recheck``: look
        at the status once after a second, for an end committed while the reader started."""
        again = time.monotonic() + 1.0 if recheck else None
        while True:
            event = events.next(min(deadline, again or deadline))
            if event is not None:
                if verdict(saga_type, event):
                    return
                continue
            if again is not None and time.monotonic() >= again:
                again = None
                state = self.status(saga_type, saga_id)
                if state is not None and at_rest(state):
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(no_answer(self.namespace, saga_type, saga_id, verdict))

    def _settled(self, saga_type: str, saga_id: str) -> SagaState:
        """The state once the store has the end the journal showed (it follows the commit)."""
        until = time.monotonic() + 5.0
        while True:
            state = self.status(saga_type, saga_id)
            if state is not None and (at_rest(state) or time.monotonic() > until):
                return state
            time.sleep(0.005)

    def _alive(self, saga_type: str, saga_id: str, what: str) -> SagaState:
        """The saga's state, which must exist and not have ended, else the input is refused."""
        state = self.status(saga_type, saga_id)
        if state is None:
            raise InputRefusedError(
                f"no saga {saga_id!r} of type {saga_type!r} in namespace {self.namespace!r}: "
                f"the {what} was not sent",
                saga_id=saga_id,
            )
        if state.terminal:
            raise InputRefusedError(
                f"saga {saga_id!r} already ended {state.status}: the {what} was not sent",
                saga_id=saga_id,
                status=state.status,
            )
        return state

    def _answered(
        self, saga_type: str, saga_id: str, inp: Signal | Cancel, wait: bool, timeout: float
    ) -> None:
        if not wait:
            self.send(saga_type, inp)
            return
        verdict = took_signal(inp.name) if isinstance(inp, Signal) else took_cancel
        with self._watching(saga_type, saga_id) as events:
            self.send(saga_type, inp)
            self._await(saga_type, saga_id, events, time.monotonic() + timeout, verdict)

    def _ask(self, url: str) -> tuple[int, dict[str, Any]] | None:
        return ask(url, self._headers, self.http_timeout)

    def _reader_consumer(self) -> Consumer:
        if self._reader is None:
            self._reader = Consumer(
                self.settings.client_config(
                    **{
                        "group.id": private_group("client"),
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed",
                        "enable.partition.eof": True,
                        "fetch.wait.max.ms": 10,  # see runtime.transactions.changelog_reader
                    }
                )
            )
        return self._reader

    def _partition_count(self, topic: str) -> int:
        count = self._partitions_of(topic)
        if count is None:
            raise BrokerError(f"{topic} does not exist: has a worker run yet?")
        return count

    def _partitions_of(self, topic: str) -> int | None:
        """The partition count of ``topic``, ``None`` while it does not exist."""
        with self._lock:
            if topic not in self._partitions:
                with kafka_errors(f"reading the metadata of {topic}", self.settings):
                    timeout = self.settings.connect_timeout
                    metadata = self._reader_consumer().list_topics(topic, timeout=timeout)
                count = len(metadata.topics[topic].partitions)
                if count == 0:
                    return None
                self._partitions[topic] = count
            return self._partitions[topic]

    def _owner(self, saga_type: str, partition: int, *, refresh: bool = False) -> str | None:
        """The query URL of the worker that owns ``partition`` of ``saga_type``, if known."""
        with self._lock:
            stale = time.monotonic() - self._owners_read > self.owners_ttl
            if refresh or stale:
                try:
                    self._owners = self._read_owners()
                except (BrokerError, DecodeError, KafkaException):
                    self._owners = {}  # unreadable: fall back to reading the state
                self._owners_read = time.monotonic()
            return self._owners.get(owner_key(saga_type, partition)) or None

    def _read_owners(self) -> dict[bytes, str]:
        """``<ns>.workers``: the query URL per ``<type>/<partition>`` (empty before any worker)."""
        owners: dict[bytes, str] = {}
        topic = workers_topic(self.namespace)
        reader = self._reader_consumer()
        if topic not in reader.list_topics(timeout=self.settings.connect_timeout).topics:
            return owners
        definitions: dict[str, dict[int, dict[str, Any]]] = {}
        for msg in read_to_end(reader, topic, 0):
            key, value = msg.key(), msg.value()
            if key is None or not value:
                continue
            body = self.serde.decode_payload(value)
            if key.startswith(DEFINITION_PREFIX):  # definition/<type>/<version>
                saga_type, _, version = key[len(DEFINITION_PREFIX) :].decode().rpartition("/")
                if version.isdigit():
                    definitions.setdefault(saga_type, {})[int(version)] = body
            else:
                owners[key] = str(body.get("url", ""))
        self._definitions = definitions
        return owners

    def _check_data(self, saga_type: str, data: dict[str, Any]) -> None:
        """Refuse data that does not fit the data type of the saga's newest version, as its
        workers recorded it (nothing is checked before a worker ran, or without a type)."""
        self._owner(saga_type, 0)  # reads <ns>.workers again once it is stale
        versions = self._definitions.get(saga_type) or {}
        if not versions:
            return
        version = max(versions)
        schema = versions[version].get("data_schema")
        if not isinstance(schema, dict):
            return
        found = problems(schema, data)
        if found:
            raise InputRefusedError(
                f"the data does not fit {saga_type} v{version}'s {schema.get('title', 'data')}: "
                f"{'; '.join(found)}. Nothing was written",
                saga_id="",
            )

    def _scan(self, topic: str, partition: int, key: bytes | None) -> dict[str, SagaState]:
        """The latest snapshot per saga in one state partition (only ``key``'s, if given), as
        the query endpoint shows it (:meth:`SagaState.public_dict`)."""
        latest: dict[bytes, bytes | None] = {}
        with self._lock, kafka_errors(f"reading {topic}"):
            for msg in read_to_end(self._reader_consumer(), topic, partition):
                k = msg.key()
                if k is not None and (key is None or k == key):
                    latest[k] = msg.value()
        return {
            k.decode(): SagaState.from_dict(self.serde.decode_state(v).public_dict())
            for k, v in latest.items()
            if v is not None
        }


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
