"""Exploration rules: scores, exact and Monte Carlo action probabilities, tie-breaking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bandexa_gym.exploration import (
    UCB,
    EpsilonGreedy,
    Greedy,
    ThompsonSampling,
    make_rule,
    select,
    tie_split,
)
from bandexa_gym.posterior import BayesianLinearRegression

F64 = torch.float64


def _head(d: int = 4, n: int = 30, seed: int = 0) -> BayesianLinearRegression:
    gen = torch.Generator().manual_seed(seed)
    head = BayesianLinearRegression(d)
    Z = torch.randn(n, d, generator=gen, dtype=F64)
    head.update_batch(
        Z, Z @ torch.arange(1.0, d + 1, dtype=F64) + 0.3 * torch.randn(n, generator=gen, dtype=F64)
    )
    return head


def test_predict_variance_is_the_diagonal_of_z_sigma_zt() -> None:
    head = _head()
    Z = torch.randn(3, 7, 4, dtype=F64)
    mean, variance = head.predict(Z)
    sigma = torch.linalg.inv(head.precision()) * head.noise_scale()
    torch.testing.assert_close(mean, Z @ head.mean)
    torch.testing.assert_close(variance, torch.einsum("bkd,de,bke->bk", Z, sigma, Z))
    assert head.noise_scale() == pytest.approx(head.b / (head.a - 1.0))


def test_ucb_with_alpha_zero_is_greedy() -> None:
    head, Z = _head(), torch.randn(5, 9, 4, dtype=F64)
    torch.testing.assert_close(UCB(0.0).scores(head, Z), Greedy().scores(head, Z))
    wider = UCB(2.0).scores(head, Z) - Greedy().scores(head, Z)
    torch.testing.assert_close(wider, 2.0 * head.predict(Z)[1].sqrt())


def test_epsilon_one_is_uniform_and_zero_is_greedy() -> None:
    head, Z = _head(), torch.randn(1, 6, 4, dtype=F64)
    mask = torch.tensor([[True, False, True, True, False, True]])
    uniform = EpsilonGreedy(1.0).probabilities(head, Z, mask)
    torch.testing.assert_close(uniform, mask.to(F64) / 4)
    greedy = EpsilonGreedy(0.0).probabilities(head, Z, mask)
    torch.testing.assert_close(greedy, Greedy().probabilities(head, Z, mask))
    # Played: epsilon = 1 picks uniformly among the unmasked candidates.
    gen, keys_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    counts = np.zeros(6)
    for _ in range(4000):
        scores = EpsilonGreedy(1.0).scores(head, Z, generator=gen)
        counts[int(select(scores, mask, torch.rand(scores.shape, generator=keys_gen)))] += 1
    assert counts[~mask[0].numpy()].sum() == 0
    assert np.allclose(counts[mask[0].numpy()] / 4000, 0.25, atol=0.03)


def test_epsilon_decays_on_its_schedule() -> None:
    rule = EpsilonGreedy(0.5, decay=0.1, min_epsilon=0.05)
    assert rule.epsilon_at(0) == 0.5 and rule.epsilon_at(10) == pytest.approx(0.25)
    assert rule.epsilon_at(10_000) == 0.05


def test_ties_are_broken_uniformly_and_split_in_the_probabilities() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    gen = torch.Generator().manual_seed(0)
    picks = [int(select(scores, mask, torch.rand(1, 5, generator=gen))) for _ in range(2000)]
    assert set(picks) == {1, 2} and abs(picks.count(1) / 2000 - 0.5) < 0.05
    torch.testing.assert_close(
        tie_split(scores, mask), torch.tensor([[0, 0.5, 0.5, 0, 0]], dtype=F64)
    )


def test_thompson_probabilities_are_within_their_error_of_play_frequencies() -> None:
    head = _head(d=3, n=6)
    Z = torch.randn(1, 4, 3, dtype=F64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    draws = 400
    estimate = ThompsonSampling().probabilities(
        head, Z, mask, generator=torch.Generator().manual_seed(1), draws=draws
    )[0]
    gen = torch.Generator().manual_seed(2)
    keys = torch.zeros(1, 4)
    counts = torch.zeros(4, dtype=F64)
    for _ in range(20_000):
        counts[int(select(ThompsonSampling().scores(head, Z, generator=gen), mask, keys))] += 1
    frequency = counts / counts.sum()
    bound = 4 * 0.5 / math.sqrt(draws)  # four standard errors at the worst case p = 1/2
    assert (estimate - frequency).abs().max() < bound
    assert torch.isclose(estimate.sum(), torch.tensor(1.0, dtype=F64))


def test_rules_round_trip_through_their_spec_and_reject_bad_settings() -> None:
    for rule in (ThompsonSampling(), UCB(0.7), Greedy(), EpsilonGreedy(0.2, decay=0.01)):
        assert make_rule(rule.spec()) == rule
    assert make_rule("ucb") == UCB(1.0)
    for bad in (
        "softmax",
        {"name": "ucb", "alpha": -1},
        {"name": "epsilon_greedy", "epsilon": 2},
        3,
    ):
        with pytest.raises(ValueError):
            make_rule(bad)
