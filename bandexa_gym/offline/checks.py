"""Shared parts of the off-policy estimators: the Estimate, input checks and the bootstrap.

Private to :mod:`bandexa_gym.ope`, which re-exports :class:`Estimate` and
:class:`ClippedPropensityWarning`; the estimators themselves live there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ArrayLike = Any
Seed = int | np.random.Generator | None

#: Default floor of the logged propensities: smaller ones are raised to it, with a warning.
DEFAULT_MIN_PROPENSITY = 1e-4
#: Tolerance on the row sums of ``target_probs``.
_ROW_SUM_ATOL = 1e-4
#: Bootstrap gathers per chunk (rows x resamples), to bound memory.
_BOOTSTRAP_CHUNK = 2_000_000
#: Most bootstrap resamples: the replicates alone take 8 bytes each.
MAX_BOOTSTRAP = 1_000_000
#: Most resampled rounds, n_bootstrap x n: about 10 minutes at ~15 ns per gathered round.
MAX_BOOTSTRAP_WORK = 50_000_000_000


class ClippedPropensityWarning(UserWarning):
    """Logged propensities below ``min_propensity`` were raised to it (weights capped)."""


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate with its bootstrap interval.

    Attributes:
        estimator: Name of the estimator (``"ips"``, ``"dr"``, ...).
        value: The point estimate of the target policy's expected reward per round.
        ci_low: Lower end of the percentile-bootstrap interval (NaN without bootstrap).
        ci_high: Upper end of the interval.
        confidence: Coverage of the interval, e.g. 0.95.
        std_error: Standard deviation of the bootstrap replicates.
        ess: Effective sample size of the importance weights, (Σw)² / Σw²; ``n`` for the
            direct method (no weights) and the number of matched rounds for replay.
        n: Number of logged rounds used.
        n_bootstrap: Number of bootstrap resamples.
        n_clipped: Number of propensities raised to ``min_propensity``.
        n_matched: Replay only: rounds where the target's action equals the logged one.
        params: Estimator settings (``min_propensity``, ``tau``, ``lambda`` ...).
        replicates: The bootstrap replicates (n_bootstrap,), for paired comparisons.
        conditional: True when the interval holds a fitted reward model (and a tuned τ or
            λ) fixed across resamples: it is conditional on the model and leaves out the
            model's own estimation error. False for estimators without a model and for
            intervals that refit it in every resample (``refit=True``).
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    std_error: float
    ess: float
    n: int
    n_bootstrap: int
    n_clipped: int = 0
    n_matched: int | None = None
    params: Mapping[str, float] = field(default_factory=dict)
    replicates: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    conditional: bool = False

    @property
    def ci(self) -> tuple[float, float]:
        """The interval as ``(low, high)``."""
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field except the replicates."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "replicates"}
        out["params"] = dict(self.params)
        return out

    def __str__(self) -> str:
        level = f"{100 * self.confidence:g}%"
        text = (
            f"{self.estimator}: {self.value:.6g} [{level} CI {self.ci_low:.6g}, "
            f"{self.ci_high:.6g}] (n={self.n}, ESS={self.ess:.1f}"
        )
        if self.n_matched is not None:
            text += f", matched={self.n_matched}"
        if self.conditional:
            text += ", interval conditional on the reward model"
        return text + ")"


# ----------------------------------------------------------------------------- validation


def _vector(x: ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of shape (n,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},) like rewards, got {arr.shape}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), arr.shape)
        raise ValueError(
            f"{name}: {int(bad.sum())} entries are NaN or infinite (first at index "
            f"{first if arr.ndim > 1 else first[0]}); expected finite numbers"
        )


def check_rewards(rewards: ArrayLike) -> np.ndarray:
    r = _vector(rewards, "rewards")
    if r.shape[0] == 0:
        raise ValueError("rewards: the log is empty; expected at least one round")
    _check_finite(r, "rewards")
    return r


def check_propensities(
    propensities: ArrayLike, n: int, min_propensity: float
) -> tuple[np.ndarray, int]:
    """Validate logged propensities and floor them at ``min_propensity`` (with a warning)."""
    if not 0.0 <= min_propensity < 1.0:
        raise ValueError(f"min_propensity: expected a number in [0, 1), got {min_propensity}")
    p = _vector(propensities, "propensities", n)
    missing = np.isnan(p)
    if missing.any():
        raise ValueError(
            f"propensities: {int(missing.sum())} are missing (NaN), first at index "
            f"{int(np.argmax(missing))}; every logged action needs the probability with which "
            "the logging policy chose it, in (0, 1]"
        )
    zero = p == 0.0
    if zero.any():
        raise ValueError(
            f"propensities: {int(zero.sum())} are 0, first at index {int(np.argmax(zero))}; a "
            "logged action was chosen, so its propensity must be in (0, 1]"
        )
    outside = (p < 0.0) | (p > 1.0) | ~np.isfinite(p)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(
            f"propensities: {int(outside.sum())} are outside (0, 1], first at index {i} "
            f"(value {float(p[i])!r}); expected probabilities in (0, 1]"
        )
    tiny = p < min_propensity
    n_clipped = int(tiny.sum())
    if n_clipped:
        warnings.warn(
            f"{n_clipped} of {n} propensities are below min_propensity={min_propensity:g} "
            f"(smallest {p.min():.3g}) and were clipped to it, capping their importance weight "
            f"at {1 / min_propensity:g} x the target probability; pass min_propensity= to "
            "change the threshold (0 disables clipping)",
            ClippedPropensityWarning,
            stacklevel=4,  # the caller of ips, snips, doubly_robust, ...
        )
        p = np.maximum(p, min_propensity)
    return p, n_clipped


def check_actions(actions: ArrayLike | None, n: int, k: int) -> np.ndarray:
    if actions is None:
        raise ValueError(
            "actions: required with target_probs of shape (n, K); pass the logged action "
            "indices (n,), or pass target_probs as the (n,) probabilities of the logged actions"
        )
    a = np.asarray(actions)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"actions: expected shape ({n},) like rewards, got {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError("actions: expected integer candidate indices, got non-integers")
    elif a.dtype.kind not in "iu":
        raise ValueError(f"actions: expected integer candidate indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"actions: index {a[i]} at round {i} is outside [0, {k}) (K = {k} candidates)"
        )
    return a


def check_target_matrix(target_probs: ArrayLike, n: int) -> np.ndarray:
    pi = np.asarray(target_probs, dtype=np.float64)
    if pi.ndim != 2 or pi.shape[0] != n:
        raise ValueError(
            f"target_probs: expected the target policy's probabilities of shape (n, K) = "
            f"({n}, K), got {pi.shape}"
        )
    _check_finite(pi, "target_probs")
    if (pi < 0).any():
        raise ValueError("target_probs: negative probabilities; expected values in [0, 1]")
    sums = pi.sum(axis=1)
    off = np.abs(sums - 1.0) > _ROW_SUM_ATOL
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(
            f"target_probs: row {i} sums to {sums[i]:.6g}; each row must be a probability "
            "distribution over the K candidates (sum 1)"
        )
    return pi


def target_at_logged(target_probs: ArrayLike, actions: ArrayLike | None, n: int) -> np.ndarray:
    """π(a_i | x_i) (n,) from either (n,) values or an (n, K) matrix plus the actions."""
    pi = np.asarray(target_probs, dtype=np.float64)
    if pi.ndim == 1:
        pi = _vector(pi, "target_probs", n)
        _check_finite(pi, "target_probs")
        if ((pi < 0) | (pi > 1)).any():
            raise ValueError("target_probs: expected probabilities in [0, 1]")
        return pi
    pi = check_target_matrix(pi, n)
    a = check_actions(actions, n, pi.shape[1])
    return pi[np.arange(n), a]


def check_position(position: ArrayLike, n: int, n_positions: int) -> np.ndarray:
    """The logged position of every round, int64 (n,) in [0, n_positions)."""
    pos = np.asarray(position)
    if pos.ndim != 1 or pos.shape[0] != n:
        raise ValueError(
            f"position: expected the logged position of every round, shape ({n},), got {pos.shape}"
        )
    if pos.dtype.kind == "f":
        if not np.all(np.isfinite(pos)) or np.any(pos != np.round(pos)):
            raise ValueError("position: expected integer positions, got non-integers")
    elif pos.dtype.kind not in "iu":
        raise ValueError(f"position: expected integer positions, got dtype {pos.dtype}")
    pos = pos.astype(np.int64)
    bad = (pos < 0) | (pos >= n_positions)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"position: {pos[i]} at round {i} is outside [0, {n_positions}) (the last axis of "
            f"the (n, K, positions) arrays has {n_positions} positions)"
        )
    return pos


def at_position(
    position: ArrayLike | None, arrays: Mapping[str, ArrayLike | None]
) -> list[ArrayLike | None]:
    """Each position-dependent array (n, K, P) sliced at its round's logged position: (n, K).

    OBP's action distributions (and reward models) have one (K,) slice per position of a
    ranking; a round logged at position k is evaluated with slice k. Arrays of other ranks
    (and None) pass through unchanged.

    Raises:
        ValueError: A 3-D array without ``position``, or ``position`` without one.
    """
    out: list[ArrayLike | None] = []
    used = False
    for name, x in arrays.items():
        arr = None if x is None or callable(x) else np.asarray(x)
        if arr is None or arr.ndim != 3:
            out.append(x)
            continue
        if position is None:
            raise ValueError(
                f"{name}: shape {arr.shape} is position-dependent (n, K, positions); pass "
                "position= (n,), the position each round was logged at, to evaluate each "
                "round with its position's slice"
            )
        pos = check_position(position, arr.shape[0], arr.shape[2])
        out.append(arr[np.arange(arr.shape[0]), :, pos])
        used = True
    if position is not None and not used and not any(callable(x) for x in arrays.values()):
        raise ValueError(
            f"position: given, but none of {', '.join(arrays)} is position-dependent; expected "
            "an (n, K, positions) array to select from, or no position="
        )
    return out


def check_reward_model(reward_model: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    q = np.asarray(reward_model, dtype=np.float64)
    if q.shape != shape:
        raise ValueError(
            f"reward_model: expected the predicted reward of every candidate, shape {shape} "
            f"like target_probs, got {q.shape}"
        )
    _check_finite(q, "reward_model")
    return q


# ------------------------------------------------------------------------------ bootstrap


def check_n_bootstrap(n_bootstrap: int, n: int) -> int:
    """``n_bootstrap`` checked to be an integer in [0, MAX_BOOTSTRAP] whose work fits the bound."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise ValueError(f"n_bootstrap: expected an integer >= 0, got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: expected an integer >= 0, got {n_bootstrap}")
    if n_bootstrap > MAX_BOOTSTRAP:
        raise ValueError(
            f"n_bootstrap: {n_bootstrap} resamples is more than the {MAX_BOOTSTRAP:,} allowed "
            "(the interval's percentiles settle within a few thousand); expected an integer "
            f"in [0, {MAX_BOOTSTRAP:,}], e.g. 1000"
        )
    if int(n_bootstrap) * n > MAX_BOOTSTRAP_WORK:
        raise ValueError(
            f"n_bootstrap: {n_bootstrap} resamples of {n:,} rounds is "
            f"{int(n_bootstrap) * n:.3g} resampled rounds, more than the {MAX_BOOTSTRAP_WORK:.3g} "
            "allowed (about 10 minutes of work); expected n_bootstrap <= "
            f"{MAX_BOOTSTRAP_WORK // max(n, 1):,} for this log"
        )
    return int(n_bootstrap)


