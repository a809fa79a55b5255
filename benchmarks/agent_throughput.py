"""Rounds per second of a full NeuralLinearTS round, per environment.

A round is: encode the K candidates, draw from the posterior, score, step the env, rank-1
update, store the transition; every ``train_every`` rounds the encoder trains for
``optimizer_steps`` minibatches and the head is rebuilt from the whole replay buffer. The
reference, in the same run, is the same agent with a rebuild that re-encodes the buffer
one transition at a time; the ratio is the figure to quote.

    python benchmarks/agent_throughput.py [--rounds 2000] [--envs Bandexa/Synthetic-v0 ...]

Prints, asserts nothing.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import NeuralLinearTS, make_agent
from bandexa_gym.bench import run

ENV_KWARGS = {
    "Bandexa/Synthetic-v0": {},
    "Bandexa/Retrieval-v0": {},
    "Bandexa/MNIST-v0": {},
}


class PerSampleRebuild(NeuralLinearTS):
    """The reference: a rebuild that encodes the buffer one transition at a time."""

    def rebuild_posterior(self, chunk_size: int | None = None) -> None:
        self.encoder.eval()
        with torch.no_grad():
            self.posterior.reset()
            for x, a, r in self.buffer.iter_chunks(self.config.rebuild_chunk):
                for xi, ai, ri in zip(x, a, r, strict=True):
                    self.posterior.update(self.encoder.encode(xi, ai), float(ri))


def measure(env_id: str, rounds: int, reference: bool, **agent_kwargs) -> float:
    env = gym.make(env_id, **ENV_KWARGS[env_id])
    agent = make_agent("neural_linear_ts", env, seed=0, **agent_kwargs)
    if reference:
        agent = PerSampleRebuild(agent.encoder, config=agent.config, seed=0)
    return run(agent, env, rounds, seed=0).decisions_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--envs", nargs="+", default=list(ENV_KWARGS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cadence = {"train_every": 50, "optimizer_steps": 50, "warmup_random": 0}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, {cadence}")
    print(f"{'env':<24}{'rounds/s':>10}{'reference':>11}{'ratio':>8}")
    for env_id in args.envs:
        ours = measure(env_id, args.rounds, False, **cadence)
        ref = measure(env_id, args.rounds, True, **cadence)
        print(f"{env_id:<24}{ours:>10.0f}{ref:>11.0f}{ours / ref:>7.1f}x", flush=True)


if __name__ == "__main__":
    main()
