"""bandexa-ope: estimate what policies would have earned on a logged stream of rounds.

Examples:
    bandexa-ope runs/log --policy uniform linear_ts:exploration=greedy runs/agent.safetensors
    bandexa-ope runs/log --policy neural_linear_ts --fit 0.5 --reward-model linear_ts
    bandexa-ope runs/log --policy target.npy --position slot --estimators ips dr replay
    bandexa-ope runs/log --policy uniform --refit-bootstrap --bootstrap 200

Each policy is a registered agent name (optionally NAME:KEY=VALUE,KEY=VALUE settings),
built for the log's observation space, a saved checkpoint, or a .npy file holding the
evaluation policy's action distribution over the log's rounds, in log order: (n, K), or
(n, K, positions) for a position-dependent policy, read at each round's position from the
log's extra column --position. --fit F lets the named policies learn the first fraction F
of the log (off-policy learning) and evaluates every policy on the rest. The reward model
of DM and the doubly robust estimators is a named agent cross-fitted on the evaluated
rounds, a checkpoint, or 'none'; the intervals of those estimators hold it fixed (marked
with an asterisk: conditional on the model) unless --refit-bootstrap refits it, and
re-tunes tau / lambda, in every resample. --estimators replay adds the replay method
(uniformly-random logs). When the log holds the environment's expected rewards (logs
written by bandexa-bench --log do), the table also shows each policy's true value on the
logged contexts, the mean over rounds of sum_a pi(a|x) mu(x, a).
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

from bandexa_gym.agents.core import AGENTS, Agent, make_agent
from bandexa_gym.offline.checks import (
    DEFAULT_MIN_PROPENSITY,
    MAX_BOOTSTRAP,
    MAX_BOOTSTRAP_WORK,
    Estimate,
)
from bandexa_gym.offline.evaluate import ESTIMATORS, OPT_IN_ESTIMATORS, evaluate
from bandexa_gym.offline.logs import LogBatch, LogFormatError, read_log
from bandexa_gym.offline.policy import (
    fit_reward_model,
    log_space,
    policy_probabilities,
    reward_predictions,
    subset_log,
    warm_start,
)
from bandexa_gym.persist.load import load_agent

__all__ = ["main"]

PROG = "bandexa-ope"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``bandexa-ope`` argument parser."""
    # The module docstring is plain text: it is the help's description, line breaks kept.
    parser = _Parser(
        prog=PROG,
        description=__doc__,
        epilog="Guide: docs/ope.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", type=Path, help="folder of a Parquet log (bandexa_gym.logs)")
    parser.add_argument(
        "--policy",
        nargs="+",
        required=True,
        metavar="POLICY",
        help="agent names (NAME or NAME:KEY=VALUE,...), checkpoint files, or .npy files of "
        "the policy's action distribution over the log's rounds, (n, K) or (n, K, positions)",
    )
    parser.add_argument(
        "--position",
        default="position",
        metavar="COLUMN",
        help="the log's extra column holding each round's position, for (n, K, positions) "
        ".npy policies (default: %(default)s)",
    )
    parser.add_argument(
        "--reward-model",
        default="linear_ts",
        metavar="MODEL",
        help="agent name cross-fitted on the log, a checkpoint, or 'none' (default: %(default)s)",
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=[*ESTIMATORS, *OPT_IN_ESTIMATORS],
        metavar="NAME",
        help="estimators to run: "
        + ", ".join([*ESTIMATORS, *OPT_IN_ESTIMATORS])
        + " (default: every estimator that applies; replay only when named)",
    )
    parser.add_argument(
        "--refit-bootstrap",
        action="store_true",
        help="refit the named reward model (and re-tune tau / lambda) in every bootstrap "
        "resample: intervals that include the model's error, at one model fit per resample",
    )
    parser.add_argument(
        "--fit",
        type=float,
        default=0.0,
        metavar="F",
        help="named policies learn the first fraction F of the log first (default: %(default)s)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help=f"bootstrap resamples for the intervals, at most {MAX_BOOTSTRAP:,} and "
        f"N x rounds at most {MAX_BOOTSTRAP_WORK:.0e} (default: %(default)s)",
    )
    parser.add_argument(
        "--min-propensity",
        type=float,
        default=DEFAULT_MIN_PROPENSITY,
        metavar="P",
        help="logged propensities below P are raised to P, with a warning, so no importance "
        "weight exceeds 1/P (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the agents, the cross-fitting and the bootstrap (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _settings(text: str) -> dict[str, Any]:
    from bandexa_gym.bench.arguments import parse_value

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
        return load_agent(spec, map_location="cpu", expected=log_space(batch)), True
    name, _, settings = spec.partition(":")
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; registered: {', '.join(sorted(AGENTS))}")
    return make_agent(name, log_space(batch), seed=seed, **_settings(settings)), False


def _subset(batch: LogBatch, rows: slice) -> LogBatch:
    return subset_log(batch, rows)


def _take(batch: LogBatch, rows: np.ndarray) -> LogBatch:
    """The rounds ``rows`` (int64 indices, repeats allowed) of ``batch``, as a batch."""
    fields = ("context", "candidates", "action_mask", "action", "propensity", "reward",
              "expected_rewards")  # fmt: skip
    values = {f: None if getattr(batch, f) is None else getattr(batch, f)[rows] for f in fields}
    extra = {k: v[rows] for k, v in batch.extra.items()}
    return LogBatch(**values, extra=extra, num_rows=len(rows))


class _Distribution:
    """A policy given as its logged action distribution: a ``.npy`` file over the log's rounds."""

    def __init__(self, path: Path, batch: LogBatch, position_column: str) -> None:
        try:
            probs = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read the policy file {path}: {err}") from None
        n, k = batch.action_mask.shape
        if probs.ndim not in (2, 3) or probs.shape[:2] != (n, k):
            raise ValueError(
                f"the policy file {path} holds shape {probs.shape}; expected the evaluation "
                f"policy's probabilities of every candidate in every logged round, (n, K) = "
                f"({n}, {k}), or (n, K, positions) for a position-dependent policy"
            )
        self.probs = probs
        self.position = None
        if probs.ndim == 3:
            if position_column not in batch.extra:
                raise ValueError(
                    f"the policy file {path} is position-dependent, shape {probs.shape}, but the "
                    f"log has no {position_column!r} column; name the log's column that holds "
                    f"each round's position with --position (extra columns: "
                    f"{sorted(batch.extra) or 'none'})"
                )
            self.position = batch.extra[position_column]

    def on(self, rows: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, positions) of the rounds ``rows``."""
        return self.probs[rows], None if self.position is None else self.position[rows]


def _is_file(spec: str) -> bool:
    return spec.endswith(".safetensors") or Path(spec).is_file()


def _reward_model(args: argparse.Namespace, batch: LogBatch, evaluated: LogBatch) -> Any:
    """The reward model: predictions (n, K), a fitting function rows -> predictions for
    ``--refit-bootstrap``, or None (``--reward-model none``, or no estimator needs one)."""
    names = args.estimators or list(ESTIMATORS)
    wanted = any(ESTIMATORS[e][1] for e in names if e in ESTIMATORS)
    spec = args.reward_model
    if args.refit_bootstrap and (spec == "none" or not wanted):
        raise ValueError(
            "--refit-bootstrap refits the reward model of dm, dr, switch-dr and dr-os; "
            + ("--reward-model is none" if spec == "none" else f"none is among {names}")
        )
    if spec == "none" or not wanted:
        return None
    if _is_file(spec):
        if args.refit_bootstrap:
            raise ValueError(
                f"--refit-bootstrap refits the reward model, but {spec} is a trained checkpoint; "
                "name an agent to fit on the log (e.g. --reward-model linear_ts)"
            )
        return reward_predictions(_agent(spec, batch, args.seed)[0], evaluated)
    _agent(spec, batch, args.seed)  # fail now on a bad name or setting

    def factory() -> Agent:
        return _agent(spec, batch, args.seed)[0]

    if not args.refit_bootstrap:
        return fit_reward_model(factory, evaluated)
    return lambda rows: fit_reward_model(factory, _take(evaluated, rows))


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
    if len(batch) == 0 and not any(args.log.glob("part-*.parquet")):
        parser.error(
            f"no Parquet parts found in {args.log}; expected a log folder of "
            "part-*.parquet files (written by bandexa_gym.logs.LogWriter, run(..., log=) or "
            "bandexa-bench --log)"
        )
    if len(batch) < 4:
        parser.error(f"the log {args.log} holds {len(batch)} rounds; at least 4 are needed")
    split = int(round(args.fit * len(batch)))
    learn, test = slice(0, split), slice(split, len(batch))
    evaluated = _subset(batch, test)
    work = args.bootstrap * len(evaluated)
    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP or work > MAX_BOOTSTRAP_WORK:
        parser.error(
            f"--bootstrap {args.bootstrap} on {len(evaluated):,} rounds: expected 0 to "
            f"{MAX_BOOTSTRAP:,} resamples and at most {MAX_BOOTSTRAP_WORK:.0e} resampled "
            f"rounds (about 10 minutes of work), here {work:.3g}"
        )
    try:
        policies: dict[str, Agent | _Distribution] = {}
        for spec in args.policy:
            if spec.endswith(".npy"):
                policies[spec] = _Distribution(Path(spec), batch, args.position)
                continue
            agent, frozen = _agent(spec, batch, args.seed)
            if split and not frozen:
                warm_start(agent, batch, rows=learn)
            policies[spec] = agent
        model = _reward_model(args, batch, evaluated)
        options = {
            "n_bootstrap": args.bootstrap,
            "seed": args.seed,
            "min_propensity": args.min_propensity,
            "refit": args.refit_bootstrap,
            "estimators": args.estimators,
        }
        results, targets = {}, {}
        for spec, policy in policies.items():
            if isinstance(policy, _Distribution):
                target, position = policy.on(test)
            else:
                target, position = policy_probabilities(policy, evaluated), None
            targets[spec] = target, position
            results[spec] = evaluate(
                evaluated.reward,
                evaluated.propensity,
                target,
                evaluated.action,
                model,
                position=position,
                **options,
            )
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    truth = {}
    if evaluated.expected_rewards is not None:
        for spec, (target, position) in targets.items():
            if position is not None:  # checked by the estimators
                target = target[np.arange(len(target)), :, np.asarray(position, np.int64)]
            truth[spec] = float((target * evaluated.expected_rewards).sum(axis=1).mean())
    _print(args, evaluated, results, truth)
    return 0


def _print(
    args: argparse.Namespace,
    batch: LogBatch,
    results: dict[str, dict[str, Estimate]],
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
    print(f"log {args.log}: {len(batch)} rounds evaluated, logged mean reward {logged:.4g}")
    conditional = refitted = False
    for spec, estimates in results.items():
        line = f"\n{spec}" + (f"  (true value {truth[spec]:.4g})" if spec in truth else "")
        print(line)
        print(f"  {'estimator':<10} {'value':>10}  {'95% interval':>25}  {'ESS':>8}")
        for name, e in estimates.items():
            mark = "*" if e.conditional else " "
            conditional |= e.conditional
            refitted |= args.refit_bootstrap and name in ESTIMATORS and ESTIMATORS[name][1]
            interval = f"[{e.ci_low:.4g}, {e.ci_high:.4g}]{mark}"
            ess = "" if e.ess is None or not np.isfinite(e.ess) else f"{e.ess:.0f}"
            print(f"  {name:<10} {e.value:>10.4g}  {interval:>25}  {ess:>8}")
    if conditional:
        print(
            "\n* conditional on the fitted reward model (and tuned tau / lambda), held fixed "
            "across resamples:\n  the interval leaves out the model's own error "
            "(--refit-bootstrap refits it in every resample)"
        )
    if refitted:
        print(
            "\nthe model-based estimators' intervals refit the reward model (and re-tune "
            f"tau / lambda)\n  in each of the {args.bootstrap} resamples"
        )


if __name__ == "__main__":
    sys.exit(main())
