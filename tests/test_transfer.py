"""Tests of bandexa_gym.transfer.evolve: moving a trained agent to a new configuration."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import (
    HeadAgent,
    LinearTS,
    NeuralLinearTS,
    NeuralLinearTSConfig,
    load_agent,
    make_agent,
)
from bandexa_gym.bench import run
from bandexa_gym.encoders import ConvEncoder, MLPEncoder, TwoTowerEncoder
from bandexa_gym.posterior import BayesianLinearRegression, HeadConfig
from bandexa_gym.transfer import evolve, rebase_head_state
from tests.agents.linear_env import LinearEnv


def probe_scores(agent: HeadAgent, obs: dict) -> torch.Tensor:
    """Posterior-mean score of every candidate (deterministic)."""
    return torch.from_numpy(agent.predict(obs)[0])


def _thompson_scores(agent: LinearTS, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """One Thompson draw of every candidate's score, from the agent's generator."""
    features = agent.compute_features(x[None], candidates[None])
    return agent.head.thompson_scores(features, generator=agent.generator)[0]


# A head without an intercept: the tests below check the head's state layout directly.
SMALL = NeuralLinearTSConfig(
    head=HeadConfig(), arm_heads="shared", train_every=25, optimizer_steps=5, batch_size=32
)


# -- helpers ------------------------------------------------------------------------------
def _synthetic(observed: int = 8, action_dim: int = 4, n_arms: int = 5, **kw: Any) -> gym.Env:
    return gym.make(
        "Bandexa/Synthetic-v0",
        context_dim=10,
        observed_context_dim=observed,
        action_dim=action_dim,
        n_arms=n_arms,
        problem_seed=0,
        **kw,
    )


def _neural(
    context_dim: int,
    action_dim: int,
    kind: str = "mlp",
    config: NeuralLinearTSConfig = SMALL,
    **encoder_kw: Any,
) -> NeuralLinearTS:
    torch.manual_seed(0)
    if kind == "mlp":
        kw = {"feature_dim": 8, "hidden": (16,), **encoder_kw}
        encoder = MLPEncoder(context_dim, action_dim, **kw)
    else:
        kw = {"tower_dim": 4, "hidden": (16,), **encoder_kw}
        encoder = TwoTowerEncoder(context_dim, action_dim, **kw)
    return NeuralLinearTS(encoder, seed=0, config=config)


def _clone(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


def _snapshot(agent: LinearTS | NeuralLinearTS) -> dict[str, Any]:
    """Everything evolve must not touch in the trained agent."""
    if isinstance(agent, LinearTS):
        return {"heads": _clone([h.state_dict() for h in agent.heads]), "fmap": agent.feature_map}
    chunks = list(agent.buffer.iter_chunks(10_000))
    return _clone(
        {
            "encoder": agent.encoder.state_dict(),
            "readout": agent.readout.state_dict(),
            "posterior": agent.posterior.state_dict(),
            "optimizer": [
                agent.optimizer.state[p] for g in agent.optimizer.param_groups for p in g["params"]
            ],  # fmt: skip
            "buffer": chunks,
            "rounds": agent.rounds,
            "context_shape": agent.encoder.context_shape,
        }
    )


def _assert_same(a: Any, b: Any) -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def _pad_obs(obs: dict[str, np.ndarray], context_dim: int, action_dim: int) -> dict[str, Any]:
    x, c = obs["context"], obs["candidates"]
    return {
        "context": np.pad(x, (0, context_dim - x.shape[0])),
        "candidates": np.pad(c, ((0, 0), (0, action_dim - c.shape[1]))),
        "action_mask": obs["action_mask"],
    }


def _labelled(env: gym.Env, n: int, seed: int = 5) -> list[tuple[dict[str, np.ndarray], int]]:
    """``n`` observations of ``env`` with the index of their optimal candidate."""
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        next_obs, _, _, _, info = env.step(0)
        out.append((obs, int(info["optimal_action"])))
        obs = next_obs
    return out


def _observations(env: gym.Env, n: int, seed: int = 5) -> list[dict[str, np.ndarray]]:
    return [obs for obs, _ in _labelled(env, n, seed)]


# -- LinearTS ------------------------------------------------------------------------------
def test_concat_head_grows_by_prior_blocks_between_x_and_a():
    trained = LinearTS((8,), 4, feature_map="concat", seed=0, intercept=False)
    run(trained, _synthetic(), 150, seed=0)
    before = _snapshot(trained)
    template = LinearTS((10,), 6, feature_map="concat", seed=1, intercept=False)
    evolved = evolve(trained, template)

    assert evolved is template
    _assert_same(before, _snapshot(trained))
    old, new = trained.posterior, evolved.posterior
    assert new.dim == 16
    # New layout: [x_old (8) | x_new (2) | a_old (4) | a_new (2)].
    keep = list(range(8)) + list(range(10, 14))
    fresh = [8, 9, 14, 15]
    assert torch.equal(new.mean[keep], old.mean)
    assert torch.all(new.mean[fresh] == 0)
    cov_new, cov_old = new.covariance(), old.covariance()
    torch.testing.assert_close(cov_new[keep][:, keep], cov_old, rtol=1e-12, atol=1e-15)
    assert torch.all(cov_new[keep][:, fresh].abs() < 1e-15)
    torch.testing.assert_close(
        new.scaled_covariance()[fresh][:, fresh], torch.eye(4, dtype=torch.float64) * new.prior_var
    )
    torch.testing.assert_close(new.precision()[keep][:, keep], old.precision(), rtol=1e-9, atol=0)
    assert (new.n_obs, new.a, new.b) == (old.n_obs, old.a, old.b)
    assert new.log_marginal_likelihood() == pytest.approx(old.log_marginal_likelihood(), 1e-12)

    # Scores of old inputs (new features zero): posterior means and predictive variances.
    for obs in _observations(_synthetic(), 5):
        padded = _pad_obs(obs, 10, 6)
        torch.testing.assert_close(
            probe_scores(evolved, padded), probe_scores(trained, obs), rtol=0, atol=1e-6
        )
        Z_old = torch.cat(
            [torch.tensor(obs["context"]).expand(5, 8), torch.tensor(obs["candidates"])], 1
        )
        Z_new = torch.cat(
            [torch.tensor(padded["context"]).expand(5, 10), torch.tensor(padded["candidates"])], 1
        )
        var_old = torch.einsum("kd,de,ke->k", Z_old.double(), cov_old, Z_old.double())
        var_new = torch.einsum("kd,de,ke->k", Z_new.double(), cov_new, Z_new.double())
        torch.testing.assert_close(var_new, var_old, rtol=1e-9, atol=1e-12)
    assert 0 <= evolved.act(_pad_obs(obs, 10, 6)) < 5


def test_an_intercept_head_grows_with_the_intercept_kept_last():
    trained = LinearTS((8,), 4, feature_map="concat", seed=0)  # the default: an intercept
    run(trained, _synthetic(), 120, seed=0)
    evolved = evolve(trained, LinearTS((10,), 6, feature_map="concat", seed=1))
    assert evolved.posterior.state_dim == 17
    for obs in _observations(_synthetic(), 5):
        torch.testing.assert_close(
            probe_scores(evolved, _pad_obs(obs, 10, 6)),
            probe_scores(trained, obs),
            atol=1e-6,
            rtol=0,
        )


def test_concat_action_growth_alone_appends_at_the_end():
    trained = LinearTS((8,), 4, feature_map="concat", seed=0, intercept=False)
    run(trained, _synthetic(), 60, seed=0)
    evolved = evolve(trained, LinearTS((8,), 6, feature_map="concat", seed=0, intercept=False))
    assert torch.equal(evolved.posterior.mean[:12], trained.posterior.mean)
    torch.testing.assert_close(
        evolved.posterior.covariance()[:12, :12], trained.posterior.covariance(), rtol=1e-12, atol=0
    )


def test_disjoint_arms_are_kept_added_and_dropped():
    env = LinearEnv(one_hot=True, n_arms=6)
    trained = LinearTS((4,), 6, feature_map="disjoint", seed=0, intercept=False)
    run(trained, env, 200, seed=0)
    before = _snapshot(trained)

    # More context features and more arms; the template's "auto" adopts "disjoint".
    grown = evolve(trained, LinearTS((6,), 8, seed=1, intercept=False))
    _assert_same(before, _snapshot(trained))
    assert grown.feature_map == "disjoint" and grown.requested_feature_map == "auto"
    assert len(grown.heads) == 8
    prior = BayesianLinearRegression(6).state_dict()
    for arm in range(6):
        old, new = trained.heads[arm], grown.heads[arm]
        assert old.n_obs > 0 and new.n_obs == old.n_obs
        assert torch.equal(new.mean[:4], old.mean) and torch.all(new.mean[4:] == 0)
        cov = new.covariance()
        torch.testing.assert_close(cov[:4, :4], old.covariance(), rtol=1e-12, atol=0)
        assert torch.all(cov[:4, 4:] == 0)
        assert (new.a, new.b) == (old.a, old.b)
    for arm in (6, 7):  # new arms sit at the prior
        _assert_same(grown.heads[arm].state_dict(), prior)

    # Fewer arms, same context: kept heads are bit-identical, arms 4 and 5 are dropped.
    fewer = evolve(trained, LinearTS((4,), 4, feature_map="disjoint", seed=1, intercept=False))
    assert len(fewer.heads) == 4
    for arm in range(4):
        _assert_same(fewer.heads[arm].state_dict(), trained.heads[arm].state_dict())

    # Same context, more arms: with the same generator state the old arms' draws match.
    more = evolve(trained, LinearTS((4,), 8, feature_map="disjoint", seed=1, intercept=False))
    x = torch.randn(4, generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        more.generator.set_state(trained.generator.get_state())
        old_scores = _thompson_scores(trained, x, torch.eye(6))
        new_scores = _thompson_scores(more, x, torch.eye(8)[:6])
        torch.testing.assert_close(new_scores, old_scores, rtol=0, atol=1e-12)


def test_log_line_says_what_was_expanded_kept_added_and_dropped(caplog):
    trained = LinearTS((4,), 6, feature_map="disjoint", seed=0)
    run(trained, LinearEnv(one_hot=True, n_arms=6), 60, seed=0)
    with caplog.at_level(logging.INFO, logger="bandexa_gym.transfer"):
        evolve(trained, LinearTS((5,), 4, feature_map="disjoint"))
        evolve(trained, LinearTS((4,), 8, feature_map="disjoint"))
    disjoint_grow, disjoint_more = (r.getMessage() for r in caplog.records)
    assert "context 4 -> 5" in disjoint_grow and "kept arms 0-3" in disjoint_grow
    assert "dropped arms 4-5" in disjoint_grow and "added arms none" in disjoint_grow
    assert "added arms 6-7" in disjoint_more and "dropped arms none" in disjoint_more

    caplog.clear()
    concat = LinearTS((8,), 4, feature_map="concat", seed=0)
    run(concat, _synthetic(), 20, seed=0)
    with caplog.at_level(logging.INFO, logger="bandexa_gym.transfer"):
        evolve(concat, LinearTS((10,), 4, feature_map="concat", prior_var=2.0))
    (message,) = (r.getMessage() for r in caplog.records)
    assert "expanded 12 -> 14" in message and "re-based" in message and "prior_var" in message


def test_rebase_equals_a_head_fed_the_same_data_under_the_new_prior():
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(120, 5, generator=gen, dtype=torch.float64)
    r = Z @ torch.randn(5, generator=gen, dtype=torch.float64) + 0.3 * torch.randn(
        120, generator=gen, dtype=torch.float64
    )
    old = BayesianLinearRegression(5, prior_var=1.0, a0=1.0, b0=1.0)
    for z, y in zip(Z, r, strict=True):
        old.update(z, y)
    for hyper in (
        {"prior_var": 4.0, "noise": "nig", "a0": 2.0, "b0": 0.5},
        {"prior_var": 0.25, "noise": 0.09, "a0": 1.0, "b0": 1.0},
    ):
        reference = BayesianLinearRegression(5, **hyper)
        reference.update_batch(Z, r)
        state = rebase_head_state(old.state_dict(), **hyper)
        head = BayesianLinearRegression(5, **hyper)
        head.load_state_dict(state)
        torch.testing.assert_close(head.mean, reference.mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(
            head.scaled_covariance(), reference.scaled_covariance(), rtol=1e-9, atol=1e-14
        )
        assert head.n_obs == reference.n_obs
        assert head.b == pytest.approx(reference.b, rel=1e-8)
        assert head.log_marginal_likelihood() == pytest.approx(
            reference.log_marginal_likelihood(), rel=1e-8
        )

    # Through evolve: a template with another prior gets the re-based head.
    trained = LinearTS((3,), 2, feature_map="concat", intercept=False)
    for z, y in zip(Z[:, :5].float(), r, strict=True):
        trained.heads[0].update(z, y)
    evolved = evolve(
        trained,
        LinearTS((3,), 2, feature_map="concat", prior_var=4.0, noise=0.09, intercept=False),
    )
    reference = BayesianLinearRegression(5, prior_var=4.0, noise=0.09)
    reference.update_batch(Z.float().double(), r)
    torch.testing.assert_close(evolved.posterior.mean, reference.mean, rtol=1e-8, atol=1e-10)


def test_disjoint_learns_new_mnist_labels_without_losing_old_ones():
    old_env = gym.make("Bandexa/MNIST-v0", labels=range(8))
    trained = make_agent("linear_ts", old_env, seed=0)
    run(trained, old_env, 300, seed=0)
    new_env = gym.make("Bandexa/MNIST-v0")
    evolved = evolve(trained, make_agent("linear_ts", new_env, seed=1))
    assert all(evolved.heads[arm].n_obs == 0 for arm in (8, 9))

    # Greedy (posterior-mean) predictions on old-label images: 8 arms before, 10 after.
    # The new arms score the prior mean (0 in standardized units: the mean reward so far),
    # so a prediction can only change where every old arm scores below it.
    ten = np.eye(10, dtype=np.float32)
    before, after, best_old = [], [], []
    for obs, label in _labelled(old_env, 150):
        scores_old = probe_scores(trained, obs)
        before.append(int(scores_old.argmax()) == label)
        ten_labels = {"context": obs["context"], "candidates": ten}
        after.append(int(probe_scores(evolved, ten_labels).argmax()) == label)
        best_old.append(float(scores_old.max()))
    prior_mean = evolved.reward_scaler.shift
    assert prior_mean == trained.reward_scaler.shift > 0
    confident = np.asarray(best_old) > prior_mean
    assert confident.mean() > 0.5
    assert np.array_equal(np.asarray(after)[confident], np.asarray(before)[confident])
    assert np.mean(after) >= np.mean(before) - 0.02

    # Keep training on all ten labels: the new ones are learned.
    run(evolved, new_env, 700, seed=1)
    assert evolved.heads[8].n_obs > 10 and evolved.heads[9].n_obs > 10
    new_pairs = [(o, y) for o, y in _labelled(new_env, 400, seed=11) if y >= 8]
    hits = [int(probe_scores(evolved, o).argmax()) == y for o, y in new_pairs]
    assert len(hits) > 40 and np.mean(hits) > 0.3  # chance is 0.1; 0.0 before the switch


# -- NeuralLinearTS -------------------------------------------------------------------------
def test_per_arm_neural_heads_keep_their_arms_and_new_arms_start_at_the_prior():
    env = LinearEnv(one_hot=True, n_arms=4)
    config = NeuralLinearTSConfig(train_every=25, optimizer_steps=5, batch_size=32)
    torch.manual_seed(0)
    trained = NeuralLinearTS(MLPEncoder(4, 4, feature_dim=8, hidden=(16,)), seed=0, config=config)
    run(trained, env, 120, seed=0)
    assert trained.arm_mode == "per_arm" and len(trained.heads) == 4
    torch.manual_seed(0)
    template = NeuralLinearTS(MLPEncoder(4, 6, feature_dim=8, hidden=(16,)), seed=1, config=config)
    evolved = evolve(trained, template)
    assert evolved.arm_mode == "per_arm" and len(evolved.heads) == 6
    for old, new in zip(trained.heads, evolved.heads, strict=False):
        assert torch.equal(old.mean, new.mean) and old.n_obs == new.n_obs
    assert all(head.n_obs == 0 for head in evolved.heads[4:])


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_neural_growth_keeps_features_head_readout_and_pads_the_buffer(kind):
    trained = _neural(8, 4, kind)
    run(trained, _synthetic(), 60, seed=0)
    assert trained.trainings >= 2  # the optimizer has state to carry
    before = _snapshot(trained)
    template = _neural(10, 6, kind)
    initial = _clone(template.encoder.state_dict())
    evolved = evolve(trained, template)
    assert evolved is template
    _assert_same(before, _snapshot(trained))

    # z(x ⊕ 0, a ⊕ 0) = z(x, a); the head, readout and counters are the trained ones.
    for obs in _observations(_synthetic(), 4):
        padded = _pad_obs(obs, 10, 6)
        x, c = torch.tensor(obs["context"]), torch.tensor(obs["candidates"])
        xp, cp = torch.tensor(padded["context"]), torch.tensor(padded["candidates"])
        torch.testing.assert_close(evolved.embed(xp, cp), trained.embed(x, c), rtol=0, atol=1e-6)
        torch.testing.assert_close(
            probe_scores(evolved, padded), probe_scores(trained, obs), rtol=0, atol=1e-6
        )
        # Sampled scores and decisions agree under the same generator state.
        evolved.generator.set_state(trained.generator.get_state())
        w_old = trained.posterior.sample(generator=trained.generator)
        w_new = evolved.posterior.sample(generator=evolved.generator)
        assert torch.equal(w_old, w_new)
        torch.testing.assert_close(
            evolved.embed(xp, cp).double() @ w_new,
            trained.embed(x, c).double() @ w_old,
            atol=1e-6,
            rtol=0,
        )
        evolved.generator.set_state(trained.generator.get_state())
        assert evolved.select_action(xp, cp) == trained.select_action(x, c)
    _assert_same(evolved.posterior.state_dict(), trained.posterior.state_dict())
    _assert_same(evolved.readout.state_dict(), trained.readout.state_dict())
    assert (evolved.rounds, evolved.trainings) == (trained.rounds, trained.trainings)
    assert not evolved.exploring

    # Replay buffer: same transitions, zero-padded.
    X_old, A_old, R_old = next(trained.buffer.iter_chunks(10_000))
    X_new, A_new, R_new = next(evolved.buffer.iter_chunks(10_000))
    assert X_new.shape == (60, 10) and A_new.shape == (60, 6)
    assert torch.equal(X_new[:, :8], X_old) and torch.all(X_new[:, 8:] == 0)
    assert torch.equal(A_new[:, :4], A_old) and torch.all(A_new[:, 4:] == 0)
    assert torch.equal(R_new, R_old)

    # Input weights: new context columns are zero; new action columns keep the template's
    # initial weights (zeros would give every new arm the same features z(x, 0)).
    if kind == "mlp":
        w_old = trained.encoder.net[0].weight.detach()
        w_new = evolved.encoder.net[0].weight.detach()
        w_init = initial["net.0.weight"]
        assert torch.equal(w_new[:, :8], w_old[:, :8]) and torch.all(w_new[:, 8:10] == 0)
        assert torch.equal(w_new[:, 10:14], w_old[:, 8:12])
        assert torch.equal(w_new[:, 14:], w_init[:, 14:])
        # Adam moments follow the same layout (zero for every new input), step count kept.
        m_old = trained.optimizer.state[trained.encoder.net[0].weight]
        m_new = evolved.optimizer.state[evolved.encoder.net[0].weight]
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(m_new[key][:, :8], m_old[key][:, :8])
            assert torch.equal(m_new[key][:, 10:14], m_old[key][:, 8:12])
            assert torch.all(m_new[key][:, 8:10] == 0) and torch.all(m_new[key][:, 14:] == 0)
        assert float(m_new["step"]) == float(m_old["step"]) > 0
    else:
        w_new = evolved.encoder.act_tower[0].weight.detach()
        assert torch.equal(w_new[:, 4:], initial["act_tower.0.weight"][:, 4:])
        assert torch.all(evolved.encoder.ctx_tower[0].weight[:, 8:] == 0)
    param = next(evolved.encoder.parameters())
    assert param in evolved.optimizer.state and all(
        any(p is q for g in evolved.optimizer.param_groups for q in g["params"])
        for p in evolved.encoder.parameters()
    )

    # Training and a rebuild on the padded buffer work and use every old transition.
    evolved.train_encoder(optimizer_steps=3)
    evolved.rebuild_posterior()
    assert evolved.posterior.n_obs == 60


def test_neural_continues_learning_after_evolve():
    # (a) Arms described by features: three new arms of the same bandit (fixed problem).
    kw = {"context_dim": 6, "action_dim": 6, "problem_seed": 3, "interaction_scale": 1.5}
    config = NeuralLinearTSConfig(train_every=50, optimizer_steps=30)
    trained = _neural(6, 6, config=config, feature_dim=16, hidden=(32,))
    run(trained, gym.make("Bandexa/Synthetic-v0", n_arms=4, **kw), 400, seed=0)
    evolved = evolve(trained, _neural(6, 6, config=config, feature_dim=16, hidden=(32,)))
    env = gym.make("Bandexa/Synthetic-v0", n_arms=7, **kw)
    obs, _ = env.reset(seed=1)
    hits = []
    for _ in range(400):
        action = evolved.act(obs)
        next_obs, reward, _, _, info = env.step(action)
        evolved.observe(obs, action, reward)
        if info["optimal_action"] >= 4:
            hits.append(action == info["optimal_action"])
        obs = next_obs
    assert np.mean(hits[-60:]) > 0.5  # the new arms are played when they are best

    # (b) Two revealed context features: the evolved agent starts from its old skill and
    # does better than a cold start on the new env.
    old_env, new_env = _synthetic(8, 10, 10), _synthetic(10, 10, 10)
    trained = make_agent("neural_linear_ts", old_env, seed=0, train_every=50, optimizer_steps=30)
    run(trained, old_env, 600, seed=0)
    evolved = evolve(
        trained, make_agent("neural_linear_ts", new_env, seed=1, train_every=50, optimizer_steps=30)
    )
    cold = make_agent("neural_linear_ts", new_env, seed=1, train_every=50, optimizer_steps=30)
    after = run(evolved, new_env, 500, seed=1).regrets
    fresh = run(cold, _synthetic(10, 10, 10), 500, seed=1).regrets
    assert after[:200].mean() < 0.8 * fresh[:200].mean()
    assert after.sum() < fresh.sum()


def test_buffer_shared_with_the_template_is_padded_in_place_and_a_full_one_is_refused():
    trained = _neural(8, 4)
    run(trained, _synthetic(), 30, seed=0)
    template = NeuralLinearTS(
        MLPEncoder(10, 4, feature_dim=8, hidden=(16,)), buffer=trained.buffer, config=SMALL
    )
    evolved = evolve(trained, template)
    assert evolved.buffer is trained.buffer
    assert evolved.buffer.x_shape == (10,) and len(evolved.buffer) == 30

    busy = _neural(10, 4)
    busy.buffer.add(torch.zeros(10), torch.zeros(4), 0.0)
    with pytest.raises(ValueError, match="already holds 1 transitions"):
        evolve(_neural(8, 4), busy)
    other = _neural(8, 4)
    sharing = NeuralLinearTS(MLPEncoder(8, 4, feature_dim=8, hidden=(16,)), buffer=other.buffer)
    with pytest.raises(ValueError, match="'drop' needs a template with its own"):
        evolve(other, sharing, old_transitions="drop")
    with pytest.raises(ValueError, match="old_transitions must be 'pad' or 'drop'"):
        evolve(_neural(8, 4), _neural(10, 4), old_transitions="keep")


def test_dropping_old_transitions_keeps_the_head_until_the_next_rebuild():
    trained = _neural(8, 4)
    run(trained, _synthetic(), 60, seed=0)
    evolved = evolve(trained, _neural(10, 4), old_transitions="drop")
    assert len(evolved.buffer) == 0 and len(trained.buffer) == 60
    _assert_same(evolved.posterior.state_dict(), trained.posterior.state_dict())
    run(evolved, _synthetic(10), 15, seed=1)  # rounds 61..75: the rebuild comes at 75
    assert len(evolved.buffer) == 15 and evolved.posterior.n_obs == 15


# -- checkpoints --------------------------------------------------------------------------
def test_evolve_save_load_round_trip(tmp_path):
    linear = LinearTS((8,), 4, feature_map="concat", seed=0)
    run(linear, _synthetic(), 80, seed=0)
    neural = _neural(8, 4)
    run(neural, _synthetic(), 60, seed=0)
    obs = [_pad_obs(o, 10, 6) for o in _observations(_synthetic(), 3)]
    for trained, template in (
        (linear, LinearTS((10,), 6, feature_map="concat", seed=1)),
        (neural, _neural(10, 6)),
    ):
        evolved = evolve(trained, template)
        path = evolved.save(tmp_path / f"{evolved.name}.safetensors")
        loaded = load_agent(path, map_location="cpu", expected=evolved)
        assert type(loaded) is type(evolved)
        for o in obs:
            assert torch.equal(probe_scores(loaded, o), probe_scores(evolved, o))
            assert loaded.act(o) == evolved.act(o)  # generator states were saved too
        if isinstance(loaded, NeuralLinearTS):
            assert loaded.encoder.context_shape == (10,) and loaded.encoder.action_dim == 6
            assert loaded.rounds == trained.rounds
            _assert_same(loaded.posterior.state_dict(), trained.posterior.state_dict())
        else:
            _assert_same(loaded.posterior.state_dict(), evolved.posterior.state_dict())


# -- structural mismatches ----------------------------------------------------------------
def _trained_linear(fmap: str = "concat", context: tuple[int, ...] = (8,), arms: int = 4):
    agent = LinearTS(context, arms, feature_map=fmap, seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(context, generator=gen)
    agent.observe({"context": x.numpy(), "candidates": np.eye(arms, dtype=np.float32)}, 1, 1.0)
    return agent


def _trained_neural(**kw: Any) -> NeuralLinearTS:
    agent = _neural(8, 4, **kw)
    agent.update(torch.zeros(8), torch.ones(4), 1.0)
    return agent


MISMATCHES = [
    pytest.param(_trained_linear, lambda: _neural(8, 4), "agent class differs", id="agent-class"),
    pytest.param(
        _trained_linear,
        lambda: LinearTS((8,), 4, feature_map="disjoint"),
        "feature_map differs.*'concat'.*'disjoint'",
        id="feature-map",
    ),
    pytest.param(
        _trained_linear,
        lambda: LinearTS((6,), 4, feature_map="concat"),
        r"context_shape shrinks from \(8,\) to \(6,\)",
        id="linear-context-shrinks",
    ),
    pytest.param(
        lambda: _trained_linear("disjoint", (1, 4, 4)),
        lambda: LinearTS((1, 5, 5), 4, feature_map="disjoint"),
        "context_shape differs.*image shapes must match",
        id="linear-image-shape",
    ),
    pytest.param(
        _trained_linear,
        lambda: LinearTS((8,), 3, feature_map="concat"),
        "action_dim shrinks from 4 to 3.*'concat'",
        id="concat-action-shrinks",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 4, "two_tower"),
        "encoder class differs.*MLPEncoder.*TwoTowerEncoder",
        id="encoder-class",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 4, hidden=(32,)),
        r"parameter 'net.0.weight' has shape \(16, 12\).*\(32, 12\)",
        id="hidden-sizes",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 4, hidden=(16, 16)),
        "encoder architecture differs",
        id="depth",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 4, activation=torch.nn.Tanh),
        "encoder architecture differs.*ReLU.*Tanh",
        id="activation",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 4, feature_dim=12),
        "feature_dim differs.*d=8.*d=12",
        id="feature-dim",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(6, 4),
        r"context_shape shrinks from \(8,\) to \(6,\)",
        id="neural-context-shrinks",
    ),
    pytest.param(
        _trained_neural,
        lambda: _neural(8, 3),
        "action_dim shrinks from 4 to 3",
        id="neural-action-shrinks",
    ),
    pytest.param(
        lambda: NeuralLinearTS(ConvEncoder(4, image_size=16), seed=0),
        lambda: NeuralLinearTS(ConvEncoder(4, image_size=28), seed=0),
        r"context_shape differs.*\(1, 16, 16\).*\(1, 28, 28\)",
        id="conv-image-size",
    ),
]


@pytest.mark.parametrize(("make_trained", "make_template", "message"), MISMATCHES)
def test_structural_mismatch_raises_and_changes_nothing(make_trained, make_template, message):
    trained, template = make_trained(), make_template()
    before, template_before = _snapshot(trained), _snapshot(template)
    with pytest.raises(ValueError, match=message):
        evolve(trained, template)
    _assert_same(before, _snapshot(trained))
    _assert_same(template_before, _snapshot(template))


def test_template_must_be_another_agent():
    agent = _trained_linear()
    with pytest.raises(ValueError, match="not the trained agent itself"):
        evolve(agent, agent)
