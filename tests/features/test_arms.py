"""Fixed arm sets: naming the arms, per-arm heads read as one, the one switch to a shared head."""

from __future__ import annotations

import pytest
import torch

from bandexa_gym.features.arms import (
    MAX_FIXED_ARMS,
    ArmFeatures,
    ArmHeads,
    ArmRegistry,
    ArmSetChanged,
    SwitchedToShared,
    arms_or_switch,
    fixed_arm_set,
    is_one_hot,
    retry_if_switched,
)
from bandexa_gym.posterior import BayesianLinearRegression


@pytest.mark.parametrize("noise", ["nig", 0.3])
@pytest.mark.parametrize("shared", [True, False])
def test_per_arm_thompson_draws_of_a_batch_equal_the_row_by_row_draws(noise, shared) -> None:
    gen = torch.Generator().manual_seed(0)
    heads = [BayesianLinearRegression(3, noise=noise, intercept=True) for _ in range(4)]
    for arm, head in enumerate(heads):
        for _ in range(3 + arm):
            z = torch.randn(3, generator=gen, dtype=torch.float64)
            head.update(z, float(z.sum()) + arm)
    x = torch.randn((6, 3) if shared else (6, 5, 3), generator=gen, dtype=torch.float64)
    arms = torch.randint(0, 4, (6, 5), generator=gen)
    batched = ArmHeads(heads).thompson_scores(
        ArmFeatures(x, arms), torch.Generator().manual_seed(1)
    )
    one_by_one = torch.Generator().manual_seed(1)
    looped = torch.cat(
        [
            ArmHeads(heads).thompson_scores(ArmFeatures(x[b : b + 1], arms[b : b + 1]), one_by_one)
            for b in range(6)
        ]
    )
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_per_arm_predict_at_once_equals_each_arms_own_predict(shared) -> None:
    gen = torch.Generator().manual_seed(2)
    heads = [BayesianLinearRegression(3, intercept=True) for _ in range(4)]
    for arm, head in enumerate(heads):
        for _ in range(2 + arm):
            z = torch.randn(3, generator=gen, dtype=torch.float64)
            head.update(z, float(z.sum()) - arm)
    x = torch.randn((6, 3) if shared else (6, 5, 3), generator=gen, dtype=torch.float64)
    arms = torch.randint(0, 4, (6, 5), generator=gen)
    mean, variance = ArmHeads(heads).predict(ArmFeatures(x, arms))
    for b in range(6):
        for k in range(5):
            z = x[b] if shared else x[b, k]
            m, v = heads[int(arms[b, k])].predict(z[None])
            torch.testing.assert_close(mean[b, k], m[0], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(variance[b, k], v[0], rtol=1e-12, atol=1e-12)


def test_the_registry_names_one_hot_rows_by_position_and_other_rows_by_first_sight() -> None:
    one_hot = ArmRegistry(3, capacity=2)
    assert one_hot.arms(torch.eye(3)[[2, 0]][None]).tolist() == [[2, 0]]
    assert one_hot.n_arms == 3 and one_hot.one_hot
    with pytest.raises(ArmSetChanged, match="not one-hot"):
        one_hot.arms(torch.ones(1, 1, 3))
    rows = ArmRegistry(2, capacity=3)
    a, b, c = [5.0, 1.0], [0.5, 0.5], [2.0, 0.0]
    assert rows.arms(torch.tensor([[b, a, b]])).tolist() == [[0, 1, 0]]
    assert rows.arms(torch.tensor([[c, a]])).tolist() == [[2, 1]]
    with pytest.raises(ArmSetChanged, match="more than 3 distinct candidate rows"):
        rows.arms(torch.tensor([[[9.0, 9.0], a]]))
    assert rows.n_arms == 3  # nothing registered by the refused call
    restored = ArmRegistry(2, capacity=3)
    restored.load(*rows.state())
    assert restored.arms(torch.tensor([[a, b, c]])).tolist() == [[1, 0, 2]]


def test_a_fixed_arm_set_is_one_hot_or_small_where_the_env_does_not_say_it_changes() -> None:
    small = torch.randn(1, MAX_FIXED_ARMS, 3)
    large = torch.randn(1, MAX_FIXED_ARMS + 1, 3)
    labels = torch.eye(MAX_FIXED_ARMS + 1)[None]
    assert is_one_hot(labels) and not is_one_hot(small)
    assert fixed_arm_set(small, None) and fixed_arm_set(small, False)
    assert not fixed_arm_set(small, True) and not fixed_arm_set(large, None)
    assert fixed_arm_set(labels, True)


def test_rows_beyond_the_arm_set_switch_once_with_a_warning_and_the_call_is_made_again() -> None:
    registry = ArmRegistry(1, capacity=2)
    registry.arms(torch.tensor([[[0.0], [1.0]]]))
    state = {"shared": False, "calls": 0}

    def lookup() -> torch.Tensor | str:
        state["calls"] += 1
        if state["shared"]:
            return "shared"
        return arms_or_switch(
            registry,
            torch.tensor([[[2.0]]]),
            owner="agent",
            option="arm_heads",
            required=False,
            shared="one shared head",
            switch=lambda: state.update(shared=True),
        )

    with pytest.warns(RuntimeWarning, match="agent: more than 2 distinct .* to one shared head"):
        assert retry_if_switched(lookup) == "shared"
    assert state == {"shared": True, "calls": 2}
    with pytest.raises(ValueError, match="arm_heads='per_arm' needs a fixed arm set"):
        arms_or_switch(registry, torch.tensor([[[2.0]]]), owner="agent", option="arm_heads",
                       required=True, shared="one shared head", switch=lambda: None)  # fmt: skip
    with pytest.raises(SwitchedToShared), pytest.warns(RuntimeWarning):
        arms_or_switch(registry, torch.tensor([[[3.0]]]), owner="agent", option="feature_map",
                       required=False, shared="one head", switch=lambda: None)  # fmt: skip
    assert registry.n_arms == 2
