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

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from bandexa_gym.offline.checks import (
    DEFAULT_MIN_PROPENSITY,
    ArrayLike,
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

__all__ = ["RewardModel", "direct_method", "doubly_robust", "ips", "snips"]


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
