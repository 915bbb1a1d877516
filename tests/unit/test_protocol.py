"""Every wire name lives in :mod:`sagas.protocol`: no module of the package spells a header, a
topic suffix, a group or a transactional id of its own (a new one fails here: add it to
``protocol.py`` and use the name)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from sagas import protocol

PACKAGE = Path(protocol.__file__).resolve().parent
HOME = Path(protocol.__file__).resolve()

# Header names that are not also ordinary words: spelled anywhere else, they are a header.
_DISTINCT = {h for h in protocol.HEADERS if "-" in h} | {protocol.TRACEPARENT}
# Header names that are also ordinary words (JSON fields, labels): a header only where headers
# are read or written.
_WORDS = set(protocol.HEADERS) - _DISTINCT
_HEADER_HOLDERS = {"h", "headers"}
_TOPIC_SUFFIX = re.compile(
    r"^\.(inbox|state|journal|dlq|workers|replies|replayed|replayer|restore|answered|faust"
    r"|faust-reader)(\.|$)"
)
_NAME_KEYWORDS = {"group", "transactional_id"}
_NAME_KEYS = {"group.id", "transactional.id"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() != HOME:
            yield str(path.relative_to(PACKAGE.parent)), ast.parse(path.read_text())


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _holds_headers(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _HEADER_HOLDERS
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "header_dict"
    )


def _spelled(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) of every wire name the module spells itself."""
    for node in ast.walk(tree):
        text = _text(node)
        if text is not None and text in _DISTINCT:
            yield node.lineno, f"header {text!r}"
        if text is not None and _TOPIC_SUFFIX.match(text):
            yield node.lineno, f"topic or group name ending {text!r}"
        word: str | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and _holds_headers(node.func.value) and node.args:
                word = _text(node.args[0])
        elif isinstance(node, ast.Subscript) and _holds_headers(node.value):
            word = _text(node.slice)
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn) for op in node.ops
        ):
            if any(_holds_headers(c) for c in node.comparators):
                word = _text(node.left)
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
            value = node.elts[1]
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "encode"
            ):
                word = _text(node.elts[0])
        if word is not None and word in _WORDS:
            yield node.lineno, f"header {word!r}"
        named: list[ast.expr] = []
        if isinstance(node, ast.Call):
            named = [k.value for k in node.keywords if k.arg in _NAME_KEYWORDS]
        elif isinstance(node, ast.Dict):
            named = [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if k is not None and _text(k) in _NAME_KEYS
            ]
        for value in named:
            if isinstance(value, ast.JoinedStr) or _text(value) is not None:
                yield value.lineno, "a group or transactional id built in place"


def test_every_header_topic_group_and_transactional_id_is_named_in_protocol() -> None:
    found = [f"{name}:{line}: {what}" for name, tree in _modules() for line, what in _spelled(tree)]
    assert found == [], "wire names outside sagas/protocol.py:\n" + "\n".join(found)


def test_the_check_sees_what_it_looks_for() -> None:
    spelled = ast.parse(
        "h.get('outcome')\n"
        "headers['step']\n"
        "'reply-to' in x\n"
        "('reason', why.encode())\n"
        "x = f'{group}.dlq'\n"
        "Loop(transactional_id=f'{group}.{me}')\n"
        "conf = {'group.id': f'sagas-me-{n}'}\n"
        "'reason' in h\n"
    )
    assert sorted(line for line, _ in _spelled(spelled)) == [1, 2, 3, 4, 5, 6, 7, 8]
    innocent = ast.parse("body.get('reason')\nrow['step']\nLoop(group=names.group)\n")
    assert list(_spelled(innocent)) == []
