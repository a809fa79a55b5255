"""Synthetic contextual bandit with Gaussian contexts and nonlinear context-action rewards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round, check_int, check_nonnegative

__all__ = ["SyntheticBanditEnv", "SyntheticRewardModel"]

# Weight of the context-free (per-arm) part of the expected reward; the interaction part
# dominates so that the best arm changes with the context.
_LINEAR_WEIGHT = 0.3
# tanh squashes the interaction products; this gain gives it about the spread of the
# plain bilinear form, so ``interaction_scale`` means the same with either nonlinearity.
_TANH_GAIN = 1.6


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


def _check_problem_seed(problem_seed: int | None) -> int | None:
    if problem_seed is None:
        return None
    if (
        isinstance(problem_seed, bool)
        or not isinstance(problem_seed, (int, np.integer))
        or problem_seed < 0
    ):
        raise ValueError(f"problem_seed must be None or an integer >= 0, got {problem_seed!r}")
    return int(problem_seed)


@dataclass(frozen=True)
class SyntheticRewardModel:
    """Parameters of the expected reward of :class:`SyntheticBanditEnv`.

    ``mu(x, a) = 0.3 * theta @ a + scale * sum_k c_k * g((U x)_k * (V a)_k)`` with
    ``g = 1.6 * tanh`` (or the identity when the nonlinearity is ``None``).

    Attributes:
        theta: Per-arm linear weights, shape (d_a,), unit norm.
        context_proj: ``U``, shape (r, d_x), unit-norm rows; r = min(d_x, d_a).
        action_proj: ``V``, shape (r, d_a), unit-norm rows.
        mix: ``c``, shape (r,), entries +-1/sqrt(r).
        interaction_scale: ``scale``.
        nonlinearity: ``"tanh"`` or ``None``.
    """

    theta: np.ndarray
    context_proj: np.ndarray
    action_proj: np.ndarray
    mix: np.ndarray
    interaction_scale: float
    nonlinearity: Literal["tanh"] | None

    def __call__(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Expected rewards of ``actions`` under the full ``context``.

        Args:
            context: Full (unobserved features included) context, shape (d_x,).
            actions: Action features, shape (K, d_a).

        Returns:
            Expected rewards, shape (K,), float64.
        """
        x = np.asarray(context, dtype=np.float64)
        a = np.asarray(actions, dtype=np.float64)
        products = (self.context_proj @ x)[None, :] * (a @ self.action_proj.T)  # (K, r)
        if self.nonlinearity == "tanh":
            products = _TANH_GAIN * np.tanh(products)
        return _LINEAR_WEIGHT * (a @ self.theta) + self.interaction_scale * (products @ self.mix)


