"""Bootstrapped neural ensemble: M members on bootstrap-weighted replay, one played per round."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import BootstrappedConfig, BootstrappedNN, load_agent, make_agent
from bandexa_gym.agents.bootstrapped import bootstrap_weights
from bandexa_gym.bench import run
from bandexa_gym.checkpoint import CheckpointError
from bandexa_gym.encoders import ConvEncoder, MLPEncoder
from bandexa_gym.exploration import tie_split
from bandexa_gym.transfer import evolve
from tests.agents import zoo_contract as contract

OBS = contract.observations((4,), 6, 3, 40, seed=0)
PROBES = contract.observations((4,), 6, 3, 4, seed=1)


def _agent(exploration="thompson", make_encoder=None, n_members=3, **settings) -> BootstrappedNN:
    torch.manual_seed(0)
    make_encoder = make_encoder or (lambda: MLPEncoder(4, 3, feature_dim=8, hidden=(16,)))
    config = BootstrappedConfig(n_members=n_members, **{**contract.FAST, **settings})
    encoders = [make_encoder() for _ in range(n_members)]
    return BootstrappedNN(encoders, config=config, exploration=exploration, seed=0)


FACTORIES = {
    "thompson": lambda: _agent(),
    "bernoulli": lambda: _agent(bootstrap="bernoulli"),
    "ucb": lambda: _agent({"name": "ucb", "alpha": 1.0}),
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
    def encoder() -> ConvEncoder:
        return ConvEncoder(3, image_size=8, channels=(2,), image_hidden=8, feature_dim=4)

    images = contract.observations((1, 8, 8), 3, 3, 16, seed=2)
    contract.check_batched_equals_looped(lambda: _agent(make_encoder=encoder, loss="bce"), images)


def test_rejected_input_leaves_the_agent_unchanged():
    contract.check_rejected_input(FACTORIES["thompson"], OBS[:12])


def test_save_load_round_trip_gives_identical_scores_and_actions(tmp_path: Path):
    agent = FACTORIES["thompson"]()
    loaded = contract.check_save_load(FACTORIES["thompson"], OBS[:30], PROBES, tmp_path)
    assert isinstance(loaded, BootstrappedNN) and loaded.bootstrap_key == agent.bootstrap_key


def test_checkpoint_whose_tensors_do_not_fit_its_spec_is_rejected():
    agent = FACTORIES["thompson"]()
    spec = agent.spec()
    shapes = {k: tuple(v.shape) for k, v in agent.state_tensors()[1].items()}
    BootstrappedNN.check_checkpoint(spec, shapes)
    bad = {**spec, "config": {**spec["config"], "n_members": 4}}
    with pytest.raises(ValueError, match="wrong shapes"):
        BootstrappedNN.check_checkpoint(bad, shapes)
    with pytest.raises(ValueError, match="missing"):
        BootstrappedNN.check_checkpoint(spec, {"members.readout.bias": (3, 1)})


def test_members_differ_and_a_draw_plays_one_member():
    agent = FACTORIES["thompson"]()
    contract.play(agent, OBS[:30])
    obs = PROBES[0]
    batch = agent.observations(obs)
    Z = agent.compute_features(batch.contexts, batch.candidates)[0]  # (K, M)
    assert not torch.allclose(Z[:, 0], Z[:, 1])
    for m in range(3):  # each member's column is that network's prediction
        net = _member_network(agent, m)
        with torch.no_grad():
            expected = net(batch.contexts, batch.candidates)[0]
        torch.testing.assert_close(Z[:, m], expected)
    gen = torch.Generator().manual_seed(5)
    scores = agent.head.thompson_scores(Z.double(), generator=gen)
    member = int(torch.randint(3, (1,), generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(scores, Z[:, member].double())


def _member_network(agent: BootstrappedNN, m: int):
    from bandexa_gym.agents.bootstrapped import _member

    return _member(agent, m)


def test_action_distribution_is_the_exact_share_of_member_argmaxes():
    agent = FACTORIES["thompson"]()
    contract.play(agent, OBS[:30])
    for obs in PROBES:
        batch = agent.observations(obs)
        Z = agent.compute_features(batch.contexts, batch.candidates)[0]
        expected = sum(tie_split(Z[:, m], torch.ones(6, dtype=torch.bool)) for m in range(3)) / 3
        probs = agent.action_distribution(obs)
        np.testing.assert_allclose(probs, expected.numpy())
        decision = agent.decide(obs)
        assert decision.propensity == pytest.approx(probs[decision.action])
        agent.feedback(decision.id, 0.0)
    # Tied members split evenly: all members equal -> every candidate's share is its ties.
    Z = torch.zeros(1, 4, 3)
    probs = agent.head.probabilities(Z, torch.tensor([[True, True, False, True]]))
    np.testing.assert_allclose(probs[0].numpy(), [1 / 3, 1 / 3, 0, 1 / 3])


def test_bootstrap_weights_are_fixed_per_transition_and_member():
    steps = torch.arange(20_000).unsqueeze(0)
    members = torch.arange(3).unsqueeze(1)
    w = bootstrap_weights(123, steps, members, "poisson")
    assert torch.equal(w, bootstrap_weights(123, steps, members, "poisson"))
    assert not torch.equal(w, bootstrap_weights(124, steps, members, "poisson"))
    assert not torch.equal(w[0], w[1])
    assert abs(w.mean().item() - 1.0) < 0.03 and abs(w.var().item() - 1.0) < 0.05
    assert float((w == 0).float().mean()) == pytest.approx(np.exp(-1), abs=0.01)
    # One transition's weight does not depend on what else is in the minibatch.
    assert torch.equal(bootstrap_weights(123, steps[:, 7:8], members, "poisson"), w[:, 7:8])
    b = bootstrap_weights(123, steps, members, "bernoulli")
    assert set(b.unique().tolist()) == {0.0, 1.0} and abs(b.mean().item() - 0.5) < 0.02
    assert torch.equal(bootstrap_weights(1, steps, members, "none"), torch.ones(3, 20_000))


def test_training_loss_is_the_bootstrap_weighted_sum_over_members():
    agent = _agent(bootstrap="poisson", train_every=0, warmup_random=0)
    contract.play(agent, OBS[:30])
    x, a, r, steps = agent.buffer.sample(
        agent.replay_batch, agent.sample_generator, with_steps=True
    )
    loss = agent.training_loss(x, a, r, steps)
    expected = 0.0
    for m in range(3):
        rows = slice(8 * m, 8 * (m + 1))  # member m's own minibatch
        w = bootstrap_weights(agent.bootstrap_key, steps[rows], torch.tensor(m), "poisson")
        with torch.no_grad():
            prediction = _member_network(agent, m)(x[rows], a[rows])
        expected += (w * (prediction - r[rows]) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_make_agent_settings_and_errors():
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent("bootstrapped_nn", env, seed=0, n_members=4, bootstrap="bernoulli")
    assert agent.name == "bootstrapped_nn" and agent.config.n_members == 4
    assert agent.ensemble.stacked["encoder.net.0.weight"].shape[0] == 4
    with pytest.raises(ValueError, match="n_members"):
        make_agent("bootstrapped_nn", env, n_members=0)
    with pytest.raises(ValueError, match="bootstrap"):
        make_agent("bootstrapped_nn", env, bootstrap="jackknife")
    with pytest.raises(TypeError, match="unknown settings"):
        make_agent("bootstrapped_nn", env, members=3)


def test_evolve_grows_every_member_and_keeps_its_predictions():
    trained = _agent()
    contract.play(trained, OBS[:30])
    torch.manual_seed(1)
    template = BootstrappedNN(
        [MLPEncoder(6, 4, feature_dim=8, hidden=(16,)) for _ in range(3)],
        config=BootstrappedConfig(n_members=3, **contract.FAST),
        seed=1,
    )
    evolve(trained, template)
    assert template.rounds == 30 and len(template.buffer) == 30
    for obs in PROBES:
        padded = {
            "context": np.concatenate([obs["context"], np.zeros(2, np.float32)]),
            "candidates": np.concatenate([obs["candidates"], np.zeros((6, 1), np.float32)], 1),
        }
        np.testing.assert_allclose(
            template.action_distribution(padded), trained.action_distribution(obs)
        )
        for got, want in zip(template.predict(padded), trained.predict(obs), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_members"):
        evolve(trained, _agent(n_members=2))


def test_beats_uniform_on_a_short_synthetic_run():
    regret = {}
    for name in ("bootstrapped_nn", "uniform"):
        env = gym.make("Bandexa/Synthetic-v0", interaction_scale=1.5)
        agent = make_agent(name, env, seed=0)
        regret[name] = run(agent, env, 800, seed=0).cumulative_regret[-1]
    assert regret["bootstrapped_nn"] < 0.5 * regret["uniform"], regret


def test_decisions_do_not_depend_on_the_rewards_units():
    plain, scaled = _agent(), _agent()
    for obs in OBS:
        action = plain.act(obs)
        assert scaled.act(obs) == action
        reward = contract.reward_of(obs, action)
        plain.observe(obs, action, reward)
        scaled.observe(obs, action, 100.0 * reward + 100.0)
    mean, raw_mean = scaled.predict(PROBES[0])[0], plain.predict(PROBES[0])[0]
    np.testing.assert_allclose(mean, 100.0 * raw_mean + 100.0, rtol=1e-4)


def test_forgetting_favours_recent_replay():
    agent = _agent(forgetting=0.9)
    assert agent.config.recency_half_life == pytest.approx(np.log(2) / -np.log(0.9))
    seen = []
    sample = agent.buffer.sample

    def recording(*args, **kwargs):
        seen.append(kwargs.get("recency"))
        return sample(*args, **kwargs)

    agent.buffer.sample = recording
    contract.play(agent, OBS[:12])  # trains twice, with recency-weighted minibatches
    assert agent.trainings == 2 and seen == [agent.config.recency_half_life] * 6


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["state"].update(bootstrap_key=-1), "bootstrap_key"),
        (lambda m: m["state"].update(trainings=-1), "trainings"),
        (lambda m: m["spec"]["config"].update(bootstrap="jackknife"), "bootstrap"),
        (lambda m: m["spec"]["config"].update(n_members=7), "wrong shapes"),
        (lambda m: m["spec"]["config"].update(n_members=100_000), r"n_members must be .*1_000\]"),
    ],
    ids=["bad-key", "bad-count", "bad-bootstrap", "misfit", "oversized"],
)
def test_invalid_checkpoint_values_are_refused(edit, message, tmp_path: Path):
    agent = FACTORIES["thompson"]()
    contract.play(agent, OBS[:12])
    path = agent.save(tmp_path / "a.safetensors")
    contract.rewrite_checkpoint(path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)


def test_device_is_respected():
    env = gym.make("Bandexa/Synthetic-v0")
    agent = make_agent("bootstrapped_nn", env, seed=0, device="cpu", n_members=2)
    contract.play(agent, contract.observations((10,), 10, 10, 3, seed=0))
    assert agent.device == torch.device("cpu")
    assert all(t.device == agent.device for t in agent.state_tensors()[1].values())
