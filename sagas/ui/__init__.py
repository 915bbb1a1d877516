"""The web UI (``sagas ui``): sagas, their timelines and definitions, dead letters.

See :mod:`sagas.ui.server`. Its pages, styles and script ship in this package; nothing is
fetched at run time.
"""

from __future__ import annotations

__all__: list[str] = []
