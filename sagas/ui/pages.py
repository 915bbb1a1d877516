"""The UI's pages as HTML, rendered on the server from the app, snapshots and the journal.

Every value shown is escaped; the pages load only ``/static/style.css`` and ``/static/app.js``
from the package. Times are UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, get_args
from urllib.parse import quote, urlencode

from sagas.engine.model import SagaState, Status

__all__ = [
    "AGES",
    "STATUSES",
    "Row",
    "dlq_page",
    "list_page",
    "page",
    "saga_page",
    "settle_hint",
    "timeline",
]

STATUSES: tuple[str, ...] = get_args(Status)
"""Every saga status, in the engine's order (the list's filter)."""
AGES = {"15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000}
"""The age filter: started within."""


def when(ms: int | None) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    if ms is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def span(ms: int) -> str:
    """A duration for people: ``850 ms``, ``2.4 s``, ``3 min 5 s``, ``2 h 1 min``."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min {ms % 60_000 // 1000} s"
    return f"{ms // 3_600_000} h {ms % 3_600_000 // 60_000} min"


def _e(value: object) -> str:
    return "" if value is None else escape(str(value))


def page(title: str, body: str, *, actions: bool = False) -> str:
    """A whole page around ``body``."""
    token = (
        '<label class="token">token <input id="token" type="password" autocomplete="off"></label>'
        if actions
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · sagas</title>"
        '<link rel=stylesheet href="/static/style.css"><script src="/static/app.js" defer></script>'
        "</head><body><header><a class=brand href=/>sagas</a>"
        '<nav><a href="/">Sagas</a><a href="/dlq">Dead letters</a></nav>'
        f'{token}</header><main><p id="flash" role="status"></p>{body}</main></body></html>'
    )


def _badge(status: str) -> str:
    return f'<span class="status s-{_e(status)}">{_e(status)}</span>'


def settle_hint(saga_type: str, saga_id: str, namespace: str) -> str:
    """The command that settles an in-doubt saga, as an operator types it."""
    ns = f" -n {namespace}" if namespace else ""
    return f"sagas settle {saga_type} {saga_id}{ns} --done|--not-done --reason TEXT"


def _in_doubt_note(state: SagaState, namespace: str) -> str:
    steps = sorted({t.step for t in state.tokens.values()})
    pivot = ", ".join(f"<b>{_e(s)}</b>" for s in steps) or "its pivot"
    return (
        f'<p class="in-doubt-note">In doubt: waiting on pivot {pivot}, which gave no definitive '
        "answer by its deadline; its command is sent again until one comes. If you know what "
        "happened, settle it with: "
        f"<code>{_e(settle_hint(state.saga_type, state.saga_id, namespace))}</code></p>"
    )


def _stuck_note(state: SagaState, namespace: str) -> str:
    assert state.stuck is not None  # a stuck saga has its error
    s = state.stuck
    frames = "\n".join(s["frames"][-3:])
    ns = f" -n {namespace}" if namespace else ""
    ids = f"{state.saga_type} {state.saga_id}{ns}"
    return (
        f'<div class="stuck-note"><p><b>Stuck at {_e(s["step"] or "its start")}</b>: '
        f"{_e(s['message'])}</p><pre>{_e(frames)}</pre><p>It keeps {len(state.kept)} input(s) "
        "and its timers wait. Fix the code and deploy it, then resume it "
        f"(<code>sagas resume {_e(ids)}</code>), or cancel it to undo what it did.</p></div>"
    )


def _select(name: str, options: Sequence[str], chosen: str | None, empty: str) -> str:
    opts = [f'<option value="">{empty}</option>'] + [
        f'<option value="{_e(o)}"{" selected" if o == chosen else ""}>{_e(o)}</option>'
        for o in options
    ]
    return f'<select name="{name}" id="f-{name}">{"".join(opts)}</select>'


