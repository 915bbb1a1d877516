"""The workers' query endpoint on the real broker, against clients that misbehave: idle and
half-open connections, TLS and garbage bytes, huge list limits, missing tokens, hang-ups."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka import Producer

from sagas.client import SagaClient
from sagas.engine import public_command_id
from sagas.engine.model import Start
from sagas.errors import ConfigurationError
from sagas.protocol import TOKEN_ENV
from sagas.runtime.query import QueryServer
from sagas.serde import Serde
from sagas.settings import KafkaSettings
from sagas.wire import input_record
from tests.support.kafka import read_all
from tests.support.runtime import Running, owner_url, start_runtime
from tests.support.sagas_under_test import make_app

SERDE = Serde()
"""The encodings these records are read and written with."""

pytestmark = pytest.mark.kafka

TOKEN = "a-long-random-token-7f3c"


# ----------------------------------------------------------------------------- helpers


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10)


def exchange(url: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; what comes back until the server closes it (the
    liveness bound: ``timeout`` seconds of silence fail the test)."""
    with connect(url) as sock:
        sock.settimeout(timeout)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def get(url: str, path: str, token: str | None = None) -> tuple[int, dict[str, Any], bytes]:
    """``GET path``: (status, JSON body, the raw head)."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    host = urlsplit(url).netloc
    raw = exchange(
        url, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}\r\n".encode()
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body), head


def reset(sock: socket.socket) -> None:
    """Hang up abruptly: close with a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def tls_client_hello() -> bytes:
    """The first bytes an HTTPS client sends."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def finished_saga(rt: Running) -> str:
    sid = rt.client.start("order", {"behaviour": {}})
    rt.wait_terminal("order", sid)
    return sid


# ----------------------------------------------------------------------------- tests


def test_idle_and_half_open_clients_neither_stall_answers_nor_pile_up_threads(
    rt: Running, bootstrap: str
) -> None:
    sid = finished_saga(rt)
    url, p = owner_url(rt, bootstrap, sid)
    threads_before = threading.active_count()
    idle = [connect(url) for _ in range(100)]
    half = [connect(url) for _ in range(100)]
    try:
        for sock in half:
            sock.sendall(b"GET /sagas/order/")  # half a request line, then nothing
        status, body, _ = get(url, f"/sagas/order/{sid}?partition={p}")
        assert (status, body["state"]["status"]) == (200, "completed")
        assert rt.client.status("order", sid).status == "completed"
        assert threading.active_count() <= threads_before + 10
        # the server closes a connection that sends nothing (within its 5 s timeout)
        idle[0].settimeout(30)
        assert idle[0].recv(100).startswith(b"HTTP/1.1 408")
    finally:
        for sock in idle + half:
            sock.close()


def test_past_its_connection_cap_the_endpoint_drops_the_longest_waiting_client(
    bootstrap: str, unique: str
) -> None:
    server = QueryServer(
        KafkaSettings(bootstrap),
        f"{unique}.workers",
        "w1",
        max_connections=20,
        timeout=60,
        serde=SERDE,
    )
    server.start()
    idle = [connect(server.url) for _ in range(60)]
    try:
        status, body, _ = get(server.url, "/health")
        assert (status, body["worker_id"]) == (200, "w1")
        idle[0].settimeout(30)
        assert idle[0].recv(100) == b""  # dropped for a newer one long before its 60 s
    finally:
        for sock in idle:
            sock.close()
        server.close()


def test_tls_and_garbage_bytes_get_400_and_the_connection_is_closed_at_once(
    rt: Running, bootstrap: str
) -> None:
    sid = finished_saga(rt)
    url, _ = owner_url(rt, bootstrap, sid)
    for junk in (
        tls_client_hello(),
        tls_client_hello().replace(b"\n", b""),  # no line end to wait for
        bytes(range(256)) * 4,
        b"GET /health\r\n\r\n",
        b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
    ):
        assert exchange(url, junk).startswith(b"HTTP/1.1 400 "), junk[:20]
    https = ssl.create_default_context()
    with connect(url) as sock, pytest.raises(ssl.SSLError):
        https.wrap_socket(sock, server_hostname="localhost")
    assert exchange(url, b"POST /health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    for bad in ("limit=-1", "limit=1e9", "limit=99999999999", "partition=x"):
        assert get(url, f"/sagas/order?{bad}")[0] == 400, bad
    assert get(url, "/health")[0] == 200  # still serving


def test_a_list_answers_at_most_1000_sagas_whatever_the_limit(rt: Running, bootstrap: str) -> None:
    inbox = rt.app.topics("order").inbox
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for n in range(1010):  # they wait for a reply that never comes
        start = Start(f"s-{n}", {"behaviour": {"ReserveCredit": "silent"}})
        rec = input_record(inbox, start, SERDE)
        producer.produce(rec.topic, key=rec.key, value=rec.value, headers=rec.headers)
    assert producer.flush(30) == 0
    url, _ = owner_url(rt, bootstrap, "s-0")

    def listed_all() -> bool:
        return get(url, "/sagas/order?limit=1")[1].get("total", 0) >= 1010

    rt.wait_until(listed_all, timeout=120)
    status, body, _ = get(url, "/sagas/order?limit=100000")
    assert status == 200
    assert len(body["sagas"]) == 1000
    assert (body["limit"], body["total"]) == (1000, 1010)
    assert len(rt.client.list("order", limit=5000)) == 1000


def test_answers_hold_no_secret_and_no_command_id_a_reply_could_use(
    rt: Running, bootstrap: str
) -> None:
    sid = rt.client.start("order", {"behaviour": {"ReserveCredit": "silent"}})
    rt.wait_until(lambda: bool(getattr(rt.client.status("order", sid), "pending", None)))
    url, p = owner_url(rt, bootstrap, sid)
    shown = get(url, f"/sagas/order/{sid}?partition={p}")[1]["state"]
    listed = get(url, "/sagas/order")[1]["sagas"]
    snapshots = read_all(bootstrap, rt.app.topics("order").state)
    stored = [SERDE.decode_state(v) for k, v in snapshots if k == sid.encode()][-1]
    assert stored.secret
    public = [public_command_id(c) for c in stored.pending]
    assert public != list(stored.pending)  # the stored ids carry their tags
    for state in (shown, *listed):
        assert "secret" not in state
        assert list(state["pending"]) == public
        assert all(t["cmd"] is None or t["cmd"] in public for t in state["tokens"].values())
    rt.shutdown()  # the client now reads the state topic itself, and shows the same
    with contextlib.closing(SagaClient(rt.settings, rt.app.namespace, http_timeout=0.5)) as c:
        read = c.status("order", sid)
    assert read is not None
    assert (read.secret, list(read.pending)) == ("", public)


@pytest.fixture
def rt_token(bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """A running app whose worker and client have the token from the environment."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    running = start_runtime(make_app(unique), KafkaSettings(bootstrap))
    yield running
    running.shutdown()


