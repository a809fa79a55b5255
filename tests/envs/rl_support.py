"""Support for the RL-library tests: a masked bandit, a mask audit, optional imports."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs.core import Round
from bandexa_gym.envs.synthetic import SyntheticBanditEnv

RL_EXTRA = 'pip install "bandexa-gym[rl]"'


def require_rl_library(module: str) -> ModuleType:
    """Import an ``[rl]`` library; skip when it is absent, outside CI only (CI installs it).

    Args:
        module: ``"sb3_contrib"`` or ``"torchrl"``.

    Raises:
        ImportError: The library is absent and ``$CI`` is set.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed ({RL_EXTRA})")


class MaskedSyntheticEnv(SyntheticBanditEnv):
    """``Bandexa/Synthetic-v0`` with about half of each round's arms masked at random.

    The mask comes from ``np_random`` (at least one arm stays on offer); the env's oracle
    measures regret against the best arm on offer.
    """

    def _draw_round(self) -> Round:
        round_ = super()._draw_round()
        mask = (self.np_random.random(self.n_arms) < 0.5).astype(np.int8)
        mask[int(self.np_random.integers(self.n_arms))] = 1
        round_.action_mask = mask
        return round_


class MaskAudit(gym.Wrapper):
    """Counts the actions played, and those played on a masked row."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.played = 0
        self.masked = 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        mask = self.env.unwrapped.action_masks()
        self.played += 1
        self.masked += int(not mask[int(action)])
        return self.env.step(action)