def list_page(
    sagas: Sequence[SagaState],
    counts: Mapping[str, int],
    *,
    types: Sequence[str],
    filters: Mapping[str, str],
    now_ms: int,
    capped: bool,
) -> str:
    """The saga list: filters, counts by status, one row per saga."""
    chosen = {k: v for k, v in filters.items() if v}
    form = (
        '<form class="filters" method="get" action="/">'
        + _select("type", types, chosen.get("type"), "all types")
        + _select("status", STATUSES, chosen.get("status"), "any status")
        + _select("age", list(AGES), chosen.get("age"), "any age")
        + f'<input name="q" id="f-q" placeholder="saga id" value="{_e(chosen.get("q", ""))}">'
        + "<button>Filter</button></form>"
    )
    chips = "".join(
        f'<a class="count" href="/?{urlencode({**chosen, "status": s})}">{_badge(s)} '
        f'<b data-status="{_e(s)}">{n}</b></a>'
        for s, n in sorted(counts.items())
    )
    rows = "".join(
        "<tr>"
        f'<td><a href="/saga/{quote(s.saga_type)}/{quote(s.saga_id, safe="")}">'
        f"{_e(s.saga_id)}</a></td>"
        f"<td>{_e(s.saga_type)}</td><td>{_badge(s.status)}</td>"
        f"<td>{_e(next(iter(s.tokens), ''))}</td>"
        f"<td>{when(s.started_ms)}</td><td>{span(max(0, now_ms - s.updated_ms))} ago</td></tr>"
        for s in sagas
    )
    note = " (the newest 1000 per type)" if capped else ""
    stuck = counts.get("stuck", 0)
    stuck_note = (
        f'<div class="stuck-note"><p>{stuck} stuck: an error in the saga\'s own code stopped '
        "each. Open one to see the error; resume it once the fix is deployed.</p></div>"
        if stuck
        else ""
    )
    doubt = counts.get("in-doubt", 0)
    doubt_note = (
        f'<p class="in-doubt-note">{doubt} in doubt: each waits for its pivot\'s answer after '
        "the pivot's deadline. Open one to see the step; settle it with "
        "<code>sagas settle TYPE ID --done|--not-done --reason TEXT</code></p>"
        if doubt
        else ""
    )
    return (
        f"<h1>Sagas</h1>{form}<div class=counts>{chips}</div>{stuck_note}{doubt_note}"
        f"<p class=muted>{len(sagas)} shown{note}</p>"
        '<table id="sagas"><thead><tr><th>id</th><th>type</th><th>status</th><th>step</th>'
        f"<th>started</th><th>updated</th></tr></thead><tbody>{rows}</tbody></table>"
    )


@dataclass(frozen=True)
class Row:
    """One timeline row: an event with the gap since the previous one."""

    at_ms: int
    gap_ms: int | None
    event: str
    step: str | None
    attempt: int | None
    command_id: str | None
    outcome: str | None
    reason: str | None


