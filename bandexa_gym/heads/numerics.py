"""Numerical building blocks of the heads: a safe Cholesky and generator-driven draws.

Kept apart from the heads so that every head shares one implementation: the safe Cholesky
every factorization goes through, the layout of the normals a draw consumes (rows a
multiple of 16 long, so a batch of draws takes the generator's numbers as a loop does),
gamma variates built from those normals, and the seeded initialization of modules. The
math is in ``docs/references/blr.md``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = [
    "GAMMA_NORMALS",
    "NumericalWarning",
    "draw_row_length",
    "gamma_from_normals",
    "gamma_variates",
    "normal_row_length",
    "safe_cholesky",
    "seeded_init",
    "standard_gamma",
]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
# Marsaglia–Tsang candidates drawn up front per gamma variate. The acceptance rate is
# >= 0.95 for shape >= 1, so all candidates are rejected with probability <= 0.05**8; that
# rare case draws fresh candidates (the sampler stays exact, it only costs a second draw).
_MT_CANDIDATES = 8
GAMMA_NORMALS = 2 * _MT_CANDIDATES + 1  # the shape < 1 boost + (x, y) per candidate
# torch's CPU normal sampler fills whole blocks of 16; a draw row that is a multiple of 16
# long makes ``randn(n, L)`` the same numbers as n calls of ``randn(L)``.
_BLOCK = 16


@contextlib.contextmanager
def seeded_init(seed: int | None) -> Iterator[None]:
    """Run a block (module initialization) on torch's global RNG seeded with ``seed``, then
    give the caller back its RNG as it was; ``seed=None`` leaves the RNG's stream as it is
    inside the block (it is still restored after)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        yield


def normal_row_length(used: int) -> int:
    """``used`` normals rounded up to a multiple of 16 (at least 16): the row a draw takes,
    so that a batch of n rows takes the same numbers from the generator as n single calls
    (on the CPU, where torch fills normals in blocks of 16)."""
    return max(_BLOCK, -(-used // _BLOCK) * _BLOCK)


def draw_row_length(dim: int, nig: bool) -> int:
    """Normals one posterior draw consumes: ``d`` (+ the gamma's) rounded up to 16.

    Every draw, single or batched, takes one row of this many normals from the
    generator, so ``sample(n)`` consumes it exactly as ``n`` calls of ``sample()`` do
    (on the CPU, where torch fills normals in blocks of 16).
    """
    return normal_row_length(dim + (GAMMA_NORMALS if nig else 0))


class NumericalWarning(RuntimeWarning):
    """Warned when a factorization needed diagonal jitter to succeed."""


def safe_cholesky(
    matrix: Tensor,
    *,
    max_tries: int = 8,
    jitter: float | None = None,
) -> Tensor:
    """Lower Cholesky factor of a symmetric positive (semi-)definite matrix, with retries.

    The matrix is symmetrized first. When ``torch.linalg.cholesky_ex`` reports failure, the
    factorization is retried with ``jitter · I`` added, starting at ``1e-10 ·
    mean(|diag|)`` (or ``jitter`` if given) and growing ×10 per try, up to ``max_tries``
    tries; success after jitter emits a :class:`NumericalWarning` naming the jitter used.

    Args:
        matrix: Symmetric matrix (..., n, n), floating point.
        max_tries: Jittered attempts after the plain one.
        jitter: First jitter to try (absolute); default ``1e-10 · mean(|diag|)``.

    Returns:
        Lower-triangular ``L`` (..., n, n) with ``L Lᵀ ≈ matrix + jitter · I``; finite.

    Raises:
        ValueError: ``matrix`` is not square or has non-finite entries.
        torch.linalg.LinAlgError: Still not positive definite after ``max_tries`` tries.
    """
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"expected a square matrix (..., n, n), got {tuple(matrix.shape)}")
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError("cannot factorize a matrix with non-finite entries")
    sym = 0.5 * (matrix + matrix.mT)
    factor, info = torch.linalg.cholesky_ex(sym)
    if not bool(info.any()):
        return factor
    diag = sym.diagonal(dim1=-2, dim2=-1)
    if jitter is None:
        scale = float(diag.abs().mean()) if diag.numel() else 1.0
        jitter = 1e-10 * (scale if scale > 0.0 else 1.0)
    eye = torch.eye(sym.shape[-1], dtype=sym.dtype, device=sym.device)
    for _ in range(max_tries):
        factor, info = torch.linalg.cholesky_ex(sym + jitter * eye)
        if not bool(info.any()):
            warnings.warn(
                f"matrix not positive definite; added jitter {jitter:.1e} to the diagonal",
                NumericalWarning,
                stacklevel=2,
            )
            return factor
        jitter *= 10.0
    raise torch.linalg.LinAlgError(
        f"matrix not positive definite even with jitter {jitter / 10.0:.1e} after {max_tries} tries"
    )


def _std_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x * _SQRT1_2)


