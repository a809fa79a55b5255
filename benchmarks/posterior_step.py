"""Decisions per second of the Bayesian linear regression head against naive references.

One decision = draw w from the posterior → score K candidates (given as float32 (K, d), converted
to float64 once per decision, as an agent does) → argmax → update with the chosen row. All
three implementations use the same NIG model and the same generator-driven gamma sampler:

* ``potter``:     :class:`bandexa_gym.posterior.BayesianLinearRegression` (O(d²) per decision);
* ``naive_inv``:  precision Λ kept; every step ``Σ = inv(Λ)``, ``μ = Σ Zᵀr``, ``cholesky(Σ)``;
* ``step_chol``:  precision Λ kept; every step ``cholesky(Λ)`` + triangular solves.

Also: batched decisions (``sample(B)`` → batched scores → argmax → ``update_batch``) and the
time of ``rebuild`` from chunks. Single-threaded by default. Prints, never asserts; figures are
noisy on a shared machine (best of ``--repeats`` runs is reported).

Usage::

    python benchmarks/posterior_step.py [--quick] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable

import torch

from bandexa_gym.numerics import draw_row_length, gamma_from_normals
from bandexa_gym.posterior import BayesianLinearRegression, score

A0, B0 = 1.0, 1.0
F64 = torch.float64


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def _sigma(a: float, b: float, normals: list[float], gen: torch.Generator) -> float:
    """σ = sqrt(b / Gamma(a)) from the same sampler the head uses."""
    g = gamma_from_normals(a, normals)
    while g is None:
        g = gamma_from_normals(a, torch.randn(17, generator=gen, dtype=F64).tolist())
    return math.sqrt(b / g)


class NaiveInverse:
    """Reference: keeps Λ and Zᵀr; inverts Λ and factorizes Σ at every decision."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.prec = torch.eye(d, dtype=F64)
        self.zr = torch.zeros(d, dtype=F64)
        self.rr, self.n = 0.0, 0

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        cov = torch.linalg.inv(self.prec)
        cov = 0.5 * (cov + cov.T)
        mu = cov @ self.zr
        chol = torch.linalg.cholesky(cov)
        b = B0 + 0.5 * (self.rr - float(mu @ self.zr))
        eps = torch.randn(draw_row_length(self.d, True), generator=gen, dtype=F64)
        sigma = _sigma(A0 + 0.5 * self.n, b, eps[self.d : self.d + 17].tolist(), gen)
        return torch.addmv(mu, chol, eps[: self.d], alpha=sigma)

    def update(self, z: torch.Tensor, r: float) -> None:
        self.prec.addr_(z, z)
        self.zr.add_(z, alpha=r)
        self.rr += r * r
        self.n += 1


class StepCholesky(NaiveInverse):
    """Reference: Cholesky of Λ at every decision, then triangular solves for μ and the draw."""

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        chol = torch.linalg.cholesky(self.prec)
        mu = torch.cholesky_solve(self.zr.unsqueeze(1), chol).squeeze(1)
        b = B0 + 0.5 * (self.rr - float(mu @ self.zr))
        eps = torch.randn(draw_row_length(self.d, True), generator=gen, dtype=F64)
        sigma = _sigma(A0 + 0.5 * self.n, b, eps[self.d : self.d + 17].tolist(), gen)
        noise = torch.linalg.solve_triangular(chol.T, eps[: self.d].unsqueeze(1), upper=True)
        return torch.add(mu, noise.squeeze(1), alpha=sigma)


def _rates(
    steps: dict[str, Callable[[int], None]], per_call: int, min_time: float, repeats: int
) -> dict[str, float]:
    """Best-of-``repeats`` decisions/s of each ``step(i)``, each run lasting >= ``min_time``.

    The runs of the implementations are interleaved, so background load on a shared machine
    hits them alike and their ratios stay meaningful.
    """
    calls_done = dict.fromkeys(steps, 0)
    for name, step in steps.items():  # warm-up
        for i in range(3):
            step(i)
        calls_done[name] = 3
    best = dict.fromkeys(steps, 0.0)
    for _ in range(repeats):
        for name, step in steps.items():
            i, calls, start = calls_done[name], 0, time.perf_counter()
            while True:
                step(i + calls)
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time and calls >= 5:
                    break
            calls_done[name] += calls
            best[name] = max(best[name], calls * per_call / elapsed)
    return best


def _problem(d: int, k: int, pool: int, seed: int) -> tuple[list[torch.Tensor], list[list[float]]]:
    gen = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, generator=gen) / math.sqrt(d)
    sets = [torch.randn(k, d, generator=gen) for _ in range(pool)]
    rewards = [(z @ w_true + 0.1 * torch.randn(k, generator=gen)).double().tolist() for z in sets]
    return sets, rewards


