"""The wheel bandit: a hard-exploration problem with rare, large rewards."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import (
    CandidateSetEnv,
    Round,
    check_nonnegative,
    check_real,
    check_unit_interval,
)

__all__ = ["WheelBanditEnv"]


class WheelBanditEnv(CandidateSetEnv):
    """The wheel bandit of Riquelme, Tucker and Snoek (2018), "Deep Bayesian Bandits Showdown".

    ## Description

    Each round a context ``x`` is drawn uniformly from the unit disc, and five arms are
    offered. Arm 0 pays ``mean_safe`` (1.2) everywhere. Arms 1–4 pay ``mean_base`` (1.0)
    when ``‖x‖ <= delta``; outside that radius the arm of ``x``'s quadrant (1: x₁ > 0,
    x₂ > 0; 2: x₁ > 0, x₂ < 0; 3: x₁ < 0, x₂ < 0; 4: x₁ < 0, x₂ > 0) pays ``mean_large``
    (50) and the other three still pay 1.0, so arm 0 is optimal inside the radius and the
    quadrant's arm outside it. With ``delta`` near 1 the high-reward region covers
    ``1 − delta²`` of the disc (10 % for 0.95): an agent that settles on arm 0 early never
    learns that the rare large rewards exist — the problem measures exploration. Rewards
    carry Gaussian noise of standard deviation ``noise_std`` (0.01) and are on a scale of
    tens, so agents must not assume rewards near [0, 1].

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-1, 1, (2,), float32)``; ``candidates``: the five arms
    as one-hot rows, ``Box(0, 1, (5, 5), float32)``; ``action_mask``: all ones.

    ## Action Space

    ``Discrete(5)``: the arm to play.

    ## Rewards

    The arm's mean (above) plus ``N(0, noise_std²)``; ``info`` holds the oracle.

    ## Arguments

    ```python
    gym.make("Bandexa/Wheel-v0", delta=0.95, mean_safe=1.2, mean_base=1.0,
             mean_large=50.0, noise_std=0.01)
    ```

    - ``delta``: radius of the low-reward disc, in [0, 1).
    - ``mean_safe``, ``mean_base``, ``mean_large``: the arms' mean rewards
      (``mean_large > mean_safe > mean_base``).
    - ``noise_std``: standard deviation of the Gaussian reward noise (>= 0).

    ## Version History

    - v0: Initial version.
    """

    def __init__(
        self,
        delta: float = 0.95,
        mean_safe: float = 1.2,
        mean_base: float = 1.0,
        mean_large: float = 50.0,
        noise_std: float = 0.01,
    ) -> None:
        self.delta = check_unit_interval("delta", delta)
        if self.delta >= 1.0:
            raise ValueError(f"delta must be in [0, 1), got {delta!r}")
        self.mean_safe = check_real("mean_safe", mean_safe)
        self.mean_base = check_real("mean_base", mean_base)
        self.mean_large = check_real("mean_large", mean_large)
        if not self.mean_large > self.mean_safe > self.mean_base:
            raise ValueError(
                "the wheel needs mean_large > mean_safe > mean_base, got "
                f"{mean_large!r}, {mean_safe!r}, {mean_base!r}"
            )
        self.noise_std = check_nonnegative("noise_std", noise_std)
        super().__init__(
            context_space=spaces.Box(-1.0, 1.0, (2,), np.float32),
            n_candidates=5,
            action_dim=5,
            candidate_low=0.0,
            candidate_high=1.0,
        )
        self._arms = np.eye(5, dtype=np.float32)
        self._mask = np.ones(5, dtype=np.int8)

    def expected_rewards(self, context: np.ndarray) -> np.ndarray:
        """Mean reward of each arm at ``context`` (2,): shape (5,), float64."""
        x1, x2 = float(context[0]), float(context[1])
        means = np.full(5, self.mean_base)
        means[0] = self.mean_safe
        if x1 * x1 + x2 * x2 > self.delta * self.delta:
            quadrant = (1 if x2 > 0 else 2) if x1 > 0 else (3 if x2 < 0 else 4)
            means[quadrant] = self.mean_large
        return means

    def _draw_round(self) -> Round:
        radius = np.sqrt(self.np_random.uniform())  # uniform on the disc
        angle = self.np_random.uniform(0.0, 2.0 * np.pi)
        context = np.array([radius * np.cos(angle), radius * np.sin(angle)], dtype=np.float32)
        return Round(
            context=context,
            candidates=self._arms,
            expected_rewards=self.expected_rewards(context),
            action_mask=self._mask,
        )

    def _draw_reward(self, round_: Round, action: int) -> float:
        noise = self.np_random.normal(0.0, self.noise_std)
        return float(round_.expected_rewards[action] + noise)
