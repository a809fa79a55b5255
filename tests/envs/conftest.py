"""Fixtures for the environment tests (data and cache folders come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.envs.mnist import load_image_split


def _skip_if_fashion_missing() -> None:
    try:
        load_image_split("FashionMNIST", "test")
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST data absent (apt-get install dataset-fashion-mnist): {err}")


@pytest.fixture
def make_env() -> Callable[..., gym.Env]:
    """``make_env(id, **kwargs)``: ``gym.make`` that skips when Fashion-MNIST is absent."""

    def _make(env_id: str, **kwargs: object) -> gym.Env:
        if "FashionMNIST" in env_id:
            _skip_if_fashion_missing()
        return gym.make(env_id, **kwargs)

    return _make
