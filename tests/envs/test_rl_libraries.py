"""The envs in RL libraries: action masks (sb3-contrib), numpy info values (TorchRL)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from bandexa_gym.envs import ENV_IDS, FlattenCandidates, RegretMonitor, RewardAffine
from tests.envs.rl_support import MaskAudit, MaskedSyntheticEnv, require_rl_library

MakeEnv = Callable[..., gym.Env]


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_action_masks_is_the_current_rounds_mask(env_id: str, make_env: MakeEnv) -> None:
    env = make_env(env_id)
    with pytest.raises(RuntimeError, match="reset"):
        env.get_wrapper_attr("action_masks")()
    obs, _ = env.reset(seed=0)
    k = env.action_space.n
    for t in range(3):
        # Through gym.make's wrappers, as sb3-contrib looks it up.
        masks = env.get_wrapper_attr("action_masks")()
        assert masks.dtype == np.bool_ and masks.shape == (k,)
        np.testing.assert_array_equal(masks, obs["action_mask"].astype(bool))
        masks[:] = False  # a copy: the env's round is untouched
        assert env.unwrapped.action_masks().any()
        obs, *_ = env.step(t % k)


def test_action_masks_follow_a_masked_stream_through_the_wrappers() -> None:
    env = FlattenCandidates(RegretMonitor(MaskedSyntheticEnv()))
    raw = env.unwrapped
    obs, _ = env.reset(seed=1)
    seen_masked = False
    for _ in range(20):
        mask = raw._round.action_mask.astype(bool)
        np.testing.assert_array_equal(env.get_wrapper_attr("action_masks")(), mask)
        np.testing.assert_array_equal(obs[env.slices["action_mask"]], mask)
        seen_masked |= not mask.all()
        obs, *_ = env.step(int(np.flatnonzero(mask)[0]))
    assert seen_masked


def test_sb3_contrib_finds_the_masks_of_a_made_env_and_a_vector_env() -> None:
    require_rl_library("sb3_contrib")
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    env = gym.make("Bandexa/Synthetic-v0", n_arms=4)
    env.reset(seed=0)
    assert is_masking_supported(env)
    np.testing.assert_array_equal(get_action_masks(env), np.ones(4, dtype=bool))
    vec = DummyVecEnv([lambda: FlattenCandidates(RegretMonitor(MaskedSyntheticEnv()))] * 2)
    vec.seed(3)
    vec.reset()
    assert is_masking_supported(vec)
    expected = np.stack([e.unwrapped.action_masks() for e in vec.envs])
    np.testing.assert_array_equal(get_action_masks(vec), expected)


def test_maskable_ppo_never_plays_a_masked_row() -> None:
    require_rl_library("sb3_contrib")
    from sb3_contrib import MaskablePPO

    audit = MaskAudit(MaskedSyntheticEnv())
    env = RegretMonitor(audit)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    model.learn(total_timesteps=320)
    assert audit.played == env.num_rounds == 320
    assert audit.masked == 0
    assert (env.regrets >= 0).all()


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_info_values_are_numpy_scalars_and_arrays(env_id: str, make_env: MakeEnv) -> None:
    env = make_env(env_id)
    env.reset(seed=0)
    for wrapped in (env, RewardAffine(env, scale=2.0, shift=1.0)):
        *_, info = wrapped.step(0)
        for key in ("expected_reward", "best_expected_reward", "regret"):
            assert type(info[key]) is np.float64, key
        assert type(info["optimal_action"]) is np.int64
        expected = info["expected_rewards"]
        assert type(expected) is np.ndarray and expected.dtype == np.float64
        assert expected.shape == (env.action_space.n,)


def test_torchrl_gym_env_passes_check_env_specs_and_reads_the_regret() -> None:
    require_rl_library("torchrl")
    import torch
    from torchrl.data import Unbounded
    from torchrl.envs import GymEnv, GymWrapper
    from torchrl.envs.gym_like import default_info_dict_reader
    from torchrl.envs.utils import check_env_specs

    env = GymEnv("Bandexa/Synthetic-v0", n_arms=4)
    check_env_specs(env, seed=0)
    # The plain reader, which takes each value's dtype (a Python float has none).
    monitor = RegretMonitor(gym.make("Bandexa/Synthetic-v0", n_arms=4))
    env = GymWrapper(monitor)
    env.set_info_dict_reader(default_info_dict_reader(["regret"]))
    env.set_seed(0)
    rollout = env.rollout(16)
    regret = rollout["next", "regret"]
    assert regret.shape == (16,) and regret.dtype == torch.float64
    # The very regrets the env reported, to the last bit.
    np.testing.assert_array_equal(regret.numpy(), monitor.regrets[-16:])
    # With the reader's spec stating the float64 dtype, the specs check holds too.
    env = GymEnv("Bandexa/Synthetic-v0", n_arms=4)
    reader = default_info_dict_reader(["regret"], spec=[Unbounded((), dtype=torch.float64)])
    env.set_info_dict_reader(reader)
    check_env_specs(env, seed=0)
