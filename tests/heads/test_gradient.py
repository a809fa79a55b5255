"""The diagonal gradient belief of NeuralTS / NeuralUCB (heads/gradient.py)."""

from __future__ import annotations

import pytest
import torch

from bandexa_gym.exploration import UCB, Greedy, ThompsonSampling
from bandexa_gym.heads.gradient import DiagonalGradientHead
from bandexa_gym.heads.protocol import Head


def _features(n: int, k: int, p: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, 1 + p, generator=torch.Generator().manual_seed(seed))


def test_diagonal_head_predicts_the_closed_form_and_learns_from_chosen_gradients():
    head = DiagonalGradientHead(1 + 5, lam=0.5, nu=0.3)
    assert isinstance(head, Head)
    chosen = _features(1, 7, 5, seed=1)[0]
    for z in chosen:
        head.update(z, 0.0)
    U = 0.5 + chosen[:, 1:].double().square().sum(0)
    torch.testing.assert_close(head.precision, U)
    Z = _features(2, 4, 5)
    mean, variance = head.predict(Z)
    torch.testing.assert_close(mean, Z[..., 0].double())
    expected = 0.09 * 0.5 * (Z[..., 1:].double().square() / U).sum(-1)
    torch.testing.assert_close(variance, expected, rtol=1e-6, atol=0)
    assert head.n_obs == 7


def test_update_batch_equals_single_updates_and_rebuild_replays_them():
    chosen = _features(1, 9, 4, seed=2)[0]
    single, batch, rebuilt = (DiagonalGradientHead(5, lam=1.0) for _ in range(3))
    for z in chosen:
        single.update(z)
    batch.update_batch(chosen[:4])
    batch.update_batch(chosen[4:])
    rebuilt.update(chosen[0])
    rebuilt.rebuild([(chosen[:5], torch.zeros(5)), (chosen[5:], torch.zeros(4))])
    assert torch.equal(single.precision, batch.precision)
    assert torch.equal(single.precision, rebuilt.precision) and rebuilt.n_obs == 9


def test_thompson_draws_consume_the_generator_like_single_calls():
    head = DiagonalGradientHead(4, nu=2.0)
    Z = _features(5, 20, 3, seed=3)  # K = 20: rows of 32 normals
    batched = head.thompson_scores(Z, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    looped = torch.stack([head.thompson_scores(z, generator=gen) for z in Z])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-12)
    many = head.thompson_scores(Z, generator=gen, draws=6)
    assert many.shape == (6, 5, 20)


def test_rules_run_on_the_diagonal_head():
    head = DiagonalGradientHead(4)
    Z = _features(3, 6, 3)
    mean, variance = head.predict(Z)
    torch.testing.assert_close(Greedy().scores(head, Z), mean)
    torch.testing.assert_close(UCB(alpha=2.0).scores(head, Z), mean + 2 * variance.sqrt())
    probs = ThompsonSampling().probabilities(
        head, Z, torch.ones(3, 6, dtype=torch.bool), generator=torch.Generator(), draws=50
    )
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, dtype=torch.float64))


def test_diagonal_head_rejects_bad_input_and_states_without_changing():
    head = DiagonalGradientHead(4, lam=1.0)
    head.update(torch.ones(4))
    before = head.state_dict()
    bad_z = torch.tensor([0.0, float("nan"), 1.0, 1.0])
    for call in (
        lambda: head.update(bad_z),
        lambda: head.update(torch.ones(5)),
        lambda: head.update_batch(torch.stack([torch.ones(4), bad_z])),
        lambda: head.load_state_dict({**before, "precision": torch.ones(4)}),
        lambda: head.load_state_dict({**before, "precision": -torch.ones(3)}),
        lambda: head.load_state_dict({**before, "n_obs": -1}),
    ):
        with pytest.raises(ValueError):
            call()
    assert torch.equal(head.precision, before["precision"]) and head.n_obs == 1
    with pytest.raises(NotImplementedError, match="thompson_scores"):
        head.sample()
    for kwargs in ({"lam": 0.0}, {"nu": float("inf")}):
        with pytest.raises(ValueError):
            DiagonalGradientHead(4, **kwargs)
