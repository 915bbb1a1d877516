"""See sagas run: Prometheus metrics, JSON logs, OpenTelemetry traces (each an optional extra).

Nothing here is imported by ``import sagas``; each module imports its library when used:

- :mod:`sagas.observe.metrics`: :class:`~sagas.observe.metrics.PrometheusObserver` (extra
  ``observe``: prometheus-client).
- :mod:`sagas.observe.logs`: ``--log-format json`` with the standard library.
- :mod:`sagas.observe.tracing`: :class:`~sagas.observe.tracing.TracingObserver` (extra ``otel``).
"""

from __future__ import annotations

__all__: list[str] = []
