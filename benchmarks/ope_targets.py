"""Off-policy evaluation and learning on logs of ``Bandexa/Synthetic-v0``.

1. **Evaluation accuracy.** A ``neural_linear_ts`` agent is trained online (``--train``
   rounds) and frozen. For each of ``--reps`` fresh logs of a uniform-random policy
   (``--rounds`` rounds, new seed each), its value is estimated as a greedy
   (posterior-mean) policy and as its own Thompson policy (Monte Carlo action
   probabilities, ``--draws`` draws) with IPS, SNIPS, DM, DR, switch-DR and DR-OS; the
   reward model is the frozen agent's posterior mean. The true value of a policy on a log is
   ``mean_t Σ_a π(a | x_t) μ(x_t, a)`` from the logged expected rewards. Reported: each
   estimator's mean absolute relative error and the coverage of its 95 % interval.
2. **Warm start.** ``neural_linear_ts`` warm-started from ``--warm`` uniform-logged rounds
   against a cold start, regret over the next ``--online`` rounds, per seed.
3. **Cost.** Rounds/s of a ``linear_ts`` run with and without writing a log (propensity
   estimation off), and of ``act`` against ``decide`` (Thompson propensity with M = 100
   draws) for ``linear_ts`` and ``neural_linear_ts``.

    python benchmarks/ope_targets.py --reps 50 --rounds 20000
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _env(problem_seed: int = 0):  # noqa: ANN202
    """Synthetic with its bandit fixed by ``problem_seed``: the policy, the logs and the
    online rounds that are compared must be the same problem (a reset seed alone would
    draw a new one)."""
    import gymnasium as gym

    import bandexa_gym  # noqa: F401

    return gym.make("Bandexa/Synthetic-v0", problem_seed=problem_seed)


def accuracy(args: argparse.Namespace) -> None:
    from bandexa_gym import offline, ope
    from bandexa_gym.agents import make_agent
    from bandexa_gym.exploration import make_rule
    from bandexa_gym.logs import read_log
    from bandexa_gym.runner import run

    env = _env()
    policy = make_agent("neural_linear_ts", env, seed=0)
    run(policy, env, args.train, seed=100)
    policy.config.train_every = 0  # frozen from here on
    greedy = copy.deepcopy(policy)  # the same frozen model, scored by its posterior mean
    greedy.exploration = make_rule("greedy")
    errors: dict[tuple[str, str], list[float]] = {}
    covered: dict[tuple[str, str], list[bool]] = {}
    start = time.perf_counter()
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory() as folder:
            log_path = Path(folder) / "log"
            env = _env()
            run(
                make_agent("uniform", env, seed=rep),
                env,
                args.rounds,
                seed=1000 + rep,
                log=log_path,
            )
            log = read_log(log_path)
        q = offline.reward_predictions(policy, log)
        for name, agent in (("greedy", greedy), ("thompson", policy)):
            agent.propensity_draws = args.draws
            probs = offline.policy_probabilities(agent, log)
            truth = float((probs * log.expected_rewards).sum(axis=1).mean())
            estimates = ope.evaluate(
                log.reward,
                log.propensity,
                probs,
                log.action,
                q,
                n_bootstrap=args.bootstrap,
                seed=rep,
            )
            for estimator, e in estimates.items():
                errors.setdefault((name, estimator), []).append(abs(e.value - truth) / abs(truth))
                covered.setdefault((name, estimator), []).append(e.ci_low <= truth <= e.ci_high)
        print(
            f"  repetition {rep + 1}/{args.reps} done ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    print(f"\nevaluation: {args.reps} logs of {args.rounds} uniform rounds")
    print(f"  {'policy':<10} {'estimator':<10} {'mean |rel. error|':>18} {'95% coverage':>14}")
    for (name, estimator), values in errors.items():
        cover = np.mean(covered[(name, estimator)])
        print(f"  {name:<10} {estimator:<10} {100 * np.mean(values):>17.2f}% {100 * cover:>13.0f}%")


def warm_start(args: argparse.Namespace) -> None:
    from bandexa_gym import offline
    from bandexa_gym.agents import make_agent
    from bandexa_gym.runner import run

    print(f"\nwarm start: {args.warm} uniform-logged rounds, then {args.online} online rounds")
    ratios = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            env = _env(seed)
            run(
                make_agent("uniform", env, seed=seed),
                env,
                args.warm,
                seed=seed,
                log=Path(folder) / "log",
            )
            cold = make_agent("neural_linear_ts", _env(seed), seed=seed)
            warm = offline.warm_start(
                make_agent("neural_linear_ts", _env(seed), seed=seed), Path(folder) / "log"
            )
        regret = {
            label: run(agent, _env(seed), args.online, seed=500 + seed).regrets.sum()
            for label, agent in (("cold", cold), ("warm", warm))
        }
        ratios.append(regret["warm"] / regret["cold"])
        cold_regret, warm_regret = regret["cold"], regret["warm"]
        print(f"  seed {seed}: cold {cold_regret:.1f}, warm {warm_regret:.1f} ({ratios[-1]:.2f}x)")
    print(f"  mean warm/cold regret ratio {np.mean(ratios):.2f}")


def cost(args: argparse.Namespace) -> None:
    from bandexa_gym.agents import make_agent
    from bandexa_gym.runner import run

    print("\ncost (1 thread; ratios from the same run)")
    with tempfile.TemporaryDirectory() as folder:
        # pyarrow's first Parquet write imports its pandas glue (~0.2 s once per process):
        # pay it before timing, the figure is the per-round cost of logging.
        env = _env()
        run(make_agent("uniform", env, seed=0), env, 10, seed=0, log=Path(folder) / "warm")
        rates = {}
        for label, options in (
            ("plain", {}),
            ("logged", {"log": Path(folder) / "log", "log_propensities": False}),
        ):
            env = _env()
            rates[label] = run(
                make_agent("linear_ts", env, seed=0), env, 5000, seed=0, **options
            ).decisions_per_second
    print(
        f"  linear_ts rounds/s: {rates['plain']:,.0f} plain, {rates['logged']:,.0f} writing a log "
        f"({100 * (1 - rates['logged'] / rates['plain']):.1f}% slower)"
    )
    env = _env()
    obs, _ = env.reset(seed=0)
    for name in ("linear_ts", "neural_linear_ts"):
        agent = make_agent(name, env, seed=0)
        for _ in range(60):
            action = agent.act(obs)
            next_obs, reward, *_ = env.step(action)
            agent.observe(obs, action, reward)
            obs = next_obs
        timings = {}
        for label in ("act", "decide"):  # decide keeps its decisions pending: 300 < max_pending
            start = time.perf_counter()
            for _ in range(300):
                agent.act(obs) if label == "act" else agent.decide(obs)
            timings[label] = (time.perf_counter() - start) / 300
        print(
            f"  {name}: act {1e6 * timings['act']:.0f} us, decide with M=100 propensity "
            f"{1e6 * timings['decide']:.0f} us ({timings['decide'] / timings['act']:.1f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["accuracy", "warm", "cost"])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--online", type=int, default=2000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "accuracy" in args.parts:
        accuracy(args)
    if "warm" in args.parts:
        warm_start(args)
    if "cost" in args.parts:
        cost(args)


if __name__ == "__main__":
    os.environ.setdefault(
        "BANDEXA_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    main()
