"""The web UI in headless Chromium: a broker-backed worker and participants run sagas that
complete, compensate and hit a deadline; the list shows them with their counts and reasons, a saga
page shows its timeline in order, the participant's reason for a failure and its step graph with
the failed and the undone steps marked, a dead letter links to its saga. Each page is measured at
1400, 1200, 900 and 600 px wide: nothing overlaps, nothing runs past the window's right edge.
Screenshots go to ``tests/browser/screenshots/``.

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
WIDTHS = (1400, 1200, 900, 600)

_LAYOUT = """() => {
  const box = (sel) => { const e = document.querySelector(sel);
    if (!e) return null; const r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  const width = document.documentElement.clientWidth;
  const past = [];  // visible elements whose right edge is past the window's, outside a scroller
  const spills = [];  // elements whose content runs out of their box (a word too long to wrap)
  for (const e of document.querySelectorAll("body *")) {
    if (e.parentElement.closest(".scroll, .diagram-box, pre, svg")) continue;
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1) past.push(e.tagName + "." + e.className);
    const scrolls = ["auto", "scroll", "hidden"].includes(getComputedStyle(e).overflowX);
    if (!scrolls && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
      spills.push(e.tagName + "." + e.className + "#" + e.id);
  }
  const scrollers = [...document.querySelectorAll(".scroll")].map(
    (e) => e.scrollWidth - e.clientWidth);
  return {width, page: document.documentElement.scrollWidth, past, spills, scrollers,
          timeline: box("#timeline-panel"), aside: box(".cols > aside"),
          timers: box("#timers-panel h2"), data: box("#data-panel")};
}"""


def _overlap(a: dict[str, float] | None, b: dict[str, float] | None) -> bool:
    if a is None or b is None:
        return False
    return not (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


def _fits(page: Any, what: str, width: int) -> dict[str, Any]:
    """Resize to ``width``, screenshot as ``<what>-<width>.png``, and check the layout: the page
    does not scroll sideways, no element runs past the right edge (tables scroll in their own
    box) and no text out of its box, the timeline and the side panels do not overlap. Returns
    the measures."""
    page.set_viewport_size({"width": width, "height": 900})
    page.screenshot(path=str(SHOTS / f"{what}-{width}.png"), full_page=True)
    m: dict[str, Any] = page.evaluate(_LAYOUT)
    facts = f"{what} at {width} px: {m}"
    assert m["page"] <= m["width"], facts
    assert not m["past"], facts
    assert not m["spills"], facts
    assert not _overlap(m["timeline"], m["aside"]), facts
    assert not _overlap(m["timeline"], m["timers"]), facts
    assert not _overlap(m["timeline"], m["data"]), facts
    if width >= 900:  # wide enough for every column of the tables without a sideways scroll
        assert all(s <= 1 for s in m["scrollers"]), facts
    print(facts)  # the measured layout facts, with -s
    return m


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
    assert "Charge failed: declined" in rows.locator("td.why").all_inner_texts()
    why = page.locator("#sagas td.why[title]").first
    assert why.get_attribute("title") == why.inner_text()  # the full text on hover
    page.screenshot(path=str(SHOTS / "list.png"), full_page=True)
    for width in WIDTHS:
        _fits(page, "list", width)
    page.set_viewport_size({"width": 1400, "height": 900})

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
    assert page.locator('svg.diagram g.node.failed[data-step="charge"]').count() == 1
    assert page.locator('svg.diagram g.node.undone[data-step="reserve"]').count() == 1
    assert "charge failed: not done: settled by ops" in page.locator("#failure").inner_text()
    assert page.locator(".actions form").count() == 4  # a token is configured
    page.screenshot(path=str(SHOTS / "saga.png"), full_page=True)

    page.goto(ui_url + "/dlq")
    assert page.locator("h1").inner_text() == "Dead letters"
    assert "undecodable input" in page.locator("#dlq tbody").inner_text()
    link = page.locator("#dlq td.saga a")
    assert link.get_attribute("href") == "/saga/shop/junk"  # its key, on the shop's DLQ
    page.screenshot(path=str(SHOTS / "dlq.png"), full_page=True)
    for width in (1400, 900, 600):
        _fits(page, "dlq", width)


def test_a_compensated_saga_shows_why_and_what_was_undone_at_each_width(
    browser_page: Any, ui_url: str
) -> None:
    """s-fail: the payment service raised CommandFailed("card declined", error="declined"); the
    reservation was released."""
    page = browser_page
    SHOTS.mkdir(exist_ok=True)
    page.goto(ui_url + "/saga/shop/s-fail")
    page.wait_for_selector("#timeline")
    failure = page.locator("#failure")
    assert "charge failed: card declined" in failure.inner_text()
    failed_row = page.locator("#timeline tr.ev-step_failed")
    assert "card declined" in failed_row.locator("td.reason").inner_text()
    reply = page.locator("#timeline tr.ev-reply_accepted", has_text="failure")
    assert "card declined" in reply.locator("td.reason").inner_text()
    charge = page.locator('svg.diagram g.node[data-step="charge"]')
    reserve = page.locator('svg.diagram g.node[data-step="reserve"]')
    assert "failed" in (charge.get_attribute("class") or "").split()
    assert "undone" in (reserve.get_attribute("class") or "").split()
    assert "done" not in (reserve.get_attribute("class") or "").split()
    assert "undone (compensated)" in page.locator(".legend").inner_text()
    for width in WIDTHS:
        _fits(page, "saga", width)
        for shown in (failure, failed_row.locator("td.reason q.said")):
            assert shown.is_visible()
            b = shown.bounding_box()
            assert b is not None
            assert 0 <= b["x"] <= b["x"] + b["width"] <= width, (width, b)


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


def test_a_stuck_saga_with_long_ids_fits_each_width(browser_page: Any) -> None:
    """No broker: the page of a stuck saga with a long id, a long error and long command ids,
    rendered and served to the browser from memory."""
    from importlib import resources

    from sagas.engine.model import SagaState, Token
    from sagas.ui import pages

    long_id = "order-" + "0f8e2c4a-9b1d-4e7f-a3c5-6d8b0e2f4a6c" * 2
    state = SagaState(
        saga_id=long_id,
        saga_type="order",
        version=3,
        status="stuck",
        data={"customer": "c-" + "x" * 120},
        timers={f"reserve-stock:deadline:{long_id}": 10_000},
        seed=1,
        started_ms=1000,
        updated_ms=5000,
        tokens={"reserve-stock": Token("reserve-stock", "request")},
        stuck={
            "step": "reserve-stock",
            "error": "KeyError",
            "message": "saga 'order', step 'reserve-stock': KeyError('items') " + "y" * 150,
            "frames": [f'File "/srv/app/{"deep/" * 20}sagas.py", line 42, in build'],
        },
    )
    entries = [
        {"at_ms": 1000, "event": "started"},
        {"at_ms": 1200, "event": "command_sent", "step": "reserve-stock", "attempt": 1,
         "command_id": f"{long_id}:reserve-stock:1"},
        {"at_ms": 1300, "event": "stuck", "step": "reserve-stock",
         "reason": state.stuck["message"] if state.stuck else ""},
    ]  # fmt: skip
    body = pages.saga_page(
        state,
        "order",
        long_id,
        pages.timeline(entries),
        diagram='<svg class="diagram" width="900" height="120" viewBox="0 0 900 120"></svg>',
        note="3 events",
        actions=True,
        steps=["reserve-stock"],
        now_ms=6000,
        namespace="shop",
    )
    html = pages.page("order", body, actions=True)
    css = resources.files("sagas.ui").joinpath("static", "style.css").read_text()
    page = browser_page
    SHOTS.mkdir(exist_ok=True)

    def serve(route: Any) -> None:
        if route.request.url.endswith("/static/style.css"):
            route.fulfill(body=css, content_type="text/css")
        elif route.request.url.endswith("/static/app.js"):
            route.fulfill(body="", content_type="text/javascript")
        else:
            route.fulfill(body=html, content_type="text/html")

    page.route("http://ui.test/**", serve)
    page.goto("http://ui.test/saga/order/x")
    assert page.locator(".stuck-note").is_visible()
    for width in WIDTHS:
        _fits(page, "stuck", width)
