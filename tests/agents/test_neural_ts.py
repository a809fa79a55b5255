"""NeuralTS / NeuralUCB: gradient-feature exploration on the default encoders."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import NeuralTS, NeuralTSConfig, load_agent, load_state, make_agent
from bandexa_gym.bench import run
from bandexa_gym.checkpoint import CheckpointError
from bandexa_gym.encoders import ConvEncoder, MLPEncoder, TwoTowerEncoder, build_encoder
from bandexa_gym.exploration import UCB, ThompsonSampling
from bandexa_gym.transfer import evolve
from tests.agents import zoo_contract as contract

OBS = contract.observations((4,), 6, 3, 40, seed=0)
PROBES = contract.observations((4,), 6, 3, 4, seed=1)


def _agent(exploration="thompson", encoder=None, **settings) -> NeuralTS:
    torch.manual_seed(0)
    encoder = encoder or MLPEncoder(4, 3, feature_dim=8, hidden=(16,))
    config = NeuralTSConfig(**{**contract.FAST, **settings})
    return NeuralTS(encoder, config=config, exploration=exploration, seed=0)


FACTORIES = {
    "neural_ts": lambda: _agent(),
    "neural_ucb": lambda: _agent({"name": "ucb", "alpha": 1.0}, nu=1.0),
    "last_layer": lambda: _agent(gradient_params="last"),
}


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_same_seed_same_actions_and_reset_starts_over(kind):
    contract.check_determinism(FACTORIES[kind], OBS)


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_masks_are_honoured_with_propensities(kind):
    contract.check_masks(FACTORIES[kind], OBS[:20])


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_batched_act_and_observe_equal_looped_single_calls(kind):
    contract.check_batched_equals_looped(FACTORIES[kind], OBS)


def test_batched_equals_looped_on_images():
    def factory() -> NeuralTS:
        torch.manual_seed(0)
        encoder = ConvEncoder(3, image_size=8, channels=(2,), image_hidden=8, feature_dim=4)
        return _agent(encoder=encoder, loss="bce")

    images = contract.observations((1, 8, 8), 3, 3, 16, seed=2)
    contract.check_batched_equals_looped(factory, images)


def test_rejected_input_leaves_the_agent_unchanged():
    contract.check_rejected_input(FACTORIES["neural_ts"], OBS[:12])


@pytest.mark.parametrize("kind", ["neural_ts", "neural_ucb"])
def test_save_load_round_trip_gives_identical_scores_and_actions(kind, tmp_path: Path):
    loaded = contract.check_save_load(FACTORIES[kind], OBS[:30], PROBES, tmp_path)
    assert isinstance(loaded, NeuralTS) and len(loaded.buffer) == 0


def test_checkpoint_whose_tensors_do_not_fit_its_spec_is_rejected(tmp_path: Path):
    agent = FACTORIES["neural_ts"]()
    contract.play(agent, OBS[:12])
    path = agent.save(tmp_path / "a.safetensors")
    spec = agent.spec()
    shapes = {k: tuple(v.shape) for k, v in agent.state_tensors()[1].items()}
    NeuralTS.check_checkpoint(spec, shapes)  # fits
    with pytest.raises(ValueError, match="head.precision"):
        NeuralTS.check_checkpoint(spec, {**shapes, "head.precision": (3,)})
    with pytest.raises(ValueError, match="gradient_dim"):
        NeuralTS.check_checkpoint({**spec, "gradient_dim": 7}, shapes)
    other = _agent(gradient_params="readout")  # another U layout: load_state refuses
    before = contract.snapshot(other)
    with pytest.raises(CheckpointError, match="gradient"):
        load_state(other, path)
    contract.assert_same_state(contract.snapshot(other), before)


def test_gradient_features_are_the_per_candidate_autograd_gradients():
    agent = FACTORIES["neural_ts"]()
    contract.play(agent, OBS[:12])
    obs = PROBES[0]
    batch = agent.observations(obs)
    Z = agent.compute_features(batch.contexts, batch.candidates)[0]  # (K, 1 + P)
    net = agent.network
    x = torch.as_tensor(obs["context"])[None]
    for k, a in enumerate(torch.as_tensor(obs["candidates"])):
        net.zero_grad()
        value = net(x, a[None])[0]
        value.backward()
        g = torch.cat([p.grad.reshape(-1) for p in net.parameters()]) / math.sqrt(8)
        torch.testing.assert_close(Z[k, 0], value.detach())
        torch.testing.assert_close(Z[k, 1:], g, rtol=1e-5, atol=1e-7)


def test_ucb_scores_and_thompson_spread_follow_the_diagonal_design_matrix():
    agent = _agent(nu=0.5, lam=0.3)
    contract.play(agent, OBS[:12])
    obs = PROBES[1]
    batch = agent.observations(obs)
    Z = agent.compute_features(batch.contexts, batch.candidates)[0].double()
    f, G = Z[:, 0], Z[:, 1:]
    U = 0.3 + torch.zeros(G.shape[1], dtype=torch.float64)
    # U is λ plus the squared gradients of the chosen candidates, recomputed here.
    agent_u = agent.posterior.precision
    assert (
        agent.posterior.n_obs == 12 and bool((agent_u >= 0.3).all()) and bool((agent_u > U).any())
    )
    mean, variance = (t[0].numpy() for t in agent.head.predict(Z[None].float()))
    np.testing.assert_allclose(mean, f.numpy(), rtol=1e-6)
    expected = 0.25 * 0.3 * (G.square() / agent_u).sum(1)
    np.testing.assert_allclose(variance, expected.numpy(), rtol=1e-5)
    # predict() answers in the rewards' units: the network learns standardized ones.
    scaler = agent.reward_scaler
    assert scaler.enabled and scaler.scale != 1.0
    raw_mean, raw_variance = agent.predict(obs)
    np.testing.assert_allclose(raw_mean, mean * scaler.scale + scaler.shift, rtol=1e-6)
    np.testing.assert_allclose(raw_variance, variance * scaler.scale**2, rtol=1e-5)
    ucb = UCB(alpha=2.0).scores(agent.head, Z[None].float())[0]
    np.testing.assert_allclose(ucb.numpy(), (f + 2.0 * expected.sqrt()).numpy(), rtol=1e-5)
    draws = agent.head.thompson_scores(Z[None].float(), draws=4000)[:, 0]  # (M, K)
    np.testing.assert_allclose(draws.mean(0).numpy(), f.numpy(), atol=4 * expected.sqrt().max())
    np.testing.assert_allclose(draws.std(0).numpy(), expected.sqrt().numpy(), rtol=0.1)


def test_chosen_gradient_updates_u_exactly_once_per_round():
    agent = _agent(warmup_random=0, train_every=0)
    obs = PROBES[2]
    action = agent.act(obs)
    batch = agent.observations(obs)
    g = agent.compute_features(batch.contexts, batch.candidates)[0, action, 1:].double()
    agent.observe(obs, action, 0.5)
    torch.testing.assert_close(agent.posterior.precision, agent.config.lam + g.square())


def test_readout_gradient_is_the_scaled_encoder_features():
    agent = _agent(gradient_params="readout")
    obs = PROBES[0]
    batch = agent.observations(obs)
    Z = agent.compute_features(batch.contexts, batch.candidates)[0]
    with torch.no_grad():
        z = agent.encoder.encode_candidates(batch.contexts, batch.candidates)[0]
    expected = torch.cat([z, torch.ones(z.shape[0], 1)], 1) / math.sqrt(8)
    torch.testing.assert_close(Z[:, 1:], expected)
    assert agent.gradients.dim == 9


def test_action_chunk_gives_the_same_features():
    encoder = TwoTowerEncoder(4, 3, tower_dim=4, hidden=(8,))
    whole = _agent(encoder=encoder)
    chunked = _agent(encoder=encoder, action_chunk=4)
    obs = contract.observations((4,), 11, 3, 1, seed=3)[0]
    b = whole.observations(obs)
    torch.testing.assert_close(
        whole.compute_features(b.contexts, b.candidates),
        chunked.compute_features(b.contexts, b.candidates),
    )


def test_thompson_propensities_and_ucb_distribution_is_exact():
    ts, ucb = FACTORIES["neural_ts"](), FACTORIES["neural_ucb"]()
    assert isinstance(ts.exploration, ThompsonSampling) and isinstance(ucb.exploration, UCB)
    for agent in (ts, ucb):
        contract.play(agent, OBS[:12])
        probs = agent.action_distribution(PROBES[0])
        assert probs.sum() == pytest.approx(1.0)
    probs = ucb.action_distribution(PROBES[0])
    assert sorted(probs.tolist())[-1] == 1.0  # deterministic rule: one winner


def test_make_agent_settings_and_errors():
    env = gym.make("Bandexa/Synthetic-v0")
    ucb = make_agent("neural_ucb", env, seed=0, gamma=0.5)
    assert ucb.name == "neural_ucb" and ucb.exploration == UCB(alpha=0.5) and ucb.config.nu == 1.0
    ts = make_agent("neural_ts", env, seed=0, nu=0.2, lam=0.5, gradient_params="last")
    assert ts.config.nu == 0.2 and ts.gradients.names[0] == "encoder.net.4.weight"
    with pytest.raises(TypeError, match="unknown settings"):
        make_agent("neural_ts", env, nuu=1.0)
    with pytest.raises(ValueError, match="lam"):
        make_agent("neural_ts", env, lam=0.0)
    with pytest.raises(ValueError, match="gradient_params"):
        make_agent("neural_ts", env, gradient_params="first")
    with pytest.raises(ValueError, match="gradient_params"):
        make_agent("neural_ts", env, gradient_params=["nothing."])


def test_evolve_grows_inputs_and_keeps_means_and_variances():
    trained = _agent()
    contract.play(trained, OBS[:30])
    torch.manual_seed(1)
    template = NeuralTS(
        MLPEncoder(6, 4, feature_dim=8, hidden=(16,)),
        config=NeuralTSConfig(**contract.FAST),
        seed=1,
    )
    evolve(trained, template)
    assert template.rounds == 30 and len(template.buffer) == 30
    for obs in PROBES:
        padded = {
            "context": np.concatenate([obs["context"], np.zeros(2, np.float32)]),
            "candidates": np.concatenate([obs["candidates"], np.zeros((6, 1), np.float32)], 1),
        }
        for got, want in zip(template.predict(padded), trained.predict(obs), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="gradient_params"):
        evolve(trained, _agent(gradient_params="last"))


@pytest.mark.parametrize("name", ["neural_ts", "neural_ucb"])
def test_beats_uniform_on_a_short_synthetic_run(name):
    regret = {}
    for agent_name in (name, "uniform"):
        env = gym.make("Bandexa/Synthetic-v0", interaction_scale=1.5)
        agent = make_agent(agent_name, env, seed=0)
        regret[agent_name] = run(agent, env, 800, seed=0).cumulative_regret[-1]
    assert regret[name] < 0.5 * regret["uniform"], regret


def test_decisions_do_not_depend_on_the_rewards_units():
    """MSE training on standardized rewards: rewards × 100 + 100 give the same choices."""
    plain, scaled = _agent(), _agent()
    for obs in OBS:
        action = plain.act(obs)
        assert scaled.act(obs) == action
        reward = contract.reward_of(obs, action)
        plain.observe(obs, action, reward)
        scaled.observe(obs, action, 100.0 * reward + 100.0)
    assert scaled.reward_scaler.scale == pytest.approx(100.0 * plain.reward_scaler.scale)
    (mean, variance), (raw_mean, raw_variance) = scaled.predict(PROBES[0]), plain.predict(PROBES[0])
    np.testing.assert_allclose(mean, 100.0 * raw_mean + 100.0, rtol=1e-4)
    np.testing.assert_allclose(variance, 1e4 * raw_variance, rtol=1e-3)


def test_forgetting_discounts_u_and_favours_recent_replay():
    agent = _agent(forgetting=0.5, warmup_random=0, train_every=0)
    assert agent.posterior.forgetting == 0.5 and agent.config.recency_half_life == 1.0
    obs = PROBES[2]
    batch = agent.observations(obs)
    Z = agent.compute_features(batch.contexts, batch.candidates)[0]
    agent.observe(obs, 0, 0.1)
    agent.observe(obs, 1, 0.2)
    g0, g1 = Z[0, 1:].double(), Z[1, 1:].double()
    expected = agent.config.lam + 0.5 * g0.square() + g1.square()
    torch.testing.assert_close(agent.posterior.precision, expected)
    with pytest.raises(ValueError, match="forgetting"):
        _agent(forgetting=1.5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["state"].update(rounds=-5), "rounds"),
        (lambda m: m["spec"]["config"].update(lam=-1.0), "lam"),
        (lambda m: m["spec"]["config"].update(train_every="often"), "train_every"),
        (lambda m: m["state"]["head"].update(n_obs=-1), "n_obs"),
        (lambda m: m["state"]["reward_scaler"].update(scale=0.0), "reward scaler"),
        (lambda m: m["spec"]["encoder"]["kwargs"].update(hidden=[60000, 60000]), "not fit"),
    ],
    ids=["negative-rounds", "bad-lam", "bad-schedule", "bad-count", "bad-scaler", "oversized"],
)
def test_invalid_checkpoint_values_are_refused(edit, message, tmp_path: Path, monkeypatch):
    agent = FACTORIES["neural_ts"]()
    contract.play(agent, OBS[:12])
    path = agent.save(tmp_path / "a.safetensors")
    contract.rewrite_checkpoint(path, edit)
    devices = []
    real = build_encoder

    def spy(spec, *, device=None):
        devices.append(device)
        return real(spec, device=device)

    monkeypatch.setattr("bandexa_gym.networks.build_encoder", spy)  # the spec check
    monkeypatch.setattr("bandexa_gym.agents.learning.build_encoder", spy)  # from_spec
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)
    if message == "not fit":
        assert devices == ["meta"]  # only the allocation-free shape check ran


def test_device_is_respected():
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent("neural_ts", env, seed=0, device="cpu", warmup_random=2, train_every=4)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = agent.act(obs)
        next_obs, reward, *_ = env.step(action)
        agent.observe(obs, action, reward)
        obs = next_obs
    assert agent.device == torch.device("cpu")
    assert all(t.device == agent.device for t in agent.state_tensors()[1].values())
    assert agent.generator.device == agent.device
