"""``sagas describe``: the steps, topics, schemas and Mermaid diagram of each saga in an app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sagas.cli.options import app_dir_option, json_option
from sagas.cli.output import print_json, text_table
from sagas.runtime.target import load_app

if TYPE_CHECKING:
    from sagas.app import App

__all__ = ["describe", "describe_app"]


def describe_app(app: App) -> dict[str, Any]:
    """Every saga type and version of ``app``: steps, topics, schemas and Mermaid diagram."""
    sagas: list[dict[str, Any]] = []
    for saga_type in app.saga_types:
        names = app.topics(saga_type)
        for version in app.versions(saga_type):
            program = app.program(saga_type, version)
            steps = []
            for node in program.nodes.values():
                block = node.block
                undo = node.compensation
                steps.append(
                    {
                        "name": node.name,
                        "block": type(block).__name__,
                        "kind": getattr(block, "kind", None),
                        "command": getattr(block, "command", None)
                        or getattr(getattr(block, "start", None), "command", None),
                        "topic": getattr(block, "topic", None),
                        "compensation": undo.command if undo is not None else None,
                    }
                )
            sagas.append(
                {
                    "saga_type": saga_type,
                    "version": version,
                    "deadline_ms": program.deadline_ms,
                    "steps": steps,
                    "topics": {
                        "inbox": names.inbox,
                        "state": names.state,
                        "journal": names.journal,
                        "dlq": names.dlq,
                        "commands": list(program.topics),
                    },
                    "schemas": {
                        "records": list(program.record_types),
                        "payloads": {
                            command: _schema_name(schema)
                            for command, schema in program.payload_schemas.items()
                        },
                    },
                    "mermaid": program.mermaid(),
                }
            )
    return {"namespace": app.namespace, "partitions": app.partitions, "sagas": sagas}


def _schema_name(schema: object) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name", "record"))
    if isinstance(schema, type):
        return f"{schema.__module__}.{schema.__qualname__}"
    return str(schema)


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--namespace", help="topic prefix when the target is not an App")
@app_dir_option
@json_option
def describe(*, target: str, namespace: str | None, app_dir: str | None, as_json: bool) -> int:
    """Steps, topics, schemas and the Mermaid diagram of each saga in an app."""
    described = describe_app(load_app(target, namespace, app_dir))
    if as_json:
        print_json(described)
        return 0
    out = [f"namespace {described['namespace']} ({described['partitions']} partitions)"]
    for saga in described["sagas"]:
        deadline = saga["deadline_ms"]
        out.append("")
        out.append(
            f"{saga['saga_type']} v{saga['version']}"
            + (f" (deadline {deadline / 1000:g} s)" if deadline else "")
        )
        rows = [
            (
                s["name"],
                s["block"],
                s["kind"] or "",
                s["command"] or "",
                s["topic"] or "",
                s["compensation"] or "",
            )
            for s in saga["steps"]
        ]
        out.append(text_table(("STEP", "BLOCK", "KIND", "COMMAND", "TOPIC", "COMPENSATION"), rows))
        topics = saga["topics"]
        out.append(
            f"topics: {topics['inbox']}, {topics['state']}, {topics['journal']}, {topics['dlq']}"
            f"; commands to {', '.join(topics['commands']) or '-'}"
        )
        payloads = saga["schemas"]["payloads"]
        out.append(
            f"schemas: {', '.join(saga['schemas']['records'])}"
            + "".join(f"; {c}: {n}" for c, n in sorted(payloads.items()))
        )
        out.append("```mermaid")
        out.append(saga["mermaid"].rstrip())
        out.append("```")
    click.echo("\n".join(out))
    return 0