def bench_single(d: int, k: int, min_time: float, repeats: int) -> dict[str, float]:
    sets, rewards = _problem(d, k, pool=32, seed=d * 1000 + k)

    def head_step(head: BayesianLinearRegression) -> Callable[[int], None]:
        gen = torch.Generator().manual_seed(0)

        def step(i: int) -> None:
            Z = sets[i % 32].to(F64)  # (K, d), converted once per decision
            w = head.sample(generator=gen)  # (d,)
            a = int((Z @ w).argmax())
            head.update(Z[a], rewards[i % 32][a])

        return step

    def ref_step(ref: NaiveInverse) -> Callable[[int], None]:
        gen = torch.Generator().manual_seed(0)

        def step(i: int) -> None:
            Z = sets[i % 32].to(F64)
            w = ref.sample(gen)
            a = int((Z @ w).argmax())
            ref.update(Z[a], rewards[i % 32][a])

        return step

    steps = {
        "potter": head_step(BayesianLinearRegression(d)),
        "potter_fixed": head_step(BayesianLinearRegression(d, noise=1.0)),
        "naive_inv": ref_step(NaiveInverse(d)),
        "step_chol": ref_step(StepCholesky(d)),
    }
    return _rates(steps, 1, min_time, repeats)


def bench_batched(b: int, d: int, k: int, min_time: float, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    w_true = torch.randn(d, generator=gen) / math.sqrt(d)
    sets = [torch.randn(b, k, d, generator=gen) for _ in range(8)]
    rewards = [(z @ w_true + 0.1 * torch.randn(b, k, generator=gen)).double() for z in sets]
    rows = torch.arange(b)

    def head_step(head: BayesianLinearRegression) -> Callable[[int], None]:
        sgen = torch.Generator().manual_seed(0)

        def step(i: int) -> None:
            Z = sets[i % 8].to(F64)  # (B, K, d)
            w = head.sample(b, generator=sgen)  # (B, d)
            a = score(Z, w).argmax(dim=1)  # (B,)
            head.update_batch(Z[rows, a], rewards[i % 8][rows, a])

        return step

    steps = {
        "nig": head_step(BayesianLinearRegression(d)),
        "fixed": head_step(BayesianLinearRegression(d, noise=1.0)),
    }
    return _rates(steps, b, min_time, repeats)


def bench_rebuild(n: int, d: int, chunk: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(2)
    w_true = torch.randn(d, generator=gen)
    chunks = []
    for _ in range(n // chunk):
        z = torch.randn(chunk, d, generator=gen)  # float32, as an encoder would give
        chunks.append((z, z @ w_true + 0.1 * torch.randn(chunk, generator=gen)))
    head = BayesianLinearRegression(d)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        head.rebuild(iter(chunks))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    min_time = 0.05 if args.quick else 0.5
    repeats = 1 if args.quick else args.repeats
    print(f"# CPU: {_cpu_name()}; logical CPUs: {os.cpu_count()}")
    print(f"# torch {torch.__version__}; threads: {torch.get_num_threads()}; float64 state")
    print("# single decisions (NIG unless noted): decisions/s, best of", repeats)
    header = (
        f"{'d':>4} {'K':>4} {'potter':>9} {'potter_fixed':>12} {'naive_inv':>9} "
        f"{'step_chol':>9} {'x naive':>8} {'x chol':>7}"
    )
    print(header)
    for d in (32, 64, 128, 256):
        for k in (10, 512):
            r = bench_single(d, k, min_time, repeats)
            print(
                f"{d:>4} {k:>4} {r['potter']:>9.0f} {r['potter_fixed']:>12.0f} "
                f"{r['naive_inv']:>9.0f} {r['step_chol']:>9.0f} "
                f"{r['potter'] / r['naive_inv']:>8.1f} {r['potter'] / r['step_chol']:>7.1f}",
                flush=True,
            )
    rb = bench_batched(256, 64, 10, min_time, repeats)
    print(
        f"# batched B=256, d=64, K=10: {rb['nig']:.0f} decisions/s (NIG), "
        f"{rb['fixed']:.0f} decisions/s (fixed noise)"
    )
    n = 20_000 if args.quick else 100_000
    t = bench_rebuild(n, 128, 10_000, repeats)
    print(f"# rebuild N={n}, d=128, chunks of 10,000: {t:.3f} s")


if __name__ == "__main__":
    main()
