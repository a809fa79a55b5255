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
* ``reward_model`` q̂ (n, K): a model's expected reward of every candidate in each round.

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
from ``np.random.default_rng(seed)``; the reward model and any tuned hyperparameter are kept
fixed across resamples. Estimators called with the same ``seed`` and ``n`` draw the same
resamples, so their intervals are paired. See ``docs/ope.md`` for when to use which.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from bandexa_gym._ope_base import (
    DEFAULT_MIN_PROPENSITY,
    ArrayLike,
    ClippedPropensityWarning,
    Estimate,
    Seed,
    check_actions,
    check_propensities,
    check_reward_model,
    check_rewards,
    check_target_matrix,
    make_estimate,
    target_at_logged,
)

__all__ = [
    "DEFAULT_MIN_PROPENSITY",
    "ESTIMATORS",
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
) -> tuple[np.ndarray, np.ndarray, int]:
    r = check_rewards(rewards)
    n = r.shape[0]
    pi_logged = target_at_logged(target_probs, actions, n)
    p, n_clipped = check_propensities(propensities, n, min_propensity)
    return r, pi_logged / p, n_clipped


def ips(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike | None = None,
    *,
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
        target_probs: Target probabilities, shape (n, K), or of the logged actions, (n,).
        actions: Logged action indices, shape (n,); needed with (n, K) ``target_probs``.
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
        rewards, propensities, target_probs, actions, min_propensity
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
        rewards, propensities, target_probs, actions, min_propensity
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


def direct_method(
    target_probs: ArrayLike,
    reward_model: ArrayLike,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Direct method: mean over rounds of Σ_a π(a|x_i) q̂(x_i, a).

    Low variance; as biased as the reward model. It uses neither the logged rewards nor
    the propensities, only the logged contexts (through the rows of the two matrices).

    Args:
        target_probs: Target probabilities, shape (n, K).
        reward_model: Predicted reward of every candidate, shape (n, K).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate` (``ess`` = n: no importance weights).
    """
    pi = np.asarray(target_probs, dtype=np.float64)
    if pi.ndim != 2 or pi.shape[0] == 0:
        raise ValueError(
            f"target_probs: expected the target policy's probabilities of shape (n, K) with "
            f"n >= 1, got {pi.shape}"
        )
    pi = check_target_matrix(pi, pi.shape[0])
    q = check_reward_model(reward_model, pi.shape)
    return make_estimate(
        "dm",
        (pi * q).sum(axis=1),
        None,
        weights=None,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )


def _dr_parts(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: ArrayLike,
    min_propensity: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(dm term (n,), importance weights (n,), residuals r - q̂(x, a_i) (n,), n_clipped)."""
    r = check_rewards(rewards)
    n = r.shape[0]
    pi = check_target_matrix(target_probs, n)
    a = check_actions(actions, n, pi.shape[1])
    q = check_reward_model(reward_model, pi.shape)
    p, n_clipped = check_propensities(propensities, n, min_propensity)
    rows = np.arange(n)
    dm = (pi * q).sum(axis=1)
    return dm, pi[rows, a] / p, r - q[rows, a], n_clipped


def doubly_robust(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: ArrayLike,
    *,
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
        target_probs: Target probabilities, shape (n, K).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`.
    """
    dm, w, res, n_clipped = _dr_parts(
        rewards, propensities, target_probs, actions, reward_model, min_propensity
    )
    return make_estimate(
        "dr",
        dm + w * res,
        None,
        weights=w,
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


def switch_dr(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: ArrayLike,
    *,
    tau: float | None = None,
    taus: Sequence[float] | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Switch doubly robust (Wang, Agarwal and Dudík 2017): drop the correction of large weights.

    mean(Σ_a π(a|x_i) q̂(x_i, a) + w_i 1{w_i ≤ τ} (r_i − q̂(x_i, a_i))): doubly robust on
    rounds whose weight is at most τ, the direct method on the others. τ = ∞ is DR and τ = 0
    is DM. Without ``tau``, τ is chosen from ``taus`` by the estimated MSE of Su et al.
    (2020): squared direct bias estimate plus variance (fixed across bootstrap resamples).

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K).
        tau: The weight threshold; None to tune it.
        taus: Candidate thresholds when tuning (default: the weights' deciles and ∞).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`; ``params["tau"]`` is the threshold used.
    """
    dm, w, res, n_clipped = _dr_parts(
        rewards, propensities, target_probs, actions, reward_model, min_propensity
    )
    if tau is None:
        default = np.append(np.quantile(w, np.linspace(0.0, 0.9, 10)), np.inf)
        tau = _tune(dm, w, res, _grid(taus, default, "taus"), _switch)
    elif not tau >= 0:
        raise ValueError(f"tau: expected a weight threshold >= 0 (or None to tune), got {tau}")
    w_hat = _switch(w, tau)
    return make_estimate(
        "switch-dr",
        dm + w_hat * res,
        None,
        weights=w_hat,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"tau": float(tau), "min_propensity": min_propensity},
    )


def dr_os(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: ArrayLike,
    *,
    lambda_: float | None = None,
    lambdas: Sequence[float] | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> Estimate:
    """Doubly robust with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy, Dudík 2020).

    The weights of DR are shrunk to ŵ = λw / (w² + λ): close to w when w² ≪ λ, and λ/w for
    large weights, so no round's correction can explode. λ = ∞ is DR and λ = 0 is DM.
    Without ``lambda_``, λ is chosen from ``lambdas`` by the estimated MSE of Su et al.:
    the squared direct bias estimate |mean((w − ŵ)(r − q̂))|² plus the variance.

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K).
        lambda_: The shrinkage λ >= 0 (``math.inf`` for DR); None to tune it.
        lambdas: Candidates when tuning (default: max(w)² × 10^[-4 ... 0] and ∞).
        min_propensity: Floor of the propensities (see :func:`ips`).
        n_bootstrap: Bootstrap resamples for the interval (0: no interval).
        confidence: Coverage of the interval.
        seed: Seed or generator of the resampling.

    Returns:
        The :class:`Estimate`; ``params["lambda"]`` is the λ used.
    """
    dm, w, res, n_clipped = _dr_parts(
        rewards, propensities, target_probs, actions, reward_model, min_propensity
    )
    if lambda_ is None:
        scale = max(float(w.max()) ** 2, 1e-12)
        default = np.append(scale * np.geomspace(1e-4, 1.0, 13), np.inf)
        lambda_ = _tune(dm, w, res, _grid(lambdas, default, "lambdas"), _shrink)
    elif not lambda_ >= 0:
        raise ValueError(f"lambda_: expected a shrinkage >= 0 (or None to tune), got {lambda_}")
    w_hat = _shrink(w, float(lambda_))
    return make_estimate(
        "dr-os",
        dm + w_hat * res,
        None,
        weights=w_hat,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        n_clipped=n_clipped,
        params={"lambda": float(lambda_), "min_propensity": min_propensity},
    )


def replay(
    rewards: ArrayLike,
    actions: ArrayLike,
    target: ArrayLike,
    *,
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
            probabilities, shape (n, K), from which one action per round is drawn.
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
    t = np.asarray(target)
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


def evaluate(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probs: ArrayLike,
    actions: ArrayLike,
    reward_model: ArrayLike | None = None,
    *,
    estimators: Sequence[str] | None = None,
    min_propensity: float = DEFAULT_MIN_PROPENSITY,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: Seed = 0,
) -> dict[str, Estimate]:
    """Run several estimators on one log with paired bootstrap resamples.

    Args:
        rewards: Logged rewards, shape (n,).
        propensities: Logging probabilities of the logged actions, shape (n,).
        target_probs: Target probabilities, shape (n, K).
        actions: Logged action indices, shape (n,).
        reward_model: Predicted reward of every candidate, shape (n, K), or None.
        estimators: Names from :data:`ESTIMATORS`; default: all of them, or only ``ips``
            and ``snips`` without a reward model.
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
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"estimators: unknown {unknown}; expected names from {list(ESTIMATORS)}")
    seed = seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
    common = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    out: dict[str, Estimate] = {}
    for name in estimators:
        fn, needs_model = ESTIMATORS[name]
        if needs_model and reward_model is None:
            raise ValueError(f"reward_model: the {name!r} estimator needs one, shape (n, K)")
        if name == "dm":
            out[name] = fn(target_probs, reward_model, **common)
        elif needs_model:
            out[name] = fn(
                rewards,
                propensities,
                target_probs,
                actions,
                reward_model,
                min_propensity=min_propensity,
                **common,
            )
        else:
            out[name] = fn(
                rewards,
                propensities,
                target_probs,
                actions,
                min_propensity=min_propensity,
                **common,
            )
    return out
