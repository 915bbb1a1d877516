"""Check that the record schemas evolve without breaking a reader: ``python -m sagas.serde.compat``.

The mode is FULL_TRANSITIVE. For every schema ``schemas/X.avsc`` and every version
``schemas/history/X.v<N>.avsc``:

- backward: the current schema reads records written with version N (a new worker restores the
  snapshots and journal events of every earlier release from the changelog);
- forward: version N reads records written with the current schema (during a rolling upgrade old
  workers, and participants in other languages built on older ``.avsc`` files, read what new
  ones write).

It also checks the history itself: file names are ``<full name>.v<N>.avsc`` with N = 1, 2, ...
and no gaps, each history file names the record its file name says, and the newest version is
the current schema (so an edited schema cannot ship without its history entry, and the version
it replaces is already kept). The compatibility rules are those of the ``avro`` package's
``ReaderWriterCompatibilityChecker``, the Java implementation's algorithm.

Exit status: 0 when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.errors import AvroException
from avro.schema import parse

__all__ = ["check", "main"]

_HISTORY_NAME = re.compile(r"^(?P<name>.+)\.v(?P<n>[1-9][0-9]*)\.avsc$")

# What each incompatibility means for the person who changed the schema.
_HINTS = {
    "reader_field_missing_default_value": "the reader has this field and the writer lacks it: "
    "give the field a default",
    "type_mismatch": "a field's type changed to one Avro cannot promote",
    "name_mismatch": "a record, enum or fixed name changed (use aliases)",
    "missing_enum_symbols": "the reader's enum lacks symbols the writer may write",
    "missing_union_branch": "the reader's union lacks a branch the writer may write",
    "fixed_size_mismatch": "a fixed type's size changed",
}


@dataclass(frozen=True)
class _Version:
    path: Path
    text: str
    parsed: Any


def _load(path: Path, problems: list[str]) -> _Version | None:
    text = path.read_text()
    try:
        return _Version(path, text, parse(text))
    except (AvroException, ValueError) as exc:
        problems.append(f"{path}: not a valid Avro schema: {exc}")
        return None


def _explain(result: Any) -> str:
    kinds = sorted(t.value for t in result.incompatibilities)
    hints = "; ".join(_HINTS.get(k, k) for k in kinds)
    # The checker also reports the root of every path it walked; the leaves say where.
    where = sorted(loc for loc in result.locations if loc != "/") or ["/"]
    return (
        f"{', '.join(kinds)} ({'; '.join(sorted(map(str, result.messages)))}) at "
        f"{', '.join(where)}: {hints}"
    )


def _compatible(reader: Any, writer: Any) -> str | None:
    """None when ``reader`` reads what ``writer`` wrote, else what breaks."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return _explain(result)


def _history(folder: Path, problems: list[str]) -> dict[str, dict[int, _Version]]:
    versions: dict[str, dict[int, _Version]] = {}
    for path in sorted((folder / "history").glob("*.avsc")):
        match = _HISTORY_NAME.match(path.name)
        if match is None:
            problems.append(f"{path}: a history file must be named <full name>.v<N>.avsc")
            continue
        loaded = _load(path, problems)
        if loaded is None:
            continue
        if loaded.parsed.fullname != match["name"]:
            problems.append(
                f"{path}: the file holds {loaded.parsed.fullname}, its name says {match['name']}"
            )
            continue
        versions.setdefault(match["name"], {})[int(match["n"])] = loaded
    return versions


def check(folder: Path) -> list[str]:
    """Every problem of the schemas in ``folder`` and ``folder/history``; empty when none."""
    problems: list[str] = []
    current: dict[str, _Version] = {}
    for path in sorted(folder.glob("*.avsc")):
        loaded = _load(path, problems)
        if loaded is None:
            continue
        if path.name != f"{loaded.parsed.fullname}.avsc":
            problems.append(f"{path}: holds {loaded.parsed.fullname}; name the file after it")
        current[loaded.parsed.fullname] = loaded
    history = _history(folder, problems)
    for name in sorted(set(history) - set(current)):
        problems.append(
            f"history has {name} but {folder} has no {name}.avsc: a record type that was "
            "written stays readable, so keep its current schema"
        )
    for name, now in sorted(current.items()):
        versions = history.get(name, {})
        newest = max(versions, default=0)
        gaps = sorted(set(range(1, newest + 1)) - set(versions))
        if gaps:
            problems.append(
                f"{name}: history lacks v{', v'.join(map(str, gaps))}; never delete a history "
                "version (records written with it may still be in the topics)"
            )
        if newest == 0 or json.loads(versions[newest].text) != json.loads(now.text):
            problems.append(
                f"{now.path} is not its newest history version (v{newest}): copy it to "
                f"{folder / 'history' / f'{name}.v{newest + 1}.avsc'}"
            )
        for n, old in sorted(versions.items()):
            if broken := _compatible(now.parsed, old.parsed):
                problems.append(
                    f"{name}: backward: the current schema cannot read records written with "
                    f"v{n}: {broken}"
                )
            if broken := _compatible(old.parsed, now.parsed):
                problems.append(
                    f"{name}: forward: v{n} cannot read records written with the current "
                    f"schema: {broken}"
                )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Check the folder given as the only argument, else the schemas shipped with the package."""
    from sagas.serde.avro import schema_dir

    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0]) if args else schema_dir()
    problems = check(folder)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"schema check failed: {len(problems)} problem(s) in {folder}", file=sys.stderr)
        return 1
    print(f"schemas in {folder}: every current schema is FULL_TRANSITIVE compatible with history")
    return 0


if __name__ == "__main__":
    sys.exit(main())
