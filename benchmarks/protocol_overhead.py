"""Rounds per second of the protocol itself: ``uniform`` and ``linear_ts`` through
``bandexa_gym.bench.run`` on Synthetic-v0, beside the env's bare ``step`` loop in the same run.

``uniform`` learns nothing, so its rounds/s is what the round trip costs (``act``, ``env.step``,
``observe``, the runner and ``RegretMonitor``); the bare loop (``reset`` then ``step(0)``) is the
reference that makes the ratios survive a loaded machine. One torch thread.

    python benchmarks/protocol_overhead.py [--rounds 5000] [--reps 3]
    python benchmarks/protocol_overhead.py --reference /tmp/ref  # this checkout vs another,
                                                                 # alternately, fresh processes

Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
AGENTS = ("uniform", "linear_ts")
ENV_ID = "Bandexa/Synthetic-v0"


def measure(rounds: int) -> dict[str, float]:
    """Rounds/s of the bare env loop and of each agent, in this process."""
    import warnings

    import gymnasium as gym
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    import bandexa_gym  # noqa: F401  (registers the envs)
    from bandexa_gym.agents import make_agent
    from bandexa_gym.bench import run

    rates = {}
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(rounds):
        env.step(0)
    rates["env.step"] = rounds / (time.perf_counter() - start)
    for name in AGENTS:
        agent = make_agent(name, gym.make(ENV_ID), seed=0)
        start = time.perf_counter()
        run(agent, gym.make(ENV_ID), rounds, seed=0)
        rates[name] = rounds / (time.perf_counter() - start)
    return rates


def measure_in(checkout: Path, rounds: int) -> dict[str, float]:
    """:func:`measure` in a fresh process importing ``checkout``'s package."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--rounds", str(rounds), "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(title: str, rates: dict[str, float]) -> None:
    env_rate = rates["env.step"]
    print(f"{title}: env.step {env_rate:,.0f}/s ({1e6 / env_rate:.1f} µs)")
    for name in AGENTS:
        overhead = 1e6 / rates[name] - 1e6 / env_rate
        print(
            f"  {name:<10} {rates[name]:>9,.0f} rounds/s  {1e6 / rates[name]:7.1f} µs/round  "
            f"ratio to env.step {rates[name] / env_rate:.3f}  beyond env.step {overhead:6.1f} µs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.rounds)))
        return
    checkouts = {"this": HERE} if args.reference is None else {"reference": args.reference}
    checkouts["this"] = HERE
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for _ in range(args.reps):  # alternately, so both see the same machine load
        for name, path in checkouts.items():
            runs[name].append(measure_in(path, args.rounds))
    medians = {
        name: {key: statistics.median(r[key] for r in reps) for key in reps[0]}
        for name, reps in runs.items()
    }
    print(f"median of {args.reps} runs of {args.rounds} rounds, one torch thread")
    for name, rates in medians.items():
        report(name, rates)
    if args.reference is not None:
        for key in ("env.step", *AGENTS):
            ratio = medians["this"][key] / medians["reference"][key]
            print(f"this / reference, {key}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
