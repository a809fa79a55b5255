"""Bayesian logistic regression head with a Laplace posterior (Chapelle & Li 2011).

The model is ``P(r = 1 | z) = σ(zᵀw)`` for rewards ``r ∈ {0, 1}``, with the prior
``w ~ N(0, prior_var · I)``. The posterior is approximated by a Gaussian ``N(μ, Σ)``
kept as the mean ``μ`` (d,) and a square-root factor ``S`` (d, d), ``Σ = S Sᵀ``, in
float64. Two ways to reach it:

* :meth:`LaplaceLogisticRegression.rebuild` (the refit): the Laplace approximation at the
  maximum a posteriori weights of the data, ``μ = w_MAP`` and ``Σ = H⁻¹`` with
  ``H = I / prior_var + Σᵢ πᵢ (1 − πᵢ) zᵢ zᵢᵀ`` at ``πᵢ = σ(zᵢᵀ w_MAP)``. The MAP is
  found by Newton's method (iteratively reweighted least squares) with a backtracking
  line search. Each Newton step is one pass over the data in O(N d²) plus one Cholesky
  factorization in O(d³) and one cheap O(N d) pass for the line search; it usually takes
  5 to 10 steps. A re-iterable ``chunks`` (a list, or an object whose ``__iter__``
  starts over) is streamed at every step in O(chunk · d) memory; a one-shot iterator (a
  generator) is read once and kept as an (N, d) float64 matrix.
* :meth:`LaplaceLogisticRegression.update` (between refits): the online Laplace step of
  assumed-density filtering. Along the observed direction the logit ``s = zᵀw`` has the
  prior ``N(m, v)``, ``m = zᵀμ``, ``v = zᵀΣz``; its posterior mode ``s*`` (a 1-D Newton
  solve, safeguarded by the bracket ``|s* − m| < v``) and curvature ``c = σ(s*) σ(−s*)``
  give a Gaussian likelihood of variance ``1 / c`` along z, which enters as one Potter
  square-root update, O(d²):
  ``μ ← μ + Σz · y σ(−y s*)`` (``y = 2r − 1``) and ``S ← S − γ (Sφ) φᵀ`` with ``φ = Sᵀz``,
  ``γ = c / (1 + c v + sqrt(1 + c v))``, so that ``Σ ← Σ − Σz zᵀΣ · c / (1 + c v)``.

:meth:`~LaplaceLogisticRegression.predict` gives the posterior mean and variance of the
*logit* ``zᵀw`` (the exploration rules rank candidates on it; σ is monotone), and
:meth:`~LaplaceLogisticRegression.probability` the predictive probability of r = 1.
Thompson draws are ``w = μ + c S ε`` with ``c = sample_scale`` (1: the Laplace posterior;
smaller: less exploration). With ``intercept=True`` the head regresses on ``[z; 1]`` (its
state has one more row, the last); it takes ``z`` of width ``dim`` either way. With
``forgetting=γ < 1`` every online step first discounts the posterior precision by γ, and a
refit's chunks may carry row weights (``γ^age``, or 0/1 for a sliding window) that weigh
each row's log-likelihood, the prior kept.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from bandexa_gym.heads.numerics import NumericalWarning, draw_row_length, safe_cholesky

__all__ = ["LaplaceLogisticRegression", "LogisticHeadConfig", "RefitInfo"]

_OVERFLOW = (
    "posterior sample is not finite: the state overflowed (features too large?); "
    "reset() or rebuild() the head"
)
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class LogisticHeadConfig:
    """Hyper-parameters of the Laplace logistic head.

    Attributes:
        prior_var: Prior variance of each weight, > 0 (the prior is ``N(0, prior_var · I)``).
        sample_scale: Thompson draws come from ``N(μ, sample_scale² · Σ)``, > 0: 1 samples
            the Laplace posterior itself; below 1 the draws stay closer to the mean
            (less exploration). :meth:`LaplaceLogisticRegression.predict` is not scaled.
        intercept: Regress on ``[z; 1]``: a weight for a constant feature with the same
            prior, so the head has a base rate of its own (the agents turn it on by
            default; a bare head has none).
        forgetting: Discount factor γ in (0, 1] for rewards that drift: before every
            online step the posterior precision is multiplied by γ (``S ← S / √γ``, the mean
            kept), and a refit's rows may carry weights (``γ^age``) that discount the data
            with the prior kept. 1 (default) forgets nothing.

    Raises:
        ValueError: A value that is not a positive finite number (named in the message).
    """

    prior_var: float = 1.0
    sample_scale: float = 1.0
    intercept: bool = False
    forgetting: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.intercept, bool):
            raise TypeError(f"intercept must be True or False, got {self.intercept!r}")
        for name in ("prior_var", "sample_scale", "forgetting"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.forgetting > 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LogisticHeadConfig:
        """Build from :meth:`to_dict` output (unknown keys are a ``ValueError``)."""
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown logistic head settings {sorted(unknown)} (it takes prior_var, "
                "sample_scale, intercept and forgetting)"
            )
        return cls(**values)


Rows = tuple[Tensor, Tensor, "Tensor | None"]
"""A checked chunk of a refit: features (n, d), rewards (n,), row weights (n,) or None."""


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


class LaplaceLogisticRegression:
    """Bayesian logistic regression ``P(r = 1 | z) = σ(zᵀw)`` with a Laplace posterior.

    See the module docstring for the refit (:meth:`rebuild`), the online update
    (:meth:`update`) and their costs. Implements the
    :class:`~bandexa_gym.posterior.Head` protocol; rewards must be 0 or 1.

    State (in ``dtype``, float64 by default): ``μ`` (d,), a square-root factor ``S`` (d, d)
    of the posterior covariance ``Σ = S Sᵀ`` (upper triangular right after a refit, not in
    general), and the observation count ``n``.

    Args:
        dim: Feature dimension d.
        config: The hyper-parameters (:class:`LogisticHeadConfig`); or give them one by one:
        prior_var: Prior variance of each weight; default 1.
        sample_scale: Scale of the Thompson draws around the mean; default 1.
        intercept: Regress on ``[z; 1]`` (the state has one more row, the last); default
            False.
        forgetting: Discount factor in (0, 1] per online step; default 1.
        max_newton_steps: Newton steps a refit takes at most (a :class:`NumericalWarning`
            says when they did not suffice; the last iterate is used).
        newton_tol: A refit stops when a Newton step moves no weight by more than
            ``newton_tol · (1 + max|w|)``.
        dtype: Floating dtype of the state (float64 recommended).
        device: Device of the state; inputs are moved to it.

    Example:
        >>> head = LaplaceLogisticRegression(4)
        >>> head.update(torch.tensor([1.0, 0.0, 0.5, 0.0]), 1)
        >>> mean, var = head.predict(torch.randn(3, 4))  # logits: (3,), (3,)
        >>> scores = head.thompson_scores(torch.randn(3, 4), generator=torch.Generator())
    """

    def __init__(
        self,
        dim: int,
        config: LogisticHeadConfig | None = None,
        *,
        prior_var: float | None = None,
        sample_scale: float | None = None,
        intercept: bool | None = None,
        forgetting: float | None = None,
        max_newton_steps: int = 50,
        newton_tol: float = 1e-10,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        fields = {"prior_var": prior_var, "sample_scale": sample_scale, "intercept": intercept,
                  "forgetting": forgetting}  # fmt: skip
        given = {k: v for k, v in fields.items() if v is not None}
        if config is not None and given:
            raise ValueError(f"pass either config= or {sorted(given)}, not both")
        config = config if config is not None else LogisticHeadConfig(**given)
        if not isinstance(config, LogisticHeadConfig):
            raise TypeError(f"config must be a LogisticHeadConfig, got {config!r}")
        if isinstance(max_newton_steps, bool) or not isinstance(max_newton_steps, int):
            raise TypeError(f"max_newton_steps must be an int, got {max_newton_steps!r}")
        if max_newton_steps < 1:
            raise ValueError(f"max_newton_steps must be >= 1, got {max_newton_steps}")
        if not (isinstance(newton_tol, (int, float)) and newton_tol > 0):
            raise ValueError(f"newton_tol must be a positive number, got {newton_tol!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}")
        self._config = config
        self._prior_var = config.prior_var
        self._scale = config.sample_scale
        self._forgetting = config.forgetting
        self._max_steps = int(max_newton_steps)
        self._tol = float(newton_tol)
        self._dtype = dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._features = int(dim)  # the width of z; the state has one more row with an intercept
        self._intercept = config.intercept
        self._dim = self._features + int(config.intercept)
        self._set_state(
            self._prior_factor(), torch.zeros(self._dim, dtype=dtype, device=self._device)
        )
        self._n: float = 0
        self.refit_info: RefitInfo | None = None
        """What the last :meth:`rebuild` did (None before the first)."""

    # -- state plumbing ---------------------------------------------------------------
    def _prior_factor(self) -> Tensor:
        eye = torch.eye(self._dim, dtype=self._dtype, device=self._device)
        return eye.mul_(math.sqrt(self._prior_var))

    def _set_state(self, factor: Tensor, mean: Tensor) -> None:
        """Store S and μ side by side in one (d, d + 1) buffer: ``zᵀ[S | μ]`` is one op."""
        d = self._dim
        buf = torch.empty(d, d + 1, dtype=self._dtype, device=self._device)
        buf[:, :d] = factor
        buf[:, d] = mean
        self._buf = buf
        self._S = buf[:, :d]
        self._mu = buf[:, d]

    # -- properties -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Feature dimension d (the width of the ``z`` it takes)."""
        return self._features

    @property
    def state_dim(self) -> int:
        """Rows of the state: d, plus one with an intercept (the last row)."""
        return self._dim

    def augment(self, Z: Tensor) -> Tensor:
        """The regressors of ``Z`` (..., d): ``[Z, 1]`` with an intercept, else ``Z``."""
        if not self._intercept:
            return Z
        return torch.cat([Z, Z.new_ones((*Z.shape[:-1], 1))], dim=-1)

    @property
    def config(self) -> LogisticHeadConfig:
        """The hyper-parameters."""
        return self._config

    @property
    def prior_var(self) -> float:
        """Prior variance of each weight."""
        return self._prior_var

    @property
    def sample_scale(self) -> float:
        """Scale ``c`` of the Thompson draws: ``w ~ N(μ, c² Σ)``."""
        return self._scale

    @property
    def n_obs(self) -> float:
        """Observations absorbed since the last reset (a rebuild sets it to the data's N); an
        int, or with forgetting or a weighted refit the discounted count."""
        return self._n

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the state."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Device of the state."""
        return self._device

    @property
    def mean(self) -> Tensor:
        """Posterior mean μ (d,), a copy."""
        return self._mu.clone()

    @property
    def sqrt_covariance(self) -> Tensor:
        """Square-root factor S (d, d) of the covariance (``Σ = S Sᵀ``), a copy."""
        return self._S.clone()

    def covariance(self) -> Tensor:
        """Posterior covariance ``Σ = S Sᵀ`` (d, d), symmetrized."""
        cov = self._S @ self._S.T
        return 0.5 * (cov + cov.T)

    def precision(self) -> Tensor:
        """``Σ⁻¹`` (d, d), computed on demand in O(d³) from S."""
        eye = torch.eye(self._dim, dtype=self._dtype, device=self._device)
        s_inv = torch.linalg.solve(self._S, eye)
        prec = s_inv.T @ s_inv
        return 0.5 * (prec + prec.T)

    # -- online updates ---------------------------------------------------------------
    def update(self, z: Tensor, r: float | Tensor) -> None:
        """Absorb one observation with the online Laplace (ADF) step, O(d²).

        Args:
            z: Features (d,), any real dtype.
            r: Reward 0 or 1 (a number, a bool or a one-element tensor).

        Raises:
            ValueError: ``z`` of the wrong shape or not finite, ``r`` not in {0, 1}, or a
                state that would overflow; the posterior is left unchanged then.
        """
        z = _as_state(z, self._dtype, self._device)
        if z.shape != (self._features,):
            raise ValueError(f"expected z of shape ({self._features},), got {tuple(z.shape)}")
        y = _sign(r)
        z = self.augment(z)
        proj = z @ self._buf  # (d + 1,) = [φ = Sᵀz ; m = zᵀμ]
        phi = proj[: self._dim]
        m, v = torch.stack((proj[self._dim], phi.dot(phi))).tolist()
        if not (math.isfinite(m) and math.isfinite(v)):
            raise ValueError("z must be finite (and small enough not to overflow the state)")
        # With m and v finite the step is finite: ‖Σz‖ ≤ sqrt(prior_var · v), and the
        # rank-1 term γ ‖Σz‖ ‖φ‖ ≤ prior_var; nothing below can fail.
        g = self._forgetting
        if g != 1.0:  # discount the posterior first: Σ/γ, i.e. S/√γ (φ/√γ, v/γ)
            self._S.mul_(1.0 / math.sqrt(g))
            phi, v = phi / math.sqrt(g), v / g
            self._n *= g
        _adf_step(self._S, self._mu, phi, m, v, y)
        self._n += 1

    def update_batch(self, Z: Tensor, r: Tensor) -> None:
        """Absorb n observations exactly as n calls of :meth:`update`, in O(n d²).

        All-or-nothing: the rows are checked first and the steps run on a copy of the
        state, committed at the end.

        Args:
            Z: Features (n, d), any real dtype.
            r: Rewards (n,), each 0 or 1.

        Raises:
            ValueError: Bad shapes, non-finite features or rewards outside {0, 1}; the
                posterior is left unchanged then.
        """
        Z = _as_state(Z, self._dtype, self._device)
        r = torch.as_tensor(r).detach().to(device=self._device, dtype=self._dtype)
        if Z.ndim != 2 or Z.shape[1] != self._features:
            raise ValueError(f"expected Z of shape (n, {self._features}), got {tuple(Z.shape)}")
        Z, d = self.augment(Z), self._dim
        n = Z.shape[0]
        if r.shape != (n,):
            raise ValueError(f"expected r of shape ({n},), got {tuple(r.shape)}")
        if n == 0:
            return
        _check_binary(r, "r")
        if not bool(torch.isfinite(Z).all()):
            raise ValueError("Z must be finite")
        buf = self._buf.clone()
        S, mu = buf[:, :d], buf[:, d]
        signs = (2.0 * r - 1.0).tolist()
        g, count = self._forgetting, self._n
        for i in range(n):
            proj = Z[i] @ buf
            phi = proj[:d]
            m, v = torch.stack((proj[d], phi.dot(phi))).tolist()
            if not (math.isfinite(m) and math.isfinite(v)):
                raise ValueError("update overflowed (features too large); posterior unchanged")
            if g != 1.0:
                S.mul_(1.0 / math.sqrt(g))
                phi, v, count = phi / math.sqrt(g), v / g, count * g
            _adf_step(S, mu, phi, m, v, signs[i])
            count += 1
        self._buf.copy_(buf)
        self._n = count

    def discount(self, factor: float) -> None:
        """Discount the posterior: precision × ``factor`` (``S ← S / √factor``) and the
        count × ``factor``; the mean is kept. O(d²).

        :meth:`update` does this with ``factor = forgetting`` before every observation; an
        agent with one head per arm calls it on the heads a round did not update, so that
        every head forgets at the same pace.

        Args:
            factor: In (0, 1].
        """
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"a discount factor must be in (0, 1], got {factor!r}")
        if factor != 1.0:
            self._S.mul_(1.0 / math.sqrt(factor))
            self._n *= factor

    def reset(self) -> None:
        """Return to the prior (keeping ``dim`` and the hyper-parameters)."""
        self._S.copy_(self._prior_factor())
        self._mu.zero_()
        self._n = 0

    # -- the refit --------------------------------------------------------------------
    def rebuild(self, chunks: Iterable[tuple[Tensor, ...]]) -> None:
        """Refit: the Laplace approximation at the MAP of the data in ``chunks``.

        Newton's method on the negative log posterior
        ``f(w) = Σᵢ ωᵢ [log(1 + e^{sᵢ}) − rᵢ sᵢ] + ‖w‖² / (2 prior_var)``, ``sᵢ = zᵢᵀw``,
        with row weights ``ωᵢ`` (1 unless a chunk carries them: ``γ^age`` discounts old
        rows with the prior kept, 0/1 weights give a sliding window), gradient
        ``Zᵀ(ω (π − r)) + w / prior_var`` and Hessian ``H``, started from the
        current mean or from 0, whichever has the lower ``f``, and a backtracking
        (Armijo) line search. Then ``μ = w_MAP``, ``S = L⁻ᵀ`` with ``L Lᵀ = H`` at
        ``w_MAP`` (:func:`~bandexa_gym.numerics.safe_cholesky`), ``n = Σ ωᵢ``. The result
        does not depend on the state before the call beyond the stopping tolerance.

        Cost per Newton step: one pass in O(N d²) (H), one in O(N d) (line search), one
        O(d³) factorization. Memory: O(chunk · d) for a re-iterable ``chunks``, which is
        iterated once per pass; O(N d) for a one-shot iterator, read once and kept.

        Args:
            chunks: Iterable of ``(Z (n_i, d), r (n_i,))`` with rewards in {0, 1}, or
                ``(Z, r, ω (n_i,))`` with weights ``ω >= 0``.

        Raises:
            ValueError: A chunk with bad shapes, non-finite features, rewards outside
                {0, 1} or negative weights; the posterior is left unchanged (nothing is
                written before the fit is complete).
        """
        passes = self._passes(chunks)
        w, L, info = self._newton(passes)
        eye = torch.eye(self._dim, dtype=self._dtype, device=self._device)
        factor = torch.linalg.solve_triangular(L, eye, upper=False).T  # L⁻ᵀ
        self._S.copy_(factor)
        self._mu.copy_(w)
        self._n = int(info.n) if float(info.n).is_integer() else info.n
        self.refit_info = info

    def _checked(self, chunk: tuple[Any, ...]) -> Rows:
        """One chunk as state-dtype tensors ``(Z, r, ω or None)``, validated."""
        Z = _as_state(chunk[0], self._dtype, self._device)
        r = torch.as_tensor(chunk[1]).detach().to(device=self._device, dtype=self._dtype)
        d = self._features
        if Z.ndim != 2 or Z.shape[1] != d or r.shape != (Z.shape[0],):
            raise ValueError(
                f"expected chunks of Z (n, {d}) and r (n,), got {tuple(Z.shape)} and "
                f"{tuple(r.shape)}"
            )
        if not bool(torch.isfinite(Z).all()):
            raise ValueError("rebuild chunks must be finite")
        _check_binary(r, "rebuild rewards")
        Z = self.augment(Z)
        if len(chunk) < 3:
            return Z, r, None
        w = torch.as_tensor(chunk[2]).detach().to(device=self._device, dtype=self._dtype)
        if w.shape != r.shape or not bool((w >= 0).all() & torch.isfinite(w).all()):
            raise ValueError(f"expected finite weights >= 0 of shape {tuple(r.shape)}")
        return Z, r, w

    def _passes(self, chunks: Iterable[tuple[Tensor, ...]]) -> Callable[[], Iterator[Rows]]:
        """A function that iterates over the checked data, once per call."""
        if iter(chunks) is chunks:  # a one-shot iterator: read it once and keep it
            parts = [self._checked(chunk) for chunk in chunks]
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
        return lambda: (self._checked(chunk) for chunk in chunks)

    def _objective(self, passes: Callable[[], Iterator[Rows]], w: Tensor) -> float:
        """``f(w)`` in one O(N d) pass."""
        total = 0.5 * w.dot(w) / self._prior_var
        for Z, r, weights in passes():
            s = Z @ w
            loss = _softplus(s) - r * s
            total = total + (loss.sum() if weights is None else loss.dot(weights))
        return float(total)

    def _derivatives(
        self, passes: Callable[[], Iterator[Rows]], w: Tensor
    ) -> tuple[float, Tensor, Tensor, float]:
        """``(f, ∇f, H, Σω)`` at ``w`` in one O(N d²) pass."""
        d = self._dim
        prec0 = 1.0 / self._prior_var
        f = 0.5 * w.dot(w) * prec0
        grad = w * prec0
        hess = torch.eye(d, dtype=self._dtype, device=self._device).mul_(prec0)
        n = torch.zeros((), dtype=self._dtype, device=self._device)
        for Z, r, weights in passes():
            s = Z @ w
            loss, resid = _softplus(s) - r * s, torch.sigmoid(s) - r
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
        f, total = torch.stack((torch.as_tensor(f, dtype=self._dtype), n)).tolist()
        return f, grad, hess, total

    def _newton(self, passes: Callable[[], Iterator[Rows]]) -> tuple[Tensor, Tensor, RefitInfo]:
        """Newton's method with backtracking; returns ``(w_MAP, chol(H(w_MAP)), info)``."""
        w = self._mu.clone()
        f, grad, hess, n = self._derivatives(passes, w)
        if bool(w.any()) and not f < n * _LOG2:  # f(0) = N log 2: start at 0 if not worse
            w = torch.zeros_like(w)
            f, grad, hess, n = self._derivatives(passes, w)
        converged, blind, steps = False, False, 0
        while True:
            L = safe_cholesky(hess)
            step = torch.cholesky_solve(grad.unsqueeze(1), L).squeeze(1)
            size, scale, slope = torch.stack((step.abs().max(), w.abs().max(), grad.dot(step)))
            size, scale, slope = float(size), float(scale), float(slope)  # slope: λ² > 0
            if size <= self._tol * (1.0 + scale):
                converged = True
                break
            if steps == self._max_steps:
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
                    if self._objective(passes, trial) <= f - 1e-4 * t * slope:
                        accepted = True
                        break
                    t *= 0.5
                if not accepted:  # no decrease at round-off level: w is the minimum
                    converged = True
                    break
                w = trial
            f, grad, hess, _ = self._derivatives(passes, w)
            steps += 1
        if not converged:
            warnings.warn(
                f"logistic refit did not converge in {self._max_steps} Newton steps (last "
                f"step {size:.2e}); using the last iterate",
                NumericalWarning,
                stacklevel=3,
            )
        return w, L, RefitInfo(n, steps, converged, f)

    # -- prediction and sampling -------------------------------------------------------
    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of the *logit* ``zᵀw`` of every row of ``Z``.

        ``mean = Z μ`` and ``variance = ‖Sᵀ z‖²`` (the diagonal of ``Z Σ Zᵀ``), all K rows
        at O(K d²). Rank candidates on these (σ is monotone); :meth:`probability` turns
        them into probabilities.

        Args:
            Z: Features (..., K, d), any real dtype.

        Returns:
            ``(mean, variance)``, each (..., K) in ``dtype``.
        """
        Z = Z.to(dtype=self._dtype, device=self._device)
        if Z.shape[-1] != self._features:
            raise ValueError(
                f"expected Z of shape (..., K, {self._features}), got {tuple(Z.shape)}"
            )
        proj = self.augment(Z) @ self._buf  # (..., K, d + 1) = [Sᵀz ; zᵀμ] per row
        return proj[..., self._dim], proj[..., : self._dim].pow(2).sum(-1)

    def probability(self, Z: Tensor) -> Tensor:
        """Predictive ``P(r = 1 | z)`` of every row, ``σ(m / sqrt(1 + π v / 8))`` (MacKay's
        probit approximation to the Gaussian integral of σ over the logit ``N(m, v)``).

        Returns:
            (..., K) in ``dtype``.
        """
        mean, variance = self.predict(Z)
        return torch.sigmoid(mean / torch.sqrt(1.0 + (math.pi / 8.0) * variance))

    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Posterior draws ``w = μ + c S ε``, ``ε ~ N(0, I)``, ``c`` = ``sample_scale``
        (1 by default: ``w ~ N(μ, Σ)``).

        Each draw consumes one row of :func:`~bandexa_gym.numerics.draw_row_length`
        normals from ``generator``, so ``sample(n)`` takes the same numbers as ``n`` calls
        of ``sample()`` (exactly, on the CPU) and ``sample(1)[0]`` equals ``sample()``.

        Args:
            n: Number of draws; None for a single draw.
            generator: Source of the randomness (on ``device``); None uses torch's default.

        Returns:
            (d,) if ``n`` is None, else (n, d), in ``dtype``.

        Raises:
            FloatingPointError: The draw is not finite.
        """
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rows = 1 if n is None else n
        d = self._dim
        normals = torch.randn(
            rows, draw_row_length(d, False), generator=generator, dtype=self._dtype,
            device=self._device,
        )  # fmt: skip
        if rows == 1:
            w = torch.addmv(self._mu, self._S, normals[0, :d], alpha=self._scale)
            w = w if n is None else w.unsqueeze(0)
        else:
            w = torch.addmm(self._mu, normals[:, :d], self._S.T, alpha=self._scale)
        if not math.isfinite(float(w.sum())):
            raise FloatingPointError(_OVERFLOW)
        return w

    def thompson_scores(
        self, Z: Tensor, generator: torch.Generator | None = None, draws: int | None = None
    ) -> Tensor:
        """Logits of candidates under fresh posterior draws.

        Args:
            Z: Candidates (K, d) scored under one draw, or (n, K, d) under n draws (one
                per leading index, in order, consuming the generator as n single draws).
            generator: Passed to :meth:`sample`.
            draws: Instead, score every candidate set under this many independent draws.

        Returns:
            (K,) or (n, K) scores in ``dtype``; with ``draws=M``, (M, K) or (M, n, K).
        """
        Z = self.augment(Z.to(dtype=self._dtype, device=self._device))
        if draws is None:
            w = self.sample(None if Z.ndim == 2 else Z.shape[0], generator=generator)
            if w.ndim == 1:
                return Z @ w
            return (Z @ w.unsqueeze(-1)).squeeze(-1)
        lead = Z.shape[:-2]
        w = self.sample(draws * math.prod(lead), generator=generator)  # (M · n, d)
        w = w.reshape(draws, *lead, 1, self._dim)
        return (Z * w).sum(-1)

    # -- persistence and devices ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and Python scalars describing the head (copies)."""
        return {
            "dim": self._features,
            "intercept": self._intercept,
            "prior_var": self._prior_var,
            "mean": self._mu.clone(),
            "sqrt_covariance": self._S.clone(),
            "n_obs": self._n,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`; the dimension and ``prior_var`` must match.

        Raises:
            ValueError: Missing keys, a mismatch, tensors of the wrong shape, or non-finite
                values. The head is left unchanged then.
        """
        missing = [k for k in ("dim", "prior_var", "mean", "sqrt_covariance", "n_obs")
                   if k not in state]  # fmt: skip
        if missing:
            raise ValueError(f"state_dict is missing {missing}")
        if int(state["dim"]) != self._features:
            raise ValueError(
                f"state_dict has dim {state['dim']}, this head has dim {self._features}"
            )
        for key, mine in (("prior_var", self._prior_var), ("intercept", self._intercept)):
            theirs = state.get(key, False)
            if theirs != mine:
                raise ValueError(f"state_dict has {key}={theirs!r}, this head has {mine!r}")
        d = self._dim
        mean = torch.as_tensor(state["mean"]).to(device=self._device, dtype=self._dtype)
        factor = torch.as_tensor(state["sqrt_covariance"]).to(
            device=self._device, dtype=self._dtype
        )
        if mean.shape != (d,) or factor.shape != (d, d):
            raise ValueError(
                f"expected mean ({d},) and sqrt_covariance ({d}, {d}), got "
                f"{tuple(mean.shape)} and {tuple(factor.shape)}"
            )
        n = state["n_obs"]
        if isinstance(n, bool) or not isinstance(n, numbers.Real) or not 0 <= n < math.inf:
            raise ValueError(f"n_obs must be a finite number >= 0, got {n!r}")
        if not bool(torch.isfinite(mean).all() & torch.isfinite(factor).all()):
            raise ValueError("state_dict holds non-finite values")
        self._S.copy_(factor)
        self._mu.copy_(mean)
        self._n = int(n) if float(n).is_integer() else float(n)

    def to(self, device: str | torch.device) -> LaplaceLogisticRegression:
        """Move the state to ``device`` (in place); returns self."""
        self._device = torch.device(device)
        self._set_state(self._S.to(self._device), self._mu.to(self._device))
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._features}, prior_var={self._prior_var}, "
            f"sample_scale={self._scale}, n_obs={self._n}, device={self._device})"
        )


# -- helpers ----------------------------------------------------------------------------
def _as_state(x: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(x, Tensor) and x.dtype == dtype and x.device == device:
        return x.detach()
    return torch.as_tensor(x).detach().to(device=device, dtype=dtype)


def _sign(r: Any) -> float:
    """``2r − 1`` for a reward of 0 or 1; anything else is a ``ValueError``."""
    try:
        value = float(r)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"r must be a reward of 0 or 1, got {r!r}") from err
    if value not in (0.0, 1.0):
        raise ValueError(
            f"r must be 0 or 1 (the logistic head models Bernoulli rewards), got {r!r}"
        )
    return 2.0 * value - 1.0


def _check_binary(r: Tensor, name: str) -> None:
    if not bool(((r == 0) | (r == 1)).all()):
        bad = r[(r != 0) & (r != 1)][0].item()
        raise ValueError(
            f"{name} must be 0 or 1 (the logistic head models Bernoulli rewards), got {bad!r}"
        )


def _softplus(s: Tensor) -> Tensor:
    """``log(1 + e^s)`` without overflow or the cut-off of ``F.softplus``."""
    return s.clamp_min(0.0) + torch.log1p(torch.exp(-s.abs()))


def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _logit_mode(m: float, v: float, y: float) -> float:
    """The mode ``s*`` of ``σ(y s) · N(s; m, v)``: the root of ``s − m − v y σ(−y s)``.

    The function is increasing (slope ``1 + v σ(s) σ(−s)``) and changes sign on
    ``[m, m + v]`` (y = 1) or ``[m − v, m]`` (y = −1): Newton's method, kept inside the
    shrinking bracket by bisection.
    """
    lo, hi = (m, m + v) if y > 0 else (m - v, m)
    s = m
    for _ in range(200):
        miss = _sigmoid(-y * s)  # 1 − σ(y s), without cancellation
        h = s - m - v * y * miss
        if h > 0.0:
            hi = s
        elif h < 0.0:
            lo = s
        else:
            return s
        nxt = s - h / (1.0 + v * _sigmoid(y * s) * miss)
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - s) <= 1e-15 * (1.0 + abs(s)):
            return nxt
        s = nxt
    return s


def _adf_step(S: Tensor, mu: Tensor, phi: Tensor, m: float, v: float, y: float) -> None:
    """One online Laplace step in place on ``S`` (d, d) and ``μ`` (d,) (module docstring)."""
    if not v > 0.0:  # z carries no information about w (z = 0): nothing changes
        return
    s = _logit_mode(m, v, y)
    miss = _sigmoid(-y * s)
    c = _sigmoid(y * s) * miss  # curvature σ(s) σ(−s) of −log σ(y s) at the mode
    u = S @ phi  # Σz (d,)
    mu.add_(u, alpha=y * miss)  # (s* − m) / v = y σ(−y s*)
    cv = c * v
    S.addr_(u, phi, alpha=-c / (1.0 + cv + math.sqrt(1.0 + cv)))
