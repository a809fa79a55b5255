"""Reward networks: per-candidate gradients in one torch.func pass, stacked ensembles."""

from __future__ import annotations

import math

import pytest
import torch

from bandexa_gym.encoders import ConvEncoder, MLPEncoder, TwoTowerEncoder
from bandexa_gym.networks import (
    CandidateGradients,
    Ensemble,
    RewardNetwork,
    gradient_parameters,
)


def _autograd_features(net: RewardNetwork, names: list[str], x, candidates) -> torch.Tensor:
    """[f; ∇f / sqrt(m)] per candidate with plain autograd, one candidate at a time."""
    params = dict(net.named_parameters())
    rows = []
    for a in candidates:
        value = net(x[None], a[None])[0]
        grads = torch.autograd.grad(value, [params[n] for n in names])
        g = torch.cat([t.reshape(-1) for t in grads]) / math.sqrt(net.width)
        rows.append(torch.cat([value.detach()[None], g]))
    return torch.stack(rows)


ENCODERS = {
    "mlp": (lambda: MLPEncoder(3, 2, feature_dim=6, hidden=(5,)), (3,), 2),
    "two_tower": (lambda: TwoTowerEncoder(3, 2, tower_dim=3, hidden=(4,)), (3,), 2),
    "convnet": (
        lambda: ConvEncoder(2, image_size=6, channels=(2,), image_hidden=4, feature_dim=3),
        (1, 6, 6),
        2,
    ),
}


@pytest.mark.parametrize("kind", list(ENCODERS))
@pytest.mark.parametrize("which", ["all", "last", "readout"])
def test_candidate_gradients_equal_autograd_per_candidate(kind, which):
    make, shape, d_a = ENCODERS[kind]
    torch.manual_seed(0)
    net = RewardNetwork(make())
    grads = CandidateGradients(net, which)
    x = torch.rand(3, *shape)
    candidates = torch.randn(3, 5, d_a)
    Z = grads(x, candidates)
    assert Z.shape == (3, 5, 1 + grads.dim)
    for b in range(3):
        expected = _autograd_features(net, grads.names, x[b], candidates[b])
        torch.testing.assert_close(Z[b], expected, rtol=1e-5, atol=1e-6)
    single = grads(x[:1], candidates[:1])  # one context: the unbatched path
    torch.testing.assert_close(single[0], Z[0], rtol=1e-5, atol=1e-7)
    chunked = grads(x, candidates, action_chunk=2)
    torch.testing.assert_close(chunked, Z, rtol=1e-5, atol=1e-7)


def test_gradient_parameter_selection():
    torch.manual_seed(0)
    net = RewardNetwork(MLPEncoder(3, 2, feature_dim=6, hidden=(5,)))
    assert gradient_parameters(net, "readout") == ["readout.weight", "readout.bias"]
    assert gradient_parameters(net, "last") == [
        "encoder.net.2.weight",
        "encoder.net.2.bias",
        "readout.weight",
        "readout.bias",
    ]
    assert len(gradient_parameters(net, "all")) == 6
    assert gradient_parameters(net, ["encoder.net.0."]) == [
        "encoder.net.0.weight",
        "encoder.net.0.bias",
    ]
    net.encoder.net[0].weight.requires_grad_(False)  # frozen parameters are left out
    assert "encoder.net.0.weight" not in gradient_parameters(net, "all")
    with pytest.raises(ValueError, match="covers no trainable"):
        gradient_parameters(net, ["nothing"])
    with pytest.raises(ValueError, match="gradient_params"):
        gradient_parameters(net, "first")


def test_ensemble_evaluates_every_member_like_its_own_network():
    torch.manual_seed(0)
    members = [RewardNetwork(MLPEncoder(3, 2, feature_dim=4, hidden=(5,))) for _ in range(3)]
    ensemble = Ensemble(members)
    x, candidates = torch.randn(2, 3), torch.randn(2, 4, 2)
    scores = ensemble(x, candidates)  # (M, B, K)
    own_x, own_a = torch.randn(3, 5, 3), torch.randn(3, 5, 2)
    pairs = ensemble(own_x, own_a, per_member=True)  # (M, batch)
    with torch.no_grad():
        for m, net in enumerate(members):
            torch.testing.assert_close(scores[m], net(x, candidates))
            torch.testing.assert_close(pairs[m], net(own_x[m], own_a[m]))
            state = ensemble.member_state(m)
            assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    loss = pairs[1].sum()
    loss.backward()  # only member 1 gets a gradient
    grad = ensemble.stacked["readout.bias"].grad
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0 and grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="shape"):
        ensemble.load_members(
            {k: torch.zeros(2, *v.shape[1:]) for k, v in ensemble.stacked.items()}
        )
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