def gamma_from_normals(shape: float, normals: Sequence[float]) -> float | None:
    """One standard Gamma(shape, 1) variate by Marsaglia–Tsang, from N(0, 1) draws.

    ``normals[0]`` drives the shape < 1 boost; then come the ``x`` of every candidate and
    then their ``y``, the acceptance uniform ``u = Φ(y)`` (the probability-integral
    transform keeps all randomness in the caller's generator). The same layout as
    :func:`standard_gamma`, evaluated in Python floats (cheaper for one variate). Returns
    None when every candidate is rejected.
    """
    boosted = shape < 1.0
    alpha = shape + 1.0 if boosted else shape
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    m = (len(normals) - 1) // 2
    for i in range(1, m + 1):
        x = normals[i]
        t = 1.0 + c * x
        if t <= 0.0:
            continue
        v = t * t * t
        u = _std_normal_cdf(normals[m + i])
        if u <= 0.0 or math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            g = d * v
            if boosted:  # Gamma(a) = Gamma(a + 1) · U^(1/a)
                g *= max(_std_normal_cdf(normals[0]), 1e-300) ** (1.0 / shape)
            return g
    return None


def standard_gamma(
    shape: float | Tensor,
    normals: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """Standard Gamma(shape, 1) variates (n,), one per row of ``normals`` (n, 2m + 1).

    Vectorized Marsaglia–Tsang with the layout of :func:`gamma_from_normals`:
    ``torch._standard_gamma`` takes no generator, so the variates are built from normals
    drawn with ``generator`` (uniforms as ``Φ(y)``): exact rejection sampling whose first
    accepted candidate per row is kept; rows with none accepted are redrawn. ``shape`` is
    one number, or one per row (n,).
    """
    m = (normals.shape[1] - 1) // 2
    per_row = isinstance(shape, Tensor)
    a = (
        shape.to(normals)
        if per_row
        else torch.full(
            (normals.shape[0],), float(shape), dtype=normals.dtype, device=normals.device
        )
    )
    boosted = a < 1.0
    alpha = torch.where(boosted, a + 1.0, a)
    d = (alpha - 1.0 / 3.0).unsqueeze(1)
    c = 1.0 / torch.sqrt(9.0 * d)
    x, log_u = normals[:, 1 : m + 1], torch.special.log_ndtr(normals[:, m + 1 :])
    t = 1.0 + c * x
    v = t * t * t
    bound = 0.5 * x * x + d * (1.0 - v + torch.log(v.clamp_min(1e-300)))
    accepted = (t > 0.0) & (log_u < bound)
    first = accepted.to(torch.uint8).argmax(dim=1, keepdim=True)
    g = (d * v).gather(1, first).squeeze(1)
    if bool(boosted.any()):
        boost = torch.exp(torch.special.log_ndtr(normals[:, 0]) / a)
        g = torch.where(boosted, g * boost, g)
    missing = ~accepted.any(dim=1)
    if bool(missing.any()):
        rows = missing.nonzero().squeeze(1)
        fresh = torch.randn(
            rows.numel(), normals.shape[1], generator=generator, dtype=normals.dtype,
            device=normals.device,
        )  # fmt: skip
        g[rows] = standard_gamma(a[rows], fresh, generator)
    return g


def gamma_variates(shape: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gamma(shape) variates, one per element of ``shape`` (any shape, > 0).

    Marsaglia–Tsang with 4 candidates and plain uniforms (``torch.rand``) for the
    acceptance test: exact, and cheaper than :func:`standard_gamma`, whose layout (normals
    only, fixed per draw) keeps posterior draws consuming the generator identically in
    batches; use this one where that does not matter (Monte Carlo estimates). Elements with
    no accepted candidate (probability <= 0.05⁴ for shape >= 1) are redrawn.
    """
    flat = shape.reshape(-1)
    boosted = flat < 1.0
    d = (torch.where(boosted, flat + 1.0, flat) - 1.0 / 3.0).unsqueeze(1)
    c = 1.0 / torch.sqrt(9.0 * d)
    n = flat.numel()
    x = torch.randn(n, 4, generator=generator, dtype=flat.dtype, device=flat.device)
    u = torch.rand(n, 5, generator=generator, dtype=flat.dtype, device=flat.device)
    t = 1.0 + c * x
    v = t * t * t
    bound = 0.5 * x * x + d * (1.0 - v + torch.log(v.clamp_min(1e-300)))
    accepted = (t > 0.0) & (torch.log(u[:, :4]) < bound)
    g = (d * v).gather(1, accepted.to(torch.uint8).argmax(dim=1, keepdim=True)).squeeze(1)
    if bool(boosted.any()):
        g = torch.where(boosted, g * u[:, 4].pow(1.0 / flat), g)
    missing = ~accepted.any(dim=1)
    if bool(missing.any()):
        g[missing] = gamma_variates(flat[missing], generator)
    return g.reshape(shape.shape)
