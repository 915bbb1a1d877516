"""The worker's query endpoint: a saga's committed state, found by its key, in milliseconds.

Every worker process serves the sagas of the partitions it owns over HTTP (JSON):

=================================================  =============================================
``GET /sagas/<type>/<id>``                         200: the saga's snapshot; 404: no such saga in
                                                   its partition; 421: this worker does not own
                                                   that partition (ask again after a refresh).
``GET /sagas/<type>?status=<s>&limit=<n>``         the owned sagas of that type (newest first),
                                                   and ``partitions``: which ones were searched.
``GET /health``                                    200 with the owned partitions per saga type.
=================================================  =============================================

The store a worker answers from only ever holds committed snapshots (a batch's snapshots enter it
after its transaction commits), so an answer is what the state changelog holds.

Discovery: when a worker takes partitions, it writes ``<type>/<partition> -> url`` to the
compacted topic ``<ns>.workers``. A client reads that small topic once, then asks the owner of the
saga's partition (the key fixes the partition). A stale entry answers 421 or not at all; the client
reads the topic again, and as a last resort reads the state partition itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from confluent_kafka import Producer

from sagas.partitioning import partition_for
from sagas.runtime.config import KafkaSettings
from sagas.serde.records import encode_payload

if TYPE_CHECKING:
    from sagas.engine.model import SagaState
    from sagas.runtime.worker import SagaWorker

__all__ = ["QueryServer", "owner_key"]

log = logging.getLogger(__name__)

MAX_LIST = 10_000


def owner_key(saga_type: str, partition: int) -> bytes:
    """The key of a partition's owner record in ``<ns>.workers``."""
    return f"{saga_type}/{partition}".encode()


class QueryServer:
    """Serves the committed sagas of this process's workers; advertises them in ``<ns>.workers``.

    Args:
        settings: Kafka settings (to write the owner records).
        owners_topic: the namespace's ``<ns>.workers`` topic.
        worker_id: this process's worker id, written with each owner record.
        host: the interface to listen on (``0.0.0.0`` for all).
        port: the port (0: any free one).
        advertise: the URL clients use to reach this server (default ``http://<host>:<port>``).
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
    ) -> None:
        self.owners_topic = owners_topic
        self.worker_id = worker_id
        self.workers: dict[str, SagaWorker] = {}
        self._http = ThreadingHTTPServer((host, port), _handler_for(self))
        self._http.daemon_threads = True
        bound_host, bound_port = str(self._http.server_address[0]), self._http.server_address[1]
        shown = "127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host  # noqa: S104
        self.url = (advertise or f"http://{shown}:{bound_port}").rstrip("/")
        self._producer = Producer(
            settings.client_config(**{"enable.idempotence": True, "linger.ms": 5})
        )
        self._thread: threading.Thread | None = None

    def register(self, worker: SagaWorker) -> None:
        """Serve ``worker``'s sagas and advertise the partitions it takes."""
        self.workers[worker.saga_type] = worker
        worker.on_assigned = self.advertise

    def advertise(self, saga_type: str, partitions: Iterable[int]) -> None:
        """Write this server as the owner of ``partitions`` of ``saga_type``."""
        value = encode_payload(
            {"url": self.url, "worker_id": self.worker_id, "at_ms": int(time.time() * 1000)}
        )
        for p in partitions:
            self._producer.produce(self.owners_topic, key=owner_key(saga_type, p), value=value)
        self._producer.poll(0)

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sagas-query", daemon=True
        )
        self._thread.start()
        log.info("query endpoint at %s", self.url)

    def close(self) -> None:
        """Stop serving; deliver pending owner records."""
        self._http.shutdown()
        self._http.server_close()
        self._producer.flush(5)

    # ------------------------------------------------------------------------- answers

    def saga(
        self, saga_type: str, saga_id: str, partition: int | None = None
    ) -> tuple[HTTPStatus, dict[str, Any]]:
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
        state = store.states.get(saga_id)
        if state is None:
            return HTTPStatus.NOT_FOUND, {"error": "no such saga", "partition": partition}
        return HTTPStatus.OK, {"partition": partition, "state": state.to_dict()}

    def sagas(
        self, saga_type: str, status: str | None, limit: int
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        """The answer to ``GET /sagas/<type>?status=&limit=``: newest updates first."""
        worker = self.workers.get(saga_type)
        if worker is None:
            return HTTPStatus.NOT_FOUND, {"error": f"this worker runs no {saga_type!r} sagas"}
        stores = dict(worker.stores)  # a copy: the worker thread adds and drops partitions
        found: list[SagaState] = []
        for store in stores.values():
            states = list(store.states.values())  # one atomic copy under the GIL
            found.extend(s for s in states if status is None or s.status == status)
        found.sort(key=lambda s: (-s.updated_ms, s.saga_id))
        return HTTPStatus.OK, {
            "partitions": sorted(stores),
            "sagas": [s.to_dict() for s in found[:limit]],
            "total": len(found),
        }

    def health(self) -> dict[str, Any]:
        """The answer to ``GET /health``."""
        return {
            "worker_id": self.worker_id,
            "partitions": {t: sorted(w.stores) for t, w in self.workers.items()},
        }


def _handler_for(server: QueryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # the name http.server dispatches to
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            bad = [k for k in ("partition", "limit") if k in query and not query[k].isdigit()]
            if bad:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"{bad[0]} must be a number"})
            elif parts == ["health"]:
                self._send(HTTPStatus.OK, server.health())
            elif len(parts) == 3 and parts[0] == "sagas":
                partition = int(query["partition"]) if "partition" in query else None
                self._send(*server.saga(parts[1], parts[2], partition))
            elif len(parts) == 2 and parts[0] == "sagas":
                limit = min(MAX_LIST, int(query.get("limit", "100")))
                self._send(*server.sagas(parts[1], query.get("status"), limit))
            else:
                self._send(
                    HTTPStatus.NOT_FOUND,
                    {"error": "try /sagas/<type>/<id>, /sagas/<type>?status=&limit=, /health"},
                )

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # the base's name
            log.debug("query %s", format % args)

    return Handler
