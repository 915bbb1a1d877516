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
    "LEGEND",
    "STATUSES",
    "Row",
    "dlq_page",
    "failures",
    "list_page",
    "page",
    "saga_page",
    "said",
    "settle_hint",
    "step_marks",
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


def _why(state: SagaState) -> str:
    """What a list row says about why: the stuck error, the reason it failed or compensated
    for, or the reason a cancel or deadline waits on its pivot for."""
    if state.stuck is not None:
        return f"stuck at {state.stuck.get('step') or 'its start'}: {state.stuck.get('message')}"
    if state.reason:
        return state.reason
    return state.held[1] if state.held is not None else ""


def _reason_cell(text: str) -> str:
    """A one-line reason, cut to the column's width; the full text on hover."""
    if not text:
        return "<td class=why></td>"
    return f'<td class=why title="{_e(text)}"><span>{_e(text)}</span></td>'


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
        f"<td>{_e(next(iter(s.tokens), ''))}</td>{_reason_cell(_why(s))}"
        f"<td class=when>{when(s.started_ms)}</td>"
        f"<td class=when>{span(max(0, now_ms - s.updated_ms))} ago</td></tr>"
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
        '<div class=scroll><table id="sagas"><thead><tr><th>id</th><th>type</th><th>status</th>'
        "<th>step</th><th>reason</th><th>started</th><th>updated</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


@dataclass(frozen=True)
class Row:
    """One timeline row: an event with the gap since the previous one; ``said`` is the
    participant's own reason (its failure reply's ``message``/``error``), on the failed reply
    and on the step failure it caused."""

    at_ms: int
    gap_ms: int | None
    event: str
    step: str | None
    attempt: int | None
    command_id: str | None
    outcome: str | None
    reason: str | None
    said: str | None = None


def said(payload: object) -> str | None:
    """A participant's reason from a failure reply's payload: its ``message``, with its
    ``error`` code when that adds something (``CommandFailed("no stock", error="sold-out")``)."""
    if not isinstance(payload, Mapping):
        return None
    message = str(payload.get("message") or "").strip()
    error = str(payload.get("error") or payload.get("reason") or "").strip()
    if message and error and error != "failed" and error not in message:
        return f"{message} ({error})"
    return message or error or None


