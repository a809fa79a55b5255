"""02 — MNIST bandit: LinearTS vs NeuralLinearTS on image contexts.

Each round shows one MNIST test image (the context) and offers the 10 labels as arms
(one-hot rows). The agent guesses a label and only learns whether that guess was right:
reward 1 if it is the true digit, else 0. Bandit feedback, not supervised labels.

* LinearTS: one Bayesian linear head per label over the 784 raw pixels (the
  ``disjoint`` feature map), i.e. a Bayesian linear classifier learned from bandit
  feedback, always on the original (1, 28, 28) image.
* NeuralLinearTS: a learned embedding z = φ(image, label) under a Bayesian linear head.
  ``--encoder convnet`` (default) is a small ConvNet on (1, 28, 28) with an in-memory
  replay buffer. ``--encoder resnet18`` ... ``resnet152`` is a torchvision ResNet
  backbone with a parallel action path; images are resized to (3, S, S) with ImageNet
  normalisation (S = ``--resnet-image-size``, 224 by default) and, by default, stored in a
  disk-backed replay buffer. The freeze policy (default: only ``layer4`` of the backbone
  trains) is in ``examples/_resnet_backbone.py``.

Both agents play their own env reset with the same seed, so they see the same images in
the same order (the walk through the data does not depend on the actions).

Run (the MNIST test split must be under $BANDEXA_DATA/MNIST/raw or --data-dir):
    python examples/02_mnist_bandit.py --help
    python examples/02_mnist_bandit.py
    python examples/02_mnist_bandit.py --plot --sanity-check-save-load
    python examples/02_mnist_bandit.py --encoder resnet18 --no-pretrained \\
        --resnet-image-size 64 --horizon 1000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import _resnet_backbone  # examples/_resnet_backbone.py: the ResNet freeze policy
import gymnasium as gym
import numpy as np
import torch
from _common import add_output_args, plot_curves, save_agents  # examples/_common.py

import bandexa_gym
from bandexa_gym.agents import Agent, LinearTS, NeuralLinearTS, NeuralLinearTSConfig
from bandexa_gym.buffers import DiskReplayBuffer, MemoryReplayBuffer, ReplayBuffer
from bandexa_gym.encoders import RESNET_ARCHS, ConvEncoder, preprocess_mnist_for_resnet
from bandexa_gym.posterior import HeadConfig

gym.register_envs(bandexa_gym)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    # run
    p.add_argument("--horizon", type=int, default=3000, help="rounds (images) to play")
    p.add_argument("--seed", type=int, default=0, help="seed of the envs and the agents")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default, all cores; more helps a ResNet)",
    )
    p.add_argument("--data-dir", default=None, help="MNIST root (default: $BANDEXA_DATA)")
    p.add_argument("--print-every", type=int, default=250, help="progress line every N rounds")
    p.add_argument("--window", type=int, default=250, help="moving-average window (rounds)")
    # encoder
    p.add_argument("--encoder", default="convnet", choices=("convnet", *RESNET_ARCHS))
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="ResNet: random init instead of ImageNet weights (no download)",
    )
    p.add_argument(
        "--resnet-image-size", type=int, default=224, help="ResNet: side of the resized images"
    )
    p.add_argument("--feature-dim", type=int, default=64, help="encoder output size d")
    # Bayesian head and schedule
    p.add_argument(
        "--posterior-prior-var", type=float, default=1.0, help="prior variance (both heads)"
    )
    p.add_argument("--warmup-random", type=int, default=200, help="uniform-random rounds before TS")
    p.add_argument("--train-every", type=int, default=50, help="train encoder every N rounds")
    p.add_argument("--optimizer-steps", type=int, default=50, help="gradient steps per burst")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--rebuild-chunk", type=int, default=256, help="rows per rebuild chunk")
    p.add_argument(
        "--action-chunk", type=int, default=None, help="candidates encoded per chunk (all)"
    )
    # replay buffer
    p.add_argument(
        "--buffer-backend",
        default="auto",
        choices=("auto", "memory", "disk"),
        help="auto: memory for convnet, disk for resnet",
    )
    p.add_argument(
        "--buffer-dir",
        default=None,
        help="disk buffer folder, must be empty or new (default: a temp folder, deleted)",
    )
    p.add_argument("--disk-shard-size", type=int, default=256, help="transitions per shard")
    p.add_argument("--disk-cache-shards", type=int, default=4, help="shards kept in the cache")
    p.add_argument("--flush-every", type=int, default=0, help="flush every N adds (0: by shard)")
    # outputs: --plot, --plot-path, --save-path, --sanity-check-save-load
    add_output_args(p, "02_mnist_bandit")
    args = p.parse_args()
    if args.horizon < 1:
        p.error("--horizon must be >= 1")
    args.window = max(1, min(args.window, args.horizon))
    return args


def main() -> None:
    args = parse_args()
    if args.threads > 0:  # 1: small models run fastest, and a busy CPU slows them least
        torch.set_num_threads(args.threads)
    resnet = args.encoder != "convnet"

    # ---- seeding: everything random below derives from args.seed ----------------------
    # The envs draw from their own np_random (env.reset(seed=...)), the agents from their
    # own torch generators (seed=...); encoder initialisation uses torch's global RNG.
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    # ---- one env per agent, same seed -> the same images in the same order -----------
    names = ("linear_ts", "neural_linear_ts")
    envs = {name: gym.make("Bandexa/MNIST-v0", root=args.data_dir) for name in names}
    action_dim = envs["linear_ts"].observation_space["candidates"].shape[-1]

    # ---- NeuralLinearTS: encoder, replay buffer, config -------------------------------
    if resnet:
        try:
            encoder = _resnet_backbone.build_resnet_encoder(
                args.encoder,
                action_dim=action_dim,
                pretrained=not args.no_pretrained,
                image_size=args.resnet_image_size,
                feature_dim=args.feature_dim,
                action_chunk=args.action_chunk,
            )
        except RuntimeError as err:  # pretrained weights neither cached nor downloadable
            raise SystemExit(f"error: {err}\nhint: rerun with --no-pretrained") from None
        print(_resnet_backbone.describe(encoder))
    else:
        encoder = ConvEncoder(
            action_dim, feature_dim=args.feature_dim, action_chunk=args.action_chunk
        )

    backend = args.buffer_backend
    if backend == "auto":
        backend = "disk" if resnet else "memory"
    tmp_dir = None
    if backend == "disk":
        if args.buffer_dir is None:
            tmp_dir = tempfile.TemporaryDirectory(prefix="bandexa-replay-")
        buffer_dir = Path(args.buffer_dir or tmp_dir.name)
        if buffer_dir.exists() and any(buffer_dir.iterdir()):
            raise SystemExit(
                f"error: --buffer-dir {buffer_dir} is not empty; a disk buffer resumes what it "
                "finds there, so pick an empty or new folder"
            )
        buffer: ReplayBuffer = DiskReplayBuffer(
            buffer_dir,
            shard_size=args.disk_shard_size,
            cache_shards=args.disk_cache_shards,
            flush_every=args.flush_every,
        )
    else:
        buffer = MemoryReplayBuffer(max(args.horizon, 1))
    print(f"replay buffer: {buffer!r}")

    config = NeuralLinearTSConfig(
        head=HeadConfig(prior_var=args.posterior_prior_var),
        warmup_random=args.warmup_random,
        train_every=args.train_every,
        optimizer_steps=args.optimizer_steps,
        batch_size=args.batch_size,
        rebuild_chunk=args.rebuild_chunk,
        action_chunk=args.action_chunk,
        loss="bce",  # the reward is 0/1: a logistic readout trains the encoder
    )
    context_shape = envs["linear_ts"].observation_space["context"].shape
    agents: dict[str, Agent] = {
        # one Bayesian linear head per label over raw pixels
        "linear_ts": LinearTS(
            context_shape,
            action_dim,
            feature_map="disjoint",
            prior_var=args.posterior_prior_var,
            seed=args.seed,
            device=args.device,
        ),
        "neural_linear_ts": NeuralLinearTS(
            encoder, buffer=buffer, config=config, device=args.device, seed=args.seed
        ),
    }

    def neural_view(obs: dict) -> dict:
        """The observation as the neural agent sees it (ResNet: (3, S, S), normalised)."""
        if not resnet:
            return obs
        image = preprocess_mnist_for_resnet(
            torch.from_numpy(obs["context"]), args.resnet_image_size
        )
        return {**obs, "context": image.numpy()}

    # ---- online loop ------------------------------------------------------------------
    obs = {name: envs[name].reset(seed=args.seed)[0] for name in names}
    rewards = {name: np.zeros(args.horizon) for name in names}
    regrets = {name: np.zeros(args.horizon) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    views = {"linear_ts": lambda o: o, "neural_linear_ts": neural_view}
    start = time.perf_counter()
    print(
        f"Bandexa/MNIST-v0 ({envs['linear_ts'].unwrapped.num_images} images), "
        f"encoder={args.encoder}, warmup_random={args.warmup_random}, "
        f"train_every={args.train_every}, optimizer_steps={args.optimizer_steps}"
    )
    for t in range(args.horizon):
        assert np.array_equal(obs["linear_ts"]["context"], obs["neural_linear_ts"]["context"])
        for name in names:
            tic = time.perf_counter()
            seen = views[name](obs[name])
            action = agents[name].act(seen)
            next_obs, reward, _, _, info = envs[name].step(action)
            agents[name].observe(seen, action, reward)
            seconds[name] += time.perf_counter() - tic
            rewards[name][t], regrets[name][t] = reward, info["regret"]
            obs[name] = next_obs
        if (t + 1) % args.print_every == 0 or t + 1 == args.horizon:
            lo = max(0, t + 1 - args.window)
            line = " | ".join(
                f"{name}: cum_regret={regrets[name][: t + 1].sum():7.0f} "
                f"ma_accuracy={rewards[name][lo : t + 1].mean():.3f}"
                for name in names
            )
            print(f"t={t + 1:6d} | {line}")

    # ---- summary ----------------------------------------------------------------------
    wall = time.perf_counter() - start
    print(f"\nSummary after {args.horizon} rounds (wall time {wall:.1f} s)")
    for name in names:
        ma = rewards[name][-args.window :].mean()
        print(
            f"  {name:<16} cumulative regret (mistakes) {regrets[name].sum():6.0f}   "
            f"accuracy last {args.window} rounds {ma:.3f}   "
            f"{args.horizon / seconds[name]:6.0f} rounds/s"
        )

    if args.plot:
        plot_curves(
            args.plot_path,
            regrets,
            rewards,
            window=args.window,
            regret_label="cumulative regret (mistakes)",
            averaged_label="accuracy",
            averaged_title="Accuracy",
        )

    if args.save_path or args.sanity_check_save_load:
        folder = args.save_path or "runs/examples/02_mnist_bandit"
        save_agents(
            agents,
            {n: views[n](obs[n]) for n in names},
            folder,
            device=args.device,
            check=args.sanity_check_save_load,
        )

    buffer.close()
    if tmp_dir is not None:
        tmp_dir.cleanup()


if __name__ == "__main__":
    main()
