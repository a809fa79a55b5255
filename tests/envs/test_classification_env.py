"""ClassificationBanditEnv on a tiny in-memory dataset: rewards, encoding, seeding, input."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import ClassificationBanditEnv

X = np.array(
    [[0.0, 10.0], [1.0, 30.0], [2.0, 10.0], [3.0, 50.0], [4.0, 10.0], [5.0, 70.0]],
    dtype=np.float64,
)
Y = np.array(["b", "a", "c", "a", "b", "c"])


def _rows_played(env: ClassificationBanditEnv, seed: int, rounds: int) -> list[int]:
    env.reset(seed=seed)
    rows = []
    for _ in range(rounds):
        rows.append(env._round.payload["index"])
        env.step(0)
    return rows


def test_right_class_pays_one_and_classes_are_sorted_and_compact() -> None:
    env = ClassificationBanditEnv(X, Y)
    assert env.class_names == ("a", "b", "c") and env.n_classes == 3
    assert env.action_space.n == 3
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["candidates"], np.eye(3, dtype=np.float32))
    rng = np.random.default_rng(0)
    for _ in range(200):
        row = env._round.payload["index"]
        true = env.class_names.index(str(Y[row]))
        action = int(rng.integers(3))
        obs, reward, _, _, info = env.step(action)
        assert reward == float(action == true) == info["expected_reward"]
        assert info["optimal_action"] == true and info["best_expected_reward"] == 1.0
        assert info["regret"] == 1.0 - reward
        np.testing.assert_array_equal(info["expected_rewards"], np.eye(3)[true])


def test_integer_labels_with_gaps_become_consecutive_arms() -> None:
    y = np.array([7, 1, 3, 1, 7, 3])
    env = ClassificationBanditEnv(X, y)
    assert env.class_names == (1, 3, 7) and env.action_space.n == 3
    env.reset(seed=0)
    for _ in range(30):
        row = env._round.payload["index"]
        *_, info = env.step(0)
        assert info["optimal_action"] == {1: 0, 3: 1, 7: 2}[int(y[row])]


def test_contexts_are_standardized_rows_fitted_on_the_rows_in_use() -> None:
    env = ClassificationBanditEnv(X, Y)
    mean, std = X.mean(axis=0), X.std(axis=0)
    np.testing.assert_allclose(env.feature_offset, mean)
    np.testing.assert_allclose(env.feature_scale, std)
    obs, _ = env.reset(seed=1)
    for _ in range(20):
        row = env._round.payload["index"]
        assert obs["context"].dtype == np.float32
        np.testing.assert_allclose(obs["context"], (X[row] - mean) / std, rtol=1e-6)
        obs, *_ = env.step(0)
    raw = ClassificationBanditEnv(X, Y, standardize=False)
    obs, _ = raw.reset(seed=1)
    np.testing.assert_array_equal(obs["context"], X[raw._round.payload["index"]].astype(np.float32))
    # A constant column is centred, not divided by zero.
    const = ClassificationBanditEnv(np.c_[X, np.full(6, 4.0)], Y)
    obs, _ = const.reset(seed=0)
    assert obs["context"][2] == 0.0 and const.feature_scale[2] == 1.0


def test_rows_are_drawn_with_replacement_uniformly_and_seeded() -> None:
    env = ClassificationBanditEnv(X, Y)
    rows = _rows_played(env, 0, 3000)
    counts = np.bincount(rows, minlength=6)
    assert (np.abs(counts / 3000 - 1 / 6) < 0.03).all()
    assert any(a == b for a, b in zip(rows, rows[1:], strict=False))  # repeats happen
    assert _rows_played(ClassificationBanditEnv(X, Y), 0, 50) == rows[:50]
    assert _rows_played(env, 1, 50) != rows[:50]
    assert _rows_played(env, 0, 50) == rows[:50]  # a seeded reset replays


def test_reward_matrix_sets_rewards_and_the_oracle() -> None:
    matrix = np.array([[0.2, 0.9, 0.0], [1.0, 0.5, 0.1], [0.3, 0.3, 0.8]])
    env = ClassificationBanditEnv(X, Y, reward_matrix=matrix)
    env.reset(seed=0)
    for t in range(60):
        true = env.class_names.index(str(Y[env._round.payload["index"]]))
        _, reward, _, _, info = env.step(t % 3)
        assert reward == matrix[true, t % 3]
        assert info["optimal_action"] == int(np.argmax(matrix[true]))
        assert info["best_expected_reward"] == matrix[true].max()
        assert info["regret"] == pytest.approx(matrix[true].max() - matrix[true, t % 3])


def test_gaussian_noise() -> None:
    env = ClassificationBanditEnv(X, Y, noise="gaussian", noise_level=0.5)
    env.reset(seed=0)
    noise = []
    for _ in range(3000):
        _, reward, _, _, info = env.step(1)
        noise.append(reward - info["expected_reward"])
    assert np.std(noise) == pytest.approx(0.5, rel=0.05)
    assert abs(np.mean(noise)) < 0.03


def test_bernoulli_noise_flips_outcomes_and_the_oracle_says_so() -> None:
    matrix = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    env = ClassificationBanditEnv(X, Y, reward_matrix=matrix, noise="bernoulli", noise_level=0.2)
    expected = 0.8 * matrix + 0.2 * (1 - matrix)
    np.testing.assert_allclose(env.expected_reward_matrix, expected)
    env.reset(seed=0)
    sums: dict[tuple[int, int], list[float]] = {}
    for t in range(6000):
        true = env.class_names.index(str(Y[env._round.payload["index"]]))
        _, reward, _, _, info = env.step(t % 3)
        assert reward in (0.0, 1.0)
        assert info["expected_reward"] == pytest.approx(expected[true, t % 3])
        sums.setdefault((true, t % 3), []).append(reward)
    for (true, action), rewards in sums.items():
        assert np.mean(rewards) == pytest.approx(expected[true, action], abs=0.06)


def test_inputs_are_copied() -> None:
    x, y = X.copy(), Y.copy()
    env = ClassificationBanditEnv(x, y, standardize=False)
    x[:] = 99.0
    y[:] = "z"
    obs, _ = env.reset(seed=0)
    assert obs["context"].max() < 99 and env.class_names == ("a", "b", "c")


def test_gym_make_with_arrays_passes_the_checkers() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("Bandexa/Classification-v0", X=X, y=Y)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # standardized: unbounded
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"X": X[:5], "y": Y}, ValueError, "X and y must have the same length"),
        ({"X": np.where(X == 3.0, np.nan, X), "y": Y}, ValueError, r"X must be finite; X\[3, 0\]"),
        ({"X": np.where(X == 3.0, np.inf, X), "y": Y}, ValueError, "X must be finite"),
        ({"X": X, "y": np.array(["a"] * 6)}, ValueError, "y must hold at least 2 distinct"),
        ({"X": X.astype(str), "y": Y}, ValueError, "X must be a 2-D array of real numbers"),
        ({"X": X.astype(complex), "y": Y}, ValueError, "X must be a 2-D array of real numbers"),
        ({"X": X[:, 0], "y": Y}, ValueError, r"X must be a 2-D array \(N, d\)"),
        ({"X": X, "y": np.arange(6.0)}, ValueError, r"y must hold integer.*y.astype\(int\)"),
        ({"X": X, "y": np.array([0, 1, np.nan, 0, 1, 0])}, ValueError, "y holds NaN"),
        ({"X": X, "y": Y.reshape(3, 2)}, ValueError, "y must be a 1-D array"),
        ({"X": X, "y": np.array([1, "a", 2, 1, 2, 1], dtype=object)}, ValueError, "only str"),
        ({"X": X}, ValueError, "y is missing"),
        ({"y": Y}, ValueError, "X is missing"),
        ({}, ValueError, "X is missing"),
        ({"X": X, "y": Y, "dataset": "letter"}, ValueError, "either X and y, or dataset"),
        ({"X": X, "y": Y, "split": "test"}, ValueError, "split=, root= and download= apply to"),
        ({"X": X, "y": Y, "download": True}, ValueError, "split=, root= and download= apply to"),
        ({"dataset": "satimage", "download": "yes"}, TypeError, "download must be True or False"),
        ({"dataset": "iris"}, ValueError, "dataset must be one of"),
        (
            {"X": X, "y": Y, "reward_matrix": np.eye(2)},
            ValueError,
            r"reward_matrix must be .*\(3, 3\)",
        ),
        ({"X": X, "y": Y, "reward_matrix": np.full((3, 3), np.nan)}, ValueError, "reward_matrix"),
        (
            {"X": X, "y": Y, "reward_matrix": 2 * np.eye(3), "noise": "bernoulli"},
            ValueError,
            r"\[0, 1\]",
        ),
        ({"X": X, "y": Y, "noise": "poisson"}, ValueError, "noise must be None"),
        ({"X": X, "y": Y, "noise_level": 0.1}, ValueError, "noise_level applies with"),
        ({"X": X, "y": Y, "noise": "gaussian", "noise_level": -1.0}, ValueError, "noise_level"),
        ({"X": X, "y": Y, "noise": "bernoulli", "noise_level": 0.7}, ValueError, r"\[0, 0.5\]"),
        (
            {"X": X, "y": Y, "noise": "gaussian", "noise_level": "0.1"},
            TypeError,
            r"noise_level \(a standard deviation\) must be a real number",
        ),
        ({"X": X, "y": Y, "standardize": "yes"}, TypeError, "standardize must be True or False"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ClassificationBanditEnv(**kwargs)
