import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import NeuralLinearTS, NeuralLinearTSConfig, make_agent
from bandexa_gym.bench import run
from bandexa_gym.buffers import DiskReplayBuffer
from bandexa_gym.encoders import MLPEncoder, TwoTowerEncoder
from bandexa_gym.posterior import BayesianLinearRegression


def _agent(**config) -> NeuralLinearTS:
    """A small agent with one shared head (the unit tests below check that head)."""
    torch.manual_seed(0)
    return NeuralLinearTS(
        MLPEncoder(3, 2, feature_dim=8, hidden=(16,)),
        seed=0,
        config=NeuralLinearTSConfig.from_settings(**{"arm_heads": "shared", **config}),
    )


def _state(agent: NeuralLinearTS) -> dict:
    return {
        k: v.clone() if torch.is_tensor(v) else v for k, v in agent.posterior.state_dict().items()
    }


def test_beats_uniform_on_a_short_synthetic_run():
    regret = {}
    for name in ("neural_linear_ts", "uniform"):
        env = gym.make("Bandexa/Synthetic-v0", interaction_scale=1.5)
        regret[name] = run(make_agent(name, env, seed=0), env, 800, seed=0).cumulative_regret[-1]
    assert regret["neural_linear_ts"] < 0.5 * regret["uniform"]


def test_learns_mnist_on_a_short_run():
    env = gym.make("Bandexa/MNIST-v0")
    agent = make_agent("neural_linear_ts", env, seed=0)
    # Image defaults: ConvNet, 200 uniform rounds, squared error on standardized rewards.
    assert (agent.config.warmup_random, agent.config.loss) == (200, "mse")
    assert agent.config.standardize_rewards and agent.context_only is False  # not yet seen
    result = run(agent, env, 700, seed=0)
    assert agent.context_only  # one-hot labels: features of the image alone
    accuracy = result.rewards[-200:].mean()
    assert accuracy > 0.35, accuracy  # uniform guessing is 0.10


