"""Decisions per second of ``linear_ts`` and ``neural_linear_ts`` on Synthetic-v0, this checkout
against a reference checkout (an earlier version), timed alternately in the same run.

A refactor must not slow the agents down beyond measurement noise: each repetition runs the
reference and this checkout one after the other, in fresh processes with one torch thread,
and the table gives the median rounds/s of each and their ratio.

    git worktree add /tmp/ref <earlier commit>
    python benchmarks/refactor_throughput.py --reference /tmp/ref [--rounds 2000] [--reps 3]

Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PROBE = """
import time, warnings, torch, gymnasium as gym
warnings.simplefilter("ignore")
torch.set_num_threads(1)
import bandexa_gym
from bandexa_gym.agents import make_agent
from bandexa_gym.bench import run
env = gym.make("Bandexa/Synthetic-v0")
agent = make_agent("{agent}", env, seed=0)
start = time.perf_counter()
run(agent, env, {rounds}, seed=0)
print({rounds} / (time.perf_counter() - start))
"""


def rate(checkout: Path, agent: str, rounds: int) -> float:
    """Rounds/s of ``agent`` in a fresh process importing ``checkout``'s package."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    code = PROBE.format(agent=agent, rounds=rounds)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"{'agent':<18} {'reference r/s':>14} {'this r/s':>10} {'ratio':>7}")
    for agent in ("linear_ts", "neural_linear_ts"):
        before, after = [], []
        for _ in range(args.reps):
            before.append(rate(args.reference, agent, args.rounds))
            after.append(rate(HERE, agent, args.rounds))
        b, a = statistics.median(before), statistics.median(after)
        print(f"{agent:<18} {b:>14.0f} {a:>10.0f} {a / b:>7.3f}")


if __name__ == "__main__":
    main()
