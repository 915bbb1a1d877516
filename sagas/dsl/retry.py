"""Retry policy: exponential back-off with a cap, deterministic jitter and non-retryable errors."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import timedelta

from sagas.errors import DefinitionError

__all__ = ["Retry"]


@dataclass(frozen=True)
class Retry:
    """How a step retries ``retryable-failure`` replies and timed-out attempts of retryable steps.

    A policy that is not valid does not raise here: the saga that uses it raises a
    :class:`~sagas.errors.DefinitionError` naming the saga and the step.

    Args:
        max_attempts: attempts in total, the first included; ``None`` retries forever
            (the default, and the only choice, for retryable steps and compensations).
        initial: delay before the second attempt.
        multiplier: each further delay is the previous one times this.
        cap: no delay exceeds this.
        jitter: spread each delay by up to this fraction either way (0 disables it). The jitter
            is derived from the saga's seed and the command id, so a replay computes the same delay.
        non_retryable: error types (the ``error`` field of a failure payload) that fail the step
            at once even when the reply outcome is ``retryable-failure``.
    """

    max_attempts: int | None = 3
    initial: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    cap: timedelta = timedelta(minutes=5)
    jitter: float = 0.2
    non_retryable: tuple[str, ...] = ()
    _problem: DefinitionError | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = None
        attempts, initial, cap = self.max_attempts, self.initial, self.cap
        if attempts is not None and not (isinstance(attempts, int) and attempts >= 1):
            problem = (
                f"Retry(max_attempts={attempts!r}): use 1 or more attempts, "
                "or None to retry forever"
            )
        elif not (
            isinstance(initial, timedelta)
            and isinstance(cap, timedelta)
            and timedelta(0) <= initial <= cap
        ):
            problem = (
                f"Retry(initial={initial!r}, cap={cap!r}): need timedeltas with "
                "0 <= initial <= cap, e.g. Retry(initial=timedelta(seconds=1))"
            )
        elif not (isinstance(self.multiplier, int | float) and self.multiplier >= 1.0):
            problem = f"Retry(multiplier={self.multiplier!r}): use 1.0 or more"
        elif not (isinstance(self.jitter, int | float) and 0.0 <= self.jitter < 1.0):
            problem = f"Retry(jitter={self.jitter!r}): use a fraction in [0, 1), e.g. 0.2"
        if problem:
            object.__setattr__(self, "_problem", DefinitionError(problem))

    def delay_ms(self, failed_attempts: int, seed: int, key: str) -> int:
        """Delay before the next attempt after ``failed_attempts`` failures (deterministic)."""
        base = self.initial.total_seconds() * 1000.0 * self.multiplier ** (failed_attempts - 1)
        cap = self.cap.total_seconds() * 1000.0
        base = min(base, cap)
        if self.jitter:
            unit = zlib.crc32(f"{seed}:{key}".encode()) / 2**32
            base *= 1.0 - self.jitter + 2.0 * self.jitter * unit
        return max(0, int(min(base, cap)))

    def gives_up(self, failed_attempts: int) -> bool:
        """Whether ``failed_attempts`` failures exhaust the policy."""
        return self.max_attempts is not None and failed_attempts >= self.max_attempts


FOREVER = Retry(max_attempts=None)
