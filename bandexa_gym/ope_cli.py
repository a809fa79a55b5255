"""``bandexa-ope``: estimate what policies would have earned on a logged stream of rounds.

::

    bandexa-ope runs/log --policy uniform linear_ts:exploration=greedy runs/agent.safetensors
    bandexa-ope runs/log --policy neural_linear_ts --fit 0.5 --reward-model linear_ts

Each policy is a registered agent name (optionally ``name:key=value,key=value`` settings),
built for the log's observation space, or a saved checkpoint. ``--fit F`` lets the named
policies learn the first fraction F of the log (off-policy learning) and evaluates every
policy on the rest. The reward model of DM and the doubly robust estimators is a named
agent cross-fitted on the evaluated rounds (default ``linear_ts``), a checkpoint, or
``none``. When the log holds the environment's expected rewards (logs written by
``bandexa-bench --log`` do), the table also shows each policy's true value on the logged
contexts, ``mean Σₐ π(a|x) μ(x, a)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from bandexa_gym import offline, ope
from bandexa_gym.agents.base import AGENTS, Agent, make_agent
from bandexa_gym.agents.loading import load_agent
from bandexa_gym.logs import LogBatch, LogFormatError, read_log

__all__ = ["main"]

PROG = "bandexa-ope"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``bandexa-ope`` argument parser."""
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], epilog="Guide: docs/ope.md")
    parser.add_argument("log", type=Path, help="folder of a Parquet log (bandexa_gym.logs)")
    parser.add_argument(
        "--policy",
        nargs="+",
        required=True,
        metavar="POLICY",
        help="agent names (NAME or NAME:KEY=VALUE,...) or checkpoint files",
    )
    parser.add_argument(
        "--reward-model",
        default="linear_ts",
        metavar="MODEL",
        help="agent name cross-fitted on the log, a checkpoint, or 'none' (default: linear_ts)",
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=list(ope.ESTIMATORS),
        help="default: every estimator that applies",
    )
    parser.add_argument(
        "--fit",
        type=float,
        default=0.0,
        metavar="F",
        help="named policies learn the first fraction F of the log first",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples")
    parser.add_argument("--min-propensity", type=float, default=ope.DEFAULT_MIN_PROPENSITY)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _settings(text: str) -> dict[str, Any]:
    from bandexa_gym.bench import parse_value

    out = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"expected KEY=VALUE settings, got {item!r}")
        out[key] = parse_value(value)
    return out


def _agent(spec: str, batch: LogBatch, seed: int) -> tuple[Agent, bool]:
    """(agent, is_checkpoint) for a policy or reward-model spec."""
    if spec.endswith(".safetensors") or Path(spec).is_file():
        return load_agent(spec, map_location="cpu", expected=offline.log_space(batch)), True
    name, _, settings = spec.partition(":")
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; registered: {', '.join(sorted(AGENTS))}")
    return make_agent(name, offline.log_space(batch), seed=seed, **_settings(settings)), False


def _subset(batch: LogBatch, rows: slice) -> LogBatch:
    return offline._subset(batch, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bandexa-ope``; returns the exit code (2 for usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not 0.0 <= args.fit < 1.0:
        parser.error(f"--fit must be in [0, 1), got {args.fit}")
    try:
        batch = read_log(args.log)
    except (LogFormatError, FileNotFoundError, ImportError) as err:
        parser.error(f"cannot read the log {args.log}: {err}")
    if len(batch) < 4:
        parser.error(f"the log {args.log} holds {len(batch)} rounds; at least 4 are needed")
    split = int(round(args.fit * len(batch)))
    learn, test = slice(0, split), slice(split, len(batch))
    evaluated = _subset(batch, test)
    try:
        policies = {}
        for spec in args.policy:
            agent, frozen = _agent(spec, batch, args.seed)
            if split and not frozen:
                offline.warm_start(agent, batch, rows=learn)
            policies[spec] = agent
        model: Any = None
        if args.reward_model != "none":
            spec = args.reward_model
            if spec.endswith(".safetensors") or Path(spec).is_file():
                model = _agent(spec, batch, args.seed)[0]
            else:
                _agent(spec, batch, args.seed)  # fail now on a bad name or setting
                model = lambda: _agent(spec, batch, args.seed)[0]  # noqa: E731
        options = {"n_bootstrap": args.bootstrap, "seed": args.seed,
                   "min_propensity": args.min_propensity}  # fmt: skip
        results = {
            spec: offline.evaluate_policy(
                agent, evaluated, reward_model=model, estimators=args.estimators, **options
            )
            for spec, agent in policies.items()
        }
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    truth = {}
    if evaluated.expected_rewards is not None:
        for spec, agent in policies.items():
            probs = offline.policy_probabilities(agent, evaluated)
            truth[spec] = float((probs * evaluated.expected_rewards).sum(axis=1).mean())
    _print(args, evaluated, results, truth)
    return 0


def _print(
    args: argparse.Namespace,
    batch: LogBatch,
    results: dict[str, dict[str, ope.Estimate]],
    truth: dict[str, float],
) -> None:
    logged = float(np.mean(batch.reward))
    if args.json:
        doc = {
            "log": str(args.log),
            "rounds": len(batch),
            "logged_mean_reward": logged,
            "policies": {
                spec: {
                    "true_value": truth.get(spec),
                    "estimates": {name: e.to_dict() for name, e in estimates.items()},
                }
                for spec, estimates in results.items()
            },
        }
        print(json.dumps(doc, indent=1, default=float))
        return
    print(f"log {args.log}: {len(batch)} rounds evaluated, logged mean reward {logged:.4f}")
    for spec, estimates in results.items():
        line = f"\n{spec}" + (f"  (true value {truth[spec]:.4f})" if spec in truth else "")
        print(line)
        print(f"  {'estimator':<10} {'value':>10}  {'95% interval':>24}  {'ESS':>8}")
        for name, e in estimates.items():
            interval = f"[{e.ci_low:.4f}, {e.ci_high:.4f}]"
            ess = "" if e.ess is None or not np.isfinite(e.ess) else f"{e.ess:.0f}"
            print(f"  {name:<10} {e.value:>10.4f}  {interval:>24}  {ess:>8}")


if __name__ == "__main__":
    sys.exit(main())
