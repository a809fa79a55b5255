"""Doubly robust estimators with tuned weights: switch-DR (Wang et al. 2017) and DR-OS
(Su et al. 2020).

See :mod:`bandexa_gym.offline.estimators` for the notation and the intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from bandexa_gym.offline.checks import (
    DEFAULT_MIN_PROPENSITY,
    ArrayLike,
    Estimate,
    Seed,
)
from bandexa_gym.offline.estimators import (
    RewardModel,
    _dr_parts,
    _model_estimate,
    _model_rounds,
    _Rounds,
    _Terms,
)

__all__ = ["dr_os", "switch_dr"]


def _tune(
    dm: np.ndarray, w: np.ndarray, res: np.ndarray, candidates: np.ndarray, shrink: Callable
) -> float:
    """The hyperparameter minimising estimated MSE = bias² + variance / n (Su et al. 2020).

    The bias of a modified weight ŵ is estimated directly as ``|mean((w − ŵ)(r − q̂))|``, the
    variance as the sample variance of the per-round terms.
    """
    n = w.shape[0]
    best, best_score = math.inf, math.inf
    for c in candidates:
        w_hat = shrink(w, c)
        bias = abs(float(((w - w_hat) * res).mean()))
        score = bias**2 + float((dm + w_hat * res).var()) / n
        if score < best_score:
            best, best_score = float(c), score
    return best


def _switch(w: np.ndarray, tau: float) -> np.ndarray:
    return np.where(w <= tau, w, 0.0)


def _shrink(w: np.ndarray, lam: float) -> np.ndarray:
    if math.isinf(lam):
        return w
    return lam * w / (np.square(w) + lam)


def _grid(values: Sequence[float] | None, default: np.ndarray, name: str) -> np.ndarray:
    grid = default if values is None else np.asarray(values, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.isnan(grid).any() or (grid < 0).any():
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of numbers >= 0")
    return grid


def _switch_terms(tau: float | None, taus: Sequence[float] | None) -> _Terms:
    """Switch-DR's terms at ``tau``, or at the τ tuned on the rounds given (when None)."""
    if taus is not None:
        _grid(taus, np.empty(0), "taus")
    if tau is not None and not tau >= 0:
        raise ValueError(f"tau: expected a weight threshold >= 0 (or None to tune), got {tau}")

    def terms(rounds: _Rounds, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        dm, w, res = _dr_parts(rounds, q)
        t = tau
        if t is None:
            default = np.append(np.quantile(w, np.linspace(0.0, 0.9, 10)), np.inf)
            t = _tune(dm, w, res, _grid(taus, default, "taus"), _switch)
        w_hat = _switch(w, t)
        return dm + w_hat * res, w_hat, {"tau": float(t)}

    return terms


def _dr_os_terms(lambda_: float | None, lambdas: Sequence[float] | None) -> _Terms:
    """DR-OS's terms at ``lambda_``, or at the λ tuned on the rounds given (when None)."""
    if lambdas is not None:
        _grid(lambdas, np.empty(0), "lambdas")
    if lambda_ is not None and not lambda_ >= 0:
        raise ValueError(f"lambda_: expected a shrinkage >= 0 (or None to tune), got {lambda_}")

    def terms(rounds: _Rounds, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        dm, w, res = _dr_parts(rounds, q)
        lam = lambda_
        if lam is None:
            scale = max(float(w.max()) ** 2, 1e-12)
            default = np.append(scale * np.geomspace(1e-4, 1.0, 13), np.inf)
            lam = _tune(dm, w, res, _grid(lambdas, default, "lambdas"), _shrink)
        w_hat = _shrink(w, float(lam))
        return dm + w_hat * res, w_hat, {"lambda": float(lam)}

    return terms


def switch_dr(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: RewardModel,
    *,
    tau: float | None = None,
    taus: Sequence[float] | None = None,
    position: ArrayLike | None = None,
    refit: bool = False,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Switch doubly robust (Wang, Agarwal and Dudík 2017): drop the correction of large weights.

    mean(Σ_a π(a|x_i) q̂(x_i, a) + w_i 1{w_i ≤ τ} (r_i − q̂(x_i, a_i))): doubly robust on
    rounds whose weight is at most τ, the direct method on the others. τ = ∞ is DR and τ = 0
    is DM. Without ``tau``, τ is chosen from ``taus`` by the estimated MSE of Su et al.
    (2020): squared direct bias estimate plus variance (fixed across bootstrap resamples,
    re-tuned in each with ``refit=True``).

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K) (or (n, K, positions)).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K) (or
            (n, K, positions)), or a fitting function (see :func:`direct_method`).
        tau: The weight threshold; None to tune it.
        taus: Candidate thresholds when tuning (default: the weights' deciles and ∞).
        position: The position each round was logged at, (n,); see :func:`ips`.
        refit: Refit the model and re-tune τ in every bootstrap resample (see
            :func:`direct_method`).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`; ``params["tau"]`` is the threshold used.
    """
    terms = _switch_terms(tau, taus)
    rounds, q, n_clipped, pos = _model_rounds(
        rewards,
        propensities,
        target_probs,
        actions,
        reward_model,
        position,
        min_propensity,
        refit,
        n_bootstrap,
    )
    return _model_estimate(
        "switch-dr",
        terms,
        rounds,
        q,
        reward_model=reward_model,
        position=pos,
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"min_propensity": min_propensity},
    )


def dr_os(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: RewardModel,
    *,
    lambda_: float | None = None,
    lambdas: Sequence[float] | None = None,
    position: ArrayLike | None = None,
    refit: bool = False,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy, Dudík 2020).

    The weights of DR are shrunk to ŵ = λw / (w² + λ): close to w when w² ≪ λ, and λ/w for
    large weights, so no round's correction can explode. λ = ∞ is DR and λ = 0 is DM.
    Without ``lambda_``, λ is chosen from ``lambdas`` by the estimated MSE of Su et al.:
    the squared direct bias estimate ``|mean((w − ŵ)(r − q̂))|²`` plus the variance (re-tuned
    in every resample with ``refit=True``).

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K) (or (n, K, positions)).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K) (or
            (n, K, positions)), or a fitting function (see :func:`direct_method`).
        lambda_: The shrinkage λ >= 0 (``math.inf`` for DR); None to tune it.
        lambdas: Candidates when tuning (default: max(w)² × 10^[-4 ... 0] and ∞).
        position: The position each round was logged at, (n,); see :func:`ips`.
        refit: Refit the model and re-tune λ in every bootstrap resample (see
            :func:`direct_method`).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`; ``params["lambda"]`` is the λ used.
    """
    terms = _dr_os_terms(lambda_, lambdas)
    rounds, q, n_clipped, pos = _model_rounds(
        rewards,
        propensities,
        target_probs,
        actions,
        reward_model,
        position,
        min_propensity,
        refit,
        n_bootstrap,
    )
    return _model_estimate(
        "dr-os",
        terms,
        rounds,
        q,
        reward_model=reward_model,
        position=pos,
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"min_propensity": min_propensity},
    )
