"""01 — Synthetic regret: linear TS on [x; a] vs NeuralLinearTS in a fully online loop.

Every round the agent sees a context x and K arm feature vectors, picks one arm, observes
a noisy reward, and updates its Bayesian linear head. NeuralLinearTS also retrains its
MLP encoder z = φ([x; a]) on its replay buffer every ``--train-every`` rounds and then
rebuilds its head on the new features:

    act -> observe reward -> posterior update -> (every N rounds) train encoder -> rebuild

The reward of ``Bandexa/Synthetic-v0`` couples context and arm through nonlinear
interactions, so linear TS on the fixed features φ(x, a) = [x; a] (``linear_ts_concat``:
``make_agent("linear_ts", env, feature_map="concat")``, the classic linear bandit) ranks
the arms the same way for every context and cannot do much better than the best fixed arm,
while NeuralLinearTS learns features in which the reward is (nearly) linear.

``linear_ts_concat`` is the straw man that shows what a learned representation adds; it is
not what ``make_agent("linear_ts", env)`` plays here. On a small fixed set of arms like
this one the default ``linear_ts`` keeps one head per arm over the context and is hard to
beat (see "Measuring" in the README).

Both agents play their own copy of the env, reset with the same seed: the round stream
(contexts and reward noise) does not depend on the actions taken, so they face exactly
the same rounds (the loop checks that the contexts agree).

Run:
    python examples/01_synthetic_regret.py --help
    python examples/01_synthetic_regret.py
    python examples/01_synthetic_regret.py --horizon 4000 --interaction-scale 1.5 --plot
"""

from __future__ import annotations

import argparse
import random
import time

import gymnasium as gym
import numpy as np
import torch
from _common import add_output_args, plot_curves, save_agents  # examples/_common.py

import bandexa_gym
from bandexa_gym.agents import Agent, make_agent

gym.register_envs(bandexa_gym)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    # run
    p.add_argument("--horizon", type=int, default=3000, help="rounds to play")
    p.add_argument("--seed", type=int, default=0, help="seed of the envs and the agents")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--print-every", type=int, default=250, help="progress line every N rounds")
    p.add_argument("--window", type=int, default=250, help="moving-average window (rounds)")
    # environment
    p.add_argument("--dim", type=int, default=10, help="context and arm feature dimension")
    p.add_argument("--actions", type=int, default=10, help="number of arms K")
    p.add_argument("--env-noise-std", type=float, default=0.1, help="reward noise std")
    p.add_argument(
        "--interaction-scale", type=float, default=1.0, help="strength of context x arm terms"
    )
    # Bayesian linear head (both agents)
    p.add_argument("--blr-prior-var", type=float, default=1.0, help="prior variance of weights")
    p.add_argument(
        "--blr-noise-var",
        type=float,
        default=None,
        help="fixed noise variance of the head (default: env noise std squared)",
    )
    # NeuralLinearTS
    p.add_argument("--feature-dim", type=int, default=64, help="encoder output size d")
    p.add_argument("--train-every", type=int, default=50, help="train encoder every N rounds")
    p.add_argument("--optimizer-steps", type=int, default=50, help="gradient steps per burst")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--rebuild-chunk", type=int, default=4096, help="rows per rebuild chunk")
    p.add_argument(
        "--action-chunk", type=int, default=None, help="candidates encoded per chunk (all)"
    )
    # outputs: --plot, --plot-path, --save-path, --sanity-check-save-load
    add_output_args(p, "01_synthetic_regret")
    args = p.parse_args()
    if args.horizon < 1:
        p.error("--horizon must be >= 1")
    args.window = max(1, min(args.window, args.horizon))
    if args.blr_noise_var is None:
        args.blr_noise_var = args.env_noise_std**2
    if args.blr_noise_var <= 0:
        p.error("--blr-noise-var must be > 0 (with --env-noise-std 0, pass a small value)")
    return args


