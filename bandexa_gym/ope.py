"""Off-policy evaluation: the value of a target policy estimated from logged bandit rounds.

Every estimator takes plain arrays (numpy, or anything ``np.asarray`` accepts) and returns
an :class:`Estimate`: the value, a percentile-bootstrap confidence interval, the effective
sample size of the importance weights and the settings used. Notation, for ``n`` logged
rounds over ``K`` candidates:

* ``rewards`` r (n,): the reward of each logged action;
* ``propensities`` μ (n,): the probability with which the logging policy chose it, in (0, 1];
* ``actions`` a (n,): the index of the logged action among the round's K candidates;
* ``target_probs`` π (n, K): the target policy's probability of every candidate in each
  logged round (rows sum to 1; 0 on masked candidates); estimators that only need
  π(a_i | x_i) also accept that (n,) vector;
* ``reward_model`` q̂ (n, K): a model's expected reward of every candidate in each round,
  or a function ``rows -> (len(rows), K)`` that fits the model on those logged rounds and
  predicts them (needed for ``refit=True``);
* ``position`` (n,): for a position-dependent policy (an (n, K, positions) distribution, as
  in the Open Bandit Pipeline), the position each round was logged at; every (n, K, P)
  argument is then read at its round's position.

With w_i = π(a_i | x_i) / μ_i:

==============  ===========================================================================
``ips``          mean(w r)                                        (Horvitz-Thompson)
``snips``        Σ w r / Σ w                                      (self-normalized IPS)
``dm``           mean(Σ_a π(a|x) q̂(x, a))                         (direct method)
``dr``           dm + mean(w (r − q̂(x, a_i)))                     (doubly robust)
``switch-dr``    dm + mean(w 1{w ≤ τ} (r − q̂(x, a_i)))            (Wang et al. 2017)
``dr-os``        dm + mean(λw / (w² + λ) · (r − q̂(x, a_i)))       (Su et al. 2020)
``replay``       mean of r over rounds where the target's action equals the logged one
                 (Li et al. 2011; logs collected uniformly at random)
==============  ===========================================================================

Intervals come from ``n_bootstrap`` resamples of the logged rounds (with replacement) drawn
from ``np.random.default_rng(seed)``. By default the reward model and any tuned
hyperparameter are kept fixed across resamples: such intervals are conditional on the model
(``Estimate.conditional``) and leave out its estimation error. ``refit=True`` refits the
model (and re-tunes τ / λ) in every resample instead: costlier, but it covers that error.
Estimators called with the same ``seed`` and ``n`` draw the same resamples, so their
intervals are paired. See ``docs/ope.md`` for when to use which.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from bandexa_gym._ope_base import (
    DEFAULT_MIN_PROPENSITY,
    MAX_BOOTSTRAP,
    MAX_BOOTSTRAP_WORK,
    ArrayLike,
    ClippedPropensityWarning,
    Estimate,
    Seed,
    at_position,
    check_actions,
    check_n_bootstrap,
    check_position,
    check_propensities,
    check_reward_model,
    check_rewards,
    check_target_matrix,
    interval,
    make_estimate,
    resamples,
    target_at_logged,
)

__all__ = [
    "DEFAULT_MIN_PROPENSITY",
    "ESTIMATORS",
    "MAX_BOOTSTRAP",
    "MAX_BOOTSTRAP_WORK",
    "OPT_IN_ESTIMATORS",
    "RewardModel",
    "ClippedPropensityWarning",
    "Estimate",
    "direct_method",
    "doubly_robust",
    "dr_os",
    "evaluate",
    "ips",
    "on_policy_value",
    "replay",
    "snips",
    "switch_dr",
]


# ----------------------------------------------------------------------------- estimators


def _importance_weights(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike | None,
    min_propensity: float,
    position: ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    r = check_rewards(rewards)
    n = r.shape[0]
    (target_probs,) = at_position(position, {"target_probs": target_probs})
    pi_logged = target_at_logged(target_probs, actions, n)
    p, n_clipped = check_propensities(propensities, n, min_propensity)
    return r, pi_logged / p, n_clipped


def ips(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike | None = None,
    *,
    position: ArrayLike | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Inverse propensity scoring: mean(w_i r_i) with w_i = π(a_i|x_i) / μ_i.

    Unbiased when every action the target policy can take had a positive logging
    probability; its variance grows with the weights (watch ``ess``).

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,), in (0, 1].
        target_probs: Target probabilities, shape (n, K), or of the logged actions, (n,);
            or position-dependent, (n, K, positions), with ``position``.
        actions: Logged action indices, shape (n,); needed with (n, K) ``target_probs``.
        position: The position each round was logged at, integers (n,) in
            [0, positions): round i is evaluated with ``target_probs[i, :, position[i]]``.
            Only with an (n, K, positions) ``target_probs``.
        min_propensity: Propensities below it are raised to it, with a
            :class:`ClippedPropensityWarning`; 0 disables clipping.
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`.

    Raises:
        ValueError: On propensities that are 0, NaN or outside (0, 1], mismatched shapes,
            or target probabilities that are not distributions.
    """
    r, w, n_clipped = _importance_weights(
        rewards, propensities, target_probs, actions, min_propensity, position
    )
    return make_estimate(
        "ips",
        w * r,
        None,
        weights=w,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"min_propensity": min_propensity},
    )


