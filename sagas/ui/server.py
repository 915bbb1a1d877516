"""``sagas ui``: a small web server over an app's sagas, their journals and dead letters.

=====================================  ===================================================
``GET /``                              sagas with filters (``type``, ``status``, ``age``,
                                       ``q``: id search) and counts by status
``GET /saga/<type>/<id>``              status, timeline from the journal with the gaps
                                       between events, data, pending timers, the
                                       definition's diagram with the current step marked
``GET /dlq?topic=<dlq>``               dead letters of the app's (or given) DLQ topics
``POST /api/<action>``                 signal, cancel, terminate, resume, settle, replay: only
                                       with a token, sent as ``Authorization: Bearer <token>``
=====================================  ===================================================

Reads go through the same code as the CLI: :class:`sagas.client.SagaClient` (snapshots, from
the workers' query endpoints), :mod:`sagas.operate` (history, dead letters, terminate, resume,
replay). Everything a page needs ships in the package (``static/``); nothing is fetched from
elsewhere, and the pages forbid it (``Content-Security-Policy``).

It listens on 127.0.0.1 unless told otherwise, and answers only requests whose ``Host`` names
the address it listens on (or ``localhost``), so that a web page elsewhere cannot read it
through DNS rebinding. Without a token the UI is read-only; with one, actions need it, and the
token travels in a header (never a cookie), so another site cannot forge an action either.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sagas.app import App
from sagas.client import SagaClient
from sagas.engine.model import SagaState
from sagas.errors import ConfigurationError, InputRefusedError, SagaError, UnknownVersionError
from sagas.protocol import TopicNames
from sagas.settings import KafkaSettings
from sagas.ui import pages
from sagas.ui.diagram import diagram_svg

__all__ = ["UiServer"]

log = logging.getLogger(__name__)

_STATIC = {"style.css": "text/css", "app.js": "text/javascript"}
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
_LIST_LIMIT = 1000
_SHOWN = 500
_HISTORY_WINDOW_MS = 7 * 86_400_000
"""How far back a saga without a snapshot is searched in its journal."""


class UiServer:
    """Serves the UI of ``app`` (see the module docstring) on a background thread.

    Args:
        app: the sagas to show (types, definitions, topics).
        settings: Kafka settings.
        host: the interface to listen on.
        port: the port (0: any free one).
        token: enables actions, which then need it; None: read-only.
        dlq_topics: dead-letter topics to show besides the saga types' (participants').
        operator: who acts, as journaled by terminate, resume and settle.

    Raises:
        ConfigurationError: the address cannot be listened on.
    """

    def __init__(
        self,
        app: App,
        settings: KafkaSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8088,
        token: str | None = None,
        dlq_topics: tuple[str, ...] = (),
        operator: str = "sagas ui",
    ) -> None:
        self.app = app
        self.settings = settings
        self.token = token or None
        self.operator = operator
        self.dlq_topics = [TopicNames(app.namespace, t).dlq for t in app.saga_types]
        self.dlq_topics += [t for t in dlq_topics if t not in self.dlq_topics]
        self.client = SagaClient(settings, app.namespace)
        handler = type("_Handler", (_Handler,), {"ui": self})
        try:
            self._http = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"the UI cannot listen on {host}:{port} ({exc.strerror or exc}); pick another "
                "--port, or 0 for any free one"
            ) from exc
        self._http.daemon_threads = True
        bound_host, bound_port = str(self._http.server_address[0]), self._http.server_address[1]
        self.url = f"http://{bound_host}:{bound_port}"
        loopback = bound_host in ("127.0.0.1", "::1") or bound_host.startswith("127.")
        self.hosts: set[str] | None = (
            {f"{bound_host}:{bound_port}", f"localhost:{bound_port}"} if loopback else None
        )
        """The ``Host`` headers answered (None: any, when not bound to loopback)."""
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Serve on a background thread; return the URL."""
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sagas-ui", daemon=True
        )
        self._thread.start()
        log.debug("sagas UI at %s%s", self.url, "" if self.token else " (read-only: no token)")
        return self.url

    def close(self) -> None:
        """Stop serving and release the clients."""
        self._http.shutdown()
        self._http.server_close()
        self.client.close()

    # ------------------------------------------------------------------------- pages

    def list_page(self, query: dict[str, str]) -> str:
        """``GET /``."""
        types = [query["type"]] if query.get("type") in self.app.saga_types else []
        now = int(time.time() * 1000)
        found: list[SagaState] = []
        capped = False
        for saga_type in types or self.app.saga_types:
            batch = self.client.list(saga_type, limit=_LIST_LIMIT)
            capped = capped or len(batch) >= _LIST_LIMIT
            found.extend(batch)
        age = pages.AGES.get(query.get("age", ""))
        q = query.get("q", "").strip()
        if age is not None:
            found = [s for s in found if now - s.started_ms <= age]
        if q:
            found = [s for s in found if q in s.saga_id] or [
                s
                for t in types or self.app.saga_types
                if (s := self.client.status(t, q)) is not None  # beyond the newest
            ]
        counts: dict[str, int] = {}
        for s in found:
            counts[s.status] = counts.get(s.status, 0) + 1
        status = query.get("status")
        shown = [s for s in found if not status or s.status == status]
        shown.sort(key=lambda s: (-s.updated_ms, s.saga_id))
        body = pages.list_page(
            shown[:_SHOWN],
            counts,
            types=self.app.saga_types,
            filters=query,
            now_ms=now,
            capped=capped,
        )
        return pages.page("Sagas", body, actions=self.token is not None)

    def saga_page(self, saga_type: str, saga_id: str) -> tuple[HTTPStatus, str]:
        """``GET /saga/<type>/<id>``."""
        from sagas.operate.history import read_history

        if saga_type not in self.app.saga_types:
            return HTTPStatus.NOT_FOUND, pages.page("Not found", "<h1>No such saga type</h1>")
        state = self.client.status(saga_type, saga_id)
        now = int(time.time() * 1000)
        if state is None:
            history = read_history(
                self.settings,
                self.app.namespace,
                saga_type,
                saga_id,
                since_ms=now - _HISTORY_WINDOW_MS,
            )
        else:
            history = read_history(
                self.settings,
                self.app.namespace,
                saga_type,
                saga_id,
                started_ms=state.started_ms,
                updated_ms=state.updated_ms,
            )
        rows = pages.timeline([e.to_dict() for e in history.entries])
        note = (
            f"{len(rows)} events from {history.topic}[{history.partition}] "
            f"(offsets {history.offsets[0]}-{history.offsets[1]}, {history.scanned} records read)"
        )
        try:
            program = self.app.program(saga_type, state.version) if state else None
        except UnknownVersionError:
            program = None
        program = program or self.app.latest(saga_type)
        svg = diagram_svg(program, **pages.step_marks(state, rows))
        body = pages.saga_page(
            state,
            saga_type,
            saga_id,
            rows,
            diagram=svg,
            note=note,
            actions=self.token is not None,
            steps=[n for n, node in program.nodes.items() if not node.scopes],
            now_ms=now,
            namespace=self.app.namespace,
        )
        status = HTTPStatus.OK if state is not None or rows else HTTPStatus.NOT_FOUND
        return status, pages.page(f"{saga_type} {saga_id}", body, actions=self.token is not None)

    def dlq_page(self, query: dict[str, str]) -> str:
        """``GET /dlq``."""
        from sagas.operate.dlq import list_dead_letters

        chosen = query.get("topic") or self.dlq_topics[0]
        letters: list[Any] = []
        error = ""
        if chosen not in self.dlq_topics:
            error = f"{chosen} is not a dead-letter topic of this app (give it with --dlq)"
        else:
            try:
                letters = list_dead_letters(self.settings, chosen)[::-1][:_SHOWN]
            except SagaError as exc:
                error = str(exc)
        body = pages.dlq_page(
            self.dlq_topics,
            chosen,
            letters,
            actions=self.token is not None,
            error=error,
            saga_types={TopicNames(self.app.namespace, t).dlq: t for t in self.app.saga_types},
        )
        return pages.page("Dead letters", body, actions=self.token is not None)

    # ------------------------------------------------------------------------- actions

    def act(self, action: str, args: dict[str, Any]) -> str:
        """Run one action; return what was done.

        Raises:
            SagaError: the action failed (its message says why).
            ValueError: the request is incomplete (the message says what is missing).
        """
        from sagas import operate

        if action == "replay":
            topic = str(args.get("topic", ""))
            if topic not in self.dlq_topics:
                raise ValueError(f"{topic!r} is not a dead-letter topic of this app")
            offsets = [int(o) for o in args.get("offsets", [])]
            chosen = operate.select(
                operate.list_dead_letters(self.settings, topic), offsets=offsets
            )
            report = operate.replay(self.settings, chosen)
            r = report
            return f"replayed {len(r.replayed)}, skipped {len(r.skipped)}, refused {len(r.refused)}"
        saga_type, saga_id = str(args.get("saga_type", "")), str(args.get("saga_id", ""))
        if saga_type not in self.app.saga_types or not saga_id:
            raise ValueError("give saga_type (a type of this app) and saga_id")
        reason = str(args.get("reason") or f"by {self.operator}")
        if action == "signal":
            name = str(args.get("name", ""))
            if not name:
                raise ValueError("give the signal's name")
            payload = json.loads(args.get("payload") or "{}")
            if not isinstance(payload, dict):
                raise ValueError("the signal's payload must be a JSON object")
            self.client.signal(saga_type, saga_id, name, payload)
            return f"signal {name} sent"
        if action == "cancel":
            self.client.cancel(saga_type, saga_id, reason)
            return "cancel sent"
        if action == "terminate":
            operate.terminate(
                self.settings,
                self.app.namespace,
                saga_type,
                saga_id,
                by=self.operator,
                reason=reason,
            )
            return "terminate sent"
        if action == "resume":
            state = self.client.status(saga_type, saga_id)
            if state is None:
                raise ValueError(f"saga {saga_id} has no snapshot")
            done = operate.resume(
                self.settings,
                self.app.namespace,
                state,
                by=self.operator,
                step=args.get("step") or None,
            )
            return f"{done.action} {done.step or ''}".strip()
        if action == "settle":
            settled = args.get("settled")
            if settled not in ("done", "not-done"):
                raise ValueError("settled must be 'done' (the pivot took effect) or 'not-done'")
            if not str(args.get("reason") or "").strip():
                raise ValueError("give the reason for the settle: how you know (it is journaled)")
            state = self.client.status(saga_type, saga_id)
            if state is None:
                raise ValueError(f"saga {saga_id} has no snapshot")
            operate.settle(
                self.settings,
                self.app.namespace,
                state,
                done=settled == "done",
                by=self.operator,
                reason=reason,
            )
            return f"settle ({settled}) sent"
        raise ValueError(
            f"unknown action {action!r}: signal, cancel, terminate, resume, settle, replay"
        )

    def authorized(self, header: str | None) -> bool:
        """Whether an action request carries the token."""
        scheme, _, given = (header or "").partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self.token.encode())
        )


