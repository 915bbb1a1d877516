"""A TEST DOUBLE of the Confluent Schema Registry REST API, in-process, on the standard library.

This is not Confluent's Schema Registry: its jars are not served to this machine and no Python
server compatible with it is packaged. It answers the few calls that confluent-kafka's
``SchemaRegistryClient`` (and its ``AvroSerializer``/``AvroDeserializer``) make for kafka-sagas,
with the real server's status codes, error codes and JSON shapes:

========================================  ========================================================
``POST /subjects/{subject}/versions``     register; the same schema gets the same global id in
                                          every subject; BACKWARD compatibility with the subject's
                                          latest version is enforced (409, as the real default)
``POST /subjects/{subject}``              look a schema up in a subject (404 40401 / 40403)
``GET /schemas/ids/{id}``                 a schema by id (404 40403)
``GET /subjects/{subject}/versions/latest``  the subject's newest version (404 40401)
``GET /subjects``                         the subjects
========================================  ========================================================

Schemas are compared as parsed JSON, not in Avro's canonical form; references, contexts, modes,
configs and deletes are not implemented. ``requests`` records every call so that tests can check
what the client asked for (e.g. that an id is looked up once).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryDouble:
    """The registry's state and its HTTP server on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self.schemas: list[str] = []  # id - 1 -> schema text
        self.subjects: dict[str, list[int]] = {}  # subject -> ids, version - 1 -> id
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL to give a client."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RegistryDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def calls(self, method: str, prefix: str) -> int:
        """How many requests of ``method`` went to a path starting with ``prefix``."""
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    # ---------------------------------------------------------------- the API, as (status, body)

    def _id_of(self, text: str) -> int | None:
        parsed = json.loads(text)
        return next((i + 1 for i, s in enumerate(self.schemas) if json.loads(s) == parsed), None)

    def register(self, subject: str, body: dict[str, Any]) -> tuple[int, Any]:
        text = body.get("schema", "")
        if body.get("schemaType", "AVRO") != "AVRO":
            return 422, {"error_code": 42201, "message": "only AVRO in this test double"}
        try:
            new = parse(text)
        except Exception as exc:
            return 422, {"error_code": 42201, "message": f"Invalid schema: {exc}"}
        versions = self.subjects.setdefault(subject, [])
        schema_id = self._id_of(text)
        if schema_id is not None and schema_id in versions:
            return 200, {"id": schema_id}
        if versions:
            latest = parse(self.schemas[versions[-1] - 1])
            result = ReaderWriterCompatibilityChecker().get_compatibility(new, latest)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                return 409, {
                    "error_code": 409,
                    "message": "Schema being registered is incompatible with an earlier schema "
                    f'for subject "{subject}", details: {sorted(map(str, result.messages))}',
                }
        if schema_id is None:
            self.schemas.append(text)
            schema_id = len(self.schemas)
        versions.append(schema_id)
        return 200, {"id": schema_id}

    def lookup(self, subject: str, body: dict[str, Any]) -> tuple[int, Any]:
        if subject not in self.subjects:
            return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
        schema_id = self._id_of(body.get("schema", "null"))
        if schema_id not in self.subjects[subject]:
            return 404, {"error_code": 40403, "message": "Schema not found"}
        return 200, self._version(subject, self.subjects[subject].index(schema_id) + 1)

    def _version(self, subject: str, version: int) -> dict[str, Any]:
        schema_id = self.subjects[subject][version - 1]
        return {
            "subject": subject,
            "version": version,
            "id": schema_id,
            "schema": self.schemas[schema_id - 1],
        }

    def get(self, path: str) -> tuple[int, Any]:
        if match := re.fullmatch(r"/schemas/ids/(\d+)", path):
            schema_id = int(match[1])
            if not 1 <= schema_id <= len(self.schemas):
                return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
            return 200, {"schema": self.schemas[schema_id - 1]}
        if match := re.fullmatch(r"/subjects/([^/]+)/versions/latest", path):
            subject = unquote(match[1])
            if subject not in self.subjects:
                return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
            return 200, self._version(subject, len(self.subjects[subject]))
        if path == "/subjects":
            return 200, sorted(self.subjects)
        return 404, {"error_code": 404, "message": f"not in this test double: GET {path}"}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if match := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            return self.register(unquote(match[1]), body)
        if match := re.fullmatch(r"/subjects/([^/]+)", path):
            return self.lookup(unquote(match[1]), body)
        return 404, {"error_code": 404, "message": f"not in this test double: POST {path}"}


def _handler(registry: RegistryDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            path = urlsplit(self.path).path
            body: dict[str, Any] = {}
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            with registry._lock:
                registry.requests.append((method, path))
                status, answer = (
                    registry.post(path, body) if method == "POST" else registry.get(path)
                )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", _CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler
