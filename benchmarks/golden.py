"""Golden output: the numbers a refactor must leave identical, to the last printed digit.

Prints the cumulative regret of every registered agent on short runs of Synthetic-v0,
Adult-v0 and MNIST-v0 (where the classic suite runs it: its n/a cells stay out, and so do
agents whose library is not installed), then the ``predict`` output of each agent that
saves and predicts, after a save and a load. ``benchmarks/golden.txt`` holds the recorded
output; a change of behaviour re-records it in the commit that explains why.

    BANDEXA_DATA=../shared/data python benchmarks/golden.py | diff benchmarks/golden.txt -

Float results can differ between CPUs (BLAS kernels differ): where an untouched main does
not reproduce golden.txt, re-record it there first, in a commit of its own.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import AGENTS, load_agent, make_agent
from bandexa_gym.bench import run
from bandexa_gym.grid.preflight import preflight
from bandexa_gym.grid.suites import CLASSIC, Problem

SEED = 0
DIGITS = 10
_CLASSIC = {p.env_id: p for p in CLASSIC.problems}
PROBLEMS = (
    Problem("synthetic", "Bandexa/Synthetic-v0", 150),
    Problem("adult", "Bandexa/Adult-v0", 150),
    Problem("mnist", "Bandexa/MNIST-v0", 60, skip=_CLASSIC["Bandexa/MNIST-v0"].skip),
)
"""Short runs: the whole script stays under 30 s on one core."""

NEURAL_SCHEDULE = {"warmup_random": 10, "train_every": 20, "optimizer_steps": 5}
"""A short training schedule, so that training bursts and rebuilds fall inside the runs."""


def _g(value: float) -> str:
    return f"{value:.{DIGITS}g}"


def _build(name: str, env: gym.Env):
    try:
        return make_agent(name, env, seed=SEED, **NEURAL_SCHEDULE)
    except TypeError:  # an agent without a training schedule
        return make_agent(name, env, seed=SEED)


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    agents = sorted(AGENTS)
    found = preflight(PROBLEMS, agents, {}, optional=agents)
    print("# cumulative regret (seed 0)")
    saved: dict[str, tuple] = {}
    for problem in PROBLEMS:
        env = gym.make(problem.env_id, **problem.env_kwargs)
        for name in agents:
            if (problem.name, name) in found.not_applicable:
                continue
            agent = _build(name, env)
            result = run(agent, env, problem.rounds, seed=SEED)
            print(f"{problem.name:<10} {name:<22} {_g(result.cumulative_regret[-1])}")
            if problem.name == "synthetic":
                saved[name] = (agent, env.reset(seed=SEED)[0])  # the same problem
    print("# predict after save and load (synthetic; mean and variance of candidates 0-2)")
    with tempfile.TemporaryDirectory() as folder:
        for name, (agent, obs) in saved.items():
            if not agent.capabilities.save or getattr(agent, "predict", None) is None:
                continue
            loaded = load_agent(agent.save(Path(folder) / "agent.safetensors"))
            mean, variance = (np.asarray(v, dtype=np.float64) for v in loaded.predict(obs))
            values = " ".join(_g(v) for v in (*mean[:3], *variance[:3]))
            print(f"{name:<22} {values}")


if __name__ == "__main__":
    main()