class _Handler(BaseHTTPRequestHandler):
    ui: UiServer
    server_version = "sagas-ui"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ui %s: " + format, self.address_string(), *args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _html(self, status: HTTPStatus, html: str) -> None:
        self._send(status, html.encode(), "text/html; charset=utf-8")

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _host_ok(self) -> bool:
        if self.ui.hosts is None or self.headers.get("Host", "") in self.ui.hosts:
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, b"unexpected Host header", "text/plain")
        return False

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")] if url.path != "/" else []
        try:
            if not parts:
                self._html(HTTPStatus.OK, self.ui.list_page(query))
            elif parts[0] == "saga" and len(parts) == 3:
                self._html(*self.ui.saga_page(parts[1], parts[2]))
            elif parts == ["dlq"]:
                self._html(HTTPStatus.OK, self.ui.dlq_page(query))
            elif parts[0] == "static" and len(parts) == 2 and parts[1] in _STATIC:
                data = resources.files("sagas.ui").joinpath("static", parts[1]).read_bytes()
                self._send(HTTPStatus.OK, data, _STATIC[parts[1]] + "; charset=utf-8")
            else:
                self._html(HTTPStatus.NOT_FOUND, pages.page("Not found", "<h1>Not found</h1>"))
        except SagaError as exc:
            body = f'<h1>Cannot show this</h1><p class="error">{pages._e(exc)}</p>'
            self._html(HTTPStatus.BAD_GATEWAY, pages.page("Error", body))

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        parts = urlsplit(self.path).path.strip("/").split("/")
        if self.ui.token is None:
            self._json(
                HTTPStatus.FORBIDDEN, {"error": "actions are off: start the UI with a token"}
            )
            return
        if not self.ui.authorized(self.headers.get("Authorization")):
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "wrong or missing token"})
            return
        if len(parts) != 2 or parts[0] != "api":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST /api/<action>"})
            return
        try:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            args = json.loads(self.rfile.read(length) or b"{}")
            done = self.ui.act(parts[1], args if isinstance(args, dict) else {})
        except (ValueError, TypeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except InputRefusedError as exc:  # no such saga, it ended, or the worker refused
            self._json(HTTPStatus.CONFLICT, {"error": str(exc)})
        except SagaError as exc:
            self._json(HTTPStatus.BAD_GATEWAY, {"error": str(exc)})
        else:
            log.info("ui action %s on %s: %s", parts[1], args.get("saga_id", ""), done)
            self._json(HTTPStatus.OK, {"done": done})
