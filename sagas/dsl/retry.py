"""Retry policy: exponential back-off with a cap, deterministic jitter and non-retryable errors."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import timedelta

from sagas.errors import DefinitionError

__all__ = ["Retry"]


@dataclass(frozen=True)
class Retry:
    """How a step retries ``retryable-failure`` replies and timed-out attempts of retriable steps.

    Args:
        max_attempts: attempts in total, the first included; ``None`` retries forever
            (the default, and the only choice, for retriable steps and compensations).
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

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise DefinitionError(
                f"Retry(max_attempts={self.max_attempts}): use 1 or more, or None"
            )
        if self.initial < timedelta(0) or self.cap < self.initial:
            raise DefinitionError("Retry: need 0 <= initial <= cap")
        if self.multiplier < 1.0:
            raise DefinitionError(f"Retry(multiplier={self.multiplier}): use 1.0 or more")
        if not 0.0 <= self.jitter < 1.0:
            raise DefinitionError(f"Retry(jitter={self.jitter}): use a fraction in [0, 1)")

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
