"""What the Gaussian head's posterior being a function of sufficient statistics gives.

The conjugate posterior of :class:`~bandexa_gym.heads.gaussian.BayesianLinearRegression`
depends on the data only through ``ZᵀZ``, ``Zᵀr``, ``rᵀr`` and n. :class:`ConjugateGaussian`
holds the square-root state with the scalars that carry the rest, ``quad`` and
``log det Σ``, and what follows from the statistics:

* refits: :meth:`~ConjugateGaussian.rebuild` (a stream of data, through
  :func:`accumulate_statistics`), :meth:`~ConjugateGaussian.rebuild_from_statistics`
  (:func:`posterior_from_statistics`) and :meth:`~ConjugateGaussian.retarget` (new targets,
  the same features, without the data);
* growing to more features: :meth:`~ConjugateGaussian.expand` and :func:`grown_state`;
* re-basing on other hyper-parameters, the same data: :func:`rebase_head_state` and
  :func:`load_rebased`.

The observation variance ``v`` of the equations is σ² for fixed noise and 1 under NIG (where
``Σ`` is σ²-scaled); the math is in ``docs/references/blr.md``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from bandexa_gym.heads.numerics import safe_cholesky
from bandexa_gym.heads.protocol import HEAD_FIELDS, HeadConfig
from bandexa_gym.heads.square_root import (
    SquareRootGaussian,
    factor_from_cholesky,
    precision_from_factor,
)

__all__ = [
    "ConjugateGaussian",
    "accumulate_statistics",
    "grown_state",
    "load_rebased",
    "posterior_from_statistics",
    "rebase_head_state",
]


class ConjugateGaussian(SquareRootGaussian):
    """The square-root state of a conjugate linear-Gaussian posterior, with ``quad`` and
    ``log det Σ``, and its refits, growth and the checks they need (module docstring).

    The subclass sets ``_obs_var`` (``v``) before calling ``__init__``.
    """

    _obs_var: float

    def _reset_scalars(self) -> None:
        self._n = 0
        self._quad = 0.0
        self._logdet = self._dim * math.log(self._prior_var)

    def discount(self, factor: float) -> None:
        """:meth:`SquareRootGaussian.discount`, and ``quad`` × ``factor`` too (with
        ``log det Σ`` the precision's discount)."""
        super().discount(factor)
        if factor != 1.0:
            self._quad *= factor
            self._logdet -= self._dim * math.log(factor)

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

        :func:`posterior_from_statistics` with σ² = 1 under NIG, and
        ``quad = rᵀr / σ² − μᵀΛμ`` (clamped at 0 against round-off). O(d³). The statistics
        of transformed targets follow from raw ones, so an agent can re-standardize its
        rewards without keeping the data.

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
        mu, factor, fit, logdet = posterior_from_statistics(gram, zr, self._prior_var, var)
        quad, logdet = torch.stack((rr / var - fit, logdet)).tolist()
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


def posterior_from_statistics(
    gram: Tensor, zr: Tensor, prior_var: float, var: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The Gaussian posterior of data with sufficient statistics ``ZᵀZ`` and ``Zᵀr``.

    One :func:`~bandexa_gym.heads.numerics.safe_cholesky` ``L Lᵀ = Λ`` of
    ``Λ = I / prior_var + ZᵀZ / v`` (v = σ², 1 under NIG) gives ``μ = Λ⁻¹ Zᵀr / v`` and
    ``S = L⁻ᵀ`` (upper triangular). O(d³).

    Returns:
        ``μ`` (d,), ``S`` (d, d), ``μᵀΛμ`` and ``log det Σ`` (0-dim tensors): with
        ``quad = rᵀr / v − μᵀΛμ`` they are the head's whole state.
    """
    prec = gram / var
    prec.diagonal().add_(1.0 / prior_var)
    L = safe_cholesky(prec)
    mean = torch.cholesky_solve((zr / var).unsqueeze(1), L).squeeze(1)
    fit = (L.T @ mean).pow(2).sum()
    return mean, factor_from_cholesky(L), fit, -2.0 * L.diagonal().log().sum()


def accumulate_statistics(
    chunks: Iterable[tuple[Tensor, ...]],
    dim: int,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Sufficient statistics ``(ZᵀWZ, ZᵀWr, rᵀWr, ΣW)`` of ``(Z, r[, w])`` chunks.

    What :meth:`ConjugateGaussian.rebuild` streams; agents with one head per arm
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

    The posterior of :class:`~bandexa_gym.heads.gaussian.BayesianLinearRegression` is a
    function of the data's sufficient statistics, which are recovered from the state
    (``v`` = σ² for fixed noise, 1 under NIG; ``Λ = (S Sᵀ)⁻¹``)::

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
    prec = precision_from_factor(factor)  # Λ (d, d)
    gram = (prec - eye / float(state["prior_var"])) * old_v  # ZᵀZ
    zr = (prec @ mean) * old_v  # Zᵀr
    rr = old_v * (float(state["quad"]) + float(mean @ prec @ mean))  # rᵀr
    new_mean, new_factor, fit, logdet = posterior_from_statistics(gram, zr, new.prior_var, new_v)
    return {
        "dim": int(state["dim"]),
        **new.to_dict(),
        "mean": new_mean,
        "sqrt_covariance": new_factor,
        "n_obs": int(state["n_obs"]),
        "quad": max(rr / new_v - float(fit), 0.0),  # fit: μ'ᵀ Λ' μ'
        "logdet": float(logdet),
    }


def load_rebased(head: ConjugateGaussian, state: Mapping[str, Any]) -> bool:
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
    head: ConjugateGaussian, new_dim: int, order: Tensor | None = None
) -> dict[str, Any]:
    """State of ``head`` grown to ``new_dim`` by prior blocks, then permuted by ``order``.

    Args:
        head: Source head (not modified).
        new_dim: New feature dimension D >= ``head.dim``; features ``head.dim..D-1`` are new.
        order: Optional permutation (D,): new feature ``j`` is grown feature ``order[j]``.

    Returns:
        A ``state_dict`` of the head's class, of dimension D. Permuting the rows of
        the square-root factor ``S`` (D, D) permutes ``Σ = S Sᵀ`` symmetrically, so the
        result is a valid factor of the permuted covariance; ``logdet``, n and ``quad``
        are invariant.
    """
    grown = type(head)(head.dim, head.config, dtype=head.dtype, device=head.device)
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
