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

import asyncio
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, Producer

from sagas.engine.model import Cancel, Input, SagaState, Signal, Start, Terminate
from sagas.errors import BrokerError, ConfigurationError, DecodeError, SagaFailedError
from sagas.kafka_io import INPUT_PRODUCER, kafka_errors, produce_and_wait, read_to_end
from sagas.partitioning import partition_for
from sagas.protocol import (
    MAX_LIMIT,
    TOKEN_ENV,
    TopicNames,
    owner_key,
    private_group,
    token_from,
    workers_topic,
)
from sagas.serde.records import Serde
from sagas.settings import KafkaSettings
from sagas.wire import input_record

if TYPE_CHECKING:
    from sagas.operate.control import Resumed
    from sagas.operate.history import History

__all__ = ["AsyncSagaClient", "SagaClient"]

_Answer = tuple[int, dict[str, Any]]


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
        produce_and_wait(self._producer, rec)

    def start(self, saga_type: str, data: dict[str, Any], *, saga_id: str | None = None) -> str:
        """Start a saga; return its id. A second start with the same id starts nothing new."""
        sid = saga_id or uuid.uuid4().hex
        self.send(saga_type, Start(sid, data))
        return sid

    def signal(self, saga_type: str, saga_id: str, name: str, payload: dict[str, Any]) -> None:
        """Send a signal to a saga waiting for it (or about to)."""
        self.send(saga_type, Signal(saga_id, name, payload))

    def cancel(self, saga_type: str, saga_id: str, reason: str = "cancelled by client") -> None:
        """Ask a saga to stop and compensate (it refuses after its pivot; see its journal)."""
        self.send(saga_type, Cancel(saga_id, reason))

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

    def status(self, saga_type: str, saga_id: str) -> SagaState | None:
        """The saga's latest committed snapshot, or ``None`` if none was written yet.

        Without the saga's secret, and its command ids without their tags (see
        :meth:`SagaState.public_dict`), whether a worker answered or the state topic was read.
        """
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

    def result(
        self, saga_type: str, saga_id: str, *, timeout: float = 60.0, poll: float = 0.5
    ) -> dict[str, Any]:
        """Wait for the saga to end; return its data if it completed.

        Raises:
            SagaFailedError: it ended compensated, failed or cancelled.
            TimeoutError: it did not end within ``timeout`` seconds.
        """
        wait = _Wait(saga_id, timeout)
        while (outcome := wait.outcome(self.status(saga_type, saga_id))) is None:
            time.sleep(poll)
        return outcome

    def close(self) -> None:
        """Flush pending writes and release the clients."""
        self._producer.flush(30)
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ------------------------------------------------------------------------- internals

    def _ask(self, url: str) -> _Answer | None:
        """GET a query endpoint: (status, JSON body), or ``None`` when it does not answer.

        Raises:
            ConfigurationError: the endpoint wants a token this client does not have.
        """
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout) as response:  # noqa: S310
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                answer = int(exc.code), json.loads(exc.read() or b"{}")
            except (OSError, ValueError, http.client.HTTPException):
                answer = int(exc.code), {}
            finally:
                exc.close()
        except (OSError, ValueError, http.client.HTTPException):
            return None
        if answer[0] == 401:
            sent = "a token it refused" if self._headers else "no token"
            where = urllib.parse.urlsplit(url).netloc
            raise ConfigurationError(
                f"the query endpoint at {where} wants a bearer token and this client sent "
                f"{sent}: give SagaClient(query_token=...) or set {TOKEN_ENV} to the workers' token"
            )
        return answer

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
        with self._lock:
            if topic not in self._partitions:
                with kafka_errors(f"reading the metadata of {topic}"):
                    metadata = self._reader_consumer().list_topics(topic, timeout=30)
                count = len(metadata.topics[topic].partitions)
                if count == 0:
                    raise BrokerError(f"{topic} does not exist: has a worker run yet?")
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
        if topic not in reader.list_topics(timeout=10).topics:
            return owners
        for msg in read_to_end(reader, topic, 0):
            key, value = msg.key(), msg.value()
            if key is not None and value:
                owners[key] = str(self.serde.decode_payload(value).get("url", ""))
        return owners

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


