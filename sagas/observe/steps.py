"""When each step of each saga began, from the journal events a worker commits: what step
durations (metrics) and step spans (traces) are made of."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sagas.engine.model import JournalEvent

__all__ = ["MAX_OPEN_STEPS", "EndedStep", "OpenSteps"]

MAX_OPEN_STEPS = 100_000
"""Most steps remembered at once (the oldest are forgotten first: they go untimed)."""

_ENDS = {"step_completed": "completed", "step_failed": "step_failed", "abandoned": "abandoned"}


@dataclass(frozen=True)
class EndedStep:
    """A step that ended: when it began and ended (epoch ms), how, and its last command id."""

    step: str
    started_ms: int
    ended_ms: int
    result: str
    command_id: str | None

    @property
    def seconds(self) -> float:
        """How long it took."""
        return max(0, self.ended_ms - self.started_ms) / 1000


class OpenSteps:
    """The steps in progress, fed with journal events in commit order (bounded memory; a step
    entered before this process took its partition goes untimed)."""

    def __init__(self, limit: int = MAX_OPEN_STEPS) -> None:
        self.limit = limit
        self._open: OrderedDict[tuple[str, str, str], tuple[int, str | None]] = OrderedDict()

    def see(self, saga_type: str, event: JournalEvent) -> EndedStep | None:
        """Take one event; return the step it ended, if it ended one."""
        step = str(event.body.get("step", ""))
        key = (saga_type, event.saga_id, step)
        if event.type == "entered":
            self._open[key] = (event.at_ms, None)
            self._open.move_to_end(key)
            while len(self._open) > self.limit:
                self._open.popitem(last=False)
        elif event.type == "command_sent" and key in self._open:
            self._open[key] = (self._open[key][0], str(event.body.get("command_id") or ""))
        elif event.type in _ENDS:
            began = self._open.pop(key, None)
            if began is not None:
                return EndedStep(step, began[0], event.at_ms, _ENDS[event.type], began[1])
        elif event.type == "finished":
            self.forget(saga_type, event.saga_id)
        return None

    def forget(self, saga_type: str, saga_id: str) -> None:
        """Drop a saga's open steps (it ended)."""
        for key in [k for k in self._open if k[0] == saga_type and k[1] == saga_id]:
            del self._open[key]
