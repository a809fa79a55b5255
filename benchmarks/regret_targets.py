"""Cumulative regret of NeuralLinearTS against LinearTS on each environment.

The runs behind the regret figures in docs/performance.md:

* ``Bandexa/Synthetic-v0`` with ``interaction_scale=1.5``, horizon 4000, seeds 0-2;
* ``Bandexa/MNIST-v0`` (the shared test split), horizon 4096;
* ``Bandexa/Retrieval-v0`` (10,000 items, 512 candidates), horizon 5000, with the
  moving-average expected reward of the chosen action after training starts.

    python benchmarks/regret_targets.py [--only synthetic mnist retrieval] [--scale 0.25]

``--scale`` shortens every horizon for a quick look. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run
from bandexa_gym.envs import RegretMonitor

PROBLEMS = {
    "synthetic": ("Bandexa/Synthetic-v0", {"interaction_scale": 1.5}, 4000, (0, 1, 2)),
    "mnist": ("Bandexa/MNIST-v0", {}, 4096, (0,)),
    "retrieval": ("Bandexa/Retrieval-v0", {}, 5000, (0,)),
}
AGENTS = ("neural_linear_ts", "linear_ts", "uniform")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every horizon")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    print(
        f"{'problem':<11}{'seed':>5}{'agent':>18}{'horizon':>9}{'cum. regret':>13}"
        f"{'ma reward':>11}{'ma E[r]':>9}{'seconds':>9}"
    )
    for key in args.only:
        env_id, env_kwargs, horizon, seeds = PROBLEMS[key]
        horizon = max(1, int(horizon * args.scale))
        for seed in seeds:
            for name in AGENTS:
                env = RegretMonitor(gym.make(env_id, **env_kwargs))
                result = run(make_agent(name, env, seed=seed), env, horizon, seed=seed)
                ma_expected = float(np.mean(env.expected_rewards[-500:]))
                print(
                    f"{key:<11}{seed:>5}{name:>18}{horizon:>9}"
                    f"{result.cumulative_regret[-1]:>13.1f}"
                    f"{result.moving_average_reward(500):>11.3f}{ma_expected:>9.3f}"
                    f"{result.seconds:>9.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
