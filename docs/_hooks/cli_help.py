"""mkdocs hook: the CLI reference page shows every command's ``--help``, read from the code."""

from __future__ import annotations

from typing import Any

MARK = "<!-- sagas --help of every command -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace :data:`MARK` with the help of ``sagas`` and each of its commands."""
    if MARK not in markdown:
        return markdown
    import click

    from sagas.cli import cli

    parts: list[str] = []

    def walk(command: click.Command, path: str) -> None:
        ctx = click.Context(command, info_name=path)
        parts.append(f"## `{path}`\n\n```text\n{command.get_help(ctx)}\n```\n")
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                walk(command.commands[name], f"{path} {name}")

    walk(cli, "sagas")
    return markdown.replace(MARK, "\n".join(parts))
