"""OpenTelemetry traces of sagas (the ``otel`` extra): :class:`TracingObserver`.

One trace per saga: a worker's observer writes a span per step (from the step's entry to its end)
and one for the saga (from its start to its end); a participant's writes a span per handled
command. Each carries ``saga.id``, ``saga.type``, ``saga.step`` and ``saga.command_id``
(without its tag) as attributes.

How the processes agree on the trace without passing it along: its trace id is derived from the
saga (the first 16 bytes of SHA-256 over ``<saga type>/<saga id>``), and every span is a child of
one virtual root span whose id is derived the same way. A worker and the participants (in any
language) reach the same trace without reading each other. The root itself is never written;
trace viewers show the saga's spans under it. Linking a saga's trace to the caller's trace (the
client's ``start``) needs the W3C ``traceparent`` carried in the inbox and command headers (see
the wire contract), which the wire format reserves.

Nothing is imported from OpenTelemetry until a :class:`TracingObserver` is made, and a worker
without one pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagas.engine.ids import parse_command_id, public_command_id
from sagas.engine.model import JournalEvent
from sagas.observe.steps import OpenSteps
from sagas.protocol import COMMAND_ID, SAGA_ID, SAGA_TYPE, saga_trace_ids
from sagas.runtime.observe import Observer

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TracerProvider

__all__ = ["TracingObserver"]

_MS = 1_000_000  # nanoseconds


class TracingObserver(Observer):
    """Writes spans of sagas, steps and handled commands (see the module docstring).

    Args:
        tracer_provider: where spans go (default: OpenTelemetry's global provider).

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the ``otel`` extra).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            from sagas.errors import ConfigurationError

            raise ConfigurationError(
                "tracing needs OpenTelemetry: pip install 'kafka-sagas[otel]'"
            ) from exc
        self.tracer = trace.get_tracer("sagas", tracer_provider=tracer_provider)
        self._steps = OpenSteps()
        self._started: dict[tuple[str, str], int] = {}

    def _context(self, saga_type: str, saga_id: str) -> Context:
        from opentelemetry import trace

        trace_id, root = saga_trace_ids(saga_type, saga_id)
        parent = trace.SpanContext(
            trace_id, root, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))

    def _span(
        self,
        name: str,
        saga_type: str,
        saga_id: str,
        *,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        error: bool = False,
    ) -> None:
        from opentelemetry import trace

        span = self.tracer.start_span(
            name,
            context=self._context(saga_type, saga_id),
            kind=trace.SpanKind.INTERNAL,
            start_time=start_ns,
            attributes={"saga.id": saga_id, "saga.type": saga_type, **attributes},
        )
        if error:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=max(start_ns, end_ns))

    def saga_events(self, saga_type: str, events: Sequence[JournalEvent]) -> None:
        """A span per ended step; one for the saga when it ends."""
        for event in events:
            if event.type == "started":
                self._started[(saga_type, event.saga_id)] = event.at_ms
            ended = self._steps.see(saga_type, event)
            if ended is not None and ended.result != "abandoned":
                attributes = {"saga.step": ended.step, "saga.step.result": ended.result}
                if ended.command_id:
                    attributes["saga.command_id"] = public_command_id(ended.command_id)
                self._span(
                    f"step {ended.step}",
                    saga_type,
                    event.saga_id,
                    start_ns=ended.started_ms * _MS,
                    end_ns=ended.ended_ms * _MS,
                    attributes=attributes,
                    error=ended.result != "completed",
                )
            if event.type == "finished":
                began = self._started.pop((saga_type, event.saga_id), None)
                if began is None:
                    continue  # started before this process owned it: no whole-saga span
                status = str(event.body.get("status", ""))
                self._span(
                    f"saga {saga_type}",
                    saga_type,
                    event.saga_id,
                    start_ns=began * _MS,
                    end_ns=event.at_ms * _MS,
                    attributes={"saga.status": status},
                    error=status != "completed",
                )

    def command_handled(
        self, group: str, command_type: str, *, outcome: str, seconds: float, headers: Any
    ) -> None:
        """A span per handled command, in its saga's trace."""
        if not isinstance(headers, dict) or not headers.get(SAGA_ID):
            return
        import time

        end = time.time_ns()
        cid = str(headers.get(COMMAND_ID, ""))
        ref = parse_command_id(cid)
        self._span(
            f"handle {command_type}",
            str(headers.get(SAGA_TYPE, "")),
            str(headers[SAGA_ID]),
            start_ns=end - int(seconds * 1e9),
            end_ns=end,
            attributes={
                "saga.step": ref.step if ref else "",
                "saga.command_id": public_command_id(cid),
                "saga.command_type": command_type,
                "saga.outcome": outcome,
                "messaging.consumer.group.name": group,
            },
            error=outcome not in ("success", "none"),
        )
