"""Change and delay: forgetting after change points, and regret as rewards arrive later.

Three measurements on ``Bandexa/Synthetic-v0`` (printed as tables; ``--out DIR`` also
writes ``drift_and_delay.json`` and ``delay.png``):

1. **Forgetting.** Change points every ``--every`` rounds (the reward parameters redrawn):
   regret of ``neural_linear_ts`` with and without ``forgetting=γ``, and the same agents on
   the stationary stream (the cost of forgetting when nothing changes); the same for
   ``linear_ts`` on a linear configuration (``interaction_scale=0``), where stale data is
   its main error.
2. **Delay.** Regret of ``linear_ts`` and ``neural_linear_ts`` with rewards fed back after
   ``fixed:N`` rounds, N in ``--delays``.
3. **Batched feedback.** The same with rewards learned in batches of B (``--batches``).

    python benchmarks/drift_and_delay.py --rounds 20000 --seeds 0 1 2 3 4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np


def _job(spec: dict[str, Any]) -> dict[str, Any]:
    import gymnasium as gym
    import torch

    import bandexa_gym  # noqa: F401
    from bandexa_gym.agents import make_agent
    from bandexa_gym.runner import run

    torch.set_num_threads(1)
    env = gym.make("Bandexa/Synthetic-v0", **spec["env"])
    agent = make_agent(spec["agent"], env, seed=spec["seed"], **spec["settings"])
    start = time.perf_counter()
    result = run(agent, env, spec["rounds"], seed=spec["seed"], **spec["run"])
    return {
        **spec,
        "regret": float(result.regrets.sum()),
        "curve": result.cumulative_regret[::100].tolist(),
        "seconds": time.perf_counter() - start,
    }


def _table(title: str, rows: list[tuple[str, list[float]]]) -> None:
    print(f"\n{title}")
    for label, values in rows:
        v = np.asarray(values)
        print(f"  {label:<52s} {v.mean():>10.1f} ± {v.std():>7.1f}  (n={v.size})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=5000, help="rounds between change points")
    parser.add_argument("--gamma", type=float, default=0.999, help="forgetting factor")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--delays", nargs="+", type=int, default=[0, 10, 100, 1000])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 10, 100, 1000])
    parser.add_argument("--parts", nargs="+", default=["forgetting", "delay", "batch"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    nonlinear = {"interaction_scale": 1.5}
    linear = {"interaction_scale": 0.0}
    change = {"drift": {"kind": "abrupt", "every": args.every}}
    jobs: list[dict[str, Any]] = []

    def add(part: str, label: str, agent: str, env: dict, settings: dict, run: dict) -> None:
        for seed in args.seeds:
            jobs.append(
                {
                    "part": part,
                    "label": label,
                    "agent": agent,
                    "env": env,
                    "settings": settings,
                    "run": run,
                    "seed": seed,
                    "rounds": args.rounds,
                }
            )

    g = {"forgetting": args.gamma}
    if "forgetting" in args.parts:
        for agent, base in (("neural_linear_ts", nonlinear), ("linear_ts", linear)):
            for stream, env in (("change points", {**base, **change}), ("stationary", base)):
                add("forgetting", f"{agent}, {stream}, no forgetting", agent, env, {}, {})
                add("forgetting", f"{agent}, {stream}, forgetting={args.gamma}", agent, env, g, {})
    for agent in ("linear_ts", "neural_linear_ts"):
        env = nonlinear if agent == "neural_linear_ts" else linear
        if "delay" in args.parts:
            for delay in args.delays:
                add("delay", f"{agent}, delay {delay}", agent, env, {}, {"delay": f"fixed:{delay}"})
        if "batch" in args.parts:
            for batch in args.batches:
                add(
                    "batch",
                    f"{agent}, feedback batch {batch}",
                    agent,
                    env,
                    {},
                    {"feedback_batch": batch},
                )

    # Delay 0, feedback batches of 1 and the stationary stream without forgetting are the
    # same run (the runner's ordinary loop): run each distinct configuration once.
    def key(job: dict[str, Any]) -> str:
        run = {k: v for k, v in job["run"].items() if v not in ("fixed:0", 1)}
        fields = (job["agent"], job["env"], job["settings"], run, job["seed"], job["rounds"])
        return json.dumps(fields, sort_keys=True)

    distinct = list({key(job): job for job in jobs}.values())
    start = time.perf_counter()
    done: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(_job, job): key(job) for job in distinct}
        for future in as_completed(futures):
            done[futures[future]] = result = future.result()
            print(
                f"  [{len(done)}/{len(distinct)}] {result['label']}, seed {result['seed']}: "
                f"regret {result['regret']:.1f} ({result['seconds']:.0f} s)",
                flush=True,
            )
    results = [{**done[key(job)], "part": job["part"], "label": job["label"]} for job in jobs]
    by_label: dict[str, list[float]] = {}
    for r in results:
        by_label.setdefault(r["label"], []).append(r["regret"])
    for part in ("forgetting", "delay", "batch"):
        labels = list(dict.fromkeys(r["label"] for r in results if r["part"] == part))
        if labels:
            _table(
                f"{part}: cumulative regret over {args.rounds} rounds, mean ± std over seeds",
                [(label, by_label[label]) for label in labels],
            )
    print(f"\n{len(distinct)} distinct runs in {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "drift_and_delay.json").write_text(json.dumps(results))
        _plot(args.out / "delay.png", results)


def _plot(path: Path, results: list[dict[str, Any]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, part, key in ((axes[0], "delay", "delay"), (axes[1], "batch", "feedback batch")):
        for agent in ("linear_ts", "neural_linear_ts"):
            points = {}
            for r in results:
                if r["part"] == part and r["agent"] == agent:
                    x = int(r["label"].rsplit(" ", 1)[1])
                    points.setdefault(x, []).append(r["regret"])
            if points:
                xs = sorted(points)
                ax.plot(
                    [max(x, 1) for x in xs], [np.mean(points[x]) for x in xs], "o-", label=agent
                )
        ax.set(xscale="log", xlabel=f"{key} (rounds; 0 plotted at 1)", ylabel="cumulative regret")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    os.environ.setdefault(
        "BANDEXA_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    main()