def test_with_a_token_only_clients_that_send_it_get_sagas(
    rt_token: Running, bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = rt_token
    sid = finished_saga(rt)  # the client took the token from the environment
    url, p = owner_url(rt, bootstrap, sid)
    path = f"/sagas/order/{sid}?partition={p}"
    for token in (None, "wrong", TOKEN[:-1], TOKEN + "x"):
        status, body, head = get(url, path, token)
        assert status == 401
        assert TOKEN_ENV in body["error"]
        assert b"WWW-Authenticate: Bearer" in head
        assert get(url, "/sagas/order", token)[0] == 401
    assert get(url, path, TOKEN)[0] == 200
    assert get(url, "/health")[0] == 200  # no saga data: open to health checks

    monkeypatch.delenv(TOKEN_ENV)
    with contextlib.closing(SagaClient(rt.settings, rt.app.namespace, query_token=TOKEN)) as ok:
        assert ok.status("order", sid).status == "completed"
    anonymous = SagaClient(rt.settings, rt.app.namespace)
    try:
        with pytest.raises(ConfigurationError, match=TOKEN_ENV):
            anonymous.status("order", sid)
    finally:
        anonymous.close()


def test_clients_that_hang_up_leave_no_traceback(
    rt: Running,
    bootstrap: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(30):  # something to list, so answers take a few packets
        rt.client.start("order", {"n": n, "pad": "x" * 2000, "behaviour": {}})
    sid = finished_saga(rt)
    url, _ = owner_url(rt, bootstrap, sid)
    caplog.set_level(logging.DEBUG, logger="sagas.runtime.query")
    for _ in range(30):
        with connect(url) as sock:
            sock.sendall(b"GET /sagas/order?li")
            reset(sock)
        sock = connect(url)
        sock.sendall(b"GET /sagas/order?limit=1000 HTTP/1.1\r\n\r\n")
        reset(sock)
        connect(url).close()
    assert get(url, "/health")[0] == 200
    time.sleep(1)  # let the server notice the last hang-ups
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    assert "Traceback" not in capsys.readouterr().err
