"""03 — Two-tower retrieval -> Thompson re-ranking on a large action pool.

``Bandexa/Retrieval-v0`` holds a pool of ``--n-actions`` items. Every round a user
(context) arrives, a cheap retrieval stage proposes ``--candidate-size`` of the items (a
low-rank, approximate affinity score plus some random items) and the agent re-ranks
that candidate set by Thompson sampling and recommends one item. Regret is measured
inside the candidate set: the best retrieved item is the oracle.

* LinearTS: φ(x, a) = [x; a] under a Bayesian linear head. The user-item affinity is
  bilinear (plus a nonlinear taste term), so a model linear in [x; a] ranks the items
  the same way for every user.
* NeuralLinearTS with a two-tower encoder: u = f_ctx(x), v = f_act(a),
  z = [u; v; u * v]. ``encode_batch`` runs the context tower once per round and the
  action tower on all candidates (``--action-chunk`` rows at a time), so scoring 512
  candidates costs one small MLP pass over them plus one matmul with the posterior draw.

Printed: cumulative expected regret, moving-average observed reward, and moving averages
of the expected reward of the best candidate (``ma_best_p``) and of each agent's choice
(``ma_p_lin``, ``ma_p_neu``); the expected values are the cleaner signal.

Both agents play their own env reset with the same seed: users, retrieved candidates and
reward noise do not depend on the actions, so both re-rank the same candidate sets (the
loop checks that the candidate ids agree).

Run:
    python examples/03_two_tower_synthetic.py --help
    python examples/03_two_tower_synthetic.py
    python examples/03_two_tower_synthetic.py --n-actions 50000 --candidate-size 1024 --plot
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
from bandexa_gym.agents import Agent, NeuralLinearTS, NeuralLinearTSConfig, make_agent
from bandexa_gym.buffers import MemoryReplayBuffer
from bandexa_gym.encoders import TwoTowerEncoder
from bandexa_gym.posterior import HeadConfig

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
    p.add_argument("--ctx-dim", type=int, default=16, help="user (context) feature size")
    p.add_argument("--action-dim", type=int, default=16, help="item feature size")
    p.add_argument("--n-actions", type=int, default=10_000, help="items in the pool")
    p.add_argument(
        "--candidate-size",
        type=int,
        default=512,
        help="candidates retrieved per round (<= 0: score the whole pool)",
    )
    # Bayesian heads (both agents)
    p.add_argument("--prior-var", type=float, default=1.0, help="prior variance of weights")
    p.add_argument(
        "--obs-noise-var",
        type=float,
        default=0.01,
        help="fixed noise variance of the heads (the env's reward noise is 0.1^2)",
    )
    # NeuralLinearTS
    p.add_argument("--tower-dim", type=int, default=32, help="output size of each tower")
    p.add_argument("--warmup-random", type=int, default=100, help="uniform rounds before TS")
    p.add_argument("--train-every", type=int, default=50, help="train encoder every N rounds")
    p.add_argument("--optimizer-steps", type=int, default=50, help="gradient steps per burst")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--rebuild-chunk", type=int, default=4096, help="rows per rebuild chunk")
    p.add_argument(
        "--action-chunk", type=int, default=None, help="candidates encoded per chunk (all)"
    )
    p.add_argument("--buffer-capacity", type=int, default=100_000, help="replay buffer size")
    # outputs: --plot, --plot-path, --save-path, --sanity-check-save-load
    add_output_args(p, "03_two_tower_synthetic")
    args = p.parse_args()
    if args.horizon < 1:
        p.error("--horizon must be >= 1")
    args.window = max(1, min(args.window, args.horizon))
    return args


def main() -> None:
    args = parse_args()
    if args.threads > 0:  # 1: small models run fastest, and a busy CPU slows them least
        torch.set_num_threads(args.threads)

    # ---- seeding: everything random below derives from args.seed ----------------------
    # The envs draw from their own np_random (env.reset(seed=...)), the agents from their
    # own torch generators (seed=...); encoder initialisation uses torch's global RNG.
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    # ---- one env per agent, same seed -> the same users and candidate sets -----------
    env_kwargs = {
        "n_actions": args.n_actions,
        "context_dim": args.ctx_dim,
        "action_dim": args.action_dim,
        "candidate_size": args.candidate_size,
    }
    names = ("linear_ts", "neural_linear_ts")
    envs = {name: gym.make("Bandexa/Retrieval-v0", **env_kwargs) for name in names}

    # ---- agents -----------------------------------------------------------------------
    encoder = TwoTowerEncoder(
        args.ctx_dim, args.action_dim, tower_dim=args.tower_dim, action_chunk=args.action_chunk
    )
    config = NeuralLinearTSConfig(
        head=HeadConfig(prior_var=args.prior_var, noise=args.obs_noise_var),
        warmup_random=args.warmup_random,
        train_every=args.train_every,
        optimizer_steps=args.optimizer_steps,
        batch_size=args.batch_size,
        rebuild_chunk=args.rebuild_chunk,
        action_chunk=args.action_chunk,
        lr=args.lr,
        buffer_capacity=args.buffer_capacity,
        arm_heads="shared",  # retrieved candidates change every round: one head for all
    )
    agents: dict[str, Agent] = {
        "linear_ts": make_agent(
            "linear_ts",
            envs["linear_ts"],
            seed=args.seed,
            device=args.device,
            feature_map="concat",
            prior_var=args.prior_var,
            noise=args.obs_noise_var,
        ),
        "neural_linear_ts": NeuralLinearTS(
            encoder,
            buffer=MemoryReplayBuffer(args.buffer_capacity),
            config=config,
            device=args.device,
            seed=args.seed,
        ),
    }

    # ---- online loop ------------------------------------------------------------------
    obs = {name: envs[name].reset(seed=args.seed)[0] for name in names}
    rewards = {name: np.zeros(args.horizon) for name in names}
    regrets = {name: np.zeros(args.horizon) for name in names}
    chosen_p = {name: np.zeros(args.horizon) for name in names}
    best_p = np.zeros(args.horizon)
    seconds = dict.fromkeys(names, 0.0)
    short = {"linear_ts": "lin", "neural_linear_ts": "neu"}
    k = envs["linear_ts"].unwrapped.candidate_size
    print(
        f"Bandexa/Retrieval-v0: pool {args.n_actions} items, {k} candidates per round, "
        f"d_x={args.ctx_dim}, d_a={args.action_dim}; two-tower z dim {encoder.feature_dim}"
    )
    start = time.perf_counter()
    for t in range(args.horizon):
        ids = [envs[name].unwrapped.candidate_ids for name in names]
        assert np.array_equal(*ids), "the two envs drifted apart"
        for name in names:
            tic = time.perf_counter()
            action = agents[name].act(obs[name])
            next_obs, reward, _, _, info = envs[name].step(action)
            agents[name].observe(obs[name], action, reward)
            seconds[name] += time.perf_counter() - tic
            rewards[name][t], regrets[name][t] = reward, info["regret"]
            chosen_p[name][t] = info["expected_reward"]
            best_p[t] = info["best_expected_reward"]
            obs[name] = next_obs
        if (t + 1) % args.print_every == 0 or t + 1 == args.horizon:
            w = slice(max(0, t + 1 - args.window), t + 1)
            line = " | ".join(
                f"{short[name]}: cum_regret={regrets[name][: t + 1].sum():7.1f} "
                f"ma_reward={rewards[name][w].mean():.3f}"
                for name in names
            )
            print(
                f"t={t + 1:6d} | {line} | ma_best_p={best_p[w].mean():.3f} "
                f"ma_p_lin={chosen_p['linear_ts'][w].mean():.3f} "
                f"ma_p_neu={chosen_p['neural_linear_ts'][w].mean():.3f}"
            )

    # ---- summary ----------------------------------------------------------------------
    wall = time.perf_counter() - start
    w = slice(-args.window, None)
    print(f"\nSummary after {args.horizon} rounds (wall time {wall:.1f} s)")
    print(f"  best candidate, expected reward (last {args.window}): {best_p[w].mean():.3f}")
    for name in names:
        print(
            f"  {name:<16} cumulative expected regret {regrets[name].sum():7.1f}   "
            f"ma_reward {rewards[name][w].mean():.3f}   ma_p_{short[name]} "
            f"{chosen_p[name][w].mean():.3f}   {args.horizon / seconds[name]:6.0f} rounds/s"
        )

    if args.plot:
        plot_curves(
            args.plot_path,
            regrets,
            {f"p_{short[name]}": chosen_p[name] for name in names},
            window=args.window,
            averaged_label="expected reward",
            averaged_title="Expected reward of the choice",
            reference=("best_p", best_p),
        )

    if args.save_path or args.sanity_check_save_load:
        folder = args.save_path or "runs/examples/03_two_tower_synthetic"
        save_agents(agents, obs, folder, device=args.device, check=args.sanity_check_save_load)


if __name__ == "__main__":
    main()
