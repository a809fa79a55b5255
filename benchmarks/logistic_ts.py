"""Regret and decisions/s of logistic_ts beside linear_ts and uniform on {0, 1}-reward problems.

The runs behind the logistic_ts figures in docs/performance.md: ``Bandexa/MNIST-v0``
(4,096 rounds) and the UCI classification problems ``Bandexa/Adult-v0``, ``Letter-v0``,
``Satimage-v0``, ``Pendigits-v0`` (2,000 rounds), every agent on the same rounds per seed,
one torch thread, one run at a time. Prints one row per (problem, seed, agent): cumulative
regret, its ratio to uniform's on the same seed, and decisions/s (whole rounds: decision,
learning and env step, wall time).

    python benchmarks/logistic_ts.py [--problems mnist adult] [--seeds 0 1 2]
        [--agents logistic_ts linear_ts uniform "logistic_ts:sample_scale=1.0"]

An agent given as ``NAME:KEY=VALUE,...`` is built with those settings (Python literals).
``--reference`` adds a row for the same linear model learned with *full information*:
per-arm logistic heads on ``[x; 1]`` updated every round with every arm's reward (the true
label revealed), refit every 200 rounds, playing the highest posterior-mean logit. No
bandit learner of that model can be expected to do better; it shows what the features
allow in that many rounds. Needs the data under ``BANDEXA_DATA`` (e.g. ``../shared/data``).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import ast
from typing import Any

import gymnasium as gym
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run
from bandexa_gym.posterior import LaplaceLogisticRegression

PROBLEMS: dict[str, tuple[str, int]] = {
    "mnist": ("Bandexa/MNIST-v0", 4096),
    "adult": ("Bandexa/Adult-v0", 2000),
    "letter": ("Bandexa/Letter-v0", 2000),
    "satimage": ("Bandexa/Satimage-v0", 2000),
    "pendigits": ("Bandexa/Pendigits-v0", 2000),
}
AGENTS = ("logistic_ts", "linear_ts", "uniform")


def parse_agent(text: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` -> (name, settings)."""
    name, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key.strip()] = ast.literal_eval(value.strip())
    return name, settings


def full_information_regret(env_id: str, horizon: int, seed: int) -> float:
    """Cumulative regret of per-arm logistic heads that see every arm's reward."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    n_arms = obs["candidates"].shape[0]
    heads = [LaplaceLogisticRegression(obs["context"].size + 1) for _ in range(n_arms)]
    rows: list[torch.Tensor] = []
    best: list[int] = []
    total = 0.0
    for t in range(horizon):
        x = torch.as_tensor(obs["context"], dtype=torch.float64).reshape(-1)
        x = torch.cat([x, x.new_ones(1)])
        means = torch.stack([head.predict(x[None])[0][0] for head in heads])
        obs, _, _, _, info = env.step(int(means.argmax()))
        total += info["regret"]
        rows.append(x)
        best.append(int(info["optimal_action"]))
        for arm, head in enumerate(heads):
            head.update(x, float(arm == best[-1]))
        if (t + 1) % 200 == 0:
            X, labels = torch.stack(rows), torch.tensor(best)
            for arm, head in enumerate(heads):
                head.rebuild([(X, (labels == arm).double())])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--agents", nargs="+", default=list(AGENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every horizon")
    parser.add_argument("--reference", action="store_true", help="add the full-information row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    print(f"{'problem':<10}{'seed':>5}  {'agent':<42}{'rounds':>7}{'regret':>10}"
          f"{'/ uniform':>10}{'dec/s':>9}")  # fmt: skip
    for key in args.problems:
        env_id, horizon = PROBLEMS[key]
        horizon = max(1, int(horizon * args.scale))
        for seed in args.seeds:
            results = {}
            for label in args.agents:
                name, settings = parse_agent(label)
                env = gym.make(env_id)
                agent = make_agent(name, env, seed=seed, **settings)
                results[label] = run(agent, env, horizon, seed=seed)
            uniform = next(
                (r.cumulative_regret[-1] for k, r in results.items() if k == "uniform"), None
            )
            rows = [
                (label, r.cumulative_regret[-1], f"{r.decisions_per_second:.0f}")
                for label, r in results.items()
            ]
            if args.reference:
                regret = full_information_regret(env_id, horizon, seed)
                rows.append(("full-information logistic (reference)", regret, "-"))
            for label, regret, rate in rows:
                ratio = f"{regret / uniform:.3f}" if uniform else "-"
                print(
                    f"{key:<10}{seed:>5}  {label:<42}{horizon:>7}{regret:>10.1f}{ratio:>10}"
                    f"{rate:>9}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
