"""The belief of a bootstrapped ensemble (heads/ensemble.py)."""

from __future__ import annotations

import torch

from bandexa_gym.exploration import ThompsonSampling
from bandexa_gym.heads.ensemble import EnsembleHead


def test_ensemble_head_draws_one_member_per_set_and_states_exact_probabilities():
    head = EnsembleHead(4)
    Z = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0))
    scores = head.thompson_scores(Z, generator=torch.Generator().manual_seed(2))
    members = torch.randint(4, (6,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(scores, Z[torch.arange(6), :, members].double())
    gen = torch.Generator().manual_seed(2)
    looped = torch.stack([head.thompson_scores(z, generator=gen) for z in Z])
    assert torch.equal(scores, looped)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[:, 0] = False
    probs = head.probabilities(Z, mask)
    winners = Z.masked_fill(~mask[..., None], -torch.inf).argmax(1)  # (6, M)
    expected = torch.zeros(6, 5, dtype=torch.float64)
    for m in range(4):
        expected[torch.arange(6), winners[:, m]] += 0.25
    torch.testing.assert_close(probs, expected)
    mc = ThompsonSampling().probabilities(head, Z, mask, generator=gen, draws=4000)
    torch.testing.assert_close(mc, probs, atol=0.05, rtol=0)
    mean, variance = head.predict(Z)
    torch.testing.assert_close(variance, Z.double().var(-1))
