"""A saga definition's step graph as SVG, drawn here (no JavaScript, nothing fetched).

The layout is layered: each block sits one row below the latest block that leads to it, a
parallel's branches side by side, their join one row below the longest branch. Blocks the saga
is in are marked ``current``, those it finished ``done``, the one whose compensation runs
``undoing``, those compensated ``undone``, the steps that failed ``failed`` and the one where
the saga's own code raised ``stuck`` (each mark also a sign in the block's corner and its
tooltip). The graph and each block's text come from :meth:`sagas.dsl.program.Program.graph`
and :func:`sagas.dsl.program.block_face`, which the Mermaid text
(:meth:`~sagas.dsl.program.Program.mermaid`) draws too.
"""

from __future__ import annotations

from collections.abc import Collection
from html import escape

from sagas.dsl.program import END, START, Program, block_face

__all__ = ["diagram_svg"]

_W, _H, _GAP_X, _GAP_Y = 210, 46, 30, 34
_GLYPHS = {"current": "▶", "done": "✓", "undoing": "↺", "undone": "↺", "failed": "✗", "stuck": "!"}
"""A block's mark as a sign in its corner, besides its colours (the later kind wins)."""


def _layers(vertices: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    layer = dict.fromkeys(vertices, 0)
    for _ in range(len(vertices) + 1):  # longest path; a cycle stops growing at the cap
        changed = False
        for src, dst, _label in edges:
            want = min(layer[src] + 1, len(vertices))
            if dst != START and layer.get(dst, 0) < want and src in layer:
                layer[dst] = want
                changed = True
        if not changed:
            break
    return layer


def diagram_svg(
    program: Program,
    *,
    current: Collection[str] = (),
    done: Collection[str] = (),
    undoing: Collection[str] = (),
    undone: Collection[str] = (),
    failed: Collection[str] = (),
    stuck: Collection[str] = (),
) -> str:
    """The step graph of ``program`` as an ``<svg>`` element, blocks marked by state."""
    kinds = (
        ("current", current),
        ("done", done),
        ("undoing", undoing),
        ("undone", undone),
        ("failed", failed),
        ("stuck", stuck),
    )
    vertices, edges = program.graph()
    layer = _layers(vertices, edges)
    rows: dict[int, list[str]] = {}
    for v in vertices:
        rows.setdefault(layer[v], []).append(v)
    pos = _place(rows, edges)
    width = max(x for x, _ in pos.values()) + _W / 2 + _GAP_X + 40
    height = (max(rows) + 1) * (_H + _GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(program.name)} steps">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z"/></marker></defs>',
    ]
    for src, dst, label in edges:
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        y1 += _small(src) or _H
        skips = layer[dst] - layer[src] > 1 and x1 == x2  # would cross the rows between
        if y2 > y1 and skips:  # bulge to the right of what lies between
            bulge = x1 + _W / 2 + 60
            path = f"M{x1:.0f},{y1:.0f} C{bulge:.0f},{y1 + 20:.0f} {bulge:.0f},{y2 - 20:.0f} "
            path += f"{x2:.0f},{y2:.0f}"
            x1 = x2 = bulge - 40
        elif y2 > y1:
            mid = (y1 + y2) / 2
            path = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}"
        else:  # back to an earlier row: around the side
            side = width - 8
            path = f"M{x1 + _W / 2:.0f},{y1 - _H / 2:.0f} C{side},{y1:.0f} {side},{y2:.0f} "
            path += f"{x2 + _W / 2:.0f},{y2 + _H / 2:.0f}"
        parts.append(f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>')
        if label and label != "joined":
            parts.append(
                f'<text class="edge-label" x="{(x1 + x2) / 2 + 6:.0f}" y="{(y1 + y2) / 2:.0f}">'
                f"{escape(label)}</text>"
            )
    for v in vertices:
        x, y = pos[v]
        if _small(v):
            text = "join" if v.endswith("(join)") else v.strip("()")
            parts.append(
                '<g class="node terminal">'
                f'<ellipse cx="{x:.0f}" cy="{y + 13:.0f}" rx="34" ry="13"/>'
                f'<text x="{x:.0f}" y="{y + 17:.0f}">{escape(text)}</text></g>'
            )
            continue
        marks = [m for m, names in kinds if v in names]
        node = program.nodes[v]
        tip = f"{v}: {', '.join(marks)}" if marks else f"{v}: not reached"
        glyph = next((_GLYPHS[m] for m in reversed(marks)), "")
        parts.append(
            f'<g class="{" ".join(["node", *marks])}" data-step="{escape(v)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x - _W / 2:.0f}" y="{y:.0f}" width="{_W}" height="{_H}" rx="6"/>'
            f'<text class="name" x="{x:.0f}" y="{y + 19:.0f}">{escape(_fit(v, 28))}</text>'
            f'<text class="sub" x="{x:.0f}" y="{y + 36:.0f}">'
            f"{escape(_fit(block_face(node).summary, 34))}</text>"
            + (
                f'<text class="glyph" x="{x + _W / 2 - 12:.0f}" y="{y + 16:.0f}">{glyph}</text>'
                if glyph
                else ""
            )
            + "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _place(
    rows: dict[int, list[str]], edges: list[tuple[str, str, str]]
) -> dict[str, tuple[float, float]]:
    """Centres of the vertices: each row top-down, each vertex under the mean of its
    predecessors, pushed right where it would overlap its left neighbour."""
    preds: dict[str, list[str]] = {}
    for src, dst, _label in edges:
        preds.setdefault(dst, []).append(src)
    pos: dict[str, tuple[float, float]] = {}
    step = _W + _GAP_X
    for row in sorted(rows):
        y = _GAP_Y / 2 + row * (_H + _GAP_Y)
        wanted = []
        for i, v in enumerate(rows[row]):
            xs = [pos[p][0] for p in preds.get(v, []) if p in pos]
            wanted.append((sum(xs) / len(xs) if xs else _W / 2 + _GAP_X + i * step, i, v))
        wanted.sort()
        if len(wanted) > 1:  # spread siblings around their parents' centre
            centre = sum(w for w, _, _ in wanted) / len(wanted)
            wanted = [
                (centre + (k - (len(wanted) - 1) / 2) * step, i, v)
                for k, (_, i, v) in enumerate(wanted)
            ]
        last = None
        for want, _, v in wanted:
            x = want if last is None else max(want, last + step)
            pos[v] = (x, y)
            last = x
    shift = _W / 2 + _GAP_X - min(x for x, _ in pos.values())
    return {v: (x + shift, y) for v, (x, y) in pos.items()}


def _small(vertex: str) -> int:
    """The height of a round vertex (start, end, a join); 0 for a block."""
    return 26 if vertex in (START, END) or vertex.endswith("(join)") else 0


def _fit(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
