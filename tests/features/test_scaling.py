"""Scaling: running reward standardization, raw-reward statistics, feature standardization."""

from __future__ import annotations

import math

import pytest
import torch

from bandexa_gym.features.scaling import RewardScaler, TargetStats, feature_standardization


def test_the_reward_scaler_tracks_the_running_moments_and_refits_on_notable_change() -> None:
    rewards = torch.tensor([3.0, 5.0, 4.0, 10.0, -2.0], dtype=torch.float64)
    scaler = RewardScaler()
    scaler.update(rewards[:1])
    assert not scaler.refit() or scaler.scale == 1.0  # one reward says nothing of the units
    scaler.update(rewards[1:])
    assert scaler.count == 5
    assert scaler.mean == pytest.approx(float(rewards.mean()), rel=1e-12)
    assert scaler.m2 / scaler.count == pytest.approx(float(rewards.var(unbiased=False)), rel=1e-12)
    assert scaler.refit() and not scaler.refit()  # a second refit finds nothing new
    assert scaler.shift == scaler.mean and scaler.scale == math.sqrt(scaler.m2 / scaler.count)
    standardized = scaler(rewards)
    assert float(standardized.mean()) == pytest.approx(0.0, abs=1e-12)
    raw = RewardScaler(enabled=False)
    raw.update(rewards)
    assert not raw.refit() and raw(rewards) is rewards
    with pytest.raises(TypeError, match="standardize_rewards must be True or False"):
        RewardScaler(enabled=1)  # type: ignore[arg-type]


def test_the_reward_scaler_state_round_trips_and_bad_state_is_refused() -> None:
    scaler = RewardScaler()
    scaler.update(torch.tensor([1.0, 2.0, 7.0]))
    scaler.refit()
    copy = RewardScaler()
    copy.load(scaler.state())
    assert copy.state() == scaler.state()
    for bad in ({"scale": 0.0}, {"count": -1}, {"mean": float("nan")}):
        with pytest.raises(ValueError, match="reward scaler state"):
            RewardScaler().load({**scaler.state(), **bad})


def test_target_stats_give_the_standardized_targets_statistics_without_the_data() -> None:
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(7, generator=gen, dtype=torch.float64) * 4 + 2
    stats = TargetStats(3, torch.device("cpu"))
    stats.add(Z[:1], r[:1])  # the per-round path
    stats.add(Z[1:], r[1:])
    scaler = RewardScaler()
    scaler.update(r)
    scaler.refit()
    zr, rr = stats.standardized(scaler)
    target = scaler(r)
    torch.testing.assert_close(zr, Z.T @ target, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rr, target @ target, rtol=1e-12, atol=1e-12)
    loaded = stats.load(stats.tensors("h"), "h").tensors("h")
    assert all(torch.equal(value, loaded[key]) for key, value in stats.tensors("h").items())
    with pytest.raises(ValueError, match="checkpoint lacks tensor 'h.zs'"):
        stats.load({"h.zr": stats.zr}, "h")
    with pytest.raises(ValueError, match="tensor h.zr has the wrong shape"):
        stats.load({**stats.tensors("h"), "h.zr": torch.zeros(4)}, "h")


def test_feature_standardization_centers_scales_and_drops_what_does_not_vary() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(50, 3, generator=gen) * torch.tensor([2.0, 0.5, 0.0]) + 4.0
    shift, gain = feature_standardization(
        [z[:20], z[20:]], 3, center=True, device=torch.device("cpu")
    )
    assert shift.dtype == gain.dtype == torch.float64
    standardized = ((z.double() - shift) * gain)[:, :2]
    torch.testing.assert_close(standardized.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(standardized.std(0, unbiased=False), torch.ones(2).double())
    assert gain[2] == 0.0  # a constant feature carries nothing
    whole = feature_standardization([z], 3, center=True, device=torch.device("cpu"))
    torch.testing.assert_close(whole[1], gain, rtol=1e-10, atol=0.0)
    _, scaled = feature_standardization([z], 3, center=False, device=torch.device("cpu"))
    uncentered, _ = feature_standardization([z], 3, center=False, device=torch.device("cpu"))
    assert bool((uncentered == 0).all()) and torch.equal(scaled, whole[1])
    assert feature_standardization([z[:1]], 3, center=True, device=torch.device("cpu")) is None


def test_a_scaler_adopts_anothers_units_and_one_that_does_not_standardize_returns_to_raw() -> None:
    source = RewardScaler()
    source.update(torch.tensor([1.0, 5.0, 9.0]))
    source.refit()
    for enabled in (True, False):
        target = RewardScaler(enabled)
        target.adopt(source)
        assert target.state() == source.state()
        assert target.back_to_raw() is not enabled
        assert (target.shift, target.scale) == ((source.shift, source.scale) if enabled else (0, 1))
        assert not target.back_to_raw()  # already raw, or standardizing
        assert (target.count, target.mean, target.m2) == (source.count, source.mean, source.m2)