def timeline(entries: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Timeline rows from history entries (``at_ms``, ``event``, ``step``, ``attempt``,
    ``command_id``, ``outcome``, ``reason``, ``body``); a reply's step and attempt are its
    command's, and a failure reply's words go on it and on the step failure that follows."""
    sent: dict[str, tuple[str | None, int | None]] = {}
    words: dict[str, str] = {}  # step -> what its last failed reply said
    rows: list[Row] = []
    previous: int | None = None
    for e in entries:
        event = str(e["event"])
        step, attempt, cid = e.get("step"), e.get("attempt"), e.get("command_id")
        if cid and event == "command_sent":
            sent[cid] = (step, attempt)
        elif cid and cid in sent:
            step, attempt = step or sent[cid][0], attempt or sent[cid][1]
        at = int(e["at_ms"])
        reason = e.get("reason")
        body = e.get("body") or {}
        if not reason and "timer_id" in body:  # which timer, and when it is due
            due = body.get("due_ms")
            reason = f"timer {body['timer_id']}" + (f", due +{span(due - at)}" if due else "")
        said_here: str | None = None
        if event == "reply_accepted" and e.get("outcome") not in (None, "success"):
            said_here = said(body.get("payload"))
            if step and said_here:
                words[step] = said_here
        elif event == "command_sent" and step:
            words.pop(step, None)  # a new attempt: an earlier answer is no longer why
        elif event == "step_failed" and step:
            said_here = words.pop(step, None)
        rows.append(
            Row(
                at,
                None if previous is None else at - previous,
                event,
                step,
                attempt,
                cid,
                e.get("outcome"),
                reason,
                said_here,
            )
        )
        previous = at
    return rows


def failures(rows: Sequence[Row]) -> list[tuple[str, str, str | None]]:
    """The steps that failed, in order: (step, the participant's reason or the engine's,
    the engine's reason when the participant's is shown)."""
    found: dict[str, tuple[str, str, str | None]] = {}
    for r in rows:
        if r.event == "step_failed" and r.step:
            engine = r.reason or "failed"
            found[r.step] = (r.step, r.said, engine) if r.said else (r.step, engine, None)
        elif r.event == "step_completed" and r.step:
            found.pop(r.step, None)  # it failed, then ran again and completed
    return list(found.values())


def step_marks(state: SagaState | None, rows: Sequence[Row]) -> dict[str, set[str]]:
    """How the step graph marks each block, from the snapshot and the journal's rows:
    ``done``, ``current``, ``failed``, ``undoing`` (its compensation runs), ``undone`` (its
    compensation completed) and ``stuck`` (the saga's own code raised there)."""
    done: set[str] = set(state.completed) if state is not None else set()
    if state is None:
        done |= {r.step for r in rows if r.event == "step_completed" and r.step}
    undone = {r.step for r in rows if r.event == "undo_done" and r.step}
    failed = {f[0] for f in failures(rows)}
    undoing = {state.undo.step} if state is not None and state.undo is not None else set()
    current = set(state.tokens) if state is not None and not state.terminal else set()
    stuck: set[str] = set()
    if state is not None and state.stuck is not None and state.stuck.get("step"):
        stuck.add(str(state.stuck["step"]))
    return {
        "done": done - undone - undoing - failed,
        "current": current - undoing - failed - stuck,
        "failed": failed,
        "undoing": undoing,
        "undone": undone - undoing,
        "stuck": stuck,
    }


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


def _failure_note(rows: Sequence[Row]) -> str:
    items = "".join(
        f'<p><b>{_e(step)}</b> failed: <q class="said">{_e(text)}</q>'
        f"{f' <span class=muted>({_e(engine)})</span>' if engine else ''}</p>"
        for step, text, engine in failures(rows)
    )
    return f'<div class="failure-note" id="failure">{items}</div>' if items else ""


def _parts(ident: str | None) -> str:
    """An id that may break after each ``:`` (``s-1:charge:2``, ``charge:deadline:1``)."""
    return _e(ident).replace(":", ":<wbr>")


def _reason(r: Row) -> str:
    text = _e(r.reason)
    if r.said and r.said != r.reason:
        text += " — " if text else ""
        text += f'<q class="said" title="the participant\'s reason">{_e(r.said)}</q>'
    return text


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
    """One saga: its status, why a step failed (the participant's own reason), timeline, data,
    timers, diagram and (with a token) actions; an in-doubt saga also says which pivot it waits
    on and how to settle it, a stuck one where its code raised."""
    head = f'<div class="saga-head"><h1>{_e(saga_type)} <code>{_e(saga_id)}</code> '
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
    head += _failure_note(rows) + "</div>"
    body_rows = "".join(
        f'<tr class="ev-{_e(r.event)}"><td class=when title="{when(r.at_ms)}">'
        f"{when(r.at_ms)[11:]}</td>"
        f"<td class=gap>{'' if r.gap_ms is None else '+' + span(r.gap_ms)}</td>"
        f"<td class=event>{_e(r.event)}</td><td class=step>{_parts(r.step)}</td>"
        f"<td class=attempt>{_e(r.attempt)}</td>"
        f"<td class=cid><code>{_parts(r.command_id)}</code></td>"
        f"<td class=outcome>{_e(r.outcome)}</td><td class=reason>{_reason(r)}</td></tr>"
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
        f'<section id="data-panel"><h2>Data</h2>{data}</section>'
        '<section id="timers-panel"><h2>Pending timers</h2>'
        f"{'' if state is None else _timers(state, now_ms)}</section>"
        f'<section id="definition"><h2>Definition</h2><div class="diagram-box">{diagram}</div>'
        f"{LEGEND if diagram else ''}</section>"
    )
    acts = _action_forms(state, steps) if actions and state is not None else ""
    return (
        f'{head}<div class=cols><section class=main id="timeline-panel"><h2>Timeline</h2>'
        f"<p class=muted>{_e(note)}</p><div class=scroll>{table}</div></section>"
        f"<aside>{side}{acts}</aside></div>"
    )


LEGEND = (
    '<ul class="legend" aria-label="what the marks mean">'
    + "".join(
        f'<li><i class="swatch {c}"></i>{t}</li>'
        for c, t in (
            ("done", "done"),
            ("current", "current"),
            ("failed", "failed"),
            ("undoing", "undoing"),
            ("undone", "undone (compensated)"),
            ("stuck", "stuck (code raised)"),
            ("", "not reached"),
        )
    )
    + "</ul>"
)
"""The step graph's marks, explained under it."""


def _saga_link(saga_type: str | None, saga_id: str | None) -> str:
    if not saga_id:
        return ""
    if not saga_type:
        return _e(saga_id)
    href = f"/saga/{quote(saga_type)}/{quote(saga_id, safe='')}"
    title = f"{_e(saga_type)} {_e(saga_id)}"
    return f'<a class="saga-link" href="{href}" title="{title}">{_e(saga_id)}</a>'


def dlq_page(
    topics: Sequence[str],
    chosen: str | None,
    letters: Sequence[Any],
    *,
    actions: bool,
    error: str,
    saga_types: Mapping[str, str] | None = None,
) -> str:
    """Dead letters of one topic, newest first; a letter that names a saga (its key or
    ``saga-id`` header) links to it when its topic is a saga type's (``saga_types``: dead-letter
    topic -> saga type)."""
    types = saga_types or {}
    links = "".join(
        f'<a class="tab{" on" if t == chosen else ""}" href="/dlq?{urlencode({"topic": t})}">'
        f"{_e(t)}</a>"
        for t in topics
    )
    rows = "".join(
        f"<tr><td class=when>{when(d.at_ms)}</td><td>{d.partition}@{d.offset}</td>"
        f"<td class=saga>{_saga_link(types.get(d.dlq), d.saga_id)}</td>"
        f"<td>{_e(d.reason_class)}</td><td class=reason>{_e(d.reason)}</td>"
        f"<td class=source>{_e('/'.join(map(str, d.source)) if d.source else '')}</td>"
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
        '<div class=scroll><table id="dlq"><thead><tr><th>time</th><th>at</th><th>saga</th>'
        "<th>class</th><th>reason</th><th>source</th><th></th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )
