"""The worker's query endpoint: a saga's committed state, found by its key, in milliseconds.

Every worker process serves the sagas of the partitions it owns over HTTP (JSON):

=================================================  =============================================
``GET /sagas/<type>/<id>``                         200: the saga's snapshot; 404: no such saga in
                                                   its partition; 421: this worker does not own
                                                   that partition (ask again after a refresh).
``GET /sagas/<type>?status=<s>&limit=<n>``         the owned sagas of that type (newest first, at
                                                   most ``limit``, capped at 1000), ``total`` and
                                                   ``partitions``: which ones were searched.
``GET /health``                                    200 with the owned partitions per saga type.
``GET /metrics``                                   Prometheus metrics, when the worker counts
                                                   them (:attr:`QueryServer.metrics`); else 404.
=================================================  =============================================

With a token (``query_token``, default: the ``SAGAS_QUERY_TOKEN`` environment variable), the
``/sagas`` paths answer 401 to any request without ``Authorization: Bearer <token>``.

Snapshots are shown as :meth:`SagaState.public_dict` makes them: without the saga's secret, and
command ids without their tags (with them, a reader could answer the commands).

The store a worker answers from only ever holds committed snapshots (a batch's snapshots enter it
after its transaction commits), so an answer is what the state changelog holds.

Discovery: when a worker takes partitions, it writes ``<type>/<partition> -> url`` to the
compacted topic ``<ns>.workers``. A client reads that small topic once, then asks the owner of the
saga's partition (the key fixes the partition). A stale entry answers 421 or not at all; the client
reads the topic again, and as a last resort reads the state partition itself.

Why not ``http.server``: its threading server spends a thread per connection from the moment it
connects, and a thread waits as long as the client sends nothing, so idle or half-open connections
pile up threads without bound. Here one thread reads every connection's request head with a
selector (a connection costs a socket and a buffer while it is read), with a deadline per
connection and a cap on how many are open (the longest waiting one is dropped for a new one).
Only a complete request goes to a small pool of answering threads. Every answer closes its
connection: clients ask one question at a time, and a kept-alive connection is one more to watch.
"""

from __future__ import annotations

import contextlib
import heapq
import hmac
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from confluent_kafka import Producer

from sagas.errors import ConfigurationError
from sagas.partitioning import partition_for
from sagas.protocol import MAX_LIMIT, TOKEN_ENV, owner_key, token_from
from sagas.settings import KafkaSettings

if TYPE_CHECKING:
    from sagas.runtime.store import PartitionStore
    from sagas.runtime.worker import SagaWorker
    from sagas.serde.records import Serde

__all__ = ["QueryServer"]

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
"""The largest request head (request line and headers) read, in bytes."""

_Answer = tuple[HTTPStatus, dict[str, Any]]


@dataclass
class _Connection:
    """A connection whose request head is still being read."""

    sock: socket.socket
    peer: str
    deadline: float
    head: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]


