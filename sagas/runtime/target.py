"""Load a user's app the way they run it: ``MODULE:ATTR`` imported from the working directory
(or ``--app-dir``), as ``python`` would, with one line that says what to fix when it fails.

``sagas worker`` loads its app here, and so does each child of ``sagas worker --processes``.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from sagas.errors import ConfigurationError

if TYPE_CHECKING:
    from sagas.app import App

__all__ = ["import_target", "load_app"]

_PACKAGE = Path(__file__).parents[1]


def _on_import_path(app_dir: str | None) -> None:
    """Put ``app_dir`` (default: the working directory) first on the import path, as
    ``python myapp.py`` would.

    Raises:
        ConfigurationError: ``app_dir`` is not a folder.
    """
    folder = Path(app_dir) if app_dir else Path.cwd()
    if not folder.is_dir():
        raise ConfigurationError(
            f"--app-dir {app_dir}: no such folder; name the folder of your module"
        )
    entry = str(folder.resolve())
    if entry not in sys.path:
        sys.path.insert(0, entry)


def import_target(target: str, example: str, app_dir: str | None = None) -> object:
    """The object ``MODULE:ATTR`` names, imported from ``app_dir`` (default: the working directory).

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or fails while importing.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{target!r}: expected MODULE:ATTR, e.g. {example}")
    _on_import_path(app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import {module_name!r} ({exc}); run from the folder that holds it, "
                "pass --app-dir FOLDER, or install it in this environment"
            ) from exc
        raise ConfigurationError(_import_failure(module_name, exc)) from exc
    except SyntaxError as exc:
        raise ConfigurationError(
            f"{exc.filename}:{exc.lineno}: syntax error in {module_name!r}: {exc.msg}; fix the "
            "module and start again"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(_import_failure(module_name, exc)) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None


def _import_failure(module_name: str, exc: BaseException) -> str:
    """One line for an exception raised while a user's module was imported: what, and where."""
    installed = (str(_PACKAGE), sys.prefix, sys.base_prefix, "<")
    frames = traceback.extract_tb(exc.__traceback__)
    users = [f for f in frames if not f.filename.startswith(installed)] or frames
    where = f" at {users[-1].filename}:{users[-1].lineno}" if users else ""
    return (
        f"importing {module_name!r} raised {type(exc).__name__}: {exc}{where}; fix the module "
        f"(python -c 'import {module_name}' shows the traceback)"
    )


def load_app(target: str, namespace: str | None, app_dir: str | None = None) -> App:
    """Import ``MODULE:ATTR``: an App, a compiled saga, or a list of compiled sagas.

    Raises:
        ConfigurationError: the target is malformed, cannot be imported or is of another kind.
    """
    from sagas.app import App
    from sagas.dsl.program import Program

    obj = import_target(target, "processors.orders:app", app_dir)
    if isinstance(obj, App):
        return obj
    programs = [obj] if isinstance(obj, Program) else obj
    if isinstance(programs, list | tuple) and all(isinstance(p, Program) for p in programs):
        return App(namespace or "sagas", programs)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a sagas.App, a compiled saga "
        "(saga.compile()) or a list of them"
    )
