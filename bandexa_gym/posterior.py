"""Conjugate Bayesian linear regression head with O(d²) square-root updates.

The model is ``r = zᵀw + ε`` with ``ε ~ N(0, σ²)`` and, by default, a normal-inverse-gamma
(NIG) prior ``w | σ² ~ N(0, σ² · prior_var · I)``, ``σ² ~ InvGamma(a0, b0)``; with
``noise=<float>`` the noise variance is fixed and the prior is ``w ~ N(0, prior_var · I)``.

The state is the posterior mean ``μ`` (d,) and a square-root factor ``S`` (d, d) of the
(σ²-scaled, for NIG) posterior covariance ``Σ = S Sᵀ``, kept in float64. One observation
costs one Potter square-root update (three matrix-vector products and a rank-1 ``addr_``,
O(d²)); a Thompson draw is one ``addmv``. No step inverts, solves or re-factorizes the
full matrix. The equations, with the names of the functions that implement them, are in
``docs/references/blr.md``.

Scoring is left to the caller as one matmul, ``Z.to(w.dtype) @ w`` (see :func:`score`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BayesianLinearRegression",
    "NumericalWarning",
    "safe_cholesky",
    "score",
]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
# Marsaglia–Tsang candidates drawn up front per gamma variate. The acceptance rate is
# >= 0.95 for shape >= 1, so all candidates are rejected with probability <= 0.05**8; that
# rare case draws fresh candidates (the sampler stays exact, it only costs a second draw).
_MT_CANDIDATES = 8
_GAMMA_NORMALS = 2 * _MT_CANDIDATES + 1  # the shape < 1 boost + (x, y) per candidate
# torch's CPU normal sampler fills whole blocks of 16; a draw row that is a multiple of 16
# long makes ``randn(n, L)`` the same numbers as n calls of ``randn(L)``.
_BLOCK = 16


def draw_row_length(dim: int, nig: bool) -> int:
    """Normals one posterior draw consumes: ``d`` (+ the gamma's) rounded up to 16.

    Every draw, single or batched, takes one row of this many normals from the
    generator, so ``sample(n)`` consumes it exactly as ``n`` calls of ``sample()`` do
    (on the CPU, where torch fills normals in blocks of 16).
    """
    used = dim + (_GAMMA_NORMALS if nig else 0)
    return max(_BLOCK, -(-used // _BLOCK) * _BLOCK)


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


def score(Z: Tensor, w: Tensor) -> Tensor:
    """Scores of candidate features under weights: one matmul in ``w.dtype``.

    Args:
        Z: Candidate features (K, d), or (n, K, d) with one weight row per leading index.
        w: Weights (d,), or (n, d).

    Returns:
        ``Z @ w`` (K,) for ``w`` (d,); (n, K) for ``w`` (n, d) (``Z`` (K, d) broadcasts).
    """
    Z = Z.to(dtype=w.dtype, device=w.device)
    if w.ndim == 1:
        return Z @ w
    return (Z @ w.unsqueeze(-1)).squeeze(-1)


def _std_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x * _SQRT1_2)


def _gamma_from_normals(shape: float, normals: Sequence[float]) -> float | None:
    """One standard Gamma(shape, 1) variate by Marsaglia–Tsang, from N(0, 1) draws.

    ``normals[0]`` drives the shape < 1 boost; then come the ``x`` of every candidate and
    then their ``y``, the acceptance uniform ``u = Φ(y)`` (the probability-integral
    transform keeps all randomness in the caller's generator). The same layout as
    :func:`_standard_gamma`, evaluated in Python floats (cheaper for one variate). Returns
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


def _standard_gamma(
    shape: float,
    normals: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """Standard Gamma(shape, 1) variates (n,), one per row of ``normals`` (n, 2m + 1).

    Vectorized Marsaglia–Tsang with the layout of :func:`_gamma_from_normals`:
    ``torch._standard_gamma`` takes no generator, so the variates are built from normals
    drawn with ``generator`` (uniforms as ``Φ(y)``): exact rejection sampling whose first
    accepted candidate per row is kept; rows with none accepted are redrawn.
    """
    m = (normals.shape[1] - 1) // 2
    boosted = shape < 1.0
    alpha = shape + 1.0 if boosted else shape
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    x, log_u = normals[:, 1 : m + 1], torch.special.log_ndtr(normals[:, m + 1 :])
    t = 1.0 + c * x
    v = t * t * t
    bound = 0.5 * x * x + d * (1.0 - v + torch.log(v.clamp_min(1e-300)))
    accepted = (t > 0.0) & (log_u < bound)
    first = accepted.to(torch.uint8).argmax(dim=1, keepdim=True)
    g = d * v.gather(1, first).squeeze(1)
    if boosted:
        g = g * torch.exp(torch.special.log_ndtr(normals[:, 0]) / shape)
    missing = ~accepted.any(dim=1)
    if bool(missing.any()):
        rows = missing.nonzero().squeeze(1)
        fresh = torch.randn(
            rows.numel(), normals.shape[1], generator=generator, dtype=normals.dtype,
            device=normals.device,
        )  # fmt: skip
        g[rows] = _standard_gamma(shape, fresh, generator)
    return g


class BayesianLinearRegression:
    """Bayesian linear regression ``r = zᵀw + ε`` with conjugate updates in O(d²).

    Noise models:

    * ``noise="nig"`` (default): unknown noise variance with the normal-inverse-gamma prior
      ``w | σ² ~ N(0, σ² · prior_var · I)``, ``σ² ~ InvGamma(a0, b0)``. The posterior is
      ``w | σ² ~ N(μ, σ² Σ)``, ``σ² ~ InvGamma(a, b)``; marginally ``w`` is a multivariate
      t with ``2a`` degrees of freedom, location ``μ`` and scale ``(b / a) Σ``.
    * ``noise=<float>``: fixed noise variance ``σ²`` and prior ``w ~ N(0, prior_var · I)``;
      the posterior is ``w ~ N(μ, Σ)``.

    State (in ``dtype``, float64 by default): ``μ`` (d,), a square-root factor ``S`` (d, d)
    with ``Σ = S Sᵀ`` (not triangular in general), and Python scalars: the observation
    count ``n``, ``quad = Σᵢ eᵢ² / sᵢ`` with innovations ``eᵢ = rᵢ − zᵢᵀμᵢ₋₁`` and
    ``sᵢ = v + zᵢᵀΣᵢ₋₁zᵢ`` (``v`` = σ² for fixed noise, 1 under NIG), and ``log det Σ``.
    Then ``a = a0 + n / 2``, ``b = b0 + quad / 2`` and :meth:`log_marginal_likelihood` is
    O(1). The math is in ``docs/references/blr.md``.

    ``update`` reads two scalars back to the host to validate the observation and form
    the Potter coefficients in Python (on a GPU this is a synchronization per update, as
    the bandit loop already has one to return an action).

    Args:
        dim: Feature dimension d.
        prior_var: Prior variance of each weight (times σ² under NIG).
        noise: ``"nig"`` or a fixed positive noise variance.
        a0: NIG prior shape (> 0).
        b0: NIG prior scale (> 0).
        dtype: Floating dtype of the state (float64 recommended).
        device: Device of the state; inputs are moved to it.

    Example:
        >>> head = BayesianLinearRegression(8)
        >>> head.update(torch.randn(8), 0.5)
        >>> w = head.sample(generator=torch.Generator().manual_seed(0))  # (8,)
        >>> scores = torch.randn(10, 8).to(w.dtype) @ w  # (10,)
    """

    def __init__(
        self,
        dim: int,
        *,
        prior_var: float = 1.0,
        noise: str | float = "nig",
        a0: float = 1.0,
        b0: float = 1.0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        dim = int(dim)
        _check_positive("prior_var", prior_var)
        _check_positive("a0", a0)
        _check_positive("b0", b0)
        if isinstance(noise, str):
            if noise != "nig":
                raise ValueError(f"noise must be 'nig' or a positive float, got {noise!r}")
            self._noise: str | float = "nig"
            obs_var = 1.0
        else:
            _check_positive("noise", noise)
            self._noise = obs_var = float(noise)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}")
        self._prior_var = float(prior_var)
        self._a0, self._b0 = float(a0), float(b0)
        self._obs_var = obs_var  # σ² for fixed noise; 1 under NIG (Σ is σ²-scaled)
        self._obs_sd = math.sqrt(obs_var)
        self._dtype = dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._dim = dim
        self._set_state(self._prior_factor(dim), torch.zeros(dim, dtype=dtype, device=self._device))
        self._reset_scalars()

    # -- state plumbing ---------------------------------------------------------------
    def _prior_factor(self, dim: int) -> Tensor:
        eye = torch.eye(dim, dtype=self._dtype, device=self._device)
        return eye.mul_(math.sqrt(self._prior_var))

    def _set_state(self, factor: Tensor, mean: Tensor) -> None:
        """Store S and μ side by side in one (d, d + 1) buffer: ``zᵀ[S | μ]`` is one op."""
        d = factor.shape[0]
        buf = torch.empty(d, d + 1, dtype=self._dtype, device=self._device)
        buf[:, :d] = factor
        buf[:, d] = mean
        self._buf = buf
        self._S = buf[:, :d]
        self._mu = buf[:, d]
        self._dim = d
        self._shape = torch.Size([d])

    def _reset_scalars(self) -> None:
        self._n = 0
        self._quad = 0.0
        self._logdet = self._dim * math.log(self._prior_var)

    # -- properties -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return self._dim

    @property
    def n_obs(self) -> int:
        """Number of observations absorbed since the last reset/rebuild."""
        return self._n

    @property
    def noise(self) -> str | float:
        """``"nig"`` or the fixed noise variance."""
        return self._noise

    @property
    def prior_var(self) -> float:
        """Prior variance of each weight."""
        return self._prior_var

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the state."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Device of the state."""
        return self._device

    @property
    def a(self) -> float:
        """NIG posterior shape ``a0 + n / 2`` (bookkeeping only under fixed noise)."""
        return self._a0 + 0.5 * self._n

    @property
    def b(self) -> float:
        """NIG posterior scale ``b0 + quad / 2`` (bookkeeping only under fixed noise)."""
        return self._b0 + 0.5 * self._quad

    @property
    def mean(self) -> Tensor:
        """Posterior mean μ (d,), a copy."""
        return self._mu.clone()

    @property
    def sqrt_covariance(self) -> Tensor:
        """Square-root factor S (d, d) of :meth:`scaled_covariance` (``Σ = S Sᵀ``), a copy."""
        return self._S.clone()

    def scaled_covariance(self) -> Tensor:
        """``Σ = S Sᵀ`` (d, d): the covariance of ``w`` given σ² divided by σ² under NIG,
        the posterior covariance of ``w`` under fixed noise."""
        cov = self._S @ self._S.T
        return 0.5 * (cov + cov.T)

    def covariance(self) -> Tensor:
        """Marginal posterior covariance of ``w`` (d, d).

        Fixed noise: ``Σ``. NIG: the multivariate-t covariance ``b / (a − 1) · Σ``.

        Raises:
            ValueError: Under NIG with ``a <= 1`` (the marginal covariance is infinite);
                use :meth:`scaled_covariance` then.
        """
        if self._noise != "nig":
            return self.scaled_covariance()
        a = self.a
        if a <= 1.0:
            raise ValueError(
                f"the NIG marginal covariance is undefined for a = {a} <= 1; "
                "use scaled_covariance() (Σ, with w | σ² ~ N(μ, σ² Σ))"
            )
        return self.scaled_covariance() * (self.b / (a - 1.0))

    def precision(self) -> Tensor:
        """``Σ⁻¹`` (d, d), computed on demand in O(d³) from S (not kept on the hot path)."""
        eye = torch.eye(self._dim, dtype=self._dtype, device=self._device)
        s_inv = torch.linalg.solve(self._S, eye)
        prec = s_inv.T @ s_inv
        return 0.5 * (prec + prec.T)

    # -- updates ----------------------------------------------------------------------
    def update(self, z: Tensor, r: float | Tensor) -> None:
        """Absorb one observation with a Potter square-root update, O(d²).

        Args:
            z: Features (d,), any real dtype (cast to ``dtype``, moved to ``device``).
            r: Reward, a number or a one-element tensor.

        Raises:
            ValueError: ``z`` has the wrong shape, or ``z``/``r`` is not finite (or so large
                that the update overflows). The posterior is then left unchanged.
        """
        if not (isinstance(z, Tensor) and z.dtype == self._dtype and z.device == self._device):
            z = torch.as_tensor(z).to(device=self._device, dtype=self._dtype)
        if z.requires_grad:
            z = z.detach()
        if z.shape != self._shape:
            raise ValueError(f"expected z of shape ({self._dim},), got {tuple(z.shape)}")
        r = _scalar(r)
        d = self._dim
        v = torch.mv(self._buf.T, z)  # (d + 1,) = [φ = Sᵀz ; zᵀμ]
        phi = v[:d]
        q = float(torch.dot(phi, phi))
        m = float(v[d])
        s = self._obs_var + q  # predictive variance (divided by σ² under NIG)
        e = r - m
        quad = self._quad + e * e / s
        # NaN/inf anywhere in z reaches q (S is non-singular) and NaN/inf in r reaches quad:
        # this is the input check, done before any state is touched.
        if not (math.isfinite(q) and math.isfinite(quad)):
            raise ValueError("z and r must be finite (got a non-finite value, or an overflow)")
        u = torch.mv(self._S, phi)  # Σ z
        # Potter: S ← S − α γ (Sφ) φᵀ with α = 1/s, γ = 1/(1 + sqrt(α σ²)),
        # i.e. α γ = 1 / (s + σ √s).
        self._S.addr_(u, phi, alpha=-1.0 / (s + self._obs_sd * math.sqrt(s)))
        self._mu.add_(u, alpha=e / s)
        self._quad = quad
        self._logdet += math.log(self._obs_var / s)
        self._n += 1

    def update_batch(self, Z: Tensor, r: Tensor) -> None:
        """Absorb n observations at once, exactly, in O(n d²) (square-root form).

        ``n >= d``: one information-form square-root step, ``S ← S L⁻ᵀ`` with
        ``L Lᵀ = I + ΦᵀΦ / σ²``, ``Φ = Z S`` (O(n d² + d³)). ``n < d``: Andrews' block
        Potter step in observation space, ``S ← S − S Φᵀ L⁻ᵀ (L + σI)⁻¹ Φ`` with
        ``L Lᵀ = σ² I + Φ Φᵀ`` (O(n d² + n² d + n³)). Both equal n sequential updates.

        Args:
            Z: Features (n, d), any real dtype.
            r: Rewards (n,).

        Raises:
            ValueError: Bad shapes or non-finite values; the posterior is left unchanged.
        """
        Z = torch.as_tensor(Z).detach().to(device=self._device, dtype=self._dtype)
        r = torch.as_tensor(r).detach().to(device=self._device, dtype=self._dtype)
        d = self._dim
        if Z.ndim != 2 or Z.shape[1] != d:
            raise ValueError(f"expected Z of shape (n, {d}), got {tuple(Z.shape)}")
        n = Z.shape[0]
        if r.shape != (n,):
            raise ValueError(f"expected r of shape ({n},), got {tuple(r.shape)}")
        if n == 0:
            return
        if not bool(torch.isfinite(Z).all() & torch.isfinite(r).all()):
            raise ValueError("Z and r must be finite")
        S, mu, var, sd = self._S, self._mu, self._obs_var, self._obs_sd
        phi = Z @ S  # (n, d)
        e = r - Z @ mu  # (n,) innovations
        if n >= d:
            gram = phi.T @ phi
            gram.div_(var).diagonal().add_(1.0)
            L = safe_cholesky(gram)  # (d, d), eigenvalues >= 1
            h = torch.linalg.solve_triangular(L, (phi.T @ e).unsqueeze(1), upper=False)
            new_S = torch.linalg.solve_triangular(L.mT, S, upper=True, left=False)
            step = (new_S @ h).squeeze(1) / var  # μ' − μ = S L⁻ᵀ L⁻¹ Φᵀ e / σ²
            new_mu = mu + step
            # eᵀ(σ²I + ΦΦᵀ)⁻¹e as a sum of squares (no cancellation):
            # ‖r − Zμ'‖²/σ² + ‖S⁻¹(μ' − μ)‖², with S⁻¹(μ' − μ) = L⁻ᵀ h / σ².
            resid = e - Z @ step
            back = torch.linalg.solve_triangular(L.mT, h, upper=True) / var
            quad = resid.dot(resid) / var + back.pow(2).sum()
            dlogdet = -2.0 * L.diagonal().log().sum()
        else:
            A = phi @ phi.T
            A.diagonal().add_(var)
            L = safe_cholesky(A)  # (n, n), eigenvalues >= σ²
            y = torch.linalg.solve_triangular(L, e.unsqueeze(1), upper=False)
            quad = y.pow(2).sum()
            W = S @ phi.T  # (d, n) = Σ Zᵀ
            gain = torch.linalg.solve_triangular(L.mT, y, upper=True)  # A⁻¹ e
            new_mu = mu + (W @ gain).squeeze(1)
            P = L.clone()
            P.diagonal().add_(sd)
            X = torch.linalg.solve_triangular(P, phi, upper=False)  # (L + σI)⁻¹ Φ
            X = torch.linalg.solve_triangular(L.mT, X, upper=True)  # L⁻ᵀ (L + σI)⁻¹ Φ
            new_S = torch.addmm(S, W, X, alpha=-1.0)
            dlogdet = n * math.log(var) - 2.0 * L.diagonal().log().sum()
        scalars = torch.stack((quad, dlogdet)).tolist()
        if not (all(math.isfinite(x) for x in scalars) and bool(torch.isfinite(new_mu).all())):
            raise ValueError("update overflowed (inputs too large); posterior unchanged")
        self._S.copy_(new_S)
        self._mu.copy_(new_mu)
        self._quad += scalars[0]
        self._logdet += scalars[1]
        self._n += n

    def reset(self) -> None:
        """Return to the prior (keeping ``dim`` and the hyper-parameters)."""
        self._S.copy_(self._prior_factor(self._dim))
        self._mu.zero_()
        self._reset_scalars()

    def rebuild(self, chunks: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Reset to the prior and absorb a stream of ``(Z, r)`` chunks in O(N d²).

        Sufficient statistics ``ZᵀZ``, ``Zᵀr``, ``rᵀr`` and N are accumulated in the state
        dtype; one :func:`safe_cholesky` of ``Λ = I / prior_var + ZᵀZ / σ²`` at the end gives
        ``μ = Λ⁻¹ Zᵀr / σ²``, ``S = L⁻ᵀ`` (upper triangular) and
        ``quad = rᵀr / σ² − μᵀΛμ`` (clamped at 0 against round-off). Under NIG σ² = 1.

        Args:
            chunks: Iterable of ``(Z (n_i, d), r (n_i,))``; read once.

        Raises:
            ValueError: A chunk with bad shapes or non-finite values (the posterior is left
                unchanged: nothing is written before the stream is fully read).
        """
        d, dt, dev = self._dim, self._dtype, self._device
        gram = torch.zeros(d, d, dtype=dt, device=dev)
        zr = torch.zeros(d, dtype=dt, device=dev)
        rr = torch.zeros((), dtype=dt, device=dev)
        n = 0
        for Z, r in chunks:
            Z = torch.as_tensor(Z).detach().to(device=dev, dtype=dt)
            r = torch.as_tensor(r).detach().to(device=dev, dtype=dt)
            if Z.ndim != 2 or Z.shape[1] != d or r.shape != (Z.shape[0],):
                raise ValueError(
                    f"expected chunks of Z (n, {d}) and r (n,), got {tuple(Z.shape)} and "
                    f"{tuple(r.shape)}"
                )
            gram.addmm_(Z.T, Z)
            zr.addmv_(Z.T, r)
            rr.add_(r.dot(r))
            n += Z.shape[0]
        if not bool(torch.isfinite(gram).all() & torch.isfinite(zr).all() & rr.isfinite()):
            raise ValueError("rebuild chunks must be finite")
        var = self._obs_var
        prec = gram.div_(var)
        prec.diagonal().add_(1.0 / self._prior_var)
        L = safe_cholesky(prec)
        rhs = (zr / var).unsqueeze(1)
        mu = torch.cholesky_solve(rhs, L).squeeze(1)
        eye = torch.eye(d, dtype=dt, device=dev)
        factor = torch.linalg.solve_triangular(L, eye, upper=False).T  # L⁻ᵀ
        fit = (L.T @ mu).pow(2).sum()  # μᵀΛμ
        quad, logdet = torch.stack((rr / var - fit, -2.0 * L.diagonal().log().sum())).tolist()
        self._S.copy_(factor)
        self._mu.copy_(mu)
        self._n = n
        self._quad = max(quad, 0.0)
        self._logdet = logdet

    def expand(self, new_dim: int) -> None:
        """Grow to ``new_dim`` features by appending prior blocks for the new trailing ones.

        New weights get the prior (mean 0, variance ``prior_var``, no correlation with the
        old ones); μ, Σ, n, a, b of the old block are kept, so predictions for inputs whose
        new features are zero are unchanged.

        Raises:
            ValueError: ``new_dim < dim``.
        """
        old = self._dim
        if isinstance(new_dim, bool) or not isinstance(new_dim, numbers.Integral) or new_dim < old:
            raise ValueError(f"new_dim must be an int >= dim = {old}, got {new_dim!r}")
        new_dim = int(new_dim)
        if new_dim == old:
            return
        factor = self._prior_factor(new_dim)
        factor[:old, :old] = self._S
        mean = torch.zeros(new_dim, dtype=self._dtype, device=self._device)
        mean[:old] = self._mu
        self._set_state(factor, mean)
        self._logdet += (new_dim - old) * math.log(self._prior_var)

    # -- sampling ---------------------------------------------------------------------
    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Posterior draws of ``w``: NIG ``σ² ~ InvGamma(a, b)``, ``w = μ + σ S ε``; fixed
        noise ``w = μ + S ε``; ``ε ~ N(0, I)``.

        Each draw consumes one row of :func:`draw_row_length` normals from ``generator``
        (``ε``, then the gamma variate's), so ``sample(n)`` takes the same numbers as ``n``
        calls of ``sample()`` (exactly, on the CPU) and ``sample(1)[0]`` equals ``sample()``.

        Args:
            n: Number of draws; None for a single draw.
            generator: Source of all randomness (on ``device``); None uses torch's default.

        Returns:
            (d,) if ``n`` is None, else (n, d), in ``dtype``.

        Raises:
            FloatingPointError: The draw is not finite (the posterior has overflowed).
        """
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rows = 1 if n is None else n
        d, dt, dev = self._dim, self._dtype, self._device
        nig = self._noise == "nig"
        normals = torch.randn(
            rows, draw_row_length(d, nig), generator=generator, dtype=dt, device=dev
        )
        eps = normals[:, :d]
        if rows == 1:  # one draw: a Python gamma step and one addmv are cheapest
            scale = 1.0
            if nig:
                gamma_normals = normals[0, d : d + _GAMMA_NORMALS]
                g = _gamma_from_normals(self.a, gamma_normals.tolist())
                if g is None:  # probability <= 0.05**8 per draw
                    g = float(_standard_gamma(self.a, gamma_normals[None], generator)[0])
                scale = math.sqrt(self.b / g) if g > 0.0 else math.inf  # g underflows: a ≪ 1
            w = torch.addmv(self._mu, self._S, eps[0], alpha=scale).unsqueeze(0)
        elif nig:
            g = _standard_gamma(self.a, normals[:, d : d + _GAMMA_NORMALS], generator)
            w = torch.addcmul(self._mu, (self.b / g).sqrt_().unsqueeze(1), eps @ self._S.T)
        else:
            w = torch.addmm(self._mu, eps, self._S.T)
        if not math.isfinite(float(w.sum())):
            raise FloatingPointError(
                "posterior sample is not finite: the state overflowed (rewards or features "
                "too large?); reset() or rebuild() the head"
            )
        return w[0] if n is None else w

    def thompson_scores(self, Z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Scores of candidates under fresh posterior draws.

        Args:
            Z: Candidates (K, d) scored under one draw, or (n, K, d) under n draws.
            generator: Passed to :meth:`sample`.

        Returns:
            (K,) or (n, K) scores in ``dtype``.
        """
        w = self.sample(None if Z.ndim == 2 else Z.shape[0], generator=generator)
        return score(Z, w)

    def log_marginal_likelihood(self) -> float:
        """Log evidence ``log p(r₁..rₙ | z₁..zₙ)`` of the data absorbed so far, in O(1).

        Fixed noise: ``−n/2 log(2πσ²) + ½ log(det Σ / det Σ₀) − quad / 2``.
        NIG: ``−n/2 log 2π + ½ log(det Σ / det Σ₀) + a0 log b0 − a log b + lnΓ(a) − lnΓ(a0)``.
        """
        n = self._n
        half_logdet_ratio = 0.5 * (self._logdet - self._dim * math.log(self._prior_var))
        if self._noise == "nig":
            a, b = self.a, self.b
            return (
                -0.5 * n * math.log(2.0 * math.pi)
                + half_logdet_ratio
                + self._a0 * math.log(self._b0)
                - a * math.log(b)
                + math.lgamma(a)
                - math.lgamma(self._a0)
            )
        return (
            -0.5 * n * math.log(2.0 * math.pi * self._obs_var)
            + half_logdet_ratio
            - 0.5 * self._quad
        )

    # -- persistence and devices ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and Python scalars describing the head (copies)."""
        return {
            "dim": self._dim,
            "noise": self._noise,
            "prior_var": self._prior_var,
            "a0": self._a0,
            "b0": self._b0,
            "mean": self._mu.clone(),
            "sqrt_covariance": self._S.clone(),
            "n_obs": self._n,
            "quad": self._quad,
            "logdet": self._logdet,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`; the dimension and hyper-parameters must match.

        Raises:
            ValueError: Missing keys, a dimension/hyper-parameter mismatch, tensors of the
                wrong shape, or non-finite values. The head is left unchanged then.
        """
        keys = ("dim", "noise", "prior_var", "a0", "b0", "mean", "sqrt_covariance", "n_obs",
                "quad", "logdet")  # fmt: skip
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state_dict is missing {missing}")
        d = int(state["dim"])
        if d != self._dim:
            raise ValueError(f"state_dict has dim {d}, this head has dim {self._dim}")
        for key in ("noise", "prior_var", "a0", "b0"):
            mine = getattr(self, "_" + key)
            if state[key] != mine:
                raise ValueError(f"state_dict has {key}={state[key]!r}, this head has {mine!r}")
        mean = torch.as_tensor(state["mean"]).to(device=self._device, dtype=self._dtype)
        factor = torch.as_tensor(state["sqrt_covariance"]).to(
            device=self._device, dtype=self._dtype
        )
        if mean.shape != (d,) or factor.shape != (d, d):
            raise ValueError(
                f"expected mean ({d},) and sqrt_covariance ({d}, {d}), got "
                f"{tuple(mean.shape)} and {tuple(factor.shape)}"
            )
        n, quad, logdet = int(state["n_obs"]), float(state["quad"]), float(state["logdet"])
        finite = bool(torch.isfinite(mean).all() & torch.isfinite(factor).all())
        if not finite or n < 0 or not math.isfinite(quad) or not math.isfinite(logdet):
            raise ValueError("state_dict holds non-finite values or a negative n_obs")
        self._S.copy_(factor)
        self._mu.copy_(mean)
        self._n, self._quad, self._logdet = n, quad, logdet

    def to(self, device: str | torch.device) -> BayesianLinearRegression:
        """Move the state to ``device`` (in place); returns self."""
        self._device = torch.device(device)
        self._set_state(self._S.to(self._device), self._mu.to(self._device))
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._dim}, noise={self._noise!r}, "
            f"prior_var={self._prior_var}, n_obs={self._n}, device={self._device})"
        )


def _scalar(r: Any) -> float:
    try:
        return float(r)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"r must be a real scalar, got {r!r}") from err


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
