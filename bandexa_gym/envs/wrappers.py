"""Wrappers for candidate-set bandits: regret recording, a flat observation for RL, and an
affine transform of the rewards."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import check_real

__all__ = ["FlattenCandidates", "RegretMonitor", "RewardAffine"]

_ORACLE_KEYS = ("regret", "expected_reward", "best_expected_reward")
_INITIAL_ROWS = 1024
_OBS_KEYS = ("context", "candidates", "action_mask")


class RegretMonitor(gym.Wrapper):
    """Record every round's reward and the oracle's regret, whoever drives the env.

    Reads ``reward`` and ``info["regret" | "expected_reward" | "best_expected_reward"]``
    on each ``step``. Records survive ``reset()`` (RL libraries reset between episodes),
    so after any loop, a bandit agent's or SB3's ``learn()``, the monitor holds one entry
    per round played; :meth:`reset_records` clears them. In a vector env wrap each
    sub-env (``make_vector_env(id, N, wrappers=[RegretMonitor])``, whose sub-envs share one
    problem, or ``SyncVectorEnv([lambda: RegretMonitor(gym.make(...)), ...])``) and read
    the records with ``vec_env.envs[i].regrets`` or ``vec_env.get_attr("regrets")``.

    Example:
        >>> env = RegretMonitor(gym.make("Bandexa/Synthetic-v0"))
        >>> obs, _ = env.reset(seed=0)
        >>> for _ in range(3):
        ...     obs, reward, *_ = env.step(env.action_space.sample())
        >>> env.regrets.shape
        (3,)
    """

    def __init__(self, env: gym.Env) -> None:
        """Wrap ``env``, whose ``step`` info must carry the oracle keys.

        Args:
            env: A candidate-set bandit env (any ``Bandexa/*`` id), possibly wrapped.
        """
        super().__init__(env)
        # Columns: reward, regret, expected reward, best expected reward; rows preallocated
        # and doubled when full, so a round costs four stores, not four list appends.
        self._records = np.empty((_INITIAL_ROWS, 4), dtype=np.float64)
        self._count = 0

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        try:
            oracle = [float(info[key]) for key in _ORACLE_KEYS]
        except KeyError as err:
            raise KeyError(
                f"RegretMonitor needs info keys {_ORACLE_KEYS} from step(); the wrapped env "
                f"{self.env} did not provide {err}. Wrap a Bandexa/* environment."
            ) from None
        if self._count == self._records.shape[0]:
            self._records = np.concatenate([self._records, np.empty_like(self._records)])
        self._records[self._count] = (float(reward), *oracle)
        self._count += 1
        return obs, reward, terminated, truncated, info

    def reset_records(self) -> None:
        """Forget all recorded rounds."""
        self._count = 0

    @property
    def num_rounds(self) -> int:
        """Number of rounds recorded."""
        return self._count

    def _column(self, index: int) -> np.ndarray:
        return self._records[: self._count, index].copy()

    @property
    def rewards(self) -> np.ndarray:
        """Observed reward of each round, shape (T,), float64."""
        return self._column(0)

    @property
    def regrets(self) -> np.ndarray:
        """Regret of each round (best minus chosen expected reward), shape (T,), float64."""
        return self._column(1)

    @property
    def expected_rewards(self) -> np.ndarray:
        """Expected reward of the chosen action in each round, shape (T,), float64."""
        return self._column(2)

    @property
    def best_expected_rewards(self) -> np.ndarray:
        """Best expected reward on offer in each round, shape (T,), float64."""
        return self._column(3)

    @property
    def cumulative_regret(self) -> np.ndarray:
        """Cumulative regret after every recorded round, shape (T,), as in ``RunResult``."""
        return np.cumsum(self.regrets)


class FlattenCandidates(gym.ObservationWrapper):
    """Concatenate context, candidates and action mask into one flat float32 vector.

    For RL libraries and MLP policies that want a single ``Box``. The layout is
    ``[context.ravel(), candidates.ravel(), action_mask]`` (in that order, not
    Gymnasium's alphabetical ``flatten_space`` order); :attr:`slices` maps each key to
    its slice of the flat vector.

    Observation space: ``Box((d_x + K * d_a + K,), float32)`` with the bounds of the parts.
    """

    def __init__(self, env: gym.Env) -> None:
        """Wrap ``env``, whose observation space is the candidate-set ``Dict``.

        Args:
            env: A candidate-set bandit env (any ``Bandexa/*`` id), possibly wrapped.

        Raises:
            ValueError: The observation space is not a ``Dict`` with keys ``context``,
                ``candidates`` and ``action_mask``.
        """
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or not set(_OBS_KEYS) <= set(space.spaces):
            raise ValueError(
                f"FlattenCandidates expects a Dict observation space with keys {_OBS_KEYS}, "
                f"got {space}"
            )
        flat = [spaces.flatten_space(space[key]) for key in _OBS_KEYS]
        sizes = [int(part.shape[0]) for part in flat]
        bounds = np.cumsum([0, *sizes])
        self.slices: dict[str, slice] = {
            key: slice(int(bounds[i]), int(bounds[i + 1])) for i, key in enumerate(_OBS_KEYS)
        }
        self.observation_space = spaces.Box(
            low=np.concatenate([part.low for part in flat]).astype(np.float32),
            high=np.concatenate([part.high for part in flat]).astype(np.float32),
            dtype=np.float32,
        )
        self._parts = [space[key] for key in _OBS_KEYS]

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """Flatten one observation.

        Args:
            observation: The candidate-set ``Dict`` observation.

        Returns:
            Flat float32 vector, shape (d_x + K * d_a + K,).
        """
        return np.concatenate(
            [
                np.asarray(spaces.flatten(part, observation[key]), dtype=np.float32)
                for part, key in zip(self._parts, _OBS_KEYS, strict=True)
            ]
        )


class RewardAffine(gym.Wrapper):
    """Rewards ``scale * r + shift``, with the oracle in ``info`` transformed to match.

    For testing that an agent is invariant to the units of the reward. Per step:

    - ``reward`` -> ``scale * reward + shift``;
    - ``info["expected_reward"]``, ``info["best_expected_reward"]`` and
      ``info["expected_rewards"]`` (K,) -> ``scale * value + shift``;
    - ``info["regret"]`` -> ``scale * regret`` (a difference of expected rewards);
    - ``info["optimal_action"]`` and any other key unchanged (``scale > 0`` keeps the
      ranking of the candidates).

    The transformed scalars stay ``np.float64``, as the env gives them.

    ``info`` is a new dict; the wrapped env's arrays are not modified. Regret measured
    through the wrapper, divided by ``scale``, is the regret of the plain env.

    Example:
        >>> env = RewardAffine(gym.make("Bandexa/Synthetic-v0"), scale=100.0, shift=5.0)
    """

    def __init__(self, env: gym.Env, scale: float = 1.0, shift: float = 0.0) -> None:
        """Wrap ``env``.

        Args:
            env: Any env; the oracle keys are transformed when present.
            scale: Multiplier, a finite number > 0.
            shift: Offset added after scaling, a finite number.

        Raises:
            TypeError: ``scale`` or ``shift`` is not a real number.
            ValueError: ``scale`` is not finite and > 0, or ``shift`` is not finite.
        """
        super().__init__(env)
        scale_value = check_real("scale", scale)
        shift_value = check_real("shift", shift)
        if not np.isfinite(scale_value) or scale_value <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        if not np.isfinite(shift_value):
            raise ValueError(f"shift must be a finite number, got {shift!r}")
        self.scale = scale_value
        self.shift = shift_value

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        for key in ("expected_reward", "best_expected_reward"):
            if key in info:
                info[key] = np.float64(self.scale * float(info[key]) + self.shift)
        if "expected_rewards" in info:
            values = np.asarray(info["expected_rewards"], dtype=np.float64)
            info["expected_rewards"] = self.scale * values + self.shift
        if "regret" in info:
            info["regret"] = np.float64(self.scale * float(info["regret"]))
        return obs, self.scale * float(reward) + self.shift, terminated, truncated, info