class _Wait:
    """The one rule of ``result()``, sync and async: a finished saga's data, ``None`` while it
    runs, an error once it failed or the time is up."""

    def __init__(self, saga_id: str, timeout: float) -> None:
        self.saga_id = saga_id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.seen = False

    def outcome(self, state: SagaState | None) -> dict[str, Any] | None:
        """The data of a completed saga, or ``None`` to look again.

        Raises:
            SagaFailedError: it ended compensated, failed, cancelled or terminated.
            TimeoutError: it did not end in time.
        """
        self.seen = self.seen or state is not None
        if state is not None and state.terminal:
            if state.status == "completed":
                return dict(state.data)
            raise SagaFailedError(state.saga_id, state.status, state.reason)
        if time.monotonic() > self.deadline:
            why = (
                ""
                if self.seen
                else " (no such saga: never started, or it ended longer ago than its retention)"
            )
            raise TimeoutError(f"saga {self.saga_id!r} did not end within {self.timeout:.0f}s{why}")
        return None


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


class AsyncSagaClient:
    """The asyncio face of :class:`SagaClient`: the same methods, awaitable.

    Blocking Kafka and HTTP calls run on worker threads (``asyncio.to_thread``), so the event loop
    never waits on I/O. (``confluent_kafka.aio.AIOProducer`` is not used: its batched produce
    refuses headers, and the wire contract needs them.)
    """

    def __init__(self, settings: KafkaSettings, namespace: str, **options: Any) -> None:
        self.sync = SagaClient(settings, namespace, **options)

    async def start(
        self, saga_type: str, data: dict[str, Any], *, saga_id: str | None = None
    ) -> str:
        """See :meth:`SagaClient.start`."""
        return await asyncio.to_thread(self.sync.start, saga_type, data, saga_id=saga_id)

    async def signal(
        self, saga_type: str, saga_id: str, name: str, payload: dict[str, Any]
    ) -> None:
        """See :meth:`SagaClient.signal`."""
        await asyncio.to_thread(self.sync.signal, saga_type, saga_id, name, payload)

    async def cancel(
        self, saga_type: str, saga_id: str, reason: str = "cancelled by client"
    ) -> None:
        """See :meth:`SagaClient.cancel`."""
        await asyncio.to_thread(self.sync.cancel, saga_type, saga_id, reason)

    async def terminate(self, saga_type: str, saga_id: str, reason: str, *, by: str) -> None:
        """See :meth:`SagaClient.terminate`."""
        await asyncio.to_thread(self.sync.terminate, saga_type, saga_id, reason, by=by)

    async def resume(
        self, saga_type: str, saga_id: str, *, by: str, step: str | None = None
    ) -> Resumed:
        """See :meth:`SagaClient.resume`."""
        return await asyncio.to_thread(self.sync.resume, saga_type, saga_id, by=by, step=step)

    async def settle(
        self, saga_type: str, saga_id: str, *, done: bool, reason: str, by: str
    ) -> SagaState:
        """See :meth:`SagaClient.settle`."""
        return await asyncio.to_thread(
            self.sync.settle, saga_type, saga_id, done=done, reason=reason, by=by
        )

    async def history(self, saga_type: str, saga_id: str, **window: int | None) -> History:
        """See :meth:`SagaClient.history`."""
        return await asyncio.to_thread(self.sync.history, saga_type, saga_id, **window)

    async def status(self, saga_type: str, saga_id: str) -> SagaState | None:
        """See :meth:`SagaClient.status`."""
        return await asyncio.to_thread(self.sync.status, saga_type, saga_id)

    async def list(
        self, saga_type: str, *, status: str | None = None, limit: int = 100
    ) -> list[SagaState]:
        """See :meth:`SagaClient.list`."""
        return await asyncio.to_thread(self.sync.list, saga_type, status=status, limit=limit)

    async def result(
        self, saga_type: str, saga_id: str, *, timeout: float = 60.0, poll: float = 0.5
    ) -> dict[str, Any]:
        """See :meth:`SagaClient.result`; waits with ``asyncio.sleep`` between looks."""
        wait = _Wait(saga_id, timeout)
        while (outcome := wait.outcome(await self.status(saga_type, saga_id))) is None:
            await asyncio.sleep(poll)
        return outcome

    async def close(self) -> None:
        """See :meth:`SagaClient.close`."""
        await asyncio.to_thread(self.sync.close)
