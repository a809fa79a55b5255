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

The state and what it shares with the Gaussian head are
:class:`~bandexa_gym.heads.square_root.SquareRootGaussian`; the Newton solver of the refit
is :mod:`bandexa_gym.heads.logistic_fit`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bandexa_gym.heads.logistic_fit import RefitInfo, Rows, newton_map, passes_over
from bandexa_gym.heads.protocol import HeadSettings
from bandexa_gym.heads.square_root import (
    SquareRootGaussian,
    as_state,
    check_dim,
    covariance_from_factor,
    factor_from_cholesky,
    resolve_config,
)

__all__ = ["LaplaceLogisticRegression", "LogisticHeadConfig", "RefitInfo"]


@dataclass(frozen=True)
class LogisticHeadConfig(HeadSettings):
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

    positive = ("prior_var", "sample_scale", "forgetting")  # not a field: no annotation
    unknown_message = (
        "unknown logistic head settings {} (it takes prior_var, sample_scale, intercept and "
        "forgetting)"
    )

    prior_var: float = 1.0
    sample_scale: float = 1.0
    intercept: bool = False
    forgetting: float = 1.0

    def __post_init__(self) -> None:
        self.check()


class LaplaceLogisticRegression(SquareRootGaussian):
    """Bayesian logistic regression ``P(r = 1 | z) = σ(zᵀw)`` with a Laplace posterior.

    See the module docstring for the refit (:meth:`rebuild`), the online update
    (:meth:`update`) and their costs. Implements the
    :class:`~bandexa_gym.heads.protocol.Head` protocol; rewards must be 0 or 1.

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
        max_newton_steps: Newton steps a refit takes at most (a
            :class:`~bandexa_gym.heads.numerics.NumericalWarning` says when they did not
            suffice; the last iterate is used).
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

    _OVERFLOW = (
        "posterior sample is not finite: the state overflowed (features too large?); "
        "reset() or rebuild() the head"
    )

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
        check_dim(dim)
        fields = {"prior_var": prior_var, "sample_scale": sample_scale, "intercept": intercept,
                  "forgetting": forgetting}  # fmt: skip
        config = resolve_config(LogisticHeadConfig, config, fields)
        if not isinstance(config, LogisticHeadConfig):
            raise TypeError(f"config must be a LogisticHeadConfig, got {config!r}")
        if isinstance(max_newton_steps, bool) or not isinstance(max_newton_steps, int):
            raise TypeError(f"max_newton_steps must be an int, got {max_newton_steps!r}")
        if max_newton_steps < 1:
            raise ValueError(f"max_newton_steps must be >= 1, got {max_newton_steps}")
        if not (isinstance(newton_tol, (int, float)) and newton_tol > 0):
            raise ValueError(f"newton_tol must be a positive number, got {newton_tol!r}")
        super().__init__(dim, config, dtype, device)
        self._scale = self._draw_scale = config.sample_scale
        self._max_steps = int(max_newton_steps)
        self._tol = float(newton_tol)
        self.refit_info: RefitInfo | None = None
        """What the last :meth:`rebuild` did (None before the first)."""

    # -- properties -------------------------------------------------------------------
    @property
    def config(self) -> LogisticHeadConfig:
        """The hyper-parameters."""
        return self._config

    @property
    def sample_scale(self) -> float:
        """Scale ``c`` of the Thompson draws: ``w ~ N(μ, c² Σ)``."""
        return self._scale

    def covariance(self) -> Tensor:
        """Posterior covariance ``Σ = S Sᵀ`` (d, d), symmetrized."""
        return covariance_from_factor(self._S)

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
        z = as_state(z, self._dtype, self._device)
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
            self.discount(g)
            phi, v = phi / math.sqrt(g), v / g
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
        Z, r = self._checked_batch(Z, r)
        d, n = self._dim, Z.shape[0]
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
        ``w_MAP`` (:func:`~bandexa_gym.heads.numerics.safe_cholesky`), ``n = Σ ωᵢ``. The result
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
        passes = passes_over(chunks, self._checked)
        w, L, info = newton_map(passes, self._mu, self._prior_var, self._tol, self._max_steps)
        self._S.copy_(factor_from_cholesky(L))
        self._mu.copy_(w)
        self._n = int(info.n) if float(info.n).is_integer() else info.n
        self.refit_info = info

    def _checked(self, chunk: tuple[Any, ...]) -> Rows:
        """One chunk as state-dtype tensors ``(Z, r, ω or None)``, validated."""
        Z = as_state(chunk[0], self._dtype, self._device)
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

    def score(self, Z: Tensor, w: Tensor) -> Tensor:
        """Logits of features ``Z`` (..., K, d) under draws ``w`` (d',) or (n, d') of this
        head, the intercept weight included, in ``dtype``: (K,) or (n, K)."""
        Z = self.augment(Z.to(dtype=self._dtype, device=self._device))
        return Z @ w if w.ndim == 1 else (Z @ w.unsqueeze(-1)).squeeze(-1)

    def _score_each(self, Z: Tensor, w: Tensor) -> Tensor:
        return (self.augment(Z.to(dtype=self._dtype, device=self._device)) * w).sum(-1)

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
        keys = ("dim", "prior_var", "mean", "sqrt_covariance", "n_obs")
        settings = {"prior_var": False, "intercept": False}
        mean, factor = self._checked_state(state, keys, settings)
        n = state["n_obs"]
        if isinstance(n, bool) or not isinstance(n, numbers.Real) or not 0 <= n < math.inf:
            raise ValueError(f"n_obs must be a finite number >= 0, got {n!r}")
        if not bool(torch.isfinite(mean).all() & torch.isfinite(factor).all()):
            raise ValueError("state_dict holds non-finite values")
        self._S.copy_(factor)
        self._mu.copy_(mean)
        self._n = int(n) if float(n).is_integer() else float(n)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self._features}, prior_var={self._prior_var}, "
            f"sample_scale={self._scale}, n_obs={self._n}, device={self._device})"
        )


# -- helpers ----------------------------------------------------------------------------
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