def timeline(entries: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Timeline rows from history entries (``at_ms``, ``event``, ``step``, ``attempt``,
    ``command_id``, ``outcome``, ``reason``); a reply's step and attempt are its command's."""
    sent: dict[str, tuple[str | None, int | None]] = {}
    rows: list[Row] = []
    previous: int | None = None
    for e in entries:
        step, attempt, cid = e.get("step"), e.get("attempt"), e.get("command_id")
        if cid and e.get("event") == "command_sent":
            sent[cid] = (step, attempt)
        elif cid and cid in sent:
            step, attempt = step or sent[cid][0], attempt or sent[cid][1]
        at = int(e["at_ms"])
        reason = e.get("reason")
        body = e.get("body") or {}
        if not reason and "timer_id" in body:  # which timer, and when it is due
            due = body.get("due_ms")
            reason = f"timer {body['timer_id']}" + (f", due +{span(due - at)}" if due else "")
        rows.append(
            Row(
                at,
                None if previous is None else at - previous,
                str(e["event"]),
                step,
                attempt,
                cid,
                e.get("outcome"),
                reason,
            )
        )
        previous = at
    return rows


def _timers(state: SagaState, now_ms: int) -> str:
    if not state.timers:
        return "<p class=muted>none</p>"
    items = "".join(
        f"<tr><td>{_e(t)}</td><td>{when(due)}</td><td>{_until(due, now_ms)}</td></tr>"
        for t, due in sorted(state.timers.items(), key=lambda kv: kv[1])
    )
    return f'<table id="timers"><tbody>{items}</tbody></table>'


def _until(due: int, now_ms: int) -> str:
    return f"in {span(due - now_ms)}" if due >= now_ms else f"{span(now_ms - due)} overdue"


def _action_forms(state: SagaState, steps: Sequence[str]) -> str:
    ids = f'data-type="{_e(state.saga_type)}" data-id="{_e(state.saga_id)}"'
    step_opts = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in steps)
    settle = (
        '<form data-action="settle"><select name="settled">'
        '<option value="done">done: the pivot took effect</option>'
        '<option value="not-done">not done: it did not</option></select>'
        '<input name="reason" placeholder="how you know" required><button>Settle</button></form>'
        if state.status == "in-doubt"
        else ""
    )
    return (
        f'<section class="actions" {ids}><h2>Actions</h2>{settle}'
        '<form data-action="signal"><input name="name" placeholder="signal name" required>'
        '<input name="payload" placeholder=\'{"payload": "json"}\'><button>Signal</button></form>'
        '<form data-action="cancel"><input name="reason" placeholder="reason">'
        "<button>Cancel (compensate)</button></form>"
        '<form data-action="terminate"><input name="reason" placeholder="reason" required>'
        "<button>Terminate (no compensation)</button></form>"
        f'<form data-action="resume"><select name="step"><option value="">stuck or last failed step'
        f"</option>{step_opts}</select><button>Resume</button></form></section>"
    )


def saga_page(
    state: SagaState | None,
    saga_type: str,
    saga_id: str,
    rows: Sequence[Row],
    *,
    diagram: str,
    note: str,
    actions: bool,
    steps: Sequence[str],
    now_ms: int,
    namespace: str = "",
) -> str:
    """One saga: its status, timeline, data, timers, diagram and (with a token) actions; an
    in-doubt saga also says which pivot it waits on and how to settle it."""
    head = f"<h1>{_e(saga_type)} <code>{_e(saga_id)}</code> "
    if state is None:
        head += '<span class="status">no snapshot</span></h1>'
    else:
        head += f"{_badge(state.status)}</h1><p class=muted>version {state.version}, started "
        head += f"{when(state.started_ms)}, updated {when(state.updated_ms)}"
        head += f"{' · ' + _e(state.reason) if state.reason else ''}</p>"
        if state.held is not None:
            head += (
                f"<p class=muted>held: {_e(state.held[1])} (if the pivot was not done, the saga "
                f"ends {_e(state.held[0])})</p>"
            )
        if state.status == "in-doubt":
            head += _in_doubt_note(state, namespace)
        if state.stuck is not None:
            head += _stuck_note(state, namespace)
    body_rows = "".join(
        f'<tr class="ev-{_e(r.event)}"><td title="{when(r.at_ms)}">{when(r.at_ms)[11:]}</td>'
        f"<td class=gap>{'' if r.gap_ms is None else '+' + span(r.gap_ms)}</td>"
        f"<td class=event>{_e(r.event)}</td><td>{_e(r.step)}</td><td>{_e(r.attempt)}</td>"
        f"<td><code>{_e(r.command_id)}</code></td><td>{_e(r.outcome)}</td><td>{_e(r.reason)}</td></tr>"
        for r in rows
    )
    table = (
        '<table id="timeline"><thead><tr><th>time</th><th>gap</th><th>event</th><th>step</th>'
        "<th>attempt</th><th>command id</th><th>outcome</th><th>reason</th></tr></thead>"
        f"<tbody>{body_rows}</tbody></table>"
    )
    data = (
        "<p class=muted>gone</p>"
        if state is None
        else f'<pre id="data">{_e(json.dumps(state.data, indent=2, sort_keys=True))}</pre>'
    )
    side = (
        f"<section><h2>Data</h2>{data}</section>"
        "<section><h2>Pending timers</h2>"
        f"{'' if state is None else _timers(state, now_ms)}</section>"
        f'<section><h2>Definition</h2><div class="diagram-box">{diagram}</div></section>'
    )
    acts = _action_forms(state, steps) if actions and state is not None else ""
    return (
        f"{head}<div class=cols><section class=main><h2>Timeline</h2>"
        f"<p class=muted>{_e(note)}</p>{table}</section><aside>{side}{acts}</aside></div>"
    )


def dlq_page(
    topics: Sequence[str], chosen: str | None, letters: Sequence[Any], *, actions: bool, error: str
) -> str:
    """Dead letters of one topic, newest first."""
    links = "".join(
        f'<a class="tab{" on" if t == chosen else ""}" href="/dlq?{urlencode({"topic": t})}">'
        f"{_e(t)}</a>"
        for t in topics
    )
    rows = "".join(
        f"<tr><td>{when(d.at_ms)}</td><td>{d.partition}@{d.offset}</td><td>{_e(d.saga_id)}</td>"
        f"<td>{_e(d.reason_class)}</td><td class=reason>{_e(d.reason)}</td>"
        f"<td>{_e('/'.join(map(str, d.source)) if d.source else '')}</td>"
        f"<td>{'replayed' if d.replayed else ''}"
        + (
            f'<button data-replay="{d.offset}" data-topic="{_e(d.dlq)}">Replay</button>'
            if actions and d.replayable
            else ""
        )
        + "</td></tr>"
        for d in letters
    )
    problem = f'<p class="error">{_e(error)}</p>' if error else ""
    return (
        f"<h1>Dead letters</h1><div class=tabs>{links}</div>{problem}"
        '<table id="dlq"><thead><tr><th>time</th><th>at</th><th>saga</th><th>class</th>'
        f"<th>reason</th><th>source</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
