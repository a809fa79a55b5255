"""A 40-run grid on the local and the Ray backend, and a grid killed half-way then resumed.

Runs ``bandexa-bench`` as a user would (a child process per grid) on 2 problems x 4 agents
x 5 seeds and prints:

1. the wall time of the grid with the local backend (``--workers N``) and with the Ray
   backend (``--backend ray --workers N``, a local Ray started by the command), and whether
   every run's rewards and regrets are identical between the two;
2. a grid sent SIGINT once half of its runs are on disk, then rerun with ``--resume``: how
   many runs the resume ran, and whether the result equals the uninterrupted grid's.

    python benchmarks/grid_backends.py                    # about 3-4 minutes on 2 cores
    python benchmarks/grid_backends.py --horizon 500 --workers 2

It prints figures and asserts nothing. Needs Ray (``pip install "bandexa-gym[ray]"``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bandexa_gym.grid import RunStore

# -- arguments ---------------------------------------------------------------------------
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--horizon", type=int, default=1000, help="rounds per run")
parser.add_argument("--workers", type=int, default=2, help="runs at once on either backend")
parser.add_argument("--out", type=Path, default=None, help="keep the grids here")
parser.add_argument("--no-resume", action="store_true", help="only compare the backends")
args = parser.parse_args()

GRID = [
    "--env",
    "Bandexa/Synthetic-v0",
    "Bandexa/Pendigits-v0",
    "--agents",
    "uniform",
    "linear_ts",
    "linear_ucb",
    "neural_linear_ts",
    "--num-seeds",
    "5",
    "--horizon",
    str(args.horizon),
    "--workers",
    str(args.workers),
    "--quiet",
]
RUNS = 2 * 4 * 5
ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def bench(*extra: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bandexa_gym.bench", *GRID, *extra]
    return subprocess.run(command, env=ENV, text=True, capture_output=True, check=False, **kwargs)


def curves(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    store = RunStore(out)
    records = {path.stem: store.read(path) for path in store.folder.glob("*.npz")}
    return {name: (r.result.rewards, r.result.regrets) for name, r in records.items() if r.ok}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a
    )


def timed(label: str, out: Path, *extra: str) -> float:
    start = time.perf_counter()
    proc = bench("--out", str(out), *extra)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{label} failed ({proc.returncode}): {proc.stderr}")
    print(f"{label:<34} {seconds:7.1f} s wall, {len(curves(out))} runs")
    return seconds


with tempfile.TemporaryDirectory() as scratch:
    base = args.out or Path(scratch)
    print(f"grid: 2 problems x 4 agents x 5 seeds = {RUNS} runs, {args.horizon} rounds each")

    # -- 1. local vs Ray -------------------------------------------------------------------
    local = timed(f"local --workers {args.workers}", base / "local")
    ray = timed(f"ray --workers {args.workers}", base / "ray", "--backend", "ray")
    print(f"ray / local: {ray / local:.2f}")
    print(f"identical rewards and regrets: {same(curves(base / 'local'), curves(base / 'ray'))}")

    # -- 2. killed half-way, resumed ---------------------------------------------------------
    if args.no_resume:
        sys.exit(0)
    out = base / "killed"
    command = [sys.executable, "-m", "bandexa_gym.bench", *GRID, "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=ENV,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    runs = out / "runs"
    while (
        proc.poll() is None and len(list(runs.glob("*.npz")) if runs.exists() else []) < RUNS // 2
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    signalled = time.perf_counter()
    _, err = proc.communicate()
    stopped = time.perf_counter() - signalled
    first = signalled - start
    kept = {path.name: path.read_bytes() for path in runs.glob("*.npz")}
    print(
        f"killed after {first:.1f} s: exit {proc.returncode}, stopped {stopped:.1f} s after the "
        f"signal, {len(kept)} runs kept"
    )
    start = time.perf_counter()
    resumed = bench("--out", str(out), "--resume")
    second = time.perf_counter() - start
    if resumed.returncode != 0:
        sys.exit(f"--resume failed ({resumed.returncode}): {resumed.stderr}")
    ran = len([p for p in runs.glob("*.npz") if p.name not in kept])
    untouched = all((runs / name).read_bytes() == data for name, data in kept.items())
    print(
        f"--resume: ran {ran} of {RUNS} runs in {second:.1f} s, the {len(kept)} kept runs "
        f"untouched: {untouched} (killed + resumed: {first + stopped + second:.1f} s; "
        f"uninterrupted: {local:.1f} s)"
    )
    print(f"resumed grid equals the uninterrupted one: {same(curves(out), curves(base / 'local'))}")