def snips(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike | None = None,
    *,
    position: ArrayLike | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Self-normalized IPS: Σ w_i r_i / Σ w_i.

    Slightly biased (consistent), usually much lower variance than IPS, and invariant to
    a constant shift of the rewards. Arguments as in :func:`ips`; NaN when every weight is 0.
    """
    r, w, n_clipped = _importance_weights(
        rewards, propensities, target_probs, actions, min_propensity, position
    )
    return make_estimate(
        "snips",
        w * r,
        w,
        weights=w,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"min_propensity": min_propensity},
    )


#: A reward model: predictions (n, K) (or (n, K, positions)), or a function that fits the
#: model on the logged rounds ``rows`` (int64 (m,), increasing, repeats allowed) and returns
#: its predictions for those rounds, (m, K) (or (m, K, positions)).
RewardModel = ArrayLike | Callable[[np.ndarray], ArrayLike]


class _Rounds(NamedTuple):
    """Checked per-round arrays of a log (rewards and the rest are None for the DM)."""

    pi: np.ndarray  # (n, K) target probabilities
    r: np.ndarray | None = None  # (n,) rewards
    p: np.ndarray | None = None  # (n,) floored propensities
    a: np.ndarray | None = None  # (n,) logged actions

    def take(self, rows: np.ndarray) -> _Rounds:
        return _Rounds(*(None if x is None else x[rows] for x in self))


#: Per-round terms of a model-based estimator on (rounds, q̂): (terms (m,), weights, params).
_Terms = Callable[[_Rounds, np.ndarray], tuple[np.ndarray, np.ndarray | None, dict[str, float]]]


def _predict(
    reward_model: RewardModel, rows: np.ndarray, position: np.ndarray | None, k: int
) -> np.ndarray:
    """q̂ (m, K) at ``rows``: fixed predictions (``rows`` is then every round), or those of
    a model fitted on ``rows``, read at each round's position when position-dependent."""
    m = len(rows)
    q = np.asarray(reward_model(rows) if callable(reward_model) else reward_model, np.float64)
    if q.ndim == 3 and q.shape[:2] == (m, k):
        if position is None:
            raise ValueError(
                f"reward_model: predictions of shape {q.shape} are position-dependent "
                "(n, K, positions); pass position= (n,) to read each round at its position"
            )
        q = q[np.arange(m), :, check_position(position[rows], m, q.shape[2])]
    return check_reward_model(q, (m, k))


def _model_rounds(
    rewards: ArrayLike | None,
    propensities: ArrayLike | None,
    target_probs: ArrayLike,
    actions: ArrayLike | None,
    reward_model: RewardModel,
    position: ArrayLike | None,
    min_propensity: float,
    refit: bool,
    n_bootstrap: int,
) -> tuple[_Rounds, np.ndarray, int, np.ndarray | None]:
    """Checked rounds, q̂ (n, K) on all of them, n_clipped and the checked positions."""
    if refit and not callable(reward_model):
        raise ValueError(
            "refit: True refits the reward model in every bootstrap resample, so reward_model "
            "must be a function rows -> predictions (len(rows), K) that fits it on those "
            "logged rounds; got fixed predictions"
        )
    target_probs = at_position(
        position, {"target_probs": target_probs, "reward_model": reward_model}
    )[0]
    pi = np.asarray(target_probs, dtype=np.float64)
    if rewards is None:  # the direct method
        if pi.ndim != 2 or pi.shape[0] == 0:
            raise ValueError(
                f"target_probs: expected the target policy's probabilities of shape (n, K) with "
                f"n >= 1, got {pi.shape}"
            )
        rounds, n_clipped = _Rounds(check_target_matrix(pi, pi.shape[0])), 0
    else:
        r = check_rewards(rewards)
        n = r.shape[0]
        pi = check_target_matrix(pi, n)
        a = check_actions(actions, n, pi.shape[1])
        p, n_clipped = check_propensities(propensities, n, min_propensity)
        rounds = _Rounds(pi, r, p, a)
    n, k = rounds.pi.shape
    if refit:
        check_n_bootstrap(n_bootstrap, n)  # before any fit
    pos = None
    if position is not None:
        pos = np.asarray(position)
        if pos.shape != (n,):
            raise ValueError(f"position: expected shape ({n},) like the log, got {pos.shape}")
    q = _predict(reward_model, np.arange(n), pos, k)
    return rounds, q, n_clipped, pos


def _refit_replicates(
    terms: Mapping[str, _Terms],
    rounds: _Rounds,
    reward_model: Callable[[np.ndarray], ArrayLike],
    position: np.ndarray | None,
    n_bootstrap: int,
    seed: Seed,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of each estimator with the model refitted in every resample.

    The resamples are those of every other estimator with the same seed (paired); each is
    passed to ``reward_model`` sorted, so a fitter that learns in log order sees the rounds
    in log order. One fit per resample serves every estimator in ``terms``.
    """
    n, k = rounds.pi.shape
    out = {name: np.empty(check_n_bootstrap(n_bootstrap, n)) for name in terms}
    b = 0
    for chunk in resamples(n, n_bootstrap, seed):
        for rows in np.sort(chunk, axis=1):
            q = _predict(reward_model, rows, position, k)
            sample = rounds.take(rows)
            for name, fn in terms.items():
                out[name][b] = fn(sample, q)[0].mean()
            b += 1
    return out


def _model_estimate(
    name: str,
    terms: _Terms,
    rounds: _Rounds,
    q: np.ndarray,
    *,
    reward_model: RewardModel,
    position: np.ndarray | None,
    refit: bool,
    n_bootstrap: int,
    confidence: float,
    seed: Seed,
    n_clipped: int,
    params: Mapping[str, float],
    replicates: np.ndarray | None = None,
) -> Estimate:
    values, weights, tuned = terms(rounds, q)
    if refit and replicates is None:
        interval(np.empty(0), confidence)  # check the level before the fits
        replicates = _refit_replicates(
            {name: terms}, rounds, reward_model, position, n_bootstrap, seed
        )[name]
    return make_estimate(
        name,
        values,
        None,
        weights=weights,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={**tuned, **params},
        replicates=replicates,
        conditional=not refit,
    )


def _dm_terms(rounds: _Rounds, q: np.ndarray) -> tuple[np.ndarray, None, dict[str, float]]:
    return (rounds.pi * q).sum(axis=1), None, {}


def _dr_parts(rounds: _Rounds, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dm term (m,), importance weights (m,), residuals r - q̂(x, a_i) (m,))."""
    rows = np.arange(rounds.pi.shape[0])
    dm = (rounds.pi * q).sum(axis=1)
    return dm, rounds.pi[rows, rounds.a] / rounds.p, rounds.r - q[rows, rounds.a]


def _dr_terms(rounds: _Rounds, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    dm, w, res = _dr_parts(rounds, q)
    return dm + w * res, w, {}


def direct_method(
    target_probs: ArrayLike,
    reward_model: RewardModel,
    *,
    position: ArrayLike | None = None,
    refit: bool = False,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Direct method: mean over rounds of Σ_a π(a|x_i) q̂(x_i, a).

    Low variance; as biased as the reward model. It uses neither the logged rewards nor
    the propensities, only the logged contexts (through the rows of the two matrices).
    Its default interval holds the model fixed, so it only reflects the spread of the
    logged contexts; ``refit=True`` refits the model in every resample.

    Args:
        target_probs: Target probabilities, shape (n, K) (or (n, K, positions) with
            ``position``).
        reward_model: Predicted reward of every candidate, shape (n, K) (or
            (n, K, positions)), or a function ``rows -> predictions (len(rows), K)`` that
            fits the model on those logged rounds (see :data:`RewardModel`).
        position: The position each round was logged at, (n,); see :func:`ips`.
        refit: Refit the model in every bootstrap resample (``reward_model`` must be a
            function; one fit per resample). The interval then includes the model's
            estimation error; otherwise it is conditional on the model.
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate` (``ess`` = n: no importance weights).
    """
    rounds, q, _, pos = _model_rounds(
        None, None, target_probs, None, reward_model, position, 0.0, refit, n_bootstrap
    )
    return _model_estimate(
        "dm",
        _dm_terms,
        rounds,
        q,
        reward_model=reward_model,
        position=pos,
        refit=refit,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=0,
        params={},
    )


def doubly_robust(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: RewardModel,
    *,
    position: ArrayLike | None = None,
    refit: bool = False,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Doubly robust: the direct method plus the IPS-weighted residual of the reward model.

    mean(Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))). Unbiased when the propensities
    are right, whatever the model; its variance shrinks as the model improves. Equals the
    direct method when the model is exact and IPS when the model is 0.

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K) (or (n, K, positions)).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K) (or
            (n, K, positions)), or a fitting function (see :func:`direct_method`).
        position: The position each round was logged at, (n,); see :func:`ips`.
        refit: Refit the model in every bootstrap resample (see :func:`direct_method`).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`.
    """
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
        "dr",
        _dr_terms,
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


def _tune(
    dm: np.ndarray, w: np.ndarray, res: np.ndarray, candidates: np.ndarray, shrink: Callable
) -> float:
    """The hyperparameter minimising estimated MSE = bias² + variance / n (Su et al. 2020).

    The bias of a modified weight ŵ is estimated directly as |mean((w − ŵ)(r − q̂))|, the
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
    the squared direct bias estimate |mean((w − ŵ)(r − q̂))|² plus the variance (re-tuned
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


def replay(
    rewards: ArrayLike,
    actions: ArrayLike,
    target: ArrayLike,
    *,
    position: ArrayLike | None = None,
    propensities: ArrayLike | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """The replay method (Li, Chu, Langford and Wang 2011) for uniformly-random logs.

    Replays the log through the target policy and keeps the rounds where its action equals
    the logged one; the value is the mean reward over those matched rounds. Unbiased when
    the logging policy chose uniformly among the same number of candidates every round; it
    keeps about n / K rounds. A stochastic target's action is drawn per round from
    ``target`` with the seeded generator (before the bootstrap).

    Args:
        rewards: Logged rewards, shape (n,).
        actions: Logged action indices, shape (n,).
        target: The target's action per round, integers of shape (n,), or its
            probabilities, shape (n, K) (or (n, K, positions) with ``position``), from
            which one action per round is drawn.
        position: The position each round was logged at, (n,); see :func:`ips`.
        propensities: The logged propensities (n,), if known: checked to be one constant,
            as replay requires a uniform logging policy.
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the draws and the resampling.

    Returns:
        The :class:`Estimate`, ``n_matched`` the matched rounds (also its ``ess``); the
        value is NaN, with a warning, when no round matches.
    """
    r = check_rewards(rewards)
    n = r.shape[0]
    t = np.asarray(at_position(position, {"target": target})[0])
    if t.ndim == 2:
        pi = check_target_matrix(t, n)
        # The draws use their own stream, so the resamples stay paired with other estimators'.
        if isinstance(seed, np.random.Generator):
            draw_rng = seed
        else:
            draw_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        cdf = np.cumsum(pi, axis=1)
        u = draw_rng.random(n) * cdf[:, -1]
        chosen = np.minimum((cdf <= u[:, None]).sum(axis=1), pi.shape[1] - 1)
        a = check_actions(actions, n, pi.shape[1])
    elif t.ndim == 1:
        if t.shape[0] != n or t.dtype.kind not in "iu":
            raise ValueError(
                f"target: expected the target's actions as integers of shape ({n},) or its "
                f"probabilities of shape ({n}, K), got {t.dtype} of shape {t.shape}"
            )
        chosen = t.astype(np.int64)
        a = np.asarray(actions)
        if a.shape != (n,) or a.dtype.kind not in "iu":
            raise ValueError(f"actions: expected integer indices of shape ({n},), got {a.shape}")
    else:
        raise ValueError(f"target: expected shape (n,) or (n, K), got {t.shape}")
    if propensities is not None:
        p, _ = check_propensities(propensities, n, 0.0)
        if np.ptp(p) > 1e-9 * p.max():
            raise ValueError(
                "propensities: replay needs logs collected uniformly at random (one constant "
                f"propensity); these range from {p.min():.3g} to {p.max():.3g}. Use ips, snips "
                "or dr for other logging policies"
            )
    match = (chosen == a).astype(np.float64)
    n_matched = int(match.sum())
    if n_matched == 0:
        warnings.warn(
            "replay: no logged action matches the target policy's; the value is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return make_estimate(
        "replay",
        match * r,
        match,
        weights=match,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_matched=n_matched,
    )


def on_policy_value(
    rewards: ArrayLike, *, n_bootstrap: int = 1000, confidence: float = 0.95, seed: Seed = 0
) -> Estimate:
    """The mean logged reward with its bootstrap interval: the logging policy's own value.

    Args:
        rewards: Rewards of rounds played by the policy itself, shape (n,).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate` named ``"on-policy"`` (``ess`` = n).
    """
    r = check_rewards(rewards)
    return make_estimate(
        "on-policy",
        r,
        None,
        weights=None,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )


#: The estimators :func:`evaluate` runs by name, and whether they need a reward model.
ESTIMATORS: dict[str, tuple[Callable[..., Estimate], bool]] = {
    "ips": (ips, False),
    "snips": (snips, False),
    "dm": (direct_method, True),
    "dr": (doubly_robust, True),
    "switch-dr": (switch_dr, True),
    "dr-os": (dr_os, True),
}
#: Estimators :func:`evaluate` runs only when asked by name (replay needs a uniform log).
OPT_IN_ESTIMATORS: dict[str, Callable[..., Estimate]] = {"replay": replay}


def evaluate(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: RewardModel | None = None,
    *,
    estimators: Sequence[str] | None = None,
    position: ArrayLike | None = None,
    refit: bool = False,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> dict[str, Estimate]:
    """Run several estimators on one log with paired bootstrap resamples.

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K) (or (n, K, positions) with
            ``position``).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K) (or
            (n, K, positions)), a fitting function (see :data:`RewardModel`), or None.
        estimators: Names from :data:`ESTIMATORS` and :data:`OPT_IN_ESTIMATORS`
            (``"replay"``); default: every name in :data:`ESTIMATORS`, or only ``ips`` and
            ``snips`` without a reward model.
        position: The position each round was logged at, (n,); see :func:`ips`.
        refit: Refit the model (a fitting function) and re-tune τ / λ in every bootstrap
            resample; one fit per resample serves every model-based estimator.
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for each interval.
        confidence: Coverage of the intervals.
        seed: An integer seed (every estimator resamples the same rounds) or None.

    Returns:
        The estimates by estimator name, in the order asked.
    """
    if isinstance(seed, np.random.Generator):
        raise ValueError("seed: evaluate needs an integer seed (or None) to pair the resamples")
    if estimators is None:
        estimators = [
            k for k, (_, needs) in ESTIMATORS.items() if reward_model is not None or not needs
        ]
    unknown = [e for e in estimators if e not in ESTIMATORS and e not in OPT_IN_ESTIMATORS]
    if unknown:
        raise ValueError(
            f"estimators: unknown {unknown}; expected names from "
            f"{[*ESTIMATORS, *OPT_IN_ESTIMATORS]}"
        )
    seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
    common = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    model_names = [e for e in estimators if e in ESTIMATORS and ESTIMATORS[e][1]]
    if model_names and reward_model is None:
        raise ValueError(f"reward_model: the {model_names[0]!r} estimator needs one, shape (n, K)")
    if refit and not model_names:
        raise ValueError(
            "refit: True refits the reward model of dm, dr, switch-dr and dr-os; none of them "
            f"is among the estimators {list(estimators)}"
        )
    # Checks position against the arrays; the model-free estimators read it with the target.
    at_position(position, {"target_probs": target_probs, "reward_model": reward_model})
    target_position = position if np.ndim(target_probs) == 3 else None
    if callable(reward_model) and not refit and model_names:
        reward_model = np.asarray(reward_model(np.arange(check_rewards(rewards).shape[0])))
    refitted: dict[str, Estimate] = {}
    if refit:
        rounds, q, n_clipped, pos = _model_rounds(
            rewards,
            propensities,
            target_probs,
            actions,
            reward_model,
            position,
            min_propensity,
            True,
            n_bootstrap,
        )
        terms = {
            "dm": _dm_terms,
            "dr": _dr_terms,
            "switch-dr": _switch_terms(None, None),
            "dr-os": _dr_os_terms(None, None),
        }
        terms = {name: terms[name] for name in model_names}
        interval(np.empty(0), confidence)  # check the level before the fits
        reps = _refit_replicates(terms, rounds, reward_model, pos, n_bootstrap, seed)
        for name, fn in terms.items():
            refitted[name] = _model_estimate(
                name,
                fn,
                rounds,
                q,
                reward_model=reward_model,
                position=pos,
                refit=True,
                n_clipped=0 if name == "dm" else n_clipped,
                replicates=reps[name],
                params={} if name == "dm" else {"min_propensity": min_propensity},
                **common,
            )
    out: dict[str, Estimate] = {}
    for name in estimators:
        if name in refitted:
            out[name] = refitted[name]
            continue
        if name in OPT_IN_ESTIMATORS:
            out[name] = OPT_IN_ESTIMATORS[name](
                rewards,
                actions,
                target_probs,
                position=target_position,
                propensities=propensities,
                **common,
            )
            continue
        fn, needs_model = ESTIMATORS[name]
        if name == "dm":
            out[name] = fn(target_probs, reward_model, position=position, **common)
        elif needs_model:
            out[name] = fn(
                rewards,
                propensities,
                target_probs,
                actions,
                reward_model,
                position=position,
                min_propensity=min_propensity,
                **common,
            )
        else:
            out[name] = fn(
                rewards,
                propensities,
                target_probs,
                actions,
                position=target_position,
                min_propensity=min_propensity,
                **common,
            )
    return out
