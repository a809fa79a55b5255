"""Fixtures for the environment tests (data and cache folders come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.envs.mnist import load_image_split
from tests.envs.env_ids import CATALOGUE_IDS, ENV_KWARGS, skip_missing_data_outside_ci


def _skip_if_fashion_missing() -> None:
    try:
        load_image_split("FashionMNIST", "test")
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST data absent (apt-get install dataset-fashion-mnist): {err}")


@pytest.fixture
def make_env() -> Callable[..., gym.Env]:
    """``make_env(id, **kwargs)``: ``gym.make`` with the id's needed arguments, skipping
    when Fashion-MNIST is absent, or catalogue data outside CI."""

    def _make(env_id: str, **kwargs: object) -> gym.Env:
        if "FashionMNIST" in env_id:
            _skip_if_fashion_missing()
        kwargs = {**ENV_KWARGS.get(env_id, {}), **kwargs}
        try:
            return gym.make(env_id, **kwargs)
        except FileNotFoundError as err:
            if env_id not in CATALOGUE_IDS:
                raise
            skip_missing_data_outside_ci(err)
            raise  # unreachable: skip raises

    return _make
