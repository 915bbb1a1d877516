"""The web UI in headless Chromium: a broker-backed worker and participants run sagas that
complete, compensate and hit a deadline; the list shows them with their counts, a saga page shows
its timeline in order and its step graph. Screenshots go to ``tests/browser/screenshots/``.

Needs the system's Chromium (``apt-get install chromium``) and Playwright for Python; without
them the test is skipped on a laptop and fails when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from sagas.client import SagaClient
from sagas.runtime.process import Worker
from sagas.runtime.topics import ensure_topics
from sagas.settings import KafkaSettings
from sagas.ui.server import UiServer
from tests.support.shop import (
    settle_silent_pivot,
    shop_app,
    shop_services,
    wait_ended,
)

pytestmark = pytest.mark.kafka

SHOTS = Path(__file__).parent / "screenshots"


def _chromium() -> str:
    """The system browser's executable, or skip (fail in CI) saying what is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = []
    if path is None:
        missing.append("Chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (pip install playwright)")
    if missing:
        why = f"the browser test needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    assert path is not None
    return path


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


@pytest.fixture
def ui_url(bootstrap: str, unique: str) -> Iterator[str]:
    """A UI over a worker and services that ran three sagas: s-ok completed, s-fail
    compensated on a refusal, s-late compensated once its silent pivot, in doubt after its step
    deadline, was settled as not done; and one record of the
    inbox that is no input went to the dead-letter topic."""
    settings = KafkaSettings(bootstrap)
    app = shop_app(unique)
    ensure_topics(app, settings)
    handle = Worker(app, settings, worker_id="w1").start()
    services = shop_services(settings, unique)
    thread, stop = services.start()
    client = SagaClient(settings, unique)
    server = UiServer(app, settings, port=0, token="let-me-act")
    try:
        for saga_id, charge in (("s-ok", "ok"), ("s-fail", "fail"), ("s-late", "silent")):
            client.start("shop", {"charge": charge, "item": "book"}, saga_id=saga_id)
        junk = Producer({"bootstrap.servers": bootstrap})
        junk.produce(f"{unique}.shop.inbox", key=b"junk", value=b"\x00not avro")
        junk.flush(10)
        assert wait_ended(client, "shop", "s-ok") == "completed"
        assert wait_ended(client, "shop", "s-fail") == "compensated"
        settle_silent_pivot(client, "s-late")
        assert wait_ended(client, "shop", "s-late") == "compensated"
        yield server.start()
    finally:
        server.close()
        stop.set()
        handle.stop()
        thread.join(30)
        client.close()


def test_the_list_and_a_saga_page_show_what_happened(browser_page: Any, ui_url: str) -> None:
    page = browser_page
    SHOTS.mkdir(exist_ok=True)
    page.goto(ui_url + "/")
    rows = page.locator("#sagas tbody tr")
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == ["s-fail", "s-late", "s-ok"]
    assert page.locator('b[data-status="completed"]').inner_text() == "1"
    assert page.locator('b[data-status="compensated"]').inner_text() == "2"
    page.screenshot(path=str(SHOTS / "list.png"), full_page=True)

    page.select_option("#f-status", "compensated")  # the filter submits on change
    page.wait_for_url("**status=compensated**")
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == ["s-fail", "s-late"]

    page.click("text=s-late")
    page.wait_for_selector("#timeline")
    events = [
        (cells[2], cells[3])
        for cells in (
            r.locator("td").all_inner_texts() for r in page.locator("#timeline tbody tr").all()
        )
    ]
    expected = [
        ("started", ""),
        ("command_sent", "reserve"),
        ("step_completed", "reserve"),
        ("command_sent", "charge"),
        ("step_failed", "charge"),
        ("compensating", ""),
        ("undo_started", "reserve"),
        ("command_sent", "reserve"),
        ("undo_done", "reserve"),
        ("finished", ""),
    ]
    found = iter(events)
    missing = [e for e in expected if not any(e == f for f in found)]
    assert not missing, f"timeline {events} lacks, in order, {missing}"
    timeline = page.locator("#timeline").inner_text()
    assert "no reply within" in timeline  # the deadline's reason
    gaps = page.locator("#timeline td.gap").all_inner_texts()
    assert gaps[0] == ""
    assert all(g.startswith("+") for g in gaps[1:])
    assert '"charge": "silent"' in page.locator("#data").inner_text()
    assert page.locator('svg.diagram g.node[data-step="charge"]').count() == 1
    assert page.locator("svg.diagram g.node.done").count() >= 1
    assert page.locator(".actions form").count() == 4  # a token is configured
    page.screenshot(path=str(SHOTS / "saga.png"), full_page=True)

    page.goto(ui_url + "/dlq")
    assert page.locator("h1").inner_text() == "Dead letters"
    assert "undecodable input" in page.locator("#dlq tbody").inner_text()
    page.screenshot(path=str(SHOTS / "dlq.png"), full_page=True)


def test_actions_need_the_token(ui_url: str) -> None:
    import json
    import urllib.error
    import urllib.request

    def post(token: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"saga_type": "shop", "saga_id": "s-ok", "reason": "test"}).encode()
        request = urllib.request.Request(ui_url + "/api/cancel", body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    assert post(None) == 401
    assert post("wrong") == 401
    assert post("let-me-act") == 409  # let in, and refused: s-ok already ended completed
    other_host = urllib.request.Request(ui_url + "/", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(other_host, timeout=10)
    caught.value.close()
    assert caught.value.code == 421
