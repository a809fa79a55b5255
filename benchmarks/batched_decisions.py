"""Batched decisions: Thompson sampling on B contexts at once, and vector envs.

Two measurements, on whatever device is given (``--device cuda`` on a GPU):

1. **Head alone**: B = 4,096 contexts, K = 512 candidates each, d = 128 features: one
   batched posterior draw ``sample(B)``, one batched score ``Z @ w``, one argmax — the
   decision arithmetic of ``neural_linear_ts`` on precomputed features (about 0.4 GFLOP
   per batch). Reported as decisions/s, against the same decisions taken one context at a
   time in the same run.
2. **Vector env**: ``neural_linear_ts`` on a ``SyncVectorEnv`` of 16 ``Bandexa/Synthetic-v0``
   envs sharing one problem: rounds/s of the batched path (one ``act`` and one ``observe``
   per step for all 16 rows) against the per-row loop (16 single ``act``/``observe`` calls
   per step), with training off (``train_every=0``) and with the default cadence, and the
   regret of both (equal: batched and looped agents make the same choices).

    python benchmarks/batched_decisions.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def head_alone(device: torch.device, batch: int, k: int, d: int, repeats: int) -> dict[str, float]:
    from bandexa_gym.posterior import BayesianLinearRegression

    gen = torch.Generator(device=device).manual_seed(0)
    head = BayesianLinearRegression(d, device=device)
    Z0 = torch.randn(256, d, dtype=torch.float64, device=device, generator=gen)
    head.update_batch(
        Z0, Z0[:, 0] + 0.1 * torch.randn(256, dtype=torch.float64, device=device, generator=gen)
    )
    Z = torch.randn(
        batch, k, d, device=device, generator=gen
    )  # float32 features, as an encoder gives
    mask = torch.ones(batch, k, dtype=torch.bool, device=device)
    keys = torch.rand(batch, k, device=device, generator=gen)
    from bandexa_gym.exploration import select

    def batched() -> torch.Tensor:
        return select(head.thompson_scores(Z, generator=gen), mask, keys)

    def looped(rows: int) -> None:
        for b in range(rows):
            select(
                head.thompson_scores(Z[b : b + 1], generator=gen), mask[b : b + 1], keys[b : b + 1]
            )

    batched()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        actions = batched()
    actions.cpu()
    _sync(device)
    rate = repeats * batch / (time.perf_counter() - start)
    rows = min(batch, 256)
    start = time.perf_counter()
    looped(rows)
    _sync(device)
    loop_rate = rows / (time.perf_counter() - start)
    return {"batched": rate, "looped": loop_rate}


def vector_env(device: str, steps: int, train_every: int) -> dict[str, float]:
    import gymnasium as gym

    import bandexa_gym  # noqa: F401
    from bandexa_gym.agents import make_agent

    out = {}
    for mode in ("looped", "batched"):
        env = gym.make_vec("Bandexa/Synthetic-v0", num_envs=16, interaction_scale=1.5)
        agent = make_agent("neural_linear_ts", env, seed=0, device=device, train_every=train_every)
        obs, _ = env.reset(seed=0)
        regret = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            if mode == "batched":
                actions = agent.act(obs)
            else:
                rows = [{k: v[i] for k, v in obs.items()} for i in range(16)]
                actions = np.array([agent.act(row) for row in rows])
            next_obs, reward, _, _, info = env.step(actions)
            if mode == "batched":
                agent.observe(obs, actions, reward)
            else:
                for row, action, r in zip(rows, actions, reward, strict=True):
                    agent.observe(row, int(action), float(r))
            regret += float(np.sum(info["regret"]))
            obs = next_obs
        out[f"{mode} rounds/s"] = 16 * steps / (time.perf_counter() - start)
        out[f"{mode} regret"] = regret
        env.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (1 thread)"
    print(f"device: {device} ({name}), torch {torch.__version__}")
    batch, repeats = (1024, 3) if args.quick else (4096, 10)
    figures = head_alone(device, batch, 512, 128, repeats)
    ratio = figures["batched"] / figures["looped"]
    print(
        f"head alone, B={batch}, K=512, d=128: {figures['batched']:,.0f} decisions/s batched, "
        f"{figures['looped']:,.0f} one context at a time ({ratio:.1f}x)"
    )
    steps = 50 if args.quick else 250
    for cadence, label in ((0, "training off"), (50, "train every 50 rounds")):
        figures = vector_env(args.device, steps, cadence)
        batched, looped = figures["batched rounds/s"], figures["looped rounds/s"]
        print(
            f"16-env SyncVectorEnv, {16 * steps} rounds, {label}: batched {batched:,.0f} "
            f"rounds/s vs looped {looped:,.0f} ({batched / looped:.1f}x); regret batched "
            f"{figures['batched regret']:.1f}, looped {figures['looped regret']:.1f}"
        )


if __name__ == "__main__":
    main()
