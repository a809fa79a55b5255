"""Regret and decisions/s of the neural zoo agents: neural_ts, neural_ucb, bootstrapped_nn.

The runs behind their figures in docs/performance.md, next to uniform and linear_ts:

* ``synthetic``: ``Bandexa/Synthetic-v0`` (defaults), 4,000 rounds (target: ≤ 0.5 × uniform);
* ``synthetic15``: the same at ``interaction_scale=1.5`` (target: below linear_ts);
* ``mnist``: ``Bandexa/MNIST-v0`` (the shared test split), 4,096 rounds (targets: 888
  neural_ts, 898 neural_ucb, the Calvera figures; ≤ 0.5 × uniform for bootstrapped_nn);
* ``throughput``: decisions/s of a full round (decide, env step, learn, training bursts
  on the default schedule) on ``Bandexa/Synthetic-v0`` (K = 10) and ``Bandexa/Retrieval-v0``
  (K = 512), with the per-decision cost in O-notation.

    python benchmarks/neural_zoo.py [--only synthetic synthetic15 mnist throughput]
        [--agents neural_ts ...] [--seeds 0 1 2] [--scale 0.25] [--set nu=0.2 ...]

``--scale`` shortens every horizon for a quick look; ``--set`` passes settings to every
agent under test (not to the references). Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import ast

import gymnasium as gym
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run

ZOO = ("neural_ts", "neural_ucb", "bootstrapped_nn")
REFERENCES = {
    "synthetic": ("uniform", "linear_ts"),
    "synthetic15": ("uniform", "linear_ts"),
    "mnist": ("uniform",),
}
PROBLEMS = {
    "synthetic": ("Bandexa/Synthetic-v0", {}, 4000),
    "synthetic15": ("Bandexa/Synthetic-v0", {"interaction_scale": 1.5}, 4000),
    "mnist": ("Bandexa/MNIST-v0", {}, 4096),
}
THROUGHPUT = {"Bandexa/Synthetic-v0": 1000, "Bandexa/Retrieval-v0": 500}
COST = {
    "neural_ts": "O(K·P) per decision (P covered parameters: gradients + variances); O(P) update",
    "neural_ucb": "O(K·P) per decision, as neural_ts (no draw); O(P) update",
    "bootstrapped_nn": "O(M·K·c_f) per decision (M members' forward passes); O(1) update",
    "neural_linear_ts": "O(K·c_f + K·d²) per decision; O(d²) update",
    "neural_linear_ucb": "O(K·c_f + K·d²) per decision, as neural_linear_ts; O(d²) update",
    "neural_greedy": "O(K·c_f + K·d) per decision (posterior mean only); O(d²) update",
    "neural_epsilon_greedy": "O(K·c_f + K·d) per decision, as neural_greedy; O(d²) update",
    "linear_ts": "O(K·d²) per decision; O(d²) update",
    "linear_ucb": "O(K·d²) per decision (a variance per candidate); O(d²) update",
    "uniform": "O(K)",
}


def _setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def regret(args: argparse.Namespace, problem: str) -> None:
    env_id, env_kwargs, horizon = PROBLEMS[problem]
    horizon = max(1, int(horizon * args.scale))
    names = [*args.agents, *(() if args.no_references else REFERENCES[problem])]
    for seed in args.seeds:
        for name in names:
            env = gym.make(env_id, **env_kwargs)
            settings = args.settings if name in args.agents else {}
            result = run(make_agent(name, env, seed=seed, **settings), env, horizon, seed=seed)
            print(
                f"{problem:<12}{seed:>5}{name:>17}{horizon:>8}"
                f"{result.cumulative_regret[-1]:>13.1f}{result.moving_average_reward(500):>10.3f}"
                f"{result.decisions_per_second:>11.0f}{result.seconds:>9.1f}",
                flush=True,
            )


def throughput(args: argparse.Namespace) -> None:
    for env_id, rounds in THROUGHPUT.items():
        rounds = max(1, int(rounds * args.scale))
        for name in args.agents:
            env = gym.make(env_id)
            result = run(make_agent(name, env, seed=0, **args.settings), env, rounds, seed=0)
            print(
                f"{env_id:<22}{name:>17}{rounds:>7}{result.decisions_per_second:>11.0f}  "
                f"{COST.get(name, '')}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", choices=[*PROBLEMS, "throughput"], default=[*PROBLEMS, "throughput"]
    )
    parser.add_argument("--agents", nargs="+", default=list(ZOO))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every horizon")
    parser.add_argument("--set", nargs="*", default=[], help="agent settings, e.g. nu=0.2")
    parser.add_argument("--no-references", action="store_true", help="skip uniform/linear_ts")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    args.settings = dict(_setting(s) for s in args.set)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), settings {args.settings}")
    if any(p in PROBLEMS for p in args.only):
        print(
            f"{'problem':<12}{'seed':>5}{'agent':>17}{'horizon':>8}{'cum. regret':>13}"
            f"{'ma rew.':>10}{'dec/s':>11}{'seconds':>9}"
        )
    for problem in args.only:
        if problem in PROBLEMS:
            regret(args, problem)
    if "throughput" in args.only:
        print(f"{'env':<22}{'agent':>17}{'rounds':>7}{'dec/s':>11}  per-decision cost")
        throughput(args)


if __name__ == "__main__":
    main()
