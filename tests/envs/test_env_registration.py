"""Registration of the Bandexa/* ids: idempotent, importable by string, strict kwargs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import pytest

import bandexa_gym
import bandexa_gym.envs as envs

ENV_IDS = list(envs.ENV_IDS)

ENTRY_POINTS = {
    "Bandexa/Synthetic-v0": "bandexa_gym.envs.synthetic:SyntheticBanditEnv",
    "Bandexa/MNIST-v0": "bandexa_gym.envs.mnist:MNISTBanditEnv",
    "Bandexa/FashionMNIST-v0": "bandexa_gym.envs.mnist:FashionMNISTBanditEnv",
    "Bandexa/Retrieval-v0": "bandexa_gym.envs.retrieval:RetrievalBanditEnv",
    "Bandexa/Classification-v0": "bandexa_gym.envs.classification:ClassificationBanditEnv",
    "Bandexa/Adult-v0": "bandexa_gym.envs.uci:AdultBanditEnv",
    "Bandexa/Letter-v0": "bandexa_gym.envs.uci:LetterBanditEnv",
    "Bandexa/Satimage-v0": "bandexa_gym.envs.uci:SatimageBanditEnv",
    "Bandexa/Pendigits-v0": "bandexa_gym.envs.uci:PendigitsBanditEnv",
    "Bandexa/Wheel-v0": "bandexa_gym.envs.wheel:WheelBanditEnv",
}

VECTOR_ENTRY_POINTS = {
    "Bandexa/Synthetic-v0": "bandexa_gym.envs.vector:synthetic_vector_env",
    "Bandexa/Retrieval-v0": "bandexa_gym.envs.vector:retrieval_vector_env",
}


def test_ids_registered_with_string_entry_points_and_no_time_limit() -> None:
    for env_id, entry_point in ENTRY_POINTS.items():
        spec = gym.spec(env_id)
        assert spec.entry_point == entry_point
        assert spec.max_episode_steps is None
        assert spec.vector_entry_point == VECTOR_ENTRY_POINTS.get(env_id)
    assert set(envs.ENV_IDS) == set(ENTRY_POINTS)


def test_registering_again_gives_no_warning() -> None:
    # Without the guard, gym.register on a known id warns; prove the check would see it.
    with pytest.warns(UserWarning, match="Overriding environment"):
        gym.register(
            id="Bandexa/Synthetic-v0",
            entry_point=ENTRY_POINTS["Bandexa/Synthetic-v0"],
            vector_entry_point=VECTOR_ENTRY_POINTS["Bandexa/Synthetic-v0"],  # as it was
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        envs.register_envs()
        envs.register_envs()
        importlib.reload(bandexa_gym)
        gym.register_envs(bandexa_gym)
    assert all(env_id in gym.registry for env_id in ENV_IDS)


def test_exports() -> None:
    for name in (
        "SyntheticBanditEnv",
        "MNISTBanditEnv",
        "FashionMNISTBanditEnv",
        "RetrievalBanditEnv",
        "ClassificationBanditEnv",
        "AdultBanditEnv",
        "LetterBanditEnv",
        "SatimageBanditEnv",
        "PendigitsBanditEnv",
        "WheelBanditEnv",
        "RegretMonitor",
        "FlattenCandidates",
        "RewardAffine",
        "CandidateSetEnv",
        "Round",
        "Drift",
        "CorruptDataError",
        "make_vector_env",
        "register_envs",
    ):
        assert name in envs.__all__ and hasattr(envs, name)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_unknown_kwarg_is_type_error(env_id: str) -> None:
    with pytest.raises(TypeError, match="bogus"):
        gym.make(env_id, bogus=1)


def test_make_by_module_string_in_fresh_interpreter() -> None:
    code = textwrap.dedent(
        """
        import sys
        import gymnasium as gym
        assert "bandexa_gym" not in sys.modules
        env = gym.make("bandexa_gym:Bandexa/MNIST-v0")
        obs, _ = env.reset(seed=0)
        print(type(env.unwrapped).__name__, obs["context"].shape, env.action_space.n)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MNISTBanditEnv", "(1,", "28,", "28)", "10"]
