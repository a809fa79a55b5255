"""Synthetic contextual bandit with Gaussian contexts and nonlinear context-action rewards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import (
    CandidateSetEnv,
    Round,
    check_array_size,
    check_bool,
    check_int,
    check_nonnegative,
)
from bandexa_gym.envs.drift import Drift, DriftClock, drift_seed_sequence, parse_drift, walk

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


@dataclass(frozen=True)
class _Latent:
    """The Gaussian draws behind a :class:`SyntheticRewardModel` (rows not yet normalized).

    Drift moves these; the model normalizes them.
    """

    theta: np.ndarray  # (1, d_a)
    context_proj: np.ndarray  # (r, d_x)
    action_proj: np.ndarray  # (r, d_a)
    mix: np.ndarray  # (r,), +-1/sqrt(r)


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
    - ``problem_seed`` fixes the bandit independently of the reset seed.
    - ``gym.make_vec(id, num_envs=N)`` gives N streams of one bandit: sub-env ``i`` is
      seeded ``s + i`` and plays the bandit that ``reset(seed=s)`` draws (sub-env 0 is
      exactly ``gym.make(id)`` reset with ``s``); ``problem="per_env"`` gives each sub-env
      its own bandit. See :func:`bandexa_gym.envs.make_vector_env`.

    With ``drift`` (see :mod:`bandexa_gym.envs.drift`) the reward parameters
    ``theta, U, V, c`` move; the arms and the context law do not. Abrupt drift redraws
    them from their prior at the change points; gradual drift moves the Gaussian draws
    behind ``theta, U, V`` (before normalization) by a mean-reverting random-walk step
    before every round and keeps the signs ``c``. The moves come from the problem's own
    stream (derived from the generator that drew the problem, or from ``problem_seed``),
    so a seed reproduces them, sub-envs sharing a bandit drift together, and the contexts,
    arms and noise are those of the stationary env with the same seed. The oracle in
    ``info`` uses the parameters of the round played: regret is measured against the
    moving optimum (see ``docs/nonstationary.md``).

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, (observed_context_dim,), float32)``;
    ``candidates``: ``Box(-inf, inf, (n_arms, action_dim), float32)``; ``action_mask``:
    all ones, ``Box(0, 1, (n_arms,), int8)``.

    ## Action Space

    ``Discrete(n_arms)``: the arm (row of ``candidates``) to play.

    ## Rewards

    ``mu(x, a) + N(0, noise_std^2)``. ``info`` holds the oracle (``expected_reward``,
    ``best_expected_reward``, ``regret``, ``optimal_action``, and ``expected_rewards`` of
    every arm) computed from ``mu`` with the parameters in force for that round.

    ## Starting State and Episode End

    ``reset(seed=s)`` redraws the reward model and arms from ``s`` (unless
    ``problem_seed`` fixes them, in which case a seeded reset restores the initial
    parameters and restarts the drift); ``reset()`` without a seed keeps them (and the
    drift) and continues the round stream. Rounds never terminate; the id is registered
    without ``max_episode_steps`` (pass one to ``gym.make`` for episodes).

    ## Arguments

    ```python
    gym.make("Bandexa/Synthetic-v0", n_arms=10, context_dim=10, action_dim=10,
             interaction_scale=1.0, nonlinearity="tanh", noise_std=0.1,
             resample_actions=False, observed_context_dim=None, problem_seed=None,
             drift=None)
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
    - ``drift``: ``None`` (stationary), or when the reward parameters move:
      ``{"kind": "abrupt", "every": N}``, ``{"kind": "abrupt", "at": [t1, t2, ...]}``,
      ``{"kind": "gradual", "rate": r}`` or a :class:`~bandexa_gym.envs.Drift`.

    ## Version History

    - v0: Initial version.
    - v0 (unreleased): ``gym.make_vec`` shares one bandit across sub-envs by default
      (``problem="per_env"`` for the former behaviour); ``drift=``;
      ``info["expected_rewards"]``; ``resample_actions`` must be a bool and ``noise_std``
      a number (``TypeError`` otherwise). Without drift the round stream of a single env is
      unchanged.
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
        drift: Drift | Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (
            ("n_arms", n_arms),
            ("context_dim", context_dim),
            ("action_dim", action_dim),
        ):
            check_int(name, value)
        sizes = f"n_arms={n_arms!r}, context_dim={context_dim!r}, action_dim={action_dim!r}"
        rank = min(context_dim, action_dim)
        check_array_size("one observation's candidates", (n_arms, action_dim), np.float32, sizes)
        check_array_size("the context projection", (rank, context_dim), np.float64, sizes)
        check_array_size("the action projection", (rank, action_dim), np.float64, sizes)
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
        self.resample_actions = check_bool("resample_actions", resample_actions)
        self.problem_seed = _check_problem_seed(problem_seed)
        self.drift = parse_drift(drift)
        super().__init__(
            context_space=spaces.Box(-np.inf, np.inf, (self.observed_context_dim,), np.float32),
            n_candidates=self.n_arms,
            action_dim=int(action_dim),
        )
        self.reward_model: SyntheticRewardModel | None = None
        self._latent: _Latent | None = None
        self._initial: tuple[_Latent, SyntheticRewardModel] | None = None
        self._clock: DriftClock | None = None
        self._actions: np.ndarray | None = None
        self._round_action_rng = np.random.default_rng(0)  # replaced at reset
        self._mask = np.ones(self.n_arms, dtype=np.int8)

    def _on_reset(self, seeded: bool) -> None:
        if seeded or self.reward_model is None:
            # Arms redrawn every round (resample_actions=True) come from their own stream,
            # seeded from np_random, so that n_arms does not shift the contexts.
            self._round_action_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        if self.reward_model is not None and not seeded:
            return  # unseeded reset: keep the problem and its drift, continue the rounds
        if self.problem_seed is not None and self._initial is not None:
            # A problem fixed by problem_seed is kept; its drift starts over.
            self._latent, self.reward_model = self._initial
            if self._clock is not None:
                self._clock.restart()
            return
        if self.problem_seed is not None:
            rng = np.random.default_rng(self.problem_seed)
        else:
            rng = self._problem_rng()
            if rng is not self.np_random:
                rng.integers(2**63)  # sub-env 0 drew its arm-stream seed first (above)
        self._latent = self._draw_latent(rng)
        self.reward_model = self._model(self._latent)
        self._initial = (self._latent, self.reward_model)
        # Fixed arms from their own stream, row by row: more arms extend the same first arms.
        arm_rng = np.random.default_rng(int(rng.integers(2**63)))
        self._actions = self._draw_actions(arm_rng)
        self._clock = None
        if self.drift is not None:
            self._clock = DriftClock(self.drift, drift_seed_sequence(rng))

    def _draw_latent(self, rng: np.random.Generator) -> _Latent:
        rank = min(self.context_dim, self.action_dim)
        return _Latent(
            theta=rng.standard_normal((1, self.action_dim)),
            context_proj=rng.standard_normal((rank, self.context_dim)),
            action_proj=rng.standard_normal((rank, self.action_dim)),
            mix=rng.choice(np.array([-1.0, 1.0]), size=rank) / np.sqrt(rank),
        )

    def _model(self, latent: _Latent) -> SyntheticRewardModel:
        return SyntheticRewardModel(
            theta=_unit_rows(latent.theta)[0],
            context_proj=_unit_rows(latent.context_proj),
            action_proj=_unit_rows(latent.action_proj),
            mix=latent.mix,
            interaction_scale=self.interaction_scale,
            nonlinearity=self.nonlinearity,
        )

    def _move_parameters(self, clock: DriftClock) -> None:
        """Apply one drift event to the reward parameters (not to the arms)."""
        assert self._latent is not None and self.drift is not None
        if self.drift.kind == "abrupt":
            self._latent = self._draw_latent(clock.rng)
        else:
            rate = float(self.drift.rate)  # type: ignore[arg-type]
            self._latent = _Latent(
                theta=walk(self._latent.theta, rate, clock.rng),
                context_proj=walk(self._latent.context_proj, rate, clock.rng),
                action_proj=walk(self._latent.action_proj, rate, clock.rng),
                mix=self._latent.mix,
            )
        self.reward_model = self._model(self._latent)

    def _draw_actions(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((self.n_arms, self.action_dim)).astype(np.float32)

    def _draw_round(self) -> Round:
        assert self.reward_model is not None and self._actions is not None
        if self._clock is not None and self._clock.tick():
            self._move_parameters(self._clock)
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
