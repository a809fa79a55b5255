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

:class:`Head` is the interface every head implements (what the exploration rules and the
agents rely on), and :class:`HeadConfig` holds the hyper-parameters that agents,
checkpoints and :func:`bandexa_gym.transfer.evolve` share. The Laplace logistic head for
{0, 1} rewards (:class:`LaplaceLogisticRegression`, :class:`LogisticHeadConfig`) lives in
:mod:`bandexa_gym.posterior_logistic` and is re-exported here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from bandexa_gym.numerics import (
    GAMMA_NORMALS,
    NumericalWarning,
    draw_row_length,
    gamma_from_normals,
    safe_cholesky,
    standard_gamma,
)
from bandexa_gym.posterior_logistic import LaplaceLogisticRegression, LogisticHeadConfig

__all__ = [
    "HEAD_FIELDS",
    "BayesianLinearRegression",
    "accumulate_statistics",
    "Head",
    "HeadConfig",
    "LaplaceLogisticRegression",
    "LogisticHeadConfig",
    "NumericalWarning",
    "rebase_head_state",
    "safe_cholesky",
    "score",
]


_OVERFLOW = (
    "posterior sample is not finite: the state overflowed (rewards or features too large?); "
    "reset() or rebuild() the head"
)


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of a Bayesian linear head, shared by agents, checkpoints and evolve.

    Attributes:
        prior_var: Prior variance of each weight (times σ² under NIG), > 0.
        noise: ``"nig"`` (unknown noise variance, normal-inverse-gamma prior) or a fixed
            positive noise variance.
        a0: Inverse-gamma shape of the noise prior (NIG only), > 0.
        b0: Inverse-gamma scale of the noise prior (NIG only), > 0.
        intercept: Regress on ``[z; 1]``: a weight for a constant feature, with the same prior
            as the others, so the head can fit a mean reward of its own (what standardized
            rewards, centered at the overall mean, need from per-arm heads). The agents turn
            it on by default; a bare head has none.
        forgetting: Discount factor γ in (0, 1]: before every update the whole posterior is
            discounted (precision × γ; the data's counts too), so an observation ``k``
            updates old weighs ``γᵏ`` — for rewards that drift. ``rebuild`` keeps the prior
            and weights each row by ``γ^age`` instead. 1 (default) forgets nothing.

    Raises:
        ValueError: A value out of range or of the wrong type (named in the message), at
            construction, so that a bad setting fails before anything runs.
    """

    prior_var: float = 1.0
    noise: str | float = "nig"
    a0: float = 1.0
    b0: float = 1.0
    intercept: bool = False
    forgetting: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.intercept, bool):
            raise TypeError(f"intercept must be True or False, got {self.intercept!r}")
        for name in ("prior_var", "a0", "b0", "forgetting"):
            _check_positive(name, getattr(self, name))
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.forgetting > 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting!r}")
        if isinstance(self.noise, str):
            if self.noise != "nig":
                raise ValueError(f"noise must be 'nig' or a positive number, got {self.noise!r}")
        else:
            _check_positive("noise", self.noise)
            object.__setattr__(self, "noise", float(self.noise))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadConfig:
        """Build from :meth:`to_dict` output (unknown keys are a ``ValueError``)."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown head settings {sorted(unknown)}")
        return cls(**values)


HEAD_FIELDS: tuple[str, ...] = tuple(HeadConfig.__dataclass_fields__)
"""The names of :class:`HeadConfig`'s fields (the settings agents accept one by one)."""