def resamples(n: int, n_bootstrap: int, seed: Seed) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n rounds, in chunks: int64 arrays (chunk, n) of round indices.

    The same ``seed``, ``n`` and ``n_bootstrap`` always give the same resamples, so
    estimators drawing them are paired.
    """
    n_bootstrap = check_n_bootstrap(n_bootstrap, n)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        yield rng.integers(0, n, size=(stop - start, n))


def _bootstrap(num: np.ndarray, den: np.ndarray | None, n_bootstrap: int, seed: Seed) -> np.ndarray:
    """Replicates of sum(num) / sum(den) (or mean(num)) over resampled rounds: (n_bootstrap,)."""
    n = num.shape[0]
    out = np.empty(check_n_bootstrap(n_bootstrap, n))
    start = 0
    for idx in resamples(n, n_bootstrap, seed):
        stop = start + idx.shape[0]
        total = num[idx].sum(axis=1)
        if den is None:
            out[start:stop] = total / n
        else:
            d = den[idx].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:stop] = np.where(d > 0, total / np.where(d > 0, d, 1.0), np.nan)
        start = stop
    return out


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(low, high, std) of the percentile interval of bootstrap replicates (NaN without two)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), e.g. 0.95, got {confidence}")
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 2:
        return math.nan, math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high), float(finite.std(ddof=1))


def make_estimate(
    name: str,
    num: np.ndarray,
    den: np.ndarray | None,
    *,
    weights: np.ndarray | None,
    n_bootstrap: int,
    confidence: float,
    seed: Seed,
    n_clipped: int = 0,
    n_matched: int | None = None,
    params: Mapping[str, float] | None = None,
    replicates: np.ndarray | None = None,
    conditional: bool = False,
) -> Estimate:
    """Point estimate, bootstrap interval and ESS of a ratio (or mean) of per-round terms.

    ``replicates`` computed elsewhere (refitting a model in each resample) replace the
    resampling of ``num`` / ``den``.
    """
    interval(np.empty(0), confidence)  # check the level before any work
    n = num.shape[0]
    if den is None:
        value = float(num.mean())
    else:
        total = den.sum()
        value = float(num.sum() / total) if total > 0 else math.nan
    reps = _bootstrap(num, den, n_bootstrap, seed) if replicates is None else replicates
    low, high, std = interval(reps, confidence)
    if weights is None:
        ess = float(n)
    else:
        sq = float(np.square(weights).sum())
        ess = float(weights.sum() ** 2 / sq) if sq > 0 else 0.0
    return Estimate(
        estimator=name,
        value=value,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        std_error=std,
        ess=ess,
        n=n,
        n_bootstrap=n_bootstrap,
        n_clipped=n_clipped,
        n_matched=n_matched,
        params=dict(params or {}),
        replicates=reps,
        conditional=conditional,
    )
