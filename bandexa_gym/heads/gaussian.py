"""Conjugate Bayesian linear regression head with O(d²) square-root updates.

The model is ``r = zᵀw + ε`` with ``ε ~ N(0, σ²)`` and, by default, a normal-inverse-gamma
(NIG) prior ``w | σ² ~ N(0, σ² · prior_var · I)``, ``σ² ~ InvGamma(a0, b0)``; with
``noise=<float>`` the noise variance is fixed and the prior is ``w ~ N(0, prior_var · I)``.

The state is the posterior mean ``μ`` (d,) and a square-root factor ``S`` (d, d) of the
(σ²-scaled, for NIG) posterior covariance ``Σ = S Sᵀ``, kept in float64
(:class:`~bandexa_gym.heads.square_root.SquareRootGaussian`). One observation costs one
Potter square-root update (three matrix-vector products and a rank-1 ``addr_``, O(d²)); a
Thompson draw is one ``addmv``. No step inverts, solves or re-factorizes the full matrix.
The equations, with the names of the functions that implement them, are in
``docs/references/blr.md``. Refits from sufficient statistics, growing to more features and
re-basing on other hyper-parameters are in :mod:`bandexa_gym.heads.conjugate`.

Scoring is left to the caller as one matmul, ``Z.to(w.dtype) @ w`` (see
:func:`~bandexa_gym.heads.protocol.score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from bandexa_gym.heads.conjugate import ConjugateGaussian
from bandexa_gym.heads.numerics import (
    GAMMA_NORMALS,
    draw_row_length,
    gamma_from_normals,
    safe_cholesky,
    standard_gamma,
)
from bandexa_gym.heads.protocol import HeadConfig, score, score_dtype
from bandexa_gym.heads.square_root import check_dim, covariance_from_factor, resolve_config

__all__ = ["BayesianLinearRegression"]


class BayesianLinearRegression(ConjugateGaussian):
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
        config: The hyper-parameters (:class:`HeadConfig`); or give them one by one:
        prior_var: Prior variance of each weight (times σ² under NIG); default 1.
        noise: ``"nig"`` (default) or a fixed positive noise variance.
        a0: NIG prior shape (> 0); default 1.
        b0: NIG prior scale (> 0); default 1.
        dtype: Floating dtype of the state (float64 recommended).
        device: Device of the state; inputs are moved to it.

    Example:
        >>> head = BayesianLinearRegression(8)
        >>> head.update(torch.randn(8), 0.5)
        >>> w = head.sample(generator=torch.Generator().manual_seed(0))  # (8,)
        >>> scores = torch.randn(10, 8).to(w.dtype) @ w  # (10,)
    """

    _OVERFLOW = (
        "posterior sample is not finite: the state overflowed (rewards or features too "
        "large?); reset() or rebuild() the head"
    )

    def __init__(
        self,
        dim: int,
        config: HeadConfig | None = None,
        *,
        prior_var: float | None = None,
        noise: str | float | None = None,
        a0: float | None = None,
        b0: float | None = None,
        intercept: bool | None = None,
        forgetting: float | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        check_dim(dim)
        fields = {"prior_var": prior_var, "noise": noise, "a0": a0, "b0": b0,
                  "intercept": intercept, "forgetting": forgetting}  # fmt: skip
        config = resolve_config(HeadConfig, config, fields)
        self._noise: str | float = config.noise
        self._a0, self._b0 = config.a0, config.b0
        obs_var = 1.0 if config.noise == "nig" else float(config.noise)
        self._obs_var = obs_var  # σ² for fixed noise; 1 under NIG (Σ is σ²-scaled)
        self._obs_sd = math.sqrt(obs_var)
        super().__init__(dim, config, dtype, device)

    # -- properties -------------------------------------------------------------------
    @property
    def projection(self) -> Tensor:
        """``[S | μ]`` (d', d' + 1): ``z_aug @ projection`` is ``[Sᵀz ; zᵀμ]`` for the
        regressors ``z_aug`` of :meth:`augment` (what :meth:`predict` computes). Read-only:
        the head's own buffer."""
        return self._buf

    def score(self, Z: Tensor, w: Tensor) -> Tensor:
        """Scores of features ``Z`` (..., K, d) under draws ``w`` (d',) or (n, d') of this
        head (see :func:`~bandexa_gym.heads.protocol.score`), the intercept weight included."""
        if not self._intercept:
            return score(Z, w)
        return score(Z, w[..., :-1]) + w[..., -1:].to(score_dtype(Z, w))

    @property
    def config(self) -> HeadConfig:
        """The hyper-parameters."""
        return self._config

    @property
    def noise(self) -> str | float:
        """``"nig"`` or the fixed noise variance."""
        return self._noise

    @property
    def a(self) -> float:
        """NIG posterior shape ``a0 + n / 2`` (bookkeeping only under fixed noise)."""
        return self._a0 + 0.5 * self._n

    @property
    def b(self) -> float:
        """NIG posterior scale ``b0 + quad / 2`` (bookkeeping only under fixed noise)."""
        return self._b0 + 0.5 * self._quad

    def scaled_covariance(self) -> Tensor:
        """``Σ = S Sᵀ`` (d, d): the covariance of ``w`` given σ² divided by σ² under NIG,
        the posterior covariance of ``w`` under fixed noise."""
        return covariance_from_factor(self._S)

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
        if z.shape != (self._features,):
            raise ValueError(f"expected z of shape ({self._features},), got {tuple(z.shape)}")
        z = self.augment(z)
        r = _scalar(r)
        d, g = self._dim, self._forgetting
        v = torch.mv(self._buf.T, z)  # (d + 1,) = [φ = Sᵀz ; zᵀμ]
        phi = v[:d]
        q = float(torch.dot(phi, phi)) / g  # with the discounted S/√γ: φ/√γ, so q/γ
        m = float(v[d])
        s = self._obs_var + q  # predictive variance (divided by σ² under NIG)
        e = r - m
        quad = g * self._quad + e * e / s
        # NaN/inf anywhere in z reaches q (S is non-singular) and NaN/inf in r reaches quad:
        # this is the input check, done before any state is touched.
        if not (math.isfinite(q) and math.isfinite(quad)):
            raise ValueError("z and r must be finite (got a non-finite value, or an overflow)")
        if g != 1.0:  # discount the whole posterior first: Σ/γ, i.e. S/√γ (φ/√γ, Σz/γ)
            self.discount(g)  # (its quad is replaced below: discounted above, with the check)
            phi = phi / math.sqrt(g)
        u = torch.mv(self._S, phi)  # Σ z
        # Potter: S ← S − α γ (Sφ) φᵀ with α = 1/s, γ = 1/(1 + sqrt(α σ²)),
        # i.e. α γ = 1 / (s + σ √s).
        self._S.addr_(u, phi, alpha=-1.0 / (s + self._obs_sd * math.sqrt(s)))
        self._mu.add_(u, alpha=e / s)
        self._quad = quad
        self._logdet += math.log(self._obs_var / s)
        self._n += 1

    def update_batch(self, Z: Tensor, r: Tensor) -> None:
        """Absorb n observations at once, exactly as n calls of :meth:`update` would.

        Andrews' block Potter step in observation space, on chunks of ``c = max(d, 64)``
        rows: ``S ← S − S Φᵀ L⁻ᵀ (L + σI)⁻¹ Φ`` with ``Φ = Z S`` (c, d) and
        ``L Lᵀ = σ² I + Φ Φᵀ`` (c, c), ``μ ← μ + S Φᵀ (L Lᵀ)⁻¹ e``. It gives the same
        square-root factor ``S`` (not only the same ``Σ``) as c sequential Potter updates, so
        a batch and a loop of single updates leave identical states up to round-off (and
        identical Thompson draws from the same generator state). O(n d² + n c d + n c²).

        Args:
            Z: Features (n, d), any real dtype.
            r: Rewards (n,).

        Raises:
            ValueError: Bad shapes or non-finite values; the posterior is left unchanged.
        """
        Z, r = self._checked_batch(Z, r)
        d, n = self._dim, Z.shape[0]
        if n == 0:
            return
        if not bool(torch.isfinite(Z).all() & torch.isfinite(r).all()):
            raise ValueError("Z and r must be finite")
        if self._forgetting != 1.0:  # each row discounts before it: one at a time, exactly
            self._update_rows(Z[:, : self._features], r)
            return
        S, mu, var, sd = self._S, self._mu, self._obs_var, self._obs_sd
        chunk = max(d, 64)
        quad = torch.zeros((), dtype=self._dtype, device=self._device)
        dlogdet = torch.zeros((), dtype=self._dtype, device=self._device)
        for start in range(0, n, chunk):
            Zc, rc = Z[start : start + chunk], r[start : start + chunk]
            phi = Zc @ S  # (c, d)
            e = rc - Zc @ mu  # (c,) innovations
            A = phi @ phi.T
            A.diagonal().add_(var)
            L = safe_cholesky(A)  # (c, c), eigenvalues >= σ²
            y = torch.linalg.solve_triangular(L, e.unsqueeze(1), upper=False)
            quad = quad + y.pow(2).sum()
            W = S @ phi.T  # (d, c) = Σ Zᵀ
            gain = torch.linalg.solve_triangular(L.mT, y, upper=True)  # A⁻¹ e
            mu = mu + (W @ gain).squeeze(1)
            P = L.clone()
            P.diagonal().add_(sd)
            X = torch.linalg.solve_triangular(P, phi, upper=False)  # (L + σI)⁻¹ Φ
            X = torch.linalg.solve_triangular(L.mT, X, upper=True)  # L⁻ᵀ (L + σI)⁻¹ Φ
            S = torch.addmm(S, W, X, alpha=-1.0)
            dlogdet = dlogdet + Zc.shape[0] * math.log(var) - 2.0 * L.diagonal().log().sum()
        scalars = torch.stack((quad, dlogdet)).tolist()
        if not (all(math.isfinite(x) for x in scalars) and bool(torch.isfinite(mu).all())):
            raise ValueError("update overflowed (inputs too large); posterior unchanged")
        self._S.copy_(S)
        self._mu.copy_(mu)
        self._quad += scalars[0]
        self._logdet += scalars[1]
        self._n += n

    def _update_rows(self, Z: Tensor, r: Tensor) -> None:
        """Sequential updates, all-or-nothing (the state is restored if a row fails)."""
        saved = (self._buf.clone(), self._n, self._quad, self._logdet)
        try:
            for z, reward in zip(Z, r.tolist(), strict=True):
                self.update(z, reward)
        except ValueError:
            self._buf.copy_(saved[0])
            self._n, self._quad, self._logdet = saved[1:]
            raise ValueError("update overflowed (inputs too large); posterior unchanged") from None

    # -- prediction and sampling -------------------------------------------------------
    def noise_scale(self) -> float:
        """The factor that turns ``Σ`` into the covariance of ``w`` used by :meth:`predict`.

        Fixed noise: 1 (``Σ`` is the covariance). NIG: the posterior mean of the noise
        variance, ``E[σ²] = b / (a − 1)``; where that mean is infinite (``a <= 1``, only
        before any data with ``a0 <= 1``), the scale ``b / a`` of the marginal t.
        """
        if self._noise != "nig":
            return 1.0
        a = self.a
        return self.b / (a - 1.0) if a > 1.0 else self.b / a

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of the expected reward ``zᵀw`` of every row of ``Z``.

        ``mean = Z μ``; ``variance = c · ‖Sᵀ z‖²`` with ``Σ = S Sᵀ`` and ``c`` =
        :meth:`noise_scale` (1 for fixed noise; ``E[σ²]`` under NIG): the diagonal of
        ``c · Z Σ Zᵀ``, all K rows at O(K d²), without forming ``Σ``. It is the variance of
        the mean reward, not of a new observation (add the noise variance for that).

        Args:
            Z: Features (..., K, d), any real dtype.

        Returns:
            ``(mean, variance)``, each (..., K) in ``dtype``.
        """
        Z = Z.to(dtype=self._dtype, device=self._device)
        f = self._features
        if Z.shape[-1] != f:
            raise ValueError(f"expected Z of shape (..., K, {f}), got {tuple(Z.shape)}")
        proj = Z @ self._buf[:f]  # (..., K, d' + 1) = [Sᵀz ; zᵀμ] per row
        if self._intercept:
            proj = proj + self._buf[f]  # the constant regressor's row
        variance = proj[..., : self._dim].pow(2).sum(-1).mul_(self.noise_scale())
        return proj[..., self._dim], variance

    def _draw_row_length(self) -> int:
        return draw_row_length(self._dim, self._noise == "nig")

    def draws_from_normals(
        self,
        normals: Tensor,
        generator: torch.Generator | None = None,
        gammas: Tensor | None = None,
    ) -> Tensor:
        """The posterior draws that rows of standard normals give, as :meth:`sample` makes
        them: (n, d') from (n, :func:`~bandexa_gym.heads.numerics.draw_row_length`)
        normals, one row per draw: NIG ``σ² ~ InvGamma(a, b)``, ``w = μ + σ S ε``; fixed
        noise ``w = μ + S ε``; ``ε ~ N(0, I)`` (the row's first d' normals, then the gamma
        variate's).

        Lets a caller draw the normals of several heads in one call and hand each head its
        rows (the same numbers as the heads' own ``sample`` calls, in the same order).

        Args:
            normals: (n, draw_row_length(d', nig)) standard normals.
            generator: Used only in the rare case that a gamma variate needs more normals.
            gammas: The NIG draws' Gamma(a) variates (n,), if the caller already made them
                from these normals (:func:`~bandexa_gym.heads.numerics.standard_gamma` over
                several heads at once); ignored with fixed noise.

        Raises:
            FloatingPointError: A draw is not finite (the posterior has overflowed).
        """
        if self._noise != "nig" or (gammas is None and normals.shape[0] == 1):
            return super().draws_from_normals(normals, generator)
        d = self._dim
        if gammas is None:
            gammas = standard_gamma(self.a, normals[:, d : d + GAMMA_NORMALS], generator)
        scales = (self.b / gammas).sqrt().unsqueeze(1)
        return self._finite(torch.addcmul(self._mu, scales, normals[:, :d] @ self._S.T))

    def _draw(self, row: Tensor, generator: torch.Generator | None) -> Tensor:
        if self._noise != "nig":
            return super()._draw(row, generator)
        d = self._dim  # one NIG draw: a Python gamma step and one addmv are cheapest
        gamma_normals = row[d : d + GAMMA_NORMALS]
        g = gamma_from_normals(self.a, gamma_normals.tolist())
        if g is None:  # probability <= 0.05**8 per draw
            g = float(standard_gamma(self.a, gamma_normals[None], generator)[0])
        scale = math.sqrt(self.b / g) if g > 0.0 else math.inf  # g underflows: a ≪ 1
        return self._finite(torch.addmv(self._mu, self._S, row[:d], alpha=scale))

    def _score_each(self, Z: Tensor, w: Tensor) -> Tensor:
        f = self._features
        scores = (Z.to(dtype=w.dtype, device=w.device) * w[..., :f]).sum(-1)
        return scores + w[..., f] if self._intercept else scores

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

    # -- persistence ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and Python scalars describing the head (copies)."""
        return {
            "dim": self._features,
            "intercept": self._intercept,
            "noise": self._noise,
            "prior_var": self._prior_var,
            "a0": self._a0,
            "b0": self._b0,
            "forgetting": self._forgetting,
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
        keys = (
            "dim",
            "noise",
            "prior_var",
            "a0",
            "b0",
            "mean",
            "sqrt_covariance",
            "n_obs",
            "quad",
            "logdet",
        )  # fmt: skip  (forgetting: optional, default 1)
        settings = {"noise": None, "prior_var": None, "a0": None, "b0": None,
                    "intercept": False, "forgetting": 1.0}  # fmt: skip
        mean, factor = self._checked_state(state, keys, settings)
        n, quad, logdet = float(state["n_obs"]), float(state["quad"]), float(state["logdet"])
        finite = bool(torch.isfinite(mean).all() & torch.isfinite(factor).all())
        if not finite or not n >= 0 or not math.isfinite(quad) or not math.isfinite(logdet):
            raise ValueError("state_dict holds non-finite values or a negative n_obs")
        self._S.copy_(factor)
        self._mu.copy_(mean)
        self._n = int(n) if n.is_integer() else n
        self._quad, self._logdet = quad, logdet

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._features}, noise={self._noise!r}, "
            f"prior_var={self._prior_var}, n_obs={self._n}, device={self._device})"
        )


def _scalar(r: Any) -> float:
    try:
        return float(r)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"r must be a real scalar, got {r!r}") from err