@runtime_checkable
class Head(Protocol):
    """What an exploration rule and an agent need from a Bayesian head over features ``z``.

    Shapes: ``Z`` is (..., K, d), one row per candidate; scores, means and variances are
    (..., K). :class:`BayesianLinearRegression` is the reference implementation.
    """

    @property
    def dim(self) -> int:
        """Feature dimension d."""
        ...

    def update(self, z: Tensor, r: float | Tensor) -> None:
        """Absorb one observation (d,), r."""
        ...

    def update_batch(self, Z: Tensor, r: Tensor) -> None:
        """Absorb n observations (n, d), (n,) exactly as n calls of :meth:`update`."""
        ...

    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Posterior draws of the weights: (d,) or (n, d)."""
        ...

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of ``zᵀw`` for every row of ``Z``."""
        ...

    def thompson_scores(self, Z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Scores of the rows of ``Z`` under posterior draws (one draw per leading index)."""
        ...

    def rebuild(self, chunks: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Reset to the prior and absorb a stream of ``(Z, r)`` chunks."""
        ...

    def reset(self) -> None:
        """Return to the prior."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Tensors and scalars that describe the head."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict` output; all-or-nothing."""
        ...


def score_dtype(Z: Tensor, w: Tensor) -> torch.dtype:
    """The precision :func:`score` works in: the features', if floating, else the draw's."""
    return Z.dtype if Z.dtype in (torch.float32, torch.float64) else w.dtype


def score(Z: Tensor, w: Tensor) -> Tensor:
    """Scores of candidate features under weights: one matmul in the features' precision.

    Float32 features (a neural encoder's) are scored in float32 with the draw rounded to
    float32, which keeps a batch of B × K candidates from being copied to float64 (the
    scores only rank candidates); float64 features are scored in float64.

    Args:
        Z: Candidate features (K, d), or (n, K, d) with one weight row per leading index.
        w: Weights (d,), or (n, d).

    Returns:
        ``Z @ w`` (K,) for ``w`` (d,); (n, K) for ``w`` (n, d) (``Z`` (K, d) broadcasts).
    """
    dtype = score_dtype(Z, w)
    Z, w = Z.to(dtype=dtype, device=w.device), w.to(dtype)
    if w.ndim == 1:
        return Z @ w
    if w.shape[0] == 1 and Z.ndim == 3:  # one candidate set: the same matrix-vector product
        return (Z[0] @ w[0]).unsqueeze(0)
    return (Z @ w.unsqueeze(-1)).squeeze(-1)


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
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        dim = int(dim)
        fields = {"prior_var": prior_var, "noise": noise, "a0": a0, "b0": b0,
                  "intercept": intercept, "forgetting": forgetting}  # fmt: skip
        given = {k: v for k, v in fields.items() if v is not None}
        if config is not None and given:
            raise ValueError(f"pass either config= or {sorted(given)}, not both")
        config = config if config is not None else HeadConfig(**given)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}")
        self._config = config
        self._noise: str | float = config.noise
        self._prior_var = config.prior_var
        self._a0, self._b0 = config.a0, config.b0
        self._forgetting = config.forgetting
        obs_var = 1.0 if config.noise == "nig" else float(config.noise)
        self._obs_var = obs_var  # σ² for fixed noise; 1 under NIG (Σ is σ²-scaled)
        self._obs_sd = math.sqrt(obs_var)
        self._dtype = dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._features = dim  # input width; the state has one more row with an intercept
        self._intercept = config.intercept
        dim += int(config.intercept)
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
        """Feature dimension d (the width of the ``z`` it takes)."""
        return self._features

    @property
    def state_dim(self) -> int:
        """Rows of the state: d, plus one with an intercept (the last row)."""
        return self._dim

    @property
    def projection(self) -> Tensor:
        """``[S | μ]`` (d', d' + 1): ``z_aug @ projection`` is ``[Sᵀz ; zᵀμ]`` for the
        regressors ``z_aug`` of :meth:`augment` (what :meth:`predict` computes). Read-only:
        the head's own buffer."""
        return self._buf

    def augment(self, Z: Tensor) -> Tensor:
        """The regressors of ``Z`` (..., d): ``[Z, 1]`` with an intercept, else ``Z``."""
        if not self._intercept:
            return Z
        return torch.cat([Z, Z.new_ones((*Z.shape[:-1], 1))], dim=-1)

    def score(self, Z: Tensor, w: Tensor) -> Tensor:
        """Scores of features ``Z`` (..., K, d) under draws ``w`` (d',) or (n, d') of this
        head (see :func:`score`), the intercept weight included."""
        if not self._intercept:
            return score(Z, w)
        return score(Z, w[..., :-1]) + w[..., -1:].to(score_dtype(Z, w))

    @property
    def config(self) -> HeadConfig:
        """The hyper-parameters."""
        return self._config

    @property
    def n_obs(self) -> float:
        """Observations absorbed since the last reset/rebuild (an int; with forgetting or a
        weighted rebuild, the discounted count)."""
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
            self._S.mul_(1.0 / math.sqrt(g))
            phi = phi / math.sqrt(g)
            self._logdet -= d * math.log(g)
            self._n *= g  # (quad was discounted above, with the input check)
        u = torch.mv(self._S, phi)  # Σ z
        # Potter: S ← S − α γ (Sφ) φᵀ with α = 1/s, γ = 1/(1 + sqrt(α σ²)),
        # i.e. α γ = 1 / (s + σ √s).
        self._S.addr_(u, phi, alpha=-1.0 / (s + self._obs_sd * math.sqrt(s)))
        self._mu.add_(u, alpha=e / s)
        self._quad = quad
        self._logdet += math.log(self._obs_var / s)
        self._n += 1

    def discount(self, factor: float) -> None:
        """Discount the whole posterior: precision × ``factor`` (``S ← S / √factor``), and the
        data's counts (``n``, ``quad``) × ``factor``; the mean is kept. O(d²).

        :meth:`update` does this with ``factor = forgetting`` before every observation; an
        agent with several heads (one per arm) calls it on the heads a round did not update,
        so that every head forgets at the same pace.

        Args:
            factor: In (0, 1].
        """
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"a discount factor must be in (0, 1], got {factor!r}")
        if factor == 1.0:
            return
        self._S.mul_(1.0 / math.sqrt(factor))
        self._quad *= factor
        self._n *= factor
        self._logdet -= self._dim * math.log(factor)

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
        Z = torch.as_tensor(Z).detach().to(device=self._device, dtype=self._dtype)
        r = torch.as_tensor(r).detach().to(device=self._device, dtype=self._dtype)
        if Z.ndim != 2 or Z.shape[1] != self._features:
            raise ValueError(f"expected Z of shape (n, {self._features}), got {tuple(Z.shape)}")
        Z, d = self.augment(Z), self._dim
        n = Z.shape[0]
        if r.shape != (n,):
            raise ValueError(f"expected r of shape ({n},), got {tuple(r.shape)}")
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

    def reset(self) -> None:
        """Return to the prior (keeping ``dim`` and the hyper-parameters)."""
        self._S.copy_(self._prior_factor(self._dim))
        self._mu.zero_()
        self._reset_scalars()

    def rebuild(self, chunks: Iterable[tuple[Tensor, ...]]) -> None:
        """Reset to the prior and absorb a stream of ``(Z, r)`` chunks in O(N d²).

        Sufficient statistics ``ZᵀWZ``, ``ZᵀWr``, ``rᵀWr`` and ``ΣW`` are accumulated in the
        state dtype, then :meth:`rebuild_from_statistics` sets the posterior from them. A
        chunk may carry row weights ``w`` (n_i,) as a third element — ``γ^age`` rebuilds a
        forgetting head with the data discounted and the prior kept; 0/1 weights give a
        sliding window. Without weights every row counts once.

        Args:
            chunks: Iterable of ``(Z (n_i, d), r (n_i,))`` or ``(Z, r, w (n_i,))``; read once.

        Raises:
            ValueError: A chunk with bad shapes or non-finite values (the posterior is left
                unchanged: nothing is written before the stream is fully read).
        """
        augmented = ((self._augment_chunk(c[0]), *c[1:]) for c in chunks)
        stats = accumulate_statistics(augmented, self._dim, self._dtype, self._device)
        self.rebuild_from_statistics(*stats)

    def _augment_chunk(self, Z: Tensor) -> Tensor:
        Z = torch.as_tensor(Z)
        if Z.ndim != 2 or Z.shape[1] != self._features:
            raise ValueError(f"expected chunks of Z (n, {self._features}), got {tuple(Z.shape)}")
        return self.augment(Z.to(self._dtype))

    def rebuild_from_statistics(self, gram: Tensor, zr: Tensor, rr: Tensor | float, n: int) -> None:
        """Set the posterior of data with sufficient statistics ``ZᵀZ``, ``Zᵀr``, ``rᵀr``, n.

        One :func:`safe_cholesky` of ``Λ = I / prior_var + ZᵀZ / σ²`` gives
        ``μ = Λ⁻¹ Zᵀr / σ²``, ``S = L⁻ᵀ`` (upper triangular) and
        ``quad = rᵀr / σ² − μᵀΛμ`` (clamped at 0 against round-off); under NIG σ² = 1.
        O(d³). The statistics of transformed targets follow from raw ones, so an agent can
        re-standardize its rewards without keeping the data.

        Args (``Z`` is the regressors, :meth:`augment` of the features; d' = :attr:`state_dim`):
            gram: ``ZᵀZ`` (d', d').
            zr: ``Zᵀr`` (d',).
            rr: ``rᵀr``.
            n: Number of observations (a weighted count may be fractional).

        Raises:
            ValueError: Bad shapes or non-finite statistics; the posterior is left unchanged.
        """
        d, dt, dev = self._dim, self._dtype, self._device
        gram = torch.as_tensor(gram).to(device=dev, dtype=dt)
        zr = torch.as_tensor(zr).to(device=dev, dtype=dt)
        rr = torch.as_tensor(rr).to(device=dev, dtype=dt)
        if gram.shape != (d, d) or zr.shape != (d,) or rr.shape != ():
            raise ValueError(
                f"expected statistics of shapes ({d}, {d}), ({d},) and (), got "
                f"{tuple(gram.shape)}, {tuple(zr.shape)} and {tuple(rr.shape)}"
            )
        if not bool(torch.isfinite(gram).all() & torch.isfinite(zr).all() & rr.isfinite()):
            raise ValueError("rebuild statistics must be finite")
        var = self._obs_var
        prec = gram / var
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

    def retarget(self, zr: Tensor, rr: Tensor | float) -> None:
        """Give the absorbed observations new targets, the same features, in O(d²).

        The precision ``Λ = I / prior_var + ZᵀZ / σ²`` (so ``S``, ``n`` and ``log det Σ``)
        does not depend on the targets; only ``μ = Σ Zᵀr / σ²`` and
        ``quad = rᵀr / σ² − μᵀΛμ`` do, and both follow from the new ``Zᵀr`` and ``rᵀr``
        (``μᵀΛμ = ‖Sᵀ Zᵀr‖² / σ⁴``). Agents use it to re-standardize rewards without the
        data (see :class:`~bandexa_gym.agents.head_agent.RewardScaler`).

        Args:
            zr: ``Zᵀr`` (d,) of the absorbed observations with the new targets.
            rr: ``rᵀr`` of the new targets.

        Raises:
            ValueError: Bad shape or non-finite values; the posterior is left unchanged.
        """
        zr = torch.as_tensor(zr).to(device=self._device, dtype=self._dtype)
        if zr.shape != (self._dim,) or not bool(torch.isfinite(zr).all()):
            raise ValueError(
                f"expected a finite Zᵀr of shape ({self._dim},), got {tuple(zr.shape)}"
            )
        var = self._obs_var
        half = torch.mv(self._S.T, zr) / var  # Sᵀ Zᵀr / σ²
        mu = torch.mv(self._S, half)
        quad = float(rr) / var - float(half.dot(half))
        if not (math.isfinite(quad) and bool(torch.isfinite(mu).all())):
            raise ValueError("retarget overflowed (targets too large); posterior unchanged")
        self._mu.copy_(mu)
        self._quad = max(quad, 0.0)

    def expand(self, new_dim: int) -> None:
        """Grow to ``new_dim`` features by appending prior blocks for the new trailing ones.

        New weights get the prior (mean 0, variance ``prior_var``, no correlation with the
        old ones); μ, Σ, n, a, b of the old block are kept, so predictions for inputs whose
        new features are zero are unchanged.

        Raises:
            ValueError: ``new_dim < dim``.
        """
        old = self._features
        if isinstance(new_dim, bool) or not isinstance(new_dim, numbers.Integral) or new_dim < old:
            raise ValueError(f"new_dim must be an int >= dim = {old}, got {new_dim!r}")
        new_dim = int(new_dim)
        if new_dim == old:
            return
        extra = int(self._intercept)
        rows = list(range(old)) + ([new_dim] if extra else [])  # the intercept stays last
        index = torch.tensor(rows, device=self._device)
        factor = self._prior_factor(new_dim + extra)
        factor[index[:, None], index] = self._S
        mean = torch.zeros(new_dim + extra, dtype=self._dtype, device=self._device)
        mean[index] = self._mu
        self._set_state(factor, mean)
        self._features = new_dim
        self._logdet += (new_dim - old) * math.log(self._prior_var)

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
        normals = torch.randn(
            rows,
            draw_row_length(self._dim, self._noise == "nig"),
            generator=generator,
            dtype=self._dtype,
            device=self._device,
        )
        w = self.draws_from_normals(normals, generator)
        return w[0] if n is None else w

    def draws_from_normals(
        self,
        normals: Tensor,
        generator: torch.Generator | None = None,
        gammas: Tensor | None = None,
    ) -> Tensor:
        """The posterior draws that rows of standard normals give, as :meth:`sample` makes
        them: (n, d') from (n, :func:`draw_row_length`) normals, one row per draw.

        Lets a caller draw the normals of several heads in one call and hand each head its
        rows (the same numbers as the heads' own ``sample`` calls, in the same order).

        Args:
            normals: (n, draw_row_length(d', nig)) standard normals.
            generator: Used only in the rare case that a gamma variate needs more normals.
            gammas: The NIG draws' Gamma(a) variates (n,), if the caller already made them
                from these normals (:func:`~bandexa_gym.numerics.standard_gamma` over several
                heads at once); ignored with fixed noise.

        Raises:
            FloatingPointError: A draw is not finite (the posterior has overflowed).
        """
        d, nig = self._dim, self._noise == "nig"
        if nig and gammas is not None:
            eps = normals[:, :d]
            w = torch.addcmul(self._mu, (self.b / gammas).sqrt().unsqueeze(1), eps @ self._S.T)
            if not math.isfinite(float(w.sum())):
                raise FloatingPointError(_OVERFLOW)
            return w
        if normals.shape[0] == 1:  # one draw: a Python gamma step and one addmv are cheapest
            row = normals[0]
            scale = 1.0
            if nig:
                gamma_normals = row[d : d + GAMMA_NORMALS]
                g = gamma_from_normals(self.a, gamma_normals.tolist())
                if g is None:  # probability <= 0.05**8 per draw
                    g = float(standard_gamma(self.a, gamma_normals[None], generator)[0])
                scale = math.sqrt(self.b / g) if g > 0.0 else math.inf  # g underflows: a ≪ 1
            w = torch.addmv(self._mu, self._S, row[:d], alpha=scale)
            if not math.isfinite(float(w.sum())):
                raise FloatingPointError(_OVERFLOW)
            return w.unsqueeze(0)
        eps = normals[:, :d]
        if nig:
            g = standard_gamma(self.a, normals[:, d : d + GAMMA_NORMALS], generator)
            w = torch.addcmul(self._mu, (self.b / g).sqrt_().unsqueeze(1), eps @ self._S.T)
        else:
            w = torch.addmm(self._mu, eps, self._S.T)
        if not math.isfinite(float(w.sum())):
            raise FloatingPointError(_OVERFLOW)
        return w

    def thompson_scores(
        self, Z: Tensor, generator: torch.Generator | None = None, draws: int | None = None
    ) -> Tensor:
        """Scores of candidates under fresh posterior draws.

        Args:
            Z: Candidates (K, d) scored under one draw, or (n, K, d) under n draws (one
                per leading index, in order, consuming the generator as n single draws).
            generator: Passed to :meth:`sample`.
            draws: Instead, score every candidate set under this many independent draws
                (Monte Carlo over the posterior, e.g. for action probabilities).

        Returns:
            (K,) or (n, K) scores in ``dtype``; with ``draws=M``, (M, K) or (M, n, K).
        """
        if draws is None:
            w = self.sample(None if Z.ndim == 2 else Z.shape[0], generator=generator)
            return self.score(Z, w)
        lead = Z.shape[:-2]
        w = self.sample(draws * math.prod(lead), generator=generator)  # (M · n, d')
        w = w.reshape(draws, *lead, 1, self._dim)
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

    # -- persistence and devices ------------------------------------------------------
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
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state_dict is missing {missing}")
        if int(state["dim"]) != self._features:
            raise ValueError(
                f"state_dict has dim {state['dim']}, this head has dim {self._features}"
            )
        d = self._dim
        defaults = {"noise": None, "prior_var": None, "a0": None, "b0": None,
                    "intercept": False, "forgetting": 1.0}  # fmt: skip
        for key, default in defaults.items():
            mine, theirs = getattr(self, "_" + key), state.get(key, default)
            if theirs != mine:
                raise ValueError(f"state_dict has {key}={theirs!r}, this head has {mine!r}")
        mean = torch.as_tensor(state["mean"]).to(device=self._device, dtype=self._dtype)
        factor = torch.as_tensor(state["sqrt_covariance"]).to(
            device=self._device, dtype=self._dtype
        )
        if mean.shape != (d,) or factor.shape != (d, d):
            raise ValueError(
                f"expected mean ({d},) and sqrt_covariance ({d}, {d}), got "
                f"{tuple(mean.shape)} and {tuple(factor.shape)}"
            )
        n, quad, logdet = float(state["n_obs"]), float(state["quad"]), float(state["logdet"])
        finite = bool(torch.isfinite(mean).all() & torch.isfinite(factor).all())
        if not finite or not n >= 0 or not math.isfinite(quad) or not math.isfinite(logdet):
            raise ValueError("state_dict holds non-finite values or a negative n_obs")
        n = int(n) if n.is_integer() else n
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
            f"{type(self).__name__}(dim={self._features}, noise={self._noise!r}, "
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


