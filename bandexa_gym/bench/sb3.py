"""stable-baselines3 (and sb3-contrib) baselines measured like the bandit agents.

An SB3 algorithm (PPO, A2C or DQN, or sb3-contrib's MaskablePPO) is trained online on a
``Bandexa/*`` env for ``horizon`` rounds with ``model.learn(total_timesteps=horizon)``. Every
round it plays is a decision on the same round stream the bandit agents see, and is recorded
by the same :class:`~bandexa_gym.envs.wrappers.RegretMonitor` that
:func:`bandexa_gym.bench.runner.run` uses, so its :class:`~bandexa_gym.bench.runner.RunResult` is
comparable row for row.

Wrapping, inside out: ``env -> RegretMonitor -> FlattenCandidates -> (SB3's Monitor,
DummyVecEnv)``. ``FlattenCandidates`` turns the Dict observation into one flat ``Box``, so
every algorithm uses ``"MlpPolicy"`` (DQN does not take a Dict observation with its default
policy, and one code path keeps them comparable). The policies see the ``action_mask`` as
input features but SB3 cannot mask actions; on envs whose candidate sets are padded a
baseline can play a masked row and is charged its regret. ``sb3c:MaskablePPO`` (sb3-contrib,
extra ``[rl]``) is PPO that reads the env's ``action_masks()`` (the current round's mask,
forwarded through the wrappers) before every action and never plays a masked row.

Seeding: the model is built with ``seed=model_seed`` (default ``seed``; ``bandexa-bench``
passes :func:`~bandexa_gym.bench.runner.agent_seed` of the run seed), which seeds Python, NumPy
and torch and the action space; the ``DummyVecEnv`` is then seeded with ``seed``, so its
first ``reset`` inside ``learn`` calls ``env.reset(seed=seed)``: the round stream is
exactly the one ``bench.run(..., seed=seed)`` plays. Later resets (only after a
``max_episode_steps`` truncation) are unseeded and continue the stream, as in ``bench.run``.

Example:
    >>> import gymnasium as gym
    >>> import bandexa_gym
    >>> from bandexa_gym.bench.sb3 import run_sb3
    >>> result = run_sb3("PPO", gym.make("Bandexa/Synthetic-v0"), 256, seed=0)
    >>> result.cumulative_regret[-1]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

from bandexa_gym.bench.runner import RunResult, check_horizon, measure, monitored
from bandexa_gym.envs.wrappers import FlattenCandidates

__all__ = [
    "SB3_ALGORITHMS",
    "SB3C_ALGORITHMS",
    "SB3C_PREFIX",
    "SB3_DEFAULTS",
    "SB3_PREFIX",
    "SB3_NAMES",
    "RL_EXTRA",
    "is_sb3_name",
    "make_sb3_model",
    "run_sb3",
    "sb3_algorithm",
    "sb3_class",
    "sb3_hyperparameters",
    "sb3_name",
]

SB3_PREFIX = "sb3:"
"""Prefix of the benchmark names of SB3 baselines (``sb3:PPO``, ``sb3:A2C``, ``sb3:DQN``)."""

SB3_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "DQN": DQN}
"""The supported SB3 algorithm classes by name."""

SB3C_PREFIX = "sb3c:"
"""Prefix of the benchmark names of sb3-contrib baselines (``sb3c:MaskablePPO``)."""

SB3C_ALGORITHMS: dict[str, str] = {"MaskablePPO": "sb3_contrib.MaskablePPO"}
"""The supported sb3-contrib algorithms by name, as import paths (imported on use)."""

SB3_NAMES: tuple[str, ...] = (
    *(SB3_PREFIX + algo for algo in SB3_ALGORITHMS),
    *(SB3C_PREFIX + algo for algo in SB3C_ALGORITHMS),
)
"""Every benchmark name of an RL baseline: ``sb3:PPO``, ``sb3:A2C``, ``sb3:DQN``,
``sb3c:MaskablePPO``."""

RL_EXTRA = 'pip install "bandexa-gym[rl]"'
"""How to install sb3-contrib (and TorchRL): the ``[rl]`` extra."""

SB3_DEFAULTS: dict[str, dict[str, Any]] = {
    # Rounds are independent: no bootstrapping (gamma=0), so the value function is a
    # reward baseline and GAE reduces to r - V(s). Short rollouts so that a horizon of a
    # few thousand rounds gives tens of policy updates.
    "PPO": {
        "gamma": 0.0,
        "n_steps": 128,
        "batch_size": 64,
        "n_epochs": 4,
        "learning_rate": 1e-3,
        "ent_coef": 0.01,
    },
    # PPO with invalid-action masking: PPO's settings.
    "MaskablePPO": {
        "gamma": 0.0,
        "n_steps": 128,
        "batch_size": 64,
        "n_epochs": 4,
        "learning_rate": 1e-3,
        "ent_coef": 0.01,
    },
    "A2C": {
        "gamma": 0.0,
        "n_steps": 16,
        "learning_rate": 1e-3,
        "ent_coef": 0.01,
    },
    # Q(s, a) regresses the immediate reward (gamma=0). Learn from the 64th round on, one
    # gradient step per round, epsilon-greedy decaying over the first 20% of the horizon.
    # The replay buffer is capped at the horizon (and 10,000) instead of SB3's 1e6
    # observations, which would be gigabytes on MNIST.
    "DQN": {
        "gamma": 0.0,
        "learning_rate": 1e-3,
        "batch_size": 64,
        "learning_starts": 64,
        "train_freq": 1,
        "gradient_steps": 1,
        "target_update_interval": 250,
        "exploration_fraction": 0.2,
        "exploration_final_eps": 0.05,
        "buffer_size": 10_000,
    },
}
"""Small-horizon hyper-parameters per algorithm; anything here can be overridden."""


def is_sb3_name(name: str) -> bool:
    """Whether ``name`` is a benchmark name of a supported RL baseline (``"sb3:PPO"``,
    ``"sb3c:MaskablePPO"``...)."""
    return name in SB3_NAMES


def sb3_algorithm(name: str) -> str:
    """The algorithm of a baseline name: ``"sb3:PPO"`` or ``"PPO"`` -> ``"PPO"``,
    ``"sb3c:MaskablePPO"`` -> ``"MaskablePPO"``.

    Raises:
        ValueError: Not a supported algorithm (or an algorithm under the other prefix).
    """
    if name in SB3_NAMES or name in SB3_ALGORITHMS or name in SB3C_ALGORITHMS:
        return name.split(":", 1)[-1]
    raise ValueError(f"unknown SB3 baseline {name!r}; supported: {', '.join(SB3_NAMES)}")


def sb3_name(algo: str) -> str:
    """The benchmark name of an algorithm: ``"PPO"`` -> ``"sb3:PPO"``,
    ``"MaskablePPO"`` -> ``"sb3c:MaskablePPO"``."""
    algo = sb3_algorithm(algo)
    return (SB3_PREFIX if algo in SB3_ALGORITHMS else SB3C_PREFIX) + algo


def sb3_class(algo: str) -> type[BaseAlgorithm]:
    """The algorithm class of a baseline name, importing sb3-contrib for ``sb3c:`` names.

    Raises:
        ValueError: Not a supported algorithm.
        ImportError: An ``sb3c:`` algorithm without sb3-contrib installed (extra ``[rl]``).
    """
    algo = sb3_algorithm(algo)
    if algo in SB3_ALGORITHMS:
        return SB3_ALGORITHMS[algo]
    module, _, attribute = SB3C_ALGORITHMS[algo].rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except ImportError as err:
        raise ImportError(
            f"{SB3C_PREFIX}{algo} needs sb3-contrib, which is not installed ({err}): {RL_EXTRA}"
        ) from err


def sb3_hyperparameters(algo: str, horizon: int | None = None, **overrides: Any) -> dict[str, Any]:
    """The hyper-parameters :func:`make_sb3_model` uses: defaults, then ``overrides``.

    Args:
        algo: ``"PPO"``, ``"A2C"``, ``"DQN"`` or ``"MaskablePPO"`` (or a benchmark name).
        horizon: Rounds the model will be trained for; caps DQN's ``buffer_size``.
        **overrides: Keyword arguments of the SB3 algorithm's constructor.

    Returns:
        Constructor keyword arguments (without ``policy``, ``env``, ``seed``, ``device``).

    Raises:
        ValueError: Unknown algorithm, or an override the algorithm does not accept.
        ImportError: An ``sb3c:`` algorithm without sb3-contrib.
    """
    algo = sb3_algorithm(algo)
    params = dict(SB3_DEFAULTS[algo])
    if algo == "DQN" and horizon is not None:
        params["buffer_size"] = max(1, min(params["buffer_size"], int(horizon)))
    accepted = set(inspect.signature(sb3_class(algo).__init__).parameters)
    reserved = {"self", "policy", "env", "seed", "device", "_init_setup_model"}
    unknown = sorted(set(overrides) - (accepted - reserved))
    if unknown:
        raise ValueError(
            f"{sb3_name(algo)} does not accept {', '.join(unknown)}; settable: "
            f"{', '.join(sorted(accepted - reserved))}"
        )
    params.update(overrides)
    return params


def make_sb3_model(
    algo: str,
    env: gym.Env,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    horizon: int | None = None,
    **overrides: Any,
) -> BaseAlgorithm:
    """Build an SB3 model on ``env`` flattened by ``FlattenCandidates``.

    ``env`` should already be wrapped in ``RegretMonitor`` if its rounds are to be recorded
    (:func:`run_sb3` does that).

    Args:
        algo: ``"PPO"``, ``"A2C"``, ``"DQN"`` or ``"MaskablePPO"`` (or a benchmark name).
        env: A ``Bandexa/*`` env (Dict observation) or one already flattened to a ``Box``.
        seed: Seeds SB3's generators and the env's first reset inside ``learn``.
        device: Torch device of the policy.
        horizon: Rounds the model will be trained for (caps DQN's replay buffer).
        **overrides: Constructor arguments replacing :data:`SB3_DEFAULTS`.

    Returns:
        The SB3 model (``verbose=0``, ``"MlpPolicy"``).
    """
    algo = sb3_algorithm(algo)
    params = sb3_hyperparameters(algo, horizon, **overrides)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = FlattenCandidates(env)
    params.setdefault("verbose", 0)
    return sb3_class(algo)("MlpPolicy", env, seed=seed, device=device, **params)


class _RoundCallback(BaseCallback):
    """Stops ``learn`` after exactly ``horizon`` rounds and drives a progress bar."""

    def __init__(self, horizon: int, bar: tqdm) -> None:
        super().__init__()
        self.horizon = horizon
        self.bar = bar
        self.rounds = 0

    def _on_step(self) -> bool:
        played = min(self.num_timesteps, self.horizon) - self.rounds
        if played > 0:
            self.bar.update(played)
            self.rounds += played
        return self.num_timesteps < self.horizon


def run_sb3(
    algo: str,
    env: gym.Env,
    horizon: int,
    *,
    seed: int | None = None,
    model_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Train an SB3 baseline online for ``horizon`` rounds and record reward and regret.

    The model plays and learns on the live round stream: ``model.learn(total_timesteps=
    horizon)``, stopped by a callback after exactly ``horizon`` rounds (on-policy
    algorithms would otherwise round up to a whole rollout).

    Args:
        algo: ``"PPO"``, ``"A2C"``, ``"DQN"`` or ``"MaskablePPO"`` (or a benchmark name).
        env: A ``Bandexa/*`` env; it is wrapped in ``RegretMonitor`` unless it already is.
        horizon: Number of rounds, >= 1.
        seed: Seeds the round stream (the env's first reset) and, without ``model_seed``,
            SB3's generators.
        model_seed: Seeds SB3's generators (its exploration) on a stream other than the
            env's; None: ``seed``.
        device: Torch device of the policy.
        progress: Show a tqdm progress bar.
        desc: Label of the progress bar.
        **overrides: SB3 constructor arguments replacing :data:`SB3_DEFAULTS`.

    Returns:
        A :class:`bandexa_gym.bench.runner.RunResult` with exactly ``horizon`` rounds; ``seconds``
        times ``learn`` (acting, env steps and gradient updates), not model construction.

    Raises:
        ValueError: ``horizon < 1``, unknown algorithm or hyper-parameter.
        ImportError: An ``sb3c:`` algorithm without sb3-contrib.
    """
    check_horizon(horizon)
    algo = sb3_algorithm(algo)
    env = monitored(env)
    if model_seed is None:
        model_seed = seed
    model = make_sb3_model(algo, env, seed=model_seed, device=device, horizon=horizon, **overrides)
    # The model's constructor handed its seed to its DummyVecEnv; give it the run's seed
    # right before learn, whose first reset() passes it on as env.reset(seed=seed).
    if seed is not None or model_seed is not None:
        model.get_env().seed(seed)

    def play(env: gym.Env, bar: tqdm) -> None:
        model.learn(total_timesteps=horizon, callback=_RoundCallback(horizon, bar))

    return measure(env, horizon, play, name=sb3_name(algo), seed=seed, progress=progress, desc=desc)
