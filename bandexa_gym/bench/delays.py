"""Delay models: how many rounds after a decision its reward comes back.

``bandexa-bench --delay fixed:N | geometric:MEAN | uniform:LO:HI`` and
``bandexa_gym.bench.runner.run(..., delay=...)`` take one. A delay of 0 means the reward is back
before the next decision (the ordinary loop); a delay of d means the decision of round t
learns its reward just before the decision of round t + d + 1 (d other decisions are made
without it). Delays are drawn from the model's own generator, seeded by the run's seed, so
they do not disturb the env's or the agent's random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DelayModel", "parse_delay"]

_KINDS = ("fixed", "geometric", "uniform")


@dataclass(frozen=True)
class DelayModel:
    """A distribution over non-negative integer delays (in rounds).

    Attributes:
        kind: ``"fixed"`` (always ``low``), ``"geometric"`` (number of failures before a
            success, with mean ``mean``: P(d) = p (1 − p)^d, p = 1 / (1 + mean)) or
            ``"uniform"`` (an integer uniform in [low, high]).
        low: The fixed delay, or the uniform's lower end.
        high: The uniform's upper end.
        mean: The geometric's mean.
    """

    kind: str
    low: int = 0
    high: int = 0
    mean: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"delay kind must be one of {_KINDS}, got {self.kind!r}")
        if self.low < 0 or self.high < self.low:
            raise ValueError(f"delays need 0 <= low <= high, got low={self.low}, high={self.high}")
        if not (math.isfinite(self.mean) and self.mean >= 0):
            raise ValueError(f"a geometric delay needs a finite mean >= 0, got {self.mean!r}")

    def draw(self, rng: np.random.Generator, size: int | None = None) -> int | np.ndarray:
        """One delay (or ``size`` of them) from ``rng``."""
        if self.kind == "fixed":
            return self.low if size is None else np.full(size, self.low, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=size)
        p = 1.0 / (1.0 + self.mean)
        draws = rng.geometric(p, size=size) - 1  # numpy counts the trials, not the failures
        return int(draws) if size is None else draws

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.low}"
        if self.kind == "uniform":
            return f"uniform:{self.low}:{self.high}"
        return f"geometric:{self.mean:g}"


def parse_delay(text: str | DelayModel | None) -> DelayModel | None:
    """A :class:`DelayModel` from ``fixed:N``, ``geometric:MEAN`` or ``uniform:LO:HI``.

    Raises:
        ValueError: Another form, or values out of range (the message shows the forms).
    """
    if text is None or isinstance(text, DelayModel):
        return text
    forms = "expected fixed:N, geometric:MEAN or uniform:LO:HI"
    kind, _, rest = str(text).partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "fixed" and len(parts) == 1:
            return DelayModel("fixed", low=_count(parts[0]), high=_count(parts[0]))
        if kind == "geometric" and len(parts) == 1:
            return DelayModel("geometric", mean=float(parts[0]))
        if kind == "uniform" and len(parts) == 2:
            return DelayModel("uniform", low=_count(parts[0]), high=_count(parts[1]))
    except ValueError as err:
        raise ValueError(f"bad delay {text!r}: {err}; {forms}") from None
    raise ValueError(f"bad delay {text!r}: {forms}")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"delays are >= 0 rounds, got {value}")
    return value