def accumulate_statistics(
    chunks: Iterable[tuple[Tensor, ...]],
    dim: int,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Sufficient statistics ``(ZᵀWZ, ZᵀWr, rᵀWr, ΣW)`` of ``(Z, r[, w])`` chunks.

    What :meth:`BayesianLinearRegression.rebuild` streams; agents with one head per arm
    call it per arm.

    Args:
        chunks: Iterable of ``(Z (n_i, d), r (n_i,))`` or ``(Z, r, w (n_i,))``.
        dim: d.
        dtype: Accumulation dtype.
        device: Accumulation device.

    Returns:
        ``gram`` (d, d), ``zr`` (d,), ``rr`` (), and the (weighted) count (an int without
        weights).

    Raises:
        ValueError: Bad shapes or negative weights.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    gram = torch.zeros(dim, dim, dtype=dtype, device=device)
    zr = torch.zeros(dim, dtype=dtype, device=device)
    rr = torch.zeros((), dtype=dtype, device=device)
    n = torch.zeros((), dtype=dtype, device=device)
    weighted = False
    for chunk in chunks:
        Z = torch.as_tensor(chunk[0]).detach().to(device=device, dtype=dtype)
        r = torch.as_tensor(chunk[1]).detach().to(device=device, dtype=dtype)
        if Z.ndim != 2 or Z.shape[1] != dim or r.shape != (Z.shape[0],):
            raise ValueError(
                f"expected chunks of Z (n, {dim}) and r (n,), got {tuple(Z.shape)} and "
                f"{tuple(r.shape)}"
            )
        if len(chunk) > 2:
            weighted = True
            w = torch.as_tensor(chunk[2]).detach().to(device=device, dtype=dtype)
            if w.shape != r.shape or not bool((w >= 0).all()):
                raise ValueError(f"expected weights >= 0 of shape {tuple(r.shape)}")
        else:
            w = torch.ones_like(r)
        gram.addmm_(Z.T * w, Z)
        zr.addmv_(Z.T, w * r)
        rr.add_((w * r).dot(r))
        n.add_(w.sum())
    return gram, zr, rr, (float(n) if weighted else int(round(float(n))))


def rebase_head_state(
    state: Mapping[str, Any],
    config: HeadConfig | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Re-express a head's posterior under another prior and noise model, same data.

    The posterior of :class:`BayesianLinearRegression` is a function of the data's
    sufficient statistics, which are recovered from the state (``v`` = σ² for fixed noise,
    1 under NIG; ``Λ = (S Sᵀ)⁻¹``)::

        ZᵀZ = v (Λ − I / prior_var),   Zᵀr = v Λ μ,   rᵀr = v (quad + μᵀ Λ μ)

    and combined with the new hyper-parameters as in ``rebuild``:
    ``Λ' = I / prior_var' + ZᵀZ / v'``, ``μ' = Λ'⁻¹ Zᵀr / v'``, ``S' = L'⁻ᵀ``,
    ``quad' = rᵀr / v' − μ'ᵀ Λ' μ'``; n is kept and ``a``, ``b`` follow from ``a0'``,
    ``b0'``. O(d³), once.

    Args:
        state: A ``BayesianLinearRegression.state_dict()`` (mean (d,), sqrt_covariance
            (d, d), n_obs, quad, logdet and the old hyper-parameters).
        config: The new hyper-parameters; or give them as keywords (``prior_var=``,
            ``noise=``, ``a0=``, ``b0=``).

    Returns:
        A state dict for a head with the new hyper-parameters.
    """
    new = config if config is not None else HeadConfig(**fields)
    if bool(state.get("intercept", False)) != new.intercept:
        raise ValueError("a head with an intercept cannot be re-based on one without (or back)")
    mean = torch.as_tensor(state["mean"])
    factor = torch.as_tensor(state["sqrt_covariance"]).to(mean.dtype)
    d = mean.shape[0]
    eye = torch.eye(d, dtype=mean.dtype, device=mean.device)
    old_v = 1.0 if state["noise"] == "nig" else float(state["noise"])
    new_v = 1.0 if new.noise == "nig" else float(new.noise)
    s_inv = torch.linalg.solve(factor, eye)
    prec = s_inv.T @ s_inv
    prec = 0.5 * (prec + prec.T)  # Λ (d, d)
    gram = (prec - eye / float(state["prior_var"])) * old_v  # ZᵀZ
    zr = (prec @ mean) * old_v  # Zᵀr
    rr = old_v * (float(state["quad"]) + float(mean @ prec @ mean))  # rᵀr
    new_prec = gram / new_v + eye / new.prior_var
    L = safe_cholesky(new_prec)
    new_mean = torch.cholesky_solve((zr / new_v).unsqueeze(1), L).squeeze(1)
    new_factor = torch.linalg.solve_triangular(L, eye, upper=False).T  # L⁻ᵀ
    fit = float((L.T @ new_mean).pow(2).sum())  # μ'ᵀ Λ' μ'
    return {
        "dim": int(state["dim"]),
        **new.to_dict(),
        "mean": new_mean,
        "sqrt_covariance": new_factor,
        "n_obs": int(state["n_obs"]),
        "quad": max(rr / new_v - fit, 0.0),
        "logdet": float(-2.0 * L.diagonal().log().sum()),
    }


def load_rebased(head: BayesianLinearRegression, state: Mapping[str, Any]) -> bool:
    """Load ``state`` into ``head``, re-basing it on the head's hyper-parameters if they differ.

    Returns:
        Whether the state was re-based (with equal hyper-parameters it is copied exactly).
    """
    theirs = HeadConfig(**{k: state[k] for k in HEAD_FIELDS if k in state})
    if theirs == head.config:
        head.load_state_dict(state)
        return False
    head.load_state_dict(rebase_head_state(state, head.config))
    return True


def grown_state(
    head: BayesianLinearRegression, new_dim: int, order: Tensor | None = None
) -> dict[str, Any]:
    """State of ``head`` grown to ``new_dim`` by prior blocks, then permuted by ``order``.

    Args:
        head: Source head (not modified).
        new_dim: New feature dimension D >= ``head.dim``; features ``head.dim..D-1`` are new.
        order: Optional permutation (D,): new feature ``j`` is grown feature ``order[j]``.

    Returns:
        A :meth:`BayesianLinearRegression.state_dict` of dimension D. Permuting the rows of
        the square-root factor ``S`` (D, D) permutes ``Σ = S Sᵀ`` symmetrically, so the
        result is a valid factor of the permuted covariance; ``logdet``, n and ``quad``
        are invariant.
    """
    grown = BayesianLinearRegression(head.dim, head.config, dtype=head.dtype, device=head.device)
    grown.load_state_dict(head.state_dict())
    grown.expand(new_dim)
    state = grown.state_dict()
    if order is not None:
        order = order.to(state["mean"].device)
        if head.config.intercept:  # the intercept row stays last
            order = torch.cat([order, order.new_tensor([new_dim])])
        state["mean"] = state["mean"][order]
        state["sqrt_covariance"] = state["sqrt_covariance"][order]
    return state
