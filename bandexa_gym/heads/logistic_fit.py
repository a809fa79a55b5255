"""The refit of the Laplace logistic head: the MAP of logistic data by Newton's method.

The negative log posterior of weights ``w`` under the prior ``N(0, prior_var · I)`` is
``f(w) = Σᵢ ωᵢ [log(1 + e^{sᵢ}) − rᵢ sᵢ] + ‖w‖² / (2 prior_var)``, ``sᵢ = zᵢᵀw``, with row
weights ``ωᵢ``. :func:`newton_map` minimizes it by Newton's method with a backtracking
(Armijo) line search, streaming the data through a :data:`Passes` function
(:func:`passes_over`) once per pass: one O(N d²) pass per step for the gradient and the
Hessian (:func:`derivatives`), O(N d) passes for the line search (:func:`objective`), one
O(d³) Cholesky factorization. :class:`~bandexa_gym.heads.logistic.LaplaceLogisticRegression`
turns its result into the Laplace posterior.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from bandexa_gym.heads.numerics import NumericalWarning, safe_cholesky

__all__ = [
    "Passes",
    "RefitInfo",
    "Rows",
    "derivatives",
    "newton_map",
    "objective",
    "passes_over",
    "softplus",
]

_LOG2 = math.log(2.0)

Rows = tuple[Tensor, Tensor, "Tensor | None"]
"""A checked chunk of a refit: features (n, d), rewards (n,), row weights (n,) or None."""


Passes = Callable[[], Iterator[Rows]]
"""A function that iterates over the checked data, once per call."""


class RefitInfo(NamedTuple):
    """How the last :meth:`LaplaceLogisticRegression.rebuild` went.

    Attributes:
        n: Observations in the refit (the sum of their weights).
        steps: Newton steps taken.
        converged: Whether the last Newton step was below the tolerance.
        objective: Negative log posterior at the returned mean (up to a constant).
    """

    n: float
    steps: int
    converged: bool
    objective: float


def passes_over(
    chunks: Iterable[tuple[Any, ...]], checked: Callable[[tuple[Any, ...]], Rows]
) -> Passes:
    """A function that iterates over the data of ``chunks``, each chunk through ``checked``,
    once per call: a re-iterable ``chunks`` is streamed at every call, a one-shot iterator
    read once and kept."""
    if iter(chunks) is chunks:  # a one-shot iterator: read it once and keep it
        parts = [checked(chunk) for chunk in chunks]
        if len(parts) > 1:
            weights = [p[2] if p[2] is not None else torch.ones_like(p[1]) for p in parts]
            weighted = any(p[2] is not None for p in parts)
            parts = [
                (
                    torch.cat([p[0] for p in parts]),
                    torch.cat([p[1] for p in parts]),
                    torch.cat(weights) if weighted else None,
                )
            ]
        return lambda: iter(parts)
    return lambda: (checked(chunk) for chunk in chunks)


def objective(passes: Passes, w: Tensor, prior_var: float) -> float:
    """``f(w)`` in one O(N d) pass."""
    total = 0.5 * w.dot(w) / prior_var
    for Z, r, weights in passes():
        s = Z @ w
        loss = softplus(s) - r * s
        total = total + (loss.sum() if weights is None else loss.dot(weights))
    return float(total)


def derivatives(passes: Passes, w: Tensor, prior_var: float) -> tuple[float, Tensor, Tensor, float]:
    """``(f, ∇f, H, Σω)`` at ``w`` in one O(N d²) pass."""
    d = w.shape[0]
    prec0 = 1.0 / prior_var
    f = 0.5 * w.dot(w) * prec0
    grad = w * prec0
    hess = torch.eye(d, dtype=w.dtype, device=w.device).mul_(prec0)
    n = torch.zeros((), dtype=w.dtype, device=w.device)
    for Z, r, weights in passes():
        s = Z @ w
        loss, resid = softplus(s) - r * s, torch.sigmoid(s) - r
        curvature = torch.sigmoid(s) * torch.sigmoid(-s)  # π (1 − π) without cancellation
        if weights is None:
            f = f + loss.sum()
            n += Z.shape[0]
        else:
            f = f + loss.dot(weights)
            resid, curvature = resid * weights, curvature * weights
            n += weights.sum()
        grad.addmv_(Z.T, resid)
        hess.addmm_(Z.T, Z * curvature.unsqueeze(1))
    f, total = torch.stack((torch.as_tensor(f, dtype=w.dtype), n)).tolist()
    return f, grad, hess, total


def newton_map(
    passes: Passes, start: Tensor, prior_var: float, tol: float, max_steps: int
) -> tuple[Tensor, Tensor, RefitInfo]:
    """Newton's method with backtracking from ``start`` (or 0, if that is not worse), until
    a step moves no weight by more than ``tol · (1 + max|w|)`` or after ``max_steps`` steps
    (a :class:`~bandexa_gym.heads.numerics.NumericalWarning` then).

    Returns:
        ``(w_MAP, chol(H(w_MAP)), info)``.
    """
    w = start.clone()
    f, grad, hess, n = derivatives(passes, w, prior_var)
    if bool(w.any()) and not f < n * _LOG2:  # f(0) = N log 2: start at 0 if not worse
        w = torch.zeros_like(w)
        f, grad, hess, n = derivatives(passes, w, prior_var)
    converged, blind, steps = False, False, 0
    while True:
        L = safe_cholesky(hess)
        step = torch.cholesky_solve(grad.unsqueeze(1), L).squeeze(1)
        size, scale, slope = torch.stack((step.abs().max(), w.abs().max(), grad.dot(step)))
        size, scale, slope = float(size), float(scale), float(slope)  # slope: λ² > 0
        if size <= tol * (1.0 + scale):
            converged = True
            break
        if steps == max_steps:
            break
        if slope <= 1e-12 * (1.0 + abs(f)):
            # The predicted decrease λ²/2 is below what f resolves: a line search would
            # judge round-off. This is the quadratic region: take the full step, once.
            if blind:
                converged = True
                break
            w, blind = w - step, True
        else:
            t, accepted = 1.0, False
            for _ in range(60):
                trial = w - t * step
                if objective(passes, trial, prior_var) <= f - 1e-4 * t * slope:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:  # no decrease at round-off level: w is the minimum
                converged = True
                break
            w = trial
        f, grad, hess, _ = derivatives(passes, w, prior_var)
        steps += 1
    if not converged:
        warnings.warn(
            f"logistic refit did not converge in {max_steps} Newton steps (last "
            f"step {size:.2e}); using the last iterate",
            NumericalWarning,
            stacklevel=3,
        )
    return w, L, RefitInfo(n, steps, converged, f)


def softplus(s: Tensor) -> Tensor:
    """``log(1 + e^s)`` without overflow or the cut-off of ``F.softplus``."""
    return s.clamp_min(0.0) + torch.log1p(torch.exp(-s.abs()))
