"""The replay method, the on-policy value, and :func:`evaluate`: every estimator on one log.

See :mod:`bandexa_gym.offline.estimators` for the notation and the intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from bandexa_gym.offline.checks import (
    DEFAULT_MIN_PROPENSITY,
    ArrayLike,
    Estimate,
    Seed,
    at_position,
    check_actions,
    check_propensities,
    check_rewards,
    check_target_matrix,
    interval,
    make_estimate,
)
from bandexa_gym.offline.estimators import (
    RewardModel,
    _dm_terms,
    _dr_terms,
    _model_estimate,
    _model_rounds,
    _refit_replicates,
    direct_method,
    doubly_robust,
    ips,
    snips,
)
from bandexa_gym.offline.tuned import _dr_os_terms, _switch_terms, dr_os, switch_dr

__all__ = ["ESTIMATORS", "OPT_IN_ESTIMATORS", "evaluate", "on_policy_value", "replay"]


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