def test_rebuild_after_training_equals_a_head_built_from_fresh_features():
    agent = _agent(train_every=0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        x, a = torch.randn(3, generator=gen), torch.randn(2, generator=gen)
        agent.update(x, a, float(x[0] * a[1] + 0.1 * torch.randn((), generator=gen)))
    agent.train_encoder(optimizer_steps=30, batch_size=32)
    agent.rebuild_posterior(chunk_size=64)

    X, A, R = next(agent.buffer.iter_chunks(10_000))
    with torch.no_grad():
        Z = agent.standardize(agent.encoder(X, A))  # the head sees standardized features
    fresh = BayesianLinearRegression(8, intercept=True, prior_var=0.1)  # the default head
    for z, r in zip(Z, agent.reward_scaler(R.double()), strict=True):  # standardized rewards
        fresh.update(z, r)
    torch.testing.assert_close(agent.posterior.mean, fresh.mean, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(
        agent.posterior.covariance(), fresh.covariance(), rtol=1e-7, atol=1e-9
    )
    assert agent.posterior.b == pytest.approx(fresh.b, rel=1e-8)


def test_chunked_and_unchunked_scoring_choose_the_same_action():
    torch.manual_seed(0)
    encoder = TwoTowerEncoder(4, 3, tower_dim=4)
    x, candidates = torch.randn(4), torch.randn(300, 3)
    chosen = []
    for chunk in (None, 7):
        agent = NeuralLinearTS(encoder, seed=5, config=NeuralLinearTSConfig(action_chunk=chunk))
        chosen.append([agent.select_action(x, candidates) for _ in range(5)])
    assert chosen[0] == chosen[1]


def test_bad_input_stores_nothing():
    agent = _agent()
    x, a = torch.randn(3), torch.randn(2)
    agent.update(x, a, 1.0)
    before = _state(agent)
    bad_calls = [
        lambda: agent.update(x, a, float("nan")),
        lambda: agent.update(x, torch.randn(3), 1.0),  # wrong action width
        lambda: agent.update(torch.randn(4), a, 1.0),  # wrong context width
        lambda: agent.select_action(x, torch.randn(5, 3)),
        lambda: agent.select_action(x, torch.empty(0, 2)),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
    assert len(agent.buffer) == 1
    after = agent.posterior.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) if torch.is_tensor(value) else value == after[key]


def test_transition_the_buffer_rejects_leaves_the_head_unchanged():
    agent = _agent()
    agent.update(torch.zeros(3, dtype=torch.int64), torch.randn(2), 1.0)  # fixes x dtype
    before = _state(agent)
    with pytest.raises(ValueError, match="dtype"):
        agent.update(torch.randn(3), torch.randn(2), 1.0)  # float after int: unsafe cast
    with pytest.raises(ValueError, match="finite"):
        agent.update(torch.tensor([float("nan"), 0, 0]), torch.randn(2), 1.0)
    assert len(agent.buffer) == 1
    after = agent.posterior.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) if torch.is_tensor(value) else value == after[key]


def test_training_between_act_and_observe_does_not_reuse_stale_features():
    # Raw units (no re-standardization at round 1): the observation is one rank-1 update.
    agent = _agent(train_every=0, standardize_rewards=False, standardize_features=False)
    for _ in range(20):
        agent.update(torch.randn(3), torch.randn(2), float(torch.randn(())))
    obs = {"context": torch.randn(3).numpy(), "candidates": torch.randn(4, 2).numpy()}
    action = agent.act(obs)
    agent.train_encoder(optimizer_steps=5)
    expected = agent.posterior.state_dict()
    reference = BayesianLinearRegression(8, agent.posterior.config)
    reference.load_state_dict(expected)
    reference.update(
        agent.embed(
            torch.as_tensor(obs["context"]), torch.as_tensor(obs["candidates"][action : action + 1])
        )[0],
        0.5,
    )
    agent.observe(obs, action, 0.5)
    assert torch.allclose(agent.posterior.mean, reference.mean)


def test_same_seed_gives_same_actions_and_reset_starts_over():
    def play(agent):
        env = gym.make("Bandexa/Synthetic-v0")
        return run(agent, env, 150, seed=0).rewards

    env = gym.make("Bandexa/Synthetic-v0")
    first = make_agent("neural_linear_ts", env, seed=4, train_every=50, optimizer_steps=5)
    second = make_agent("neural_linear_ts", env, seed=4, train_every=50, optimizer_steps=5)
    rewards = play(first)
    np.testing.assert_array_equal(rewards, play(second))
    first.reset()
    assert len(first.buffer) == 0 and first.arm_mode is None and first.heads[0].n_obs == 0
    np.testing.assert_array_equal(rewards, play(first))


def test_warmup_is_uniform_then_trains_once():
    agent = _agent(warmup_random=20, train_every=1000, optimizer_steps=3)
    obs = {"context": np.zeros(3, np.float32), "candidates": np.eye(4, 2, dtype=np.float32)}
    for _ in range(20):
        assert agent.exploring
        action = agent.act(obs)
        agent.observe(obs, action, 0.0)
    assert not agent.exploring and agent.trainings == 1 and agent.posterior.n_obs == 20


def test_disk_buffer_backend_drives_the_same_agent(tmp_path):
    torch.manual_seed(0)
    encoder = MLPEncoder(10, 10, feature_dim=8, hidden=(16,))
    with DiskReplayBuffer(tmp_path / "replay", shard_size=64) as buffer:
        agent = NeuralLinearTS(
            encoder,
            buffer=buffer,
            seed=0,
            config=NeuralLinearTSConfig(train_every=100, optimizer_steps=5),
        )
        env = gym.make("Bandexa/Synthetic-v0")
        run(agent, env, 250, seed=0)
        assert len(buffer) == 250 and agent.trainings == 2
        assert agent.arm_mode == "per_arm"  # ten fixed arms: a head each
        assert sum(head.n_obs for head in agent.heads) == 250


@pytest.mark.filterwarnings("ignore::bandexa_gym.numerics.NumericalWarning")
def test_one_extreme_context_does_not_brick_the_encoder():
    agent = _agent(train_every=10, optimizer_steps=20, batch_size=8)
    gen = torch.Generator().manual_seed(0)
    extreme = torch.zeros(3)
    extreme[0] = 1e30
    agent.update(extreme, torch.randn(2, generator=gen), 1.0)
    for _ in range(9):
        agent.update(torch.randn(3, generator=gen), torch.randn(2, generator=gen), 0.5)
    with pytest.warns(RuntimeWarning, match="skipped .* training steps"):
        agent.train_encoder()
    assert all(torch.isfinite(p).all() for p in agent.encoder.parameters())
    agent.rebuild_posterior()
    obs = {"context": np.zeros(3, np.float32), "candidates": np.eye(4, 2, dtype=np.float32)}
    for _ in range(30):  # later rounds keep working (and train without a second warning)
        agent.observe(obs, agent.act(obs), 0.1)
    assert agent.trainings >= 3 and torch.isfinite(agent.posterior.mean).all()


def test_features_that_overflow_are_rejected_before_they_are_stored():
    agent = _agent()
    with torch.no_grad():
        agent.encoder.net[0].weight.mul_(1e30)  # any input now overflows float32
    obs = {"context": np.full(3, 1e10, np.float32), "candidates": np.eye(4, 2, dtype=np.float32)}
    with pytest.raises(ValueError, match="not finite"):
        agent.observe(obs, 0, 1.0)
    assert len(agent.buffer) == 0 and agent.posterior.n_obs == 0


def test_a_forgetting_rebuild_weights_rows_by_age_and_keeps_the_prior():
    gamma = 0.97
    agent = _agent(train_every=0, forgetting=gamma, standardize_rewards=False)
    gen = torch.Generator().manual_seed(2)
    for _ in range(80):
        agent.update(torch.randn(3, generator=gen), torch.randn(2, generator=gen), 0.3)
    agent.rebuild_posterior(chunk_size=16)
    X, A, R = next(agent.buffer.iter_chunks(1000))
    with torch.no_grad():
        Z = agent.posterior.augment(agent.standardize(agent.encoder(X, A)).double())  # [z̃; 1]
    weights = gamma ** torch.arange(79, -1, -1, dtype=torch.float64)
    prior = torch.eye(9, dtype=torch.float64) / agent.config.head.prior_var
    precision = prior + (Z.T * weights) @ Z
    torch.testing.assert_close(agent.posterior.precision(), precision, rtol=1e-7, atol=1e-8)
    assert agent.posterior.n_obs == pytest.approx(float(weights.sum()))


def test_a_window_rebuild_uses_the_last_rounds_only():
    agent = _agent(train_every=0, window=10, standardize_rewards=False)
    gen = torch.Generator().manual_seed(3)
    for _ in range(30):
        agent.update(torch.randn(3, generator=gen), torch.randn(2, generator=gen), 1.0)
    agent.rebuild_posterior()
    assert agent.posterior.n_obs == pytest.approx(10.0)


def test_the_head_sees_features_standardized_over_the_buffer():
    agent = _agent(train_every=0)
    gen = torch.Generator().manual_seed(5)
    for _ in range(64):
        agent.update(torch.randn(3, generator=gen), torch.randn(2, generator=gen), 0.0)
    agent.rebuild_posterior()  # one pass: fits the standardization, rebuilds the head
    X, A, _ = next(agent.buffer.iter_chunks(1000))
    with torch.no_grad():
        raw = agent.encoder(X, A).double()
    live = raw.std(dim=0) > 1e-3 * raw.std(dim=0).max()
    z = agent.standardize(raw.float()).double()
    zeros, ones = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    torch.testing.assert_close(z.mean(dim=0), zeros, atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=0, correction=0)[live], ones[live], atol=1e-4, rtol=0)
    assert bool((agent.feature_gain[~live] == 0).all())
    plain = _agent(train_every=0, standardize_features=False)
    for x, a in zip(X, A, strict=True):
        plain.update(x, a, 0.0)
    plain.rebuild_posterior()
    assert bool((plain.feature_gain == 1).all()) and bool((plain.feature_shift == 0).all())