class QueryServer:
    """Serves the committed sagas of this process's workers; advertises them in ``<ns>.workers``.

    Args:
        settings: Kafka settings (to write the owner records).
        owners_topic: the namespace's ``<ns>.workers`` topic.
        worker_id: this process's worker id, written with each owner record.
        host: the interface to listen on (``0.0.0.0`` for all).
        port: the port (0: any free one).
        advertise: the URL clients use to reach this server (default ``http://<host>:<port>``).
        query_token: the bearer token ``/sagas`` requests must carry; ``None`` reads
            ``SAGAS_QUERY_TOKEN``, ``""`` or an unset variable serves without one.
        timeout: seconds a connection gets to send its request, and again to take the answer.
        max_connections: connections open at once; past it, the one waiting longest for its
            request is closed, and complete requests beyond it answer 503.
        threads: the threads that answer complete requests.
        serde: the encodings of the app it serves (its owner records are written with it).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        owners_topic: str,
        worker_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str | None = None,
        query_token: str | None = None,
        timeout: float = 5.0,
        max_connections: int = 256,
        threads: int = 4,
        serde: Serde,
    ) -> None:
        if not timeout > 0 or max_connections < 1 or threads < 1:
            raise ConfigurationError(
                "the query endpoint needs timeout > 0, max_connections >= 1 and threads >= 1 "
                f"(got {timeout}, {max_connections}, {threads})"
            )
        self.owners_topic = owners_topic
        self.serde = serde
        self.worker_id = worker_id
        self.workers: dict[str, SagaWorker] = {}
        self.metrics: Callable[[], bytes] | None = None
        """What ``GET /metrics`` answers (Prometheus text format), if anything."""
        self.timeout = timeout
        self.max_connections = max_connections
        self._token = token_from(query_token)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        bound_host, bound_port = self._listener.getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(  # noqa: S104
            bound_host, f"[{bound_host}]" if family == socket.AF_INET6 else str(bound_host)
        )
        self.url = (advertise or f"http://{shown}:{bound_port}").rstrip("/")
        self._producer = Producer(
            settings.client_config(**{"enable.idempotence": True, "linger.ms": 5})
        )
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._reading: dict[socket.socket, _Connection] = {}  # in accept order: oldest first
        self._answering = threading.BoundedSemaphore(max_connections)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="sagas-query-answer")
        self._closing = False
        self._thread: threading.Thread | None = None

    def register(self, worker: SagaWorker) -> None:
        """Serve ``worker``'s sagas and advertise the partitions it takes."""
        self.workers[worker.saga_type] = worker
        worker.on_assigned = self.advertise

    def advertise(self, saga_type: str, partitions: Iterable[int]) -> None:
        """Write this server as the owner of ``partitions`` of ``saga_type``."""
        value = self.serde.encode_payload(
            {"url": self.url, "worker_id": self.worker_id, "at_ms": int(time.time() * 1000)}
        )
        for p in partitions:
            self._producer.produce(self.owners_topic, key=owner_key(saga_type, p), value=value)
        self._producer.poll(0)

    def start(self) -> None:
        """Serve on a background thread."""
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="sagas-query", daemon=True)
        self._thread.start()
        log.info("query endpoint at %s%s", self.url, " (token required)" if self._token else "")

    def close(self) -> None:
        """Stop serving; deliver pending owner records."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(10)
        for conn in list(self._reading.values()):
            self._drop(conn, "the endpoint closes")
        self._pool.shutdown(wait=True)  # queued requests only close their connections now
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()
        self._producer.flush(5)

    # ------------------------------------------------------------------------- answers

    def saga(self, saga_type: str, saga_id: str, partition: int | None = None) -> _Answer:
        """The answer to ``GET /sagas/<type>/<id>?partition=<p>``. The client names the
        partition (it hashed the key over the topic's actual partition count); without it, the
        app's configured count is used."""
        worker = self.workers.get(saga_type)
        if worker is None:
            return HTTPStatus.NOT_FOUND, {"error": f"this worker runs no {saga_type!r} sagas"}
        if partition is None:
            partition = partition_for(saga_id.encode(), worker.app.partitions)
        store = worker.stores.get(partition)
        if store is None:
            return HTTPStatus.MISDIRECTED_REQUEST, {
                "error": f"partition {partition} of {saga_type} is not served here",
                "partition": partition,
            }
        state = store.peek(saga_id)
        if state is None:
            return HTTPStatus.NOT_FOUND, {"error": "no such saga", "partition": partition}
        return HTTPStatus.OK, {"partition": partition, "state": state.public_dict()}

    def sagas(self, saga_type: str, status: str | None, limit: int) -> _Answer:
        """The answer to ``GET /sagas/<type>?status=&limit=``: newest updates first, at most
        ``limit`` of them (lowered to :data:`MAX_LIMIT`)."""
        worker = self.workers.get(saga_type)
        if worker is None:
            return HTTPStatus.NOT_FOUND, {"error": f"this worker runs no {saga_type!r} sagas"}
        limit = min(limit, MAX_LIMIT)
        stores = dict(worker.stores)  # a copy: the worker thread adds and drops partitions
        found: list[tuple[int, str, PartitionStore]] = []
        for store in stores.values():
            found.extend(
                (-saga.updated_ms, saga_id, store)
                for saga_id, saga in store.sagas()
                if status is None or saga.status == status
            )
        newest = heapq.nsmallest(limit, found, key=lambda f: f[:2])
        states = [f[2].peek(f[1]) for f in newest]  # only the answered sagas are decoded
        return HTTPStatus.OK, {
            "partitions": sorted(stores),
            "sagas": [s.public_dict() for s in states if s is not None],
            "total": len(found),
            "limit": limit,
        }

    def health(self) -> dict[str, Any]:
        """The answer to ``GET /health``."""
        return {
            "worker_id": self.worker_id,
            "partitions": {t: sorted(w.stores) for t, w in self.workers.items()},
        }

    def answer(self, method: str, target: str, authorization: str | None) -> _Answer:
        """The answer to one request: ``GET`` of ``target`` with that ``Authorization`` header."""
        if method != "GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET is served"}
        path, _, query_string = target.partition("#")[0].partition("?")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["health"]:
            return HTTPStatus.OK, self.health()
        if parts[0] != "sagas" or len(parts) not in (2, 3):
            return HTTPStatus.NOT_FOUND, {
                "error": "try /sagas/<type>/<id>, /sagas/<type>?status=&limit=, /health"
            }
        if self._token is not None and not _bearer_matches(authorization, self._token):
            return HTTPStatus.UNAUTHORIZED, {
                "error": "this endpoint needs 'Authorization: Bearer <token>' "
                f"(the token the worker has in {TOKEN_ENV})"
            }
        query = {k: v[-1] for k, v in parse_qs(query_string).items()}
        numbers = {k: _number(query[k]) for k in ("partition", "limit") if k in query}
        bad = [k for k, n in numbers.items() if n is None]
        if bad:
            return HTTPStatus.BAD_REQUEST, {"error": f"{bad[0]} must be a whole number"}
        if len(parts) == 3:
            return self.saga(parts[1], parts[2], numbers.get("partition"))
        limit = numbers.get("limit")
        return self.sagas(parts[1], query.get("status"), 100 if limit is None else limit)

    # ------------------------------------------------------------------------- serving

    def _serve(self) -> None:
        """Accept connections and read their request heads until closed."""
        while not self._closing:
            wait = 1.0
            if self._reading:
                oldest = next(iter(self._reading.values()))
                wait = max(0.0, min(wait, oldest.deadline - time.monotonic()))
            for key, _ in self._selector.select(wait):
                try:
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is not self._wake_r:
                        self._read(key.data)
                except Exception:  # a bug must not stop the endpoint: drop what it was on
                    log.exception("query endpoint: unexpected error, connection dropped")
                    if isinstance(key.data, _Connection):
                        self._drop(key.data, "unexpected error")
            now = time.monotonic()
            while self._reading:
                oldest = next(iter(self._reading.values()))
                if oldest.deadline > now:
                    break
                self._reject(oldest, HTTPStatus.REQUEST_TIMEOUT, "no complete request in time")

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors: make room, try again later
                log.warning("query endpoint cannot accept a connection: %s", exc)
                if self._reading:
                    self._drop(next(iter(self._reading.values())), "making room")
                else:
                    time.sleep(0.05)
                return
            sock.setblocking(False)
            if len(self._reading) >= self.max_connections:
                self._drop(next(iter(self._reading.values())), "too many connections")
            peer = f"{address[0]}:{address[1]}"
            conn = _Connection(sock, peer, time.monotonic() + self.timeout)
            self._reading[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(MAX_HEAD)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(conn, f"read failed ({exc})")
            return
        if not data:
            self._drop(conn, "the client hung up before sending a request")
            return
        conn.head += data
        if not conn.head[:1].isalpha() or not conn.head[:1].isupper():
            why = "a TLS handshake" if conn.head[:1] == b"\x16" else "not HTTP"
            self._reject(conn, HTTPStatus.BAD_REQUEST, f"{why}: this endpoint speaks plain HTTP")
            return
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > MAX_HEAD:
                self._reject(conn, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request too large")
            return
        request = _parse(bytes(conn.head[:end]))
        if isinstance(request, str):
            self._reject(conn, HTTPStatus.BAD_REQUEST, request)
            return
        self._forget(conn)
        if not self._answering.acquire(blocking=False):
            _send_now(conn.sock, _response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "busy"}))
            conn.sock.close()
            log.debug(
                "query %s %r: 503, %d requests in hand",
                conn.peer,
                request.target,
                self.max_connections,
            )
            return
        self._pool.submit(self._respond, conn, request)

    def _respond(self, conn: _Connection, request: _Request) -> None:
        """Answer a complete request on a pool thread, then close the connection."""
        try:
            if self._closing:
                return
            try:
                status, data = self._metrics_answer(request)
                if not data:
                    status, body = self.answer(
                        request.method, request.target, request.headers.get("authorization")
                    )
                    data = _response(status, body)
            except Exception:  # a bug here must not cost the client its answer
                log.exception("query %s %r failed", request.method, request.target)
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                data = _response(status, {"error": "internal error"})
            conn.sock.settimeout(self.timeout)
            try:
                conn.sock.sendall(data)
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                log.debug(
                    "query %s %r: %d not delivered (%s)", conn.peer, request.target, status, exc
                )
            else:
                log.debug("query %s %s %r: %d", conn.peer, request.method, request.target, status)
        finally:
            conn.sock.close()
            self._answering.release()

    def _metrics_answer(self, request: _Request) -> tuple[HTTPStatus, bytes]:
        """The whole response to ``GET /metrics`` (empty for any other request)."""
        path = request.target.partition("?")[0]
        if request.method != "GET" or path != "/metrics" or self.metrics is None:
            return HTTPStatus.OK, b""
        return HTTPStatus.OK, _raw(HTTPStatus.OK, self.metrics(), _PROMETHEUS_TEXT)

    def _reject(self, conn: _Connection, status: HTTPStatus, why: str) -> None:
        """Answer ``status`` without waiting (best effort) and close."""
        _send_now(conn.sock, _response(status, {"error": why}))
        self._drop(conn, f"{int(status)}, {why}")

    def _drop(self, conn: _Connection, why: str) -> None:
        self._forget(conn)
        conn.sock.close()
        log.debug("query %s: closed, %s", conn.peer, why)

    def _forget(self, conn: _Connection) -> None:
        self._reading.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)


def _parse(head: bytes) -> _Request | str:
    """The request in a head (request line and headers), or why it is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return "expected a request line 'GET /path HTTP/1.1'"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return f"malformed header line {line[:40]!r}"
        headers[name.lower()] = value.strip()
    return _Request(parts[0], parts[1], headers)


def _bearer_matches(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _response(status: HTTPStatus, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    extra = "WWW-Authenticate: Bearer\r\n" if status == HTTPStatus.UNAUTHORIZED else ""
    extra += "Allow: GET\r\n" if status == HTTPStatus.METHOD_NOT_ALLOWED else ""
    return _raw(status, data, "application/json", extra)


_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _raw(status: HTTPStatus, data: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {int(status)} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + data


def _send_now(sock: socket.socket, data: bytes) -> None:
    """Send what the socket takes without waiting, then end the stream; a client that does not
    read loses it."""
    with contextlib.suppress(OSError):
        sock.send(data)
        sock.shutdown(socket.SHUT_WR)