class SyntheticBanditEnv(CandidateSetEnv):
    """K arms with feature vectors, Gaussian contexts and a nonlinear expected reward.

    ## Description

    Each round draws a context ``x ~ N(0, I)`` of dimension ``context_dim`` and offers
    ``n_arms`` arms, each a feature vector ``a ~ N(0, I)`` of dimension ``action_dim``.
    The expected reward couples context and action through projected interactions::

        mu(x, a) = 0.3 * theta @ a + interaction_scale * sum_k c_k g((U x)_k (V a)_k)

    with ``g = 1.6 tanh`` (``nonlinearity="tanh"``, default) or the identity
    (``nonlinearity=None``, a bilinear form). Because the per-arm term is small, the
    best arm depends on the context: a model linear in ``concat(x, a)`` ranks arms the same
    way for every context and cannot do better than the best fixed arm, while a small
    MLP on ``[x; a]`` (or any model with ``x * a``-style features) can fit ``mu``.
    With the defaults ``mu`` has a spread of about 0.7 across arms and the best arm leads
    the runner-up by about 0.35 on average.

    The problem (``theta, U, V, c`` and the fixed arms) is drawn at a seeded reset from
    ``np_random``, or once from ``problem_seed`` when it is given; contexts, noise and
    (with ``resample_actions=True``) per-round arms come from ``np_random``. Fixed arms
    and per-round arms use their own streams seeded from those, row by row. Consequences:

    - ``observed_context_dim < context_dim`` hides the last features from the observation
      but not from the reward: envs that differ only in ``observed_context_dim`` have, for
      the same seed, the same reward model and round stream, and the smaller one's
      context is a prefix of the larger one's ("revealing extra context features").
    - Envs that differ only in ``n_arms`` share, for the same seed, the reward model, the
      contexts, the noise and (with fixed arms) the first arms ("adding an arm").
    - ``problem_seed`` fixes the bandit independently of the reset seed: the sub-envs of a
      vector env (seeded ``s, s+1, ...``) then play the same bandit on different rounds.
      Without it each sub-env is a different bandit.

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, (observed_context_dim,), float32)``;
    ``candidates``: ``Box(-inf, inf, (n_arms, action_dim), float32)``; ``action_mask``:
    all ones, ``Box(0, 1, (n_arms,), int8)``.

    ## Action Space

    ``Discrete(n_arms)``: the arm (row of ``candidates``) to play.

    ## Rewards

    ``mu(x, a) + N(0, noise_std^2)``. ``info`` holds the oracle (``expected_reward``,
    ``best_expected_reward``, ``regret``, ``optimal_action``) computed from ``mu``.

    ## Starting State and Episode End

    ``reset(seed=s)`` redraws the reward model and arms from ``s`` (unless
    ``problem_seed`` fixes them); ``reset()`` without a seed keeps them and continues the
    round stream. Rounds never terminate; the id is registered without
    ``max_episode_steps`` (pass one to ``gym.make`` for episodes).

    ## Arguments

    ```python
    gym.make("Bandexa/Synthetic-v0", n_arms=10, context_dim=10, action_dim=10,
             interaction_scale=1.0, nonlinearity="tanh", noise_std=0.1,
             resample_actions=False, observed_context_dim=None, problem_seed=None)
    ```

    - ``n_arms``: number of arms K (>= 1).
    - ``context_dim``: features of the true context (>= 1).
    - ``action_dim``: features per arm (>= 1).
    - ``interaction_scale``: strength of the context-action interactions (>= 0).
    - ``nonlinearity``: ``"tanh"`` or ``None``.
    - ``noise_std``: standard deviation of the Gaussian reward noise (>= 0).
    - ``resample_actions``: draw new arm features every round instead of once per reset.
    - ``observed_context_dim``: how many leading context features the observation shows
      (1 to ``context_dim``; ``None`` means all).
    - ``problem_seed``: draw the reward model and arms from this seed instead of the reset
      seed (``None``: from the reset seed).

    ## Version History

    - v0: Initial version.
    """

    def __init__(
        self,
        n_arms: int = 10,
        context_dim: int = 10,
        action_dim: int = 10,
        interaction_scale: float = 1.0,
        nonlinearity: Literal["tanh"] | None = "tanh",
        noise_std: float = 0.1,
        resample_actions: bool = False,
        observed_context_dim: int | None = None,
        problem_seed: int | None = None,
    ) -> None:
        for name, value in (
            ("n_arms", n_arms),
            ("context_dim", context_dim),
            ("action_dim", action_dim),
        ):
            check_int(name, value)
        if observed_context_dim is None:
            observed_context_dim = context_dim
        check_int("observed_context_dim", observed_context_dim, 1, context_dim)
        check_nonnegative("interaction_scale", interaction_scale)
        check_nonnegative("noise_std", noise_std)
        if nonlinearity not in ("tanh", None):
            raise ValueError(f'nonlinearity must be "tanh" or None, got {nonlinearity!r}')

        self.n_arms = int(n_arms)
        self.context_dim = int(context_dim)
        self.observed_context_dim = int(observed_context_dim)
        self.interaction_scale = float(interaction_scale)
        self.nonlinearity: Literal["tanh"] | None = nonlinearity
        self.noise_std = float(noise_std)
        self.resample_actions = bool(resample_actions)
        self.problem_seed = _check_problem_seed(problem_seed)
        super().__init__(
            context_space=spaces.Box(-np.inf, np.inf, (self.observed_context_dim,), np.float32),
            n_candidates=self.n_arms,
            action_dim=int(action_dim),
        )
        self.reward_model: SyntheticRewardModel | None = None
        self._actions: np.ndarray | None = None
        self._round_action_rng = np.random.default_rng(0)  # replaced at reset
        self._mask = np.ones(self.n_arms, dtype=np.int8)

    def _on_reset(self, seeded: bool) -> None:
        if seeded or self.reward_model is None:
            # Arms redrawn every round (resample_actions=True) come from their own stream,
            # seeded from np_random, so that n_arms does not shift the contexts.
            self._round_action_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        if self.reward_model is not None and (not seeded or self.problem_seed is not None):
            return  # keep the problem: unseeded reset, or a problem fixed by problem_seed
        if self.problem_seed is None:
            rng = self.np_random
        else:
            rng = np.random.default_rng(self.problem_seed)
        rank = min(self.context_dim, self.action_dim)
        self.reward_model = SyntheticRewardModel(
            theta=_unit_rows(rng.standard_normal((1, self.action_dim)))[0],
            context_proj=_unit_rows(rng.standard_normal((rank, self.context_dim))),
            action_proj=_unit_rows(rng.standard_normal((rank, self.action_dim))),
            mix=rng.choice(np.array([-1.0, 1.0]), size=rank) / np.sqrt(rank),
            interaction_scale=self.interaction_scale,
            nonlinearity=self.nonlinearity,
        )
        # Fixed arms from their own stream, row by row: more arms extend the same first arms.
        arm_rng = np.random.default_rng(int(rng.integers(2**63)))
        self._actions = self._draw_actions(arm_rng)

    def _draw_actions(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((self.n_arms, self.action_dim)).astype(np.float32)

    def _draw_round(self) -> Round:
        assert self.reward_model is not None and self._actions is not None
        context = self.np_random.standard_normal(self.context_dim).astype(np.float32)
        if self.resample_actions:
            self._actions = self._draw_actions(self._round_action_rng)
        return Round(
            context=context[: self.observed_context_dim],
            candidates=self._actions,
            expected_rewards=self.reward_model(context, self._actions),
            action_mask=self._mask,
            payload=context,
        )

    def _draw_reward(self, round_: Round, action: int) -> float:
        # Drawn even when noise_std == 0, so the round stream does not depend on it.
        noise = self.np_random.normal(0.0, self.noise_std)
        return float(round_.expected_rewards[action] + noise)
