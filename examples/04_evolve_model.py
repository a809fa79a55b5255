"""04 — Evolve a trained model: new labels on MNIST, new context features on a synthetic bandit.

A deployed bandit rarely keeps its configuration: arms are added, a new signal starts
being logged. ``bandexa_gym.transfer.evolve(trained, template)`` fills a cold-start
*template* agent, built for the new configuration, with what the trained agent learned,
where the two overlap; the trained agent is left untouched.

Part A, MNIST (``Bandexa/MNIST-v0``, ``labels=``): an agent learns labels 0-7 (images of
8 and 9 never appear), then the env offers all ten labels. ``evolve`` keeps the heads of
labels 0-7 and starts those of 8 and 9 from the prior. Printed: greedy (posterior-mean)
accuracy on a fixed set of images of labels 0-7 just before and just after the switch,
and on images of 8 and 9 as training goes on. The default agent is LinearTS (one
Bayesian linear head per label over the 784 pixels); ``--mnist-agent neural_linear_ts``
runs the ConvNet agent instead (see the README section for what to expect).

Part B, Synthetic (``Bandexa/Synthetic-v0``, ``observed_context_dim=``): the reward
depends on 10 context features but the observation shows the first 8. A NeuralLinearTS
learns there, then the last two features are revealed (8 -> 10). ``evolve`` grows the
encoder's input layer with zero weights, so the evolved agent starts exactly where the
trained one was, and keeps training. Two evolved agents are shown: one whose replay
buffer holds the old rounds zero-padded (the default) and one that drops them
(``old_transitions="drop"``). They are compared, on the same round stream, with a
cold-start agent on the new env and with the trained agent still playing the old
8-feature env.

Evaluation images come from the MNIST test split, the one the env streams (the shared
data has no train images), so some of them are also seen in training.

Run (the MNIST test split must be under $BANDEXA_DATA/MNIST/raw or --data-dir):
    python examples/04_evolve_model.py --help
    python examples/04_evolve_model.py
    python examples/04_evolve_model.py --mnist-agent neural_linear_ts --parts mnist
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

import bandexa_gym
from bandexa_gym.agents import Agent, make_agent
from bandexa_gym.bench import run
from bandexa_gym.envs.mnist import load_image_split
from bandexa_gym.transfer import evolve

gym.register_envs(bandexa_gym)

OLD_LABELS = tuple(range(8))
NEW_LABELS = (8, 9)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the envs and the agents")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--parts", default="mnist,synthetic", help="which parts to run")
    p.add_argument("--print-every", type=int, default=500, help="progress line every N rounds")
    # Part A: MNIST labels 0-7 -> 0-9
    p.add_argument("--data-dir", default=None, help="MNIST root, else $BANDEXA_DATA")
    p.add_argument(
        "--mnist-agent",
        default="linear_ts",
        choices=("linear_ts", "neural_linear_ts"),
        help="agent of part A",
    )
    p.add_argument("--mnist-rounds-before", type=int, default=3000, help="rounds on labels 0-7")
    p.add_argument("--mnist-rounds-after", type=int, default=3000, help="rounds on labels 0-9")
    p.add_argument("--eval-images", type=int, default=1000, help="fixed evaluation images")
    # Part B: Synthetic, observed_context_dim 8 -> 10
    p.add_argument("--synthetic-rounds-before", type=int, default=2000, help="rounds on 8 features")
    p.add_argument("--synthetic-rounds-after", type=int, default=2000, help="rounds on 10 features")
    p.add_argument("--problem-seed", type=int, default=7, help="the synthetic bandit's seed")
    return p.parse_args()


# ---- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def greedy_accuracy(
    agent: Agent, images: torch.Tensor, labels: torch.Tensor, arms: list[int]
) -> float:
    """Accuracy of the posterior-mean choice among the labels ``arms`` (no sampling).

    Args:
        agent: A LinearTS (disjoint) or NeuralLinearTS trained on MNIST.
        images: (N, 1, 28, 28) float32 in [0, 1].
        labels: (N,) true labels.
        arms: The labels on offer (one-hot rows over the 10 classes).

    Returns:
        The fraction of images whose best-scoring label is the true one (nan if N = 0).
    """
    if len(labels) == 0:
        return float("nan")
    candidates = torch.eye(10)[list(arms)]  # (K, 10) one-hot labels on offer
    scores = []
    for chunk in images.split(256):  # the agent's own posterior-mean scores, batched
        batch = {"context": chunk.numpy(), "candidates": candidates.expand(len(chunk), -1, -1)}
        scores.append(torch.from_numpy(agent.predict(batch)[0]))
    scores = torch.cat(scores)
    predicted = torch.tensor(arms)[scores.argmax(dim=1).cpu()]
    return float((predicted == labels).float().mean())


def play(
    agent: Agent,
    env: gym.Env,
    rounds: int,
    seed: int,
    every: int,
    report: Callable[[int, np.ndarray], None],
) -> np.ndarray:
    """Play ``rounds`` rounds of ``agent`` on ``env``, calling ``report(t, rewards)`` at times."""
    rewards = np.zeros(rounds)
    obs, _ = env.reset(seed=seed)
    for t in range(rounds):
        action = agent.act(obs)
        next_obs, reward, _, _, _ = env.step(action)
        agent.observe(obs, action, reward)
        rewards[t], obs = reward, next_obs
        if (t + 1) % every == 0 or t + 1 == rounds:
            report(t + 1, rewards[: t + 1])
    return rewards


def part_mnist(args: argparse.Namespace) -> dict[str, float]:
    images, labels = load_image_split("MNIST", "test", root=args.data_dir)
    pick = np.random.default_rng(args.seed + 1).choice(len(labels), args.eval_images, False)
    eval_x = torch.from_numpy(images[pick]).float().div_(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    eval_y = torch.from_numpy(labels[pick])
    old_set = torch.isin(eval_y, torch.tensor(OLD_LABELS))
    new_set = ~old_set
    all_labels = [*OLD_LABELS, *NEW_LABELS]

    def old_acc(agent: Agent, arms: list[int]) -> float:
        return greedy_accuracy(agent, eval_x[old_set], eval_y[old_set], arms)

    def new_acc(agent: Agent) -> float:
        return greedy_accuracy(agent, eval_x[new_set], eval_y[new_set], all_labels)

    old_env = gym.make("Bandexa/MNIST-v0", root=args.data_dir, labels=OLD_LABELS)
    new_env = gym.make("Bandexa/MNIST-v0", root=args.data_dir)
    window = args.print_every
    print(
        f"\n=== Part A: MNIST, {args.mnist_agent}: labels 0-7 for {args.mnist_rounds_before} "
        f"rounds, then 0-9 for {args.mnist_rounds_after} ===\n"
        f"evaluation: {int(old_set.sum())} images of 0-7, {int(new_set.sum())} of 8-9 "
        "(greedy: posterior-mean scores, no sampling)"
    )

    agent = make_agent(args.mnist_agent, old_env, seed=args.seed)

    def report_before(t: int, rewards: np.ndarray) -> None:
        print(
            f"[0-7] t={t:5d}  online accuracy (last {window}) {rewards[-window:].mean():.3f}  "
            f"greedy on 0-7 {old_acc(agent, list(OLD_LABELS)):.3f}"
        )

    play(agent, old_env, args.mnist_rounds_before, args.seed, window, report_before)

    # ---- the switch ---------------------------------------------------------------------
    before = old_acc(agent, list(OLD_LABELS))
    template = make_agent(args.mnist_agent, new_env, seed=args.seed + 1)
    evolved = evolve(agent, template)
    after = old_acc(evolved, all_labels)
    new_at_switch = new_acc(evolved)
    print(
        f"switch: greedy accuracy on 0-7 just before {before:.3f} (8 labels offered), "
        f"just after {after:.3f} (10 labels offered); on 8-9 {new_at_switch:.3f}"
    )

    def report_after(t: int, rewards: np.ndarray) -> None:
        print(
            f"[0-9] t={t:5d}  online accuracy (last {window}) {rewards[-window:].mean():.3f}  "
            f"greedy on 0-7 {old_acc(evolved, all_labels):.3f}  on 8-9 {new_acc(evolved):.3f}"
        )

    rewards = play(evolved, new_env, args.mnist_rounds_after, args.seed + 1, window, report_after)
    return {
        "old_before": before,
        "old_after": after,
        "new_at_switch": new_at_switch,
        "old_end": old_acc(evolved, all_labels),
        "new_end": new_acc(evolved),
        "online_end": float(rewards[-window:].mean()),
    }


def part_synthetic(args: argparse.Namespace) -> dict[str, float]:
    def env(observed: int) -> gym.Env:
        return gym.make(
            "Bandexa/Synthetic-v0",
            context_dim=10,
            observed_context_dim=observed,
            problem_seed=args.problem_seed,
        )

    n_before, n_after, window = (
        args.synthetic_rounds_before,
        args.synthetic_rounds_after,
        args.print_every,
    )
    print(
        f"\n=== Part B: Synthetic, neural_linear_ts: 8 of 10 context features for {n_before} "
        f"rounds, then all 10 for {n_after} ===\n(mean regret per round, windows of {window})"
    )
    agent = make_agent("neural_linear_ts", env(8), seed=args.seed)
    first = run(agent, env(8), n_before, seed=args.seed).regrets

    # The template: a cold-start agent for the new env. evolve fills it; `agent` is kept.
    template = make_agent("neural_linear_ts", env(10), seed=args.seed + 1)
    evolved = evolve(agent, template)  # old transitions zero-padded into the new buffer
    dropped = evolve(
        agent, make_agent("neural_linear_ts", env(10), seed=args.seed + 1), old_transitions="drop"
    )
    cold = make_agent("neural_linear_ts", env(10), seed=args.seed + 1)
    # Same seed: all of them see the same rounds (the 8-feature context is a prefix).
    seed = args.seed + 1
    after = {
        "evolved, old rounds padded": run(evolved, env(10), n_after, seed=seed).regrets,
        "evolved, old rounds dropped": run(dropped, env(10), n_after, seed=seed).regrets,
        "cold start on 10 features": run(cold, env(10), n_after, seed=seed).regrets,
        "trained, kept on 8 features": run(agent, env(8), n_after, seed=seed).regrets,
    }

    def windows(regrets: np.ndarray) -> str:
        return " ".join(
            f"{regrets[i : i + window].mean():.3f}" for i in range(0, len(regrets), window)
        )

    print(f"{'before the switch (8 features)':<31} {windows(first)}")
    for name, regrets in after.items():
        print(f"{name:<31} {windows(regrets)}   total {regrets.sum():7.1f}")
    return {
        "before_last": float(first[-window:].mean()),
        **{f"{name} first": float(r[:window].mean()) for name, r in after.items()},
        **{f"{name} last": float(r[-window:].mean()) for name, r in after.items()},
        **{f"{name} total": float(r.sum()) for name, r in after.items()},
    }


def main() -> None:
    args = parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"mnist", "synthetic"}
    if unknown:
        raise SystemExit(f"error: unknown --parts {sorted(unknown)}; choose mnist, synthetic")
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")  # evolve's log line

    # ---- seeding: everything random below derives from args.seed ----------------------
    # Envs draw from their own np_random (reset(seed=...)), agents from their own torch
    # generators (seed=...); encoder initialisation uses torch's global RNG.
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads > 0:  # 0: torch's default (all cores)
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    mnist = part_mnist(args) if "mnist" in parts else None
    synthetic = part_synthetic(args) if "synthetic" in parts else None

    # ---- summary ----------------------------------------------------------------------
    print(f"\nSummary (wall time {time.perf_counter() - start:.1f} s)")
    if mnist is not None:
        print(
            f"  MNIST ({args.mnist_agent}): greedy accuracy on 0-7 {mnist['old_before']:.3f} "
            f"before the switch -> {mnist['old_after']:.3f} after -> {mnist['old_end']:.3f} at "
            f"the end; on 8-9 {mnist['new_at_switch']:.3f} at the switch -> "
            f"{mnist['new_end']:.3f} at the end; online accuracy at the end "
            f"{mnist['online_end']:.3f}"
        )
    if synthetic is not None:
        print(f"  Synthetic: mean regret, last {args.print_every} rounds before the switch "
              f"{synthetic['before_last']:.3f}")  # fmt: skip
        for name in ("evolved, old rounds padded", "evolved, old rounds dropped",
                     "cold start on 10 features", "trained, kept on 8 features"):  # fmt: skip
            print(
                f"    {name:<29} first {args.print_every} rounds {synthetic[name + ' first']:.3f}"
                f"   last {args.print_every} {synthetic[name + ' last']:.3f}"
                f"   total regret {synthetic[name + ' total']:7.1f}"
            )


if __name__ == "__main__":
    main()
