"""Tests of the heads' numerical building blocks: the gamma samplers and the safe Cholesky."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bandexa_gym.heads.numerics import (
    NumericalWarning,
    gamma_from_normals,
    safe_cholesky,
    standard_gamma,
)

F64 = torch.float64


@pytest.mark.parametrize("shape", [0.3, 1.0, 3.5, 250.0])
def test_gamma_sampler_moments(shape: float) -> None:
    # Gamma(shape, 1): mean = var = shape. SE(mean) = sqrt(shape/N); SE(var) ≈ sqrt(μ4 − σ⁴)/√N
    # with μ4 − σ⁴ = 3 shape² + 6 shape − shape² = 2 shape² + 6 shape. 5 SE tolerances.
    gen = torch.Generator().manual_seed(7)
    n = 50_000
    g = standard_gamma(shape, torch.randn(n, 17, generator=gen, dtype=F64), gen)
    assert (g > 0).all()
    assert abs(float(g.mean()) - shape) <= 5 * math.sqrt(shape / n)
    assert abs(float(g.var()) - shape) <= 5 * math.sqrt((2 * shape**2 + 6 * shape) / n)
    scalar = []
    while len(scalar) < 4000:
        value = gamma_from_normals(shape, torch.randn(17, generator=gen, dtype=F64).tolist())
        if value is not None:
            scalar.append(value)
    s = torch.tensor(scalar, dtype=F64)
    assert abs(float(s.mean()) - shape) <= 5 * math.sqrt(shape / s.numel())


# -- safe Cholesky --------------------------------------------------------------------------
def test_safe_cholesky_jitter_retry() -> None:
    # Rank one minus 1e-13·I: indefinite, so the plain factorization fails; the first jitter
    # (1e-10 · mean diag = 1e-10) makes it positive definite.
    A = torch.ones(5, 5, dtype=F64) - 1e-13 * torch.eye(5, dtype=F64)
    assert torch.linalg.cholesky_ex(A).info.item() > 0
    with pytest.warns(NumericalWarning, match=r"jitter 1\.0e-10"):
        L = safe_cholesky(A)
    assert torch.isfinite(L).all()
    assert torch.allclose(L @ L.T, A, atol=1e-8)


def test_safe_cholesky_plain_and_failures() -> None:
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L = safe_cholesky(A)
    assert torch.allclose(L, torch.linalg.cholesky(A))
    with pytest.raises(ValueError, match="non-finite"):
        safe_cholesky(torch.tensor([[1.0, math.nan], [math.nan, 1.0]]))
    with pytest.raises(torch.linalg.LinAlgError):
        safe_cholesky(-torch.eye(3, dtype=F64), max_tries=2)