def main() -> None:
    args = parse_args()
    if args.threads > 0:  # 1: small models run fastest, and a busy CPU slows them least
        torch.set_num_threads(args.threads)

    # ---- seeding: everything random below derives from args.seed ----------------------
    # The envs draw from their own np_random (env.reset(seed=...)), the agents from their
    # own torch generators (seed=...); the global RNGs are seeded for anything else.
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    # ---- one env per agent, same seed -> the same round stream ------------------------
    env_kwargs = {
        "n_arms": args.actions,
        "context_dim": args.dim,
        "action_dim": args.dim,
        "interaction_scale": args.interaction_scale,
        "noise_std": args.env_noise_std,
    }
    names = ("linear_ts_concat", "neural_linear_ts")
    envs = {name: gym.make("Bandexa/Synthetic-v0", **env_kwargs) for name in names}

    # ---- agents -----------------------------------------------------------------------
    head = {"prior_var": args.blr_prior_var, "noise": args.blr_noise_var}
    agents: dict[str, Agent] = {
        # φ(x, a) = [x; a] and one Bayesian linear head over it: the straw man
        "linear_ts_concat": make_agent(
            "linear_ts",
            envs["linear_ts_concat"],
            seed=args.seed,
            device=args.device,
            feature_map="concat",
            **head,
        ),
        # z = MLP([x; a]) under the same kind of head
        "neural_linear_ts": make_agent(
            "neural_linear_ts",
            envs["neural_linear_ts"],
            seed=args.seed,
            device=args.device,
            encoder="mlp",
            feature_dim=args.feature_dim,
            train_every=args.train_every,
            optimizer_steps=args.optimizer_steps,
            batch_size=args.batch_size,
            rebuild_chunk=args.rebuild_chunk,
            action_chunk=args.action_chunk,
            **head,
        ),
    }

    # ---- online loop ------------------------------------------------------------------
    obs = {name: envs[name].reset(seed=args.seed)[0] for name in names}
    rewards = {name: np.zeros(args.horizon) for name in names}
    regrets = {name: np.zeros(args.horizon) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    start = time.perf_counter()
    print(
        f"Bandexa/Synthetic-v0: K={args.actions}, d={args.dim}, "
        f"interaction_scale={args.interaction_scale}, noise_std={args.env_noise_std}; "
        f"head prior_var={args.blr_prior_var}, noise_var={args.blr_noise_var:g}"
    )
    for t in range(args.horizon):
        assert np.array_equal(
            obs["linear_ts_concat"]["context"], obs["neural_linear_ts"]["context"]
        )
        for name in names:
            tic = time.perf_counter()
            action = agents[name].act(obs[name])
            next_obs, reward, _, _, info = envs[name].step(action)
            agents[name].observe(obs[name], action, reward)
            seconds[name] += time.perf_counter() - tic
            rewards[name][t], regrets[name][t] = reward, info["regret"]
            obs[name] = next_obs
        if (t + 1) % args.print_every == 0 or t + 1 == args.horizon:
            lo = max(0, t + 1 - args.window)
            line = " | ".join(
                f"{name}: cum_regret={regrets[name][: t + 1].sum():8.1f} "
                f"ma_reward={rewards[name][lo : t + 1].mean():+.3f}"
                for name in names
            )
            print(f"t={t + 1:6d} | {line}")

    # ---- summary ----------------------------------------------------------------------
    wall = time.perf_counter() - start
    print(f"\nSummary after {args.horizon} rounds (wall time {wall:.1f} s)")
    for name in names:
        ma = rewards[name][-args.window :].mean()
        print(
            f"  {name:<16} cumulative expected regret {regrets[name].sum():8.1f}   "
            f"moving-average reward (last {args.window}) {ma:+.3f}   "
            f"{args.horizon / seconds[name]:7.0f} rounds/s"
        )

    if args.plot:
        plot_curves(args.plot_path, regrets, rewards, window=args.window)

    if args.save_path or args.sanity_check_save_load:
        folder = args.save_path or "runs/examples/01_synthetic_regret"
        save_agents(agents, obs, folder, device=args.device, check=args.sanity_check_save_load)


if __name__ == "__main__":
    main()
