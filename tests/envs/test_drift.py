"""drift= on Synthetic and Retrieval: the spec, change points, gradual drift, seeding."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import Drift, RetrievalBanditEnv, SyntheticBanditEnv
from bandexa_gym.envs.drift import parse_drift

# The documented derivation of the drift stream of a problem drawn from seed s.
_DRIFT_STREAM = 0x64726966


def _drift_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_DRIFT_STREAM,)))


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _synthetic_mu(env: SyntheticBanditEnv, context: np.ndarray, arms: np.ndarray) -> np.ndarray:
    m = env.reward_model
    x, a = context.astype(np.float64), arms.astype(np.float64)
    products = (m.context_proj @ x)[None, :] * (a @ m.action_proj.T)
    return 0.3 * a @ m.theta + m.interaction_scale * (1.6 * np.tanh(products)) @ m.mix


# -- the spec ----------------------------------------------------------------------------


def test_spec_forms() -> None:
    assert parse_drift(None) is None
    every = parse_drift({"kind": "abrupt", "every": 50})
    assert every == Drift.abrupt(every=50) == Drift("abrupt", every=50)
    at = parse_drift({"kind": "abrupt", "at": [30, 10]})
    assert at is not None and at.at == (10, 30)
    gradual = parse_drift({"kind": "gradual", "rate": 0.01})
    assert gradual == Drift.gradual(0.01)
    assert [every.changes_before(t) for t in (0, 1, 49, 50, 51, 100)] == [
        False, False, False, True, False, True,
    ]  # fmt: skip
    assert [t for t in range(40) if at.changes_before(t)] == [10, 30]
    assert [t for t in range(4) if gradual.changes_before(t)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"kind": "sudden", "every": 5}, ValueError, '"abrupt" or "gradual"'),
        ({"every": 5}, ValueError, 'needs a "kind"'),
        ({"kind": "abrupt", "every": 5, "period": 3}, ValueError, r"unknown keys \['period'\]"),
        ({"kind": "abrupt"}, ValueError, 'exactly one of "every"'),
        ({"kind": "abrupt", "every": 5, "at": [3]}, ValueError, 'exactly one of "every"'),
        ({"kind": "abrupt", "every": 0}, ValueError, "drift every must be an integer >= 1"),
        ({"kind": "abrupt", "every": 2.5}, ValueError, "drift every"),
        ({"kind": "abrupt", "at": [0, 5]}, ValueError, "each round in drift at"),
        ({"kind": "abrupt", "at": [5, 5]}, ValueError, "distinct"),
        ({"kind": "abrupt", "at": "10"}, ValueError, "list of round numbers"),
        ({"kind": "abrupt", "every": 5, "rate": 0.1}, ValueError, '"rate" applies to kind'),
        ({"kind": "gradual"}, ValueError, 'needs "rate"'),
        ({"kind": "gradual", "rate": 0.0}, ValueError, r"rate must be in \(0, 1\]"),
        ({"kind": "gradual", "rate": 1.5}, ValueError, r"rate must be in \(0, 1\]"),
        ({"kind": "gradual", "rate": "0.1"}, TypeError, "drift rate must be a real number"),
        ({"kind": "gradual", "rate": 0.1, "every": 5}, ValueError, '"every" and "at" apply'),
        ("abrupt", TypeError, "drift must be None, a Drift or a dict"),
        (5000, TypeError, "drift must be None, a Drift or a dict"),
    ],
)
@pytest.mark.parametrize("env_id", ["Bandexa/Synthetic-v0", "Bandexa/Retrieval-v0"])
def test_bad_spec_is_rejected_at_construction(
    env_id: str, spec: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        gym.make(env_id, drift=spec)


# -- Synthetic -----------------------------------------------------------------------------


def test_synthetic_change_point_redraws_parameters_from_the_drift_stream() -> None:
    every = 25
    env = SyntheticBanditEnv(
        n_arms=6, context_dim=5, action_dim=4, drift={"kind": "abrupt", "every": every}
    )
    still = SyntheticBanditEnv(n_arms=6, context_dim=5, action_dim=4)
    obs, _ = env.reset(seed=3)
    obs_still, _ = still.reset(seed=3)
    first = env.reward_model
    # The documented recomputation of the parameters after each change point.
    rng = _drift_rng(3)
    expected_models = []
    for _ in range(3):
        theta, u, v = (
            rng.standard_normal((1, 4)),
            rng.standard_normal((4, 5)),
            rng.standard_normal((4, 4)),
        )
        mix = rng.choice(np.array([-1.0, 1.0]), size=4) / 2.0
        expected_models.append((_unit(theta)[0], _unit(u), _unit(v), mix))
    changes = 0
    for t in range(3 * every + 5):
        # Contexts, arms and noise are the stationary env's: drift only moves parameters.
        np.testing.assert_array_equal(obs["context"], obs_still["context"])
        np.testing.assert_array_equal(obs["candidates"], obs_still["candidates"])
        if t % every == 0 and t > 0:
            theta, u, v, mix = expected_models[t // every - 1]
            np.testing.assert_allclose(env.reward_model.theta, theta, atol=1e-12)
            np.testing.assert_allclose(env.reward_model.context_proj, u, atol=1e-12)
            np.testing.assert_allclose(env.reward_model.action_proj, v, atol=1e-12)
            np.testing.assert_array_equal(env.reward_model.mix, mix)
            changes += 1
        elif t < every:
            assert env.reward_model is first
        mu = _synthetic_mu(env, env._round.payload, obs["candidates"])
        obs, reward, _, _, info = env.step(t % 6)
        obs_still, *_ = still.step(t % 6)
        assert info["optimal_action"] == int(np.argmax(mu))
        assert info["best_expected_reward"] == pytest.approx(mu.max(), abs=1e-12)
        assert info["expected_reward"] == pytest.approx(mu[t % 6], abs=1e-12)
        np.testing.assert_allclose(info["expected_rewards"], mu, atol=1e-12)
    assert changes == 3
    assert not np.allclose(env.reward_model.theta, first.theta)


def test_synthetic_drift_keeps_noise_and_contexts_of_the_stationary_stream() -> None:
    kwargs = {"n_arms": 4, "context_dim": 3, "action_dim": 3}
    drifting = SyntheticBanditEnv(**kwargs, drift={"kind": "gradual", "rate": 0.3})
    still = SyntheticBanditEnv(**kwargs)
    drifting.reset(seed=1)
    still.reset(seed=1)
    for t in range(50):
        _, r_d, _, _, i_d = drifting.step(t % 4)
        _, r_s, _, _, i_s = still.step(t % 4)
        assert r_d - i_d["expected_reward"] == pytest.approx(
            r_s - i_s["expected_reward"], abs=1e-12
        )


def test_synthetic_abrupt_at_given_rounds() -> None:
    env = SyntheticBanditEnv(drift={"kind": "abrupt", "at": [3, 7]})
    env.reset(seed=0)
    models = []
    for _ in range(10):
        models.append(env.reward_model)
        env.step(0)
    changed = [t for t in range(1, 10) if models[t] is not models[t - 1]]
    assert changed == [3, 7]


def test_synthetic_gradual_drift_moves_a_little_every_round_and_keeps_the_prior() -> None:
    env = SyntheticBanditEnv(drift={"kind": "gradual", "rate": 0.05})
    env.reset(seed=0)
    latent0 = env._latent
    theta0 = env.reward_model.theta
    env.step(0)
    env.step(0)  # round 1 drawn after one step of the walk
    cos = float(env.reward_model.theta @ theta0)
    assert 0.95 < cos < 1.0 - 1e-9
    np.testing.assert_array_equal(env._latent.mix, latent0.mix)  # signs stay
    # Many steps: decorrelated from the start, and the latent law stays N(0, 1).
    scale = SyntheticBanditEnv(
        context_dim=20, action_dim=20, drift={"kind": "gradual", "rate": 0.2}
    )
    scale.reset(seed=0)
    start = scale._latent.context_proj.copy()
    for _ in range(400):
        scale.step(0)
    end = scale._latent.context_proj
    assert abs(np.corrcoef(start.ravel(), end.ravel())[0, 1]) < 0.2
    assert 0.8 < end.std() < 1.2


def test_synthetic_drift_is_reproducible_and_seed_dependent() -> None:
    def models(seed: int, env: SyntheticBanditEnv | None = None) -> list[np.ndarray]:
        env = env or SyntheticBanditEnv(drift={"kind": "abrupt", "every": 4})
        env.reset(seed=seed)
        thetas = []
        for _ in range(13):
            thetas.append(env.reward_model.theta.copy())
            env.step(0)
        return thetas

    a, b, c = models(0), models(0), models(1)
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.allclose(a[-1], c[-1])
    env = SyntheticBanditEnv(drift={"kind": "abrupt", "every": 4})
    models(5, env)
    np.testing.assert_array_equal(np.stack(models(0, env)), np.stack(a))  # reseeding replays


def test_unseeded_reset_continues_the_drift_and_problem_seed_restarts_it() -> None:
    env = SyntheticBanditEnv(drift={"kind": "abrupt", "every": 5})
    env.reset(seed=0)  # draws round 0
    for _ in range(3):
        env.step(0)  # rounds 1-3
    before = env.reward_model
    env.reset()  # unseeded: draws round 4, the count goes on
    assert env.reward_model is before
    env.step(0)  # round 5: after the change point
    assert env.reward_model is not before

    fixed = SyntheticBanditEnv(problem_seed=2, drift={"kind": "abrupt", "every": 3})
    fixed.reset(seed=0)
    initial = fixed.reward_model
    trail0 = []
    for _ in range(7):
        fixed.step(0)
        trail0.append(fixed.reward_model.theta.copy())
    fixed.reset(seed=1)  # other rounds, same problem: the drift starts over from it
    assert fixed.reward_model is initial
    trail1 = []
    for _ in range(7):
        fixed.step(0)
        trail1.append(fixed.reward_model.theta.copy())
    np.testing.assert_array_equal(np.stack(trail0), np.stack(trail1))


# -- Retrieval -----------------------------------------------------------------------------


def _retrieval_mu(env: RetrievalBanditEnv, user: np.ndarray, items: np.ndarray) -> np.ndarray:
    m = env.reward_model
    x, a = user.astype(np.float64), items.astype(np.float64)
    logit = -1.5 + np.einsum("i,ij,kj->k", x, m.affinity, a) + 0.3 * a @ m.popularity
    logit += np.tanh((m.taste_context @ x)[None, :] * (a @ m.taste_action.T)) @ m.taste_mix
    return 1.0 / (1.0 + np.exp(-logit))


def test_retrieval_change_point_moves_tastes_not_items_and_refits_retrieval() -> None:
    env = RetrievalBanditEnv(
        n_actions=400, candidate_size=32, random_fraction=0.0, drift={"kind": "abrupt", "every": 10}
    )
    obs, _ = env.reset(seed=4)
    items, first = env.items, env.reward_model
    rng = _drift_rng(4)
    affinity = rng.standard_normal((16, 16)) / 16.0
    for t in range(25):
        if t == 10:
            assert env.reward_model is not first
            np.testing.assert_allclose(env.reward_model.affinity, affinity, atol=1e-12)
        assert env.items is items
        # The retrieved candidates are the top of the current retrieval score.
        scores = env.retrieval_scores(obs["context"])
        chosen = np.zeros(400, dtype=bool)
        chosen[env.candidate_ids] = True
        assert scores[chosen].min() >= scores[~chosen].max()
        mu = _retrieval_mu(env, obs["context"], obs["candidates"])
        obs, _, _, _, info = env.step(0)
        assert info["optimal_action"] == int(np.argmax(mu))
        assert info["best_expected_reward"] == pytest.approx(mu.max(), abs=1e-12)
        np.testing.assert_allclose(info["expected_rewards"], mu, atol=1e-12)
    # The refit retrieval stage still finds good candidates for the new tastes.
    best = []
    for _ in range(100):
        best.append(env.step(0)[4]["best_expected_reward"])
    assert np.mean(best) > 0.8


def test_retrieval_gradual_drift_is_reproducible_and_retrieval_follows() -> None:
    def trail(seed: int) -> np.ndarray:
        env = RetrievalBanditEnv(
            n_actions=200, candidate_size=20, random_fraction=0.0, drift=Drift.gradual(0.1)
        )
        obs, _ = env.reset(seed=seed)
        out = []
        for _ in range(10):
            # Retrieval tracks the current affinity: the candidates are its current top.
            noisy = env.reward_model.affinity + 0.5 / 16 * env._retrieval_error
            u, s, vt = np.linalg.svd(noisy)
            exact = env.items @ (vt[:4].T @ ((u[:, :4] * s[:4]).T @ obs["context"]))
            np.testing.assert_allclose(env.retrieval_scores(obs["context"]), exact, atol=1e-4)
            chosen = np.zeros(200, dtype=bool)
            chosen[env.candidate_ids] = True
            scores = env.retrieval_scores(obs["context"])
            assert scores[chosen].min() >= scores[~chosen].max()
            obs, *_ = env.step(0)
            out.append(env.reward_model.affinity.copy())
        return np.stack(out)

    a, b = trail(0), trail(0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # moves every round
    assert not np.allclose(trail(1), a)


# -- vector envs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("Bandexa/Synthetic-v0", {"drift": {"kind": "abrupt", "every": 6}}),
        ("Bandexa/Synthetic-v0", {"drift": {"kind": "gradual", "rate": 0.1}}),
        (
            "Bandexa/Retrieval-v0",
            {"n_actions": 200, "candidate_size": 16, "drift": {"kind": "abrupt", "at": [4, 9]}},
        ),
        (
            "Bandexa/Retrieval-v0",
            {"n_actions": 200, "candidate_size": 16, "drift": {"kind": "gradual", "rate": 0.1}},
        ),
    ],
)
def test_vector_sub_envs_sharing_a_problem_drift_identically(env_id: str, kwargs: dict) -> None:
    vec = gym.make_vec(env_id, num_envs=3, **kwargs)
    single = gym.make(env_id, **kwargs).unwrapped
    vec.reset(seed=11)
    single.reset(seed=11)
    subs = [e.unwrapped for e in vec.envs]
    initial = subs[0].reward_model
    for _ in range(12):
        vec.step(np.zeros(3, dtype=np.int64))
        single.step(0)
        for field in ("theta", "affinity"):
            if hasattr(initial, field):
                values = [getattr(e.reward_model, field) for e in subs]
                for value in values[1:]:
                    np.testing.assert_array_equal(value, values[0])
                np.testing.assert_array_equal(values[0], getattr(single.reward_model, field))
    assert subs[0].reward_model is not initial
    vec.close()


def test_vector_sub_envs_with_their_own_problems_drift_apart() -> None:
    vec = gym.make_vec(
        "Bandexa/Synthetic-v0", num_envs=2, problem="per_env", drift={"kind": "abrupt", "every": 3}
    )
    vec.reset(seed=0)
    for _ in range(4):
        vec.step(np.zeros(2, dtype=np.int64))
    a, b = (e.unwrapped.reward_model.theta for e in vec.envs)
    assert not np.allclose(a, b)
    vec.close()
