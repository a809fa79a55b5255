"""Fixtures for the environment tests: data and cache folders, env factories."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.envs.mnist import load_image_split

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def bandexa_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throw-away cache folder for the session (decompressed .gz files land here)."""
    return tmp_path_factory.mktemp("bandexa_cache")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$BANDEXA_DATA`` made absolute, or ``<repo>/../shared/data`` when unset."""
    return Path(os.environ.get("BANDEXA_DATA") or DEFAULT_DATA).expanduser().resolve()


@pytest.fixture(autouse=True)
def _bandexa_env_vars(
    monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path, bandexa_cache_dir: Path
) -> None:
    """Point BANDEXA_DATA at the shared data (absolute) and BANDEXA_CACHE at a temp dir."""
    monkeypatch.setenv("BANDEXA_DATA", str(shared_data_dir))
    monkeypatch.setenv("BANDEXA_CACHE", str(bandexa_cache_dir))


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
