"""How default agents hold up across problems they were not tuned on.

Runs agents (with optional setting variants) on a set of problems for several seeds and
prints each agent's cumulative regret normalized by uniform's on the same seeds (mean and
standard deviation over seeds, and the worst seed). This is the harness behind the
"Robust defaults" section of docs/performance.md.

    python benchmarks/robust_defaults.py --problems adult satimage synthetic-1.5 \\
        --agents linear_ts neural_linear_ts --seeds 0 1 2 --workers 2

Variants: ``--variant NAME:AGENT:KEY=VALUE,KEY=VALUE`` adds an agent built with those
settings under NAME (values are Python literals).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def categorical_problem(seed: int = 0, n: int = 20_000) -> dict[str, Any]:
    """Many sparse binary features, two arms with asymmetric risk (``Classification-v0``).

    Twelve categorical attributes with 2 to 6 levels each, one-hot encoded (46 binary
    columns, 12 of them 1 per row). The label is 1 with probability ``sigmoid(w · x − 1)``
    for weights ``w`` ~ N(0, 1.5²) on every level (drawn from ``seed``). Arm 0 is safe (0.5
    whatever the label), arm 1 is risky (+1 on label 1, −1 on label 0): the risky arm is
    right where ``P(label 1 | x) > 0.75``.
    """
    rng = np.random.default_rng(seed)
    levels = rng.integers(2, 7, size=12)
    codes = np.stack([rng.integers(0, k, size=n) for k in levels], axis=1)
    offsets = np.concatenate([[0], np.cumsum(levels)[:-1]])
    X = np.zeros((n, int(levels.sum())), dtype=np.float32)
    X[np.arange(n)[:, None], codes + offsets] = 1.0
    w = rng.normal(0.0, 1.5, size=X.shape[1])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ w - 1.0)))).astype(np.int64)
    return {"X": X, "y": y, "reward_matrix": [[0.5, -1.0], [0.5, 1.0]]}


def unbalanced_problem(seed: int = 0, n: int = 20_000) -> dict[str, Any]:
    """Strongly unbalanced classes (``Classification-v0``): five Gaussian classes in 8
    dimensions with priors 0.86, 0.08, 0.03, 0.02, 0.01 (unit-variance clusters around
    means drawn from N(0, 1.5²) from ``seed``); reward 1 for the right class."""
    rng = np.random.default_rng(seed)
    priors = np.array([0.86, 0.08, 0.03, 0.02, 0.01])
    y = rng.choice(len(priors), size=n, p=priors)
    means = rng.normal(0.0, 1.5, size=(len(priors), 8))
    X = (means[y] + rng.normal(size=(n, 8))).astype(np.float32)
    return {"X": X, "y": y}


PROBLEMS: dict[str, tuple[str, dict[str, Any], int]] = {
    # name: (env id, env kwargs, rounds)
    "adult": ("Bandexa/Adult-v0", {}, 2000),
    "letter": ("Bandexa/Letter-v0", {}, 2000),
    "satimage": ("Bandexa/Satimage-v0", {}, 2000),
    "pendigits": ("Bandexa/Pendigits-v0", {}, 2000),
    "synthetic-0.5": ("Bandexa/Synthetic-v0", {"interaction_scale": 0.5}, 4000),
    "synthetic-1.5": ("Bandexa/Synthetic-v0", {"interaction_scale": 1.5}, 4000),
    "retrieval": ("Bandexa/Retrieval-v0", {}, 5000),
    "mnist": ("Bandexa/MNIST-v0", {}, 4096),
    # Reward units: the same problems with rescaled or shifted rewards.
    "synthetic-1.5-x100": (
        "Bandexa/Synthetic-v0",
        {"interaction_scale": 1.5, "_affine": (100.0, 0.0)},
        4000,
    ),
    "synthetic-1.5-x0.01": (
        "Bandexa/Synthetic-v0",
        {"interaction_scale": 1.5, "_affine": (0.01, 0.0)},
        4000,
    ),
    "synthetic-1.5+100": (
        "Bandexa/Synthetic-v0",
        {"interaction_scale": 1.5, "_affine": (1.0, 100.0)},
        4000,
    ),
    "satimage-x50": ("Bandexa/Satimage-v0", {"_affine": (50.0, 0.0)}, 2000),
    "retrieval-x100": ("Bandexa/Retrieval-v0", {"_affine": (100.0, 0.0)}, 5000),
    "retrieval-x0.01": ("Bandexa/Retrieval-v0", {"_affine": (0.01, 0.0)}, 5000),
    "retrieval+100": ("Bandexa/Retrieval-v0", {"_affine": (1.0, 100.0)}, 5000),
    # Hard exploration with rare rewards on a scale of tens.
    "wheel": ("Bandexa/Wheel-v0", {}, 2000),
    # Riquelme et al.'s grid of the wheel's radius.
    **{f"wheel-{d}": ("Bandexa/Wheel-v0", {"delta": d}, 2000) for d in (0.5, 0.7, 0.9, 0.95, 0.99)},
    # Shapes the classic suite lacks (generators above, fixed data: seed 0).
    "categorical": ("Bandexa/Classification-v0", categorical_problem(), 2000),
    "unbalanced": ("Bandexa/Classification-v0", unbalanced_problem(), 2000),
}


@dataclass(frozen=True)
class Job:
    problem: str
    agent: str
    base: str
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    rounds: int | None = None


def run_job(job: Job) -> tuple[Job, float, float, float]:
    import gymnasium as gym
    import torch

    import bandexa_gym  # noqa: F401
    from bandexa_gym.agents import make_agent
    from bandexa_gym.envs import RewardAffine
    from bandexa_gym.runner import run

    torch.set_num_threads(1)
    env_id, kwargs, rounds = PROBLEMS[job.problem]
    kwargs = dict(kwargs)
    affine = kwargs.pop("_affine", None)
    env = gym.make(env_id, **kwargs)
    if affine is not None:
        env = RewardAffine(env, scale=affine[0], shift=affine[1])
    agent = make_agent(job.base, env, seed=job.seed, **job.settings)
    start = time.perf_counter()
    result = run(agent, env, job.rounds or rounds, seed=job.seed)
    scale = 1.0 if affine is None else affine[0]
    return (
        job,
        float(result.regrets.sum()) / scale,
        result.decisions_per_second,
        time.perf_counter() - start,
    )


def _settings(text: str) -> dict[str, Any]:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS)[:6], choices=list(PROBLEMS))
    parser.add_argument("--agents", nargs="+", default=["uniform", "linear_ts", "neural_linear_ts"])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:AGENT:SETTINGS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=None, help="override every problem's rounds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    agents: dict[str, tuple[str, dict[str, Any]]] = {a: (a, {}) for a in args.agents}
    agents.setdefault("uniform", ("uniform", {}))
    for spec in args.variant:
        name, base, settings = (spec.split(":", 2) + [""])[:3]
        agents[name] = (base, _settings(settings))
    jobs = [
        Job(p, name, base, settings, seed, args.rounds)
        for p in args.problems
        for name, (base, settings) in agents.items()
        for seed in args.seeds
    ]
    results: dict[tuple[str, str], dict[int, float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        for job, regret, rate, _ in pool.map(run_job, jobs):
            results.setdefault((job.problem, job.agent), {})[job.seed] = regret
            rates.setdefault((job.problem, job.agent), []).append(rate)
    names = [n for n in agents if n != "uniform"]
    print(f"# uniform-normalized regret, mean ± std over seeds {args.seeds} (worst seed)")
    print(f"{'problem':22s}" + "".join(f"{n:>28s}" for n in names))
    for p in args.problems:
        base = results[(p, "uniform")]
        cells = []
        for n in names:
            ratio = np.array([results[(p, n)][s] / base[s] for s in args.seeds])
            cells.append(f"{ratio.mean():.3f} ± {ratio.std():.3f} ({ratio.max():.3f})")
        print(f"{p:22s}" + "".join(f"{c:>28s}" for c in cells))
    print(
        "# decisions/s (mean): "
        + "; ".join(
            f"{n} " + ", ".join(f"{p}={np.mean(rates[(p, n)]):.0f}" for p in args.problems)
            for n in names
        )
    )
    print(f"# {len(jobs)} runs in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault(
        "BANDEXA_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    )
    main()
