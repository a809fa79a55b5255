"""Non-stationary reward parameters: the ``drift=`` option of Synthetic and Retrieval.

A drift spec says when the reward parameters of a problem move; the environment says how
(which parameters, drawn from which law). Accepted forms::

    drift=None                                   # stationary (the default)
    drift={"kind": "abrupt", "every": 5000}      # redrawn before rounds 5000, 10000, ...
    drift={"kind": "abrupt", "at": [1000, 4000]} # redrawn before rounds 1000 and 4000
    drift={"kind": "gradual", "rate": 0.01}      # one small step before every round
    drift=Drift.abrupt(every=5000)               # the same, as a dataclass

Rounds are counted from the last seeded ``reset``: round 0 is the first round after it,
and a change "before round t" means round t is the first one played with the new
parameters (an unseeded ``reset`` continues the count). The moves are drawn from a
stream of their own, derived from the generator that drew the problem (see
:func:`drift_seed_sequence`), so envs that share a problem drift together and the
contexts and noise of the round stream are the same as without drift.

Gradual drift moves every Gaussian latent parameter ``z`` by one step of a mean-reverting
random walk, ``z <- sqrt(1 - rate^2) z + rate * eps`` with ``eps ~ N(0, I)``: the law of
``z`` stays the prior the problem was drawn from (a plain random walk would let the reward
scale grow without bound), and ``z`` keeps a correlation of
``(1 - rate^2)^(t / 2) ~ exp(-rate^2 t / 2)`` with its value t rounds earlier (half of it
after about ``1.4 / rate^2`` rounds: 14,000 for ``rate=0.01``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bandexa_gym.envs.core import check_int, check_real

__all__ = ["Drift", "DriftClock", "drift_seed_sequence", "parse_drift", "walk"]

DriftKind = Literal["abrupt", "gradual"]

_KEYS = ("kind", "every", "at", "rate")
_EXAMPLES = (
    '{"kind": "abrupt", "every": 5000}, {"kind": "abrupt", "at": [1000, 4000]} or '
    '{"kind": "gradual", "rate": 0.01}'
)
# Spawn-key word that separates the drift stream from the problem's own stream.
_DRIFT_STREAM = 0x64726966  # "drif"


@dataclass(frozen=True)
class Drift:
    """When the reward parameters move.

    Attributes:
        kind: ``"abrupt"`` (parameters redrawn from their prior at change points) or
            ``"gradual"`` (a small random-walk step before every round).
        every: Abrupt only: a change before every ``every``-th round (``every >= 1``).
        at: Abrupt only: changes before these rounds (distinct integers >= 1), sorted.
        rate: Gradual only: the step size, in (0, 1].
    """

    kind: DriftKind
    every: int | None = None
    at: tuple[int, ...] = ()
    rate: float | None = None
    _at_set: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("abrupt", "gradual"):
            raise ValueError(
                f'drift kind must be "abrupt" or "gradual", got {self.kind!r}; e.g. {_EXAMPLES}'
            )
        at = _check_rounds(self.at)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "_at_set", frozenset(at))
        if self.kind == "abrupt":
            if self.rate is not None:
                raise ValueError('drift "rate" applies to kind "gradual", not "abrupt"')
            if (self.every is None) == (not at):
                raise ValueError(
                    'abrupt drift takes exactly one of "every" (a period in rounds) or "at" '
                    f"(a list of rounds), got every={self.every!r}, at={list(at)!r}"
                )
            if self.every is not None:
                object.__setattr__(self, "every", check_int("drift every", self.every))
        else:
            if self.every is not None or at:
                raise ValueError('drift "every" and "at" apply to kind "abrupt", not "gradual"')
            if self.rate is None:
                raise ValueError('gradual drift needs "rate", a number in (0, 1], e.g. 0.01')
            rate = check_real("drift rate", self.rate)
            if not 0.0 < rate <= 1.0:
                raise ValueError(f"drift rate must be in (0, 1], got {self.rate!r}")
            object.__setattr__(self, "rate", rate)

    @classmethod
    def abrupt(cls, every: int | None = None, at: Iterable[int] | None = None) -> Drift:
        """Change points every ``every`` rounds, or before the rounds in ``at``."""
        return cls("abrupt", every=every, at=tuple(at) if at is not None else ())

    @classmethod
    def gradual(cls, rate: float) -> Drift:
        """A random-walk step of size ``rate`` before every round."""
        return cls("gradual", rate=rate)

    def changes_before(self, round_index: int) -> bool:
        """Whether the parameters move before round ``round_index`` (0 = first round)."""
        if round_index <= 0:
            return False
        if self.kind == "gradual":
            return True
        if self.every is not None:
            return round_index % self.every == 0
        return round_index in self._at_set


def _check_rounds(at: Any) -> tuple[int, ...]:
    if isinstance(at, (str, bytes)) or not isinstance(at, Iterable):
        raise ValueError(f'drift "at" must be a list of round numbers >= 1, got {at!r}')
    rounds = [check_int("each round in drift at", value) for value in at]
    if len(set(rounds)) != len(rounds):
        raise ValueError(f'drift "at" must hold distinct rounds, got {rounds}')
    return tuple(sorted(rounds))


def parse_drift(spec: Drift | Mapping[str, Any] | None) -> Drift | None:
    """Validate a ``drift=`` argument.

    Args:
        spec: ``None``, a :class:`Drift`, or a mapping with ``kind`` and the keys of that
            kind (``every`` or ``at``; ``rate``).

    Returns:
        The :class:`Drift`, or ``None`` for a stationary problem.

    Raises:
        TypeError: ``spec`` is neither ``None``, a :class:`Drift` nor a mapping.
        ValueError: Unknown keys, a missing ``kind``, or values out of range.
    """
    if spec is None or isinstance(spec, Drift):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"drift must be None, a Drift or a dict such as {_EXAMPLES}; got {spec!r}")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ValueError(f"drift got unknown keys {unknown}; expected some of {list(_KEYS)}")
    if "kind" not in spec:
        raise ValueError(f'drift needs a "kind", e.g. {_EXAMPLES}')
    at = spec.get("at")
    return Drift(
        kind=spec["kind"],
        every=spec.get("every"),
        at=() if at is None else at,
        rate=spec.get("rate"),
    )


def drift_seed_sequence(problem_rng: np.random.Generator) -> np.random.SeedSequence:
    """The seed of the drift stream of a problem drawn from ``problem_rng``.

    A child of the generator's own ``SeedSequence`` (same entropy, one more spawn-key
    word), so it is derived without drawing from ``problem_rng``: two generators built from
    the same seed give the same drift stream, and the round stream is left untouched. For a
    generator without a ``SeedSequence`` it falls back to one draw from ``problem_rng``.

    Args:
        problem_rng: The generator that drew the problem.

    Returns:
        The seed sequence to build the drift generator from (reusable: every generator
        built from it gives the same stream).
    """
    bit_generator = problem_rng.bit_generator
    seq = getattr(bit_generator, "seed_seq", None) or getattr(bit_generator, "_seed_seq", None)
    if isinstance(seq, np.random.SeedSequence):
        return np.random.SeedSequence(
            seq.entropy, spawn_key=(*seq.spawn_key, _DRIFT_STREAM), pool_size=seq.pool_size
        )
    return np.random.SeedSequence(int(problem_rng.integers(2**63)))


class DriftClock:
    """Counts rounds from a seeded reset and says when the parameters move.

    Attributes:
        drift: The spec.
        rng: The drift stream; environments draw their moves from it.
        round: Rounds drawn since :meth:`restart`.
    """

    def __init__(self, drift: Drift, seed: np.random.SeedSequence) -> None:
        self.drift = drift
        self._seed = seed
        self.restart()

    def restart(self) -> None:
        """Back to round 0 and the start of the drift stream."""
        self.rng = np.random.default_rng(self._seed)
        self.round = 0

    def tick(self) -> bool:
        """Advance to the next round; True when the parameters move before it."""
        moved = self.drift.changes_before(self.round)
        self.round += 1
        return moved


def walk(latent: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """One step of the mean-reverting random walk that keeps an N(0, I) law.

    Args:
        latent: Gaussian latent parameters, any shape.
        rate: Step size in (0, 1].
        rng: The drift stream.

    Returns:
        ``sqrt(1 - rate^2) * latent + rate * eps``, a new array of the same shape.
    """
    return np.sqrt(1.0 - rate * rate) * latent + rate * rng.standard_normal(latent.shape)