def test_one_hot_arms_get_context_features_and_one_readout_per_arm():
    env = gym.make("Bandexa/Wheel-v0")
    agent = make_agent("neural_linear_ts", env, seed=0, train_every=20, optimizer_steps=5)
    run(agent, env, 40, seed=0)
    assert agent.arm_mode == "per_arm" and agent.context_only
    obs, _ = env.reset(seed=1)
    Z = agent.embed(torch.as_tensor(obs["context"]), torch.as_tensor(obs["candidates"]))
    assert torch.equal(Z, Z[:1].expand_as(Z))  # φ(x), the same row for every arm
    readout, arm_readout = agent.readout.weight.clone(), agent.arm_readout.weight.clone()
    agent.train_encoder(optimizer_steps=3)
    assert torch.equal(agent.readout.weight, readout)  # the shared readout is not used
    assert not torch.equal(agent.arm_readout.weight, arm_readout)
    synthetic = gym.make("Bandexa/Synthetic-v0")  # arms with content keep φ(x, a)
    other = make_agent("neural_linear_ts", synthetic, seed=0, train_every=0)
    run(other, synthetic, 5, seed=0)
    assert other.arm_mode == "per_arm" and not other.context_only


def test_finds_the_rare_large_rewards_of_the_wheel_bandit():
    regrets = {}
    for name in ("neural_linear_ts", "uniform"):
        env = gym.make("Bandexa/Wheel-v0")
        agent = make_agent(name, env, seed=0)
        regrets[name] = run(agent, env, 1500, seed=0).cumulative_regret[-1]
    # Settling on the safe arm costs 1.2x uniform's regret; exploring the rim pays off.
    assert regrets["neural_linear_ts"] < 0.7 * regrets["uniform"], regrets


def test_the_lower_level_update_stores_and_absorbs_a_row_without_a_decision() -> None:
    agent = NeuralLinearTS(MLPEncoder(4, 3, feature_dim=8), seed=0)
    x, a = torch.ones(4), torch.tensor([1.0, 0.0, 0.0])
    before = agent.posterior.n_obs
    agent.update(x, a, 0.5)  # no act() before: no cached features to reuse
    assert len(agent.buffer) == 1 and agent.posterior.n_obs == before + 1
    assert agent.rounds == 0  # update() leaves the schedule to observe()
