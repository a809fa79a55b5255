"""The square-root Gaussian state both Bayesian heads keep, written once.

A head over features ``z`` (d,) keeps a Gaussian belief about its weights as the mean ``μ``
(d',) and a square-root factor ``S`` (d', d') of the covariance ``Σ = S Sᵀ``, in float64 by
default, side by side in one (d', d' + 1) buffer ``[S | μ]`` so that ``zᵀ[S | μ] =
[φ = Sᵀz ; zᵀμ]`` is one product. ``d' = d``, plus one with an intercept (the regressors are
``[z; 1]``, the constant's row last). No step inverts the full matrix: updates are rank-1
Potter steps on ``S``, refits one Cholesky factorization ``L Lᵀ = Λ`` of the precision with
``S = L⁻ᵀ`` (:func:`factor_from_cholesky`).

:class:`SquareRootGaussian` holds that state and what both heads
(:class:`~bandexa_gym.heads.gaussian.BayesianLinearRegression`,
:class:`~bandexa_gym.heads.logistic.LaplaceLogisticRegression`) do with it the same way:
the prior ``N(0, prior_var · I)``, the properties, the intercept column, the covariance and
precision read from ``S``, forgetting (discounting the precision), Thompson draws
``w = μ + c S ε`` from rows of standard normals (one row of
:func:`~bandexa_gym.heads.numerics.draw_row_length` per draw, so a batch of draws consumes
the generator as a loop does) and the scores under them, moving between devices and
checking a saved state before anything is written. The heads add their own updates,
refits, predictions and scalars.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from bandexa_gym.heads.numerics import draw_row_length
from bandexa_gym.heads.protocol import HeadSettings

__all__ = [
    "SquareRootGaussian",
    "as_state",
    "check_dim",
    "covariance_from_factor",
    "factor_from_cholesky",
    "precision_from_factor",
    "resolve_config",
]

_Head = TypeVar("_Head", bound="SquareRootGaussian")


def check_dim(dim: Any) -> None:
    """Raise a ``ValueError`` unless ``dim`` is a positive int."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")


def resolve_config(
    kind: type[HeadSettings], config: HeadSettings | None, fields: Mapping[str, Any]
) -> Any:
    """The head's config: ``config``, or one of class ``kind`` built from the ``fields`` given
    one by one (those not None); both at once is a ``ValueError``."""
    given = {k: v for k, v in fields.items() if v is not None}
    if config is not None and given:
        raise ValueError(f"pass either config= or {sorted(given)}, not both")
    return config if config is not None else kind(**given)


def as_state(x: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` as a detached tensor of the state's dtype on its device (no copy if it is one)."""
    if isinstance(x, Tensor) and x.dtype == dtype and x.device == device:
        return x.detach()
    return torch.as_tensor(x).detach().to(device=device, dtype=dtype)


def factor_from_cholesky(L: Tensor) -> Tensor:
    """``S = L⁻ᵀ`` (upper triangular) from the lower Cholesky factor ``L`` of a precision
    ``Λ = L Lᵀ``: then ``S Sᵀ = Λ⁻¹``."""
    eye = torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
    return torch.linalg.solve_triangular(L, eye, upper=False).T


def covariance_from_factor(S: Tensor) -> Tensor:
    """``S Sᵀ`` (d, d), symmetrized."""
    cov = S @ S.T
    return 0.5 * (cov + cov.T)


def precision_from_factor(S: Tensor) -> Tensor:
    """``(S Sᵀ)⁻¹`` (d, d), symmetrized, in O(d³) (not on any hot path)."""
    eye = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
    s_inv = torch.linalg.solve(S, eye)
    prec = s_inv.T @ s_inv
    return 0.5 * (prec + prec.T)


class SquareRootGaussian:
    """The state ``[S | μ]`` of a Gaussian belief over weights and what every head does with
    it alike (see the module docstring). Subclasses set :attr:`_OVERFLOW` and the scale
    ``_draw_scale`` of their draws (or override :meth:`_draw` and :meth:`draws_from_normals`),
    implement :meth:`score` and :meth:`_score_each`, and extend :meth:`_reset_scalars` with
    their own scalars.

    Args:
        dim: Feature dimension d (checked by the subclass first, with :func:`check_dim`).
        config: The head's hyper-parameters (``prior_var``, ``intercept`` and
            ``forgetting`` are read here).
        dtype: Floating dtype of the state (float64 recommended).
        device: Device of the state; inputs are moved to it.
    """

    _OVERFLOW: ClassVar[str] = "posterior sample is not finite: the state overflowed"
    _draw_scale: float = 1.0  # c of the draws w = μ + c S ε

    def __init__(
        self,
        dim: int,
        config: Any,
        dtype: torch.dtype,
        device: str | torch.device | None,
    ) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}")
        self._config = config
        self._prior_var: float = config.prior_var
        self._forgetting: float = config.forgetting
        self._dtype = dtype
        self._device = torch.device("cpu") if device is None else torch.device(device)
        self._features = int(dim)  # the width of z; the state has one more row with an intercept
        self._intercept: bool = config.intercept
        self._dim = self._features + int(config.intercept)
        self._set_state(
            self._prior_factor(self._dim), torch.zeros(self._dim, dtype=dtype, device=self._device)
        )
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

    def _reset_scalars(self) -> None:
        """The scalars of the prior state (subclasses add theirs)."""
        self._n: float = 0

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
    def config(self) -> Any:
        """The hyper-parameters."""
        return self._config

    @property
    def n_obs(self) -> float:
        """Observations absorbed since the last reset (a rebuild sets the data's count): an
        int, or with forgetting or weighted rows the discounted count."""
        return self._n

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
    def mean(self) -> Tensor:
        """Posterior mean μ (d,), a copy."""
        return self._mu.clone()

    @property
    def sqrt_covariance(self) -> Tensor:
        """Square-root factor S (d, d) of the state's covariance ``Σ = S Sᵀ``, a copy."""
        return self._S.clone()

    def precision(self) -> Tensor:
        """``Σ⁻¹`` (d, d), computed on demand in O(d³) from S (not kept on the hot path)."""
        return precision_from_factor(self._S)

    # -- forgetting and reset ---------------------------------------------------------
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
        self._S.copy_(self._prior_factor(self._dim))
        self._mu.zero_()
        self._reset_scalars()

    # -- draws ------------------------------------------------------------------------
    def _draw_row_length(self) -> int:
        """Normals one draw consumes (:func:`~bandexa_gym.heads.numerics.draw_row_length`)."""
        return draw_row_length(self._dim, False)

    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Posterior draws of the weights, one row of standard normals each.

        Each draw consumes one row of :func:`~bandexa_gym.heads.numerics.draw_row_length`
        normals from ``generator`` (what a row becomes: :meth:`draws_from_normals`), so
        ``sample(n)`` takes the same numbers as ``n`` calls of ``sample()`` (exactly, on the
        CPU) and ``sample(1)[0]`` equals ``sample()``.

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
            rows, self._draw_row_length(), generator=generator, dtype=self._dtype,
            device=self._device,
        )  # fmt: skip
        if n is None:
            return self._draw(normals[0], generator)
        return self.draws_from_normals(normals, generator)

    def draws_from_normals(
        self, normals: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The posterior draws (n, d') that rows of standard normals (n, row length) give, as
        :meth:`sample` makes them: ``w = μ + c S ε``, ``ε`` the first d' normals of a row and
        ``c`` the head's draw scale; one ``addmv`` for one row, one ``addmm`` for more.

        Lets a caller draw the normals of several heads in one call and hand each head its
        rows (the same numbers as the heads' own ``sample`` calls, in the same order).

        Raises:
            FloatingPointError: A draw is not finite (the posterior has overflowed).
        """
        if normals.shape[0] == 1:
            return self._draw(normals[0], generator).unsqueeze(0)
        w = torch.addmm(self._mu, normals[:, : self._dim], self._S.T, alpha=self._draw_scale)
        return self._finite(w)

    def _draw(self, row: Tensor, generator: torch.Generator | None) -> Tensor:
        """One draw (d',) from one row of normals (see :meth:`draws_from_normals`)."""
        w = torch.addmv(self._mu, self._S, row[: self._dim], alpha=self._draw_scale)
        return self._finite(w)

    def _finite(self, w: Tensor) -> Tensor:
        if not math.isfinite(float(w.sum())):
            raise FloatingPointError(self._OVERFLOW)
        return w

    def thompson_scores(
        self, Z: Tensor, generator: torch.Generator | None = None, draws: int | None = None
    ) -> Tensor:
        """Scores of candidates under fresh posterior draws (the head's ``score``).

        Args:
            Z: Candidates (K, d) scored under one draw, or (n, K, d) under n draws (one
                per leading index, in order, consuming the generator as n single draws).
            generator: Passed to :meth:`sample`.
            draws: Instead, score every candidate set under this many independent draws
                (Monte Carlo over the posterior, e.g. for action probabilities).

        Returns:
            (K,) or (n, K) scores; with ``draws=M``, (M, K) or (M, n, K).
        """
        if draws is None:
            w = self.sample(None if Z.ndim == 2 else Z.shape[0], generator=generator)
            return self.score(Z, w)
        lead = Z.shape[:-2]
        w = self.sample(draws * math.prod(lead), generator=generator)  # (M · n, d')
        return self._score_each(Z, w.reshape(draws, *lead, 1, self._dim))

    def score(self, Z: Tensor, w: Tensor) -> Tensor:
        """Scores of features ``Z`` (..., K, d) under draws ``w`` (d',) or (n, d')."""
        raise NotImplementedError

    def _score_each(self, Z: Tensor, w: Tensor) -> Tensor:
        """Scores of ``Z`` (..., K, d) under one draw per set, ``w`` (M, ..., 1, d')."""
        raise NotImplementedError

    # -- checked inputs ---------------------------------------------------------------
    def _checked_batch(self, Z: Any, r: Any) -> tuple[Tensor, Tensor]:
        """A batch ``Z`` (n, d), ``r`` (n,) as state tensors, ``Z`` augmented; shapes checked."""
        Z = as_state(Z, self._dtype, self._device)
        r = torch.as_tensor(r).detach().to(device=self._device, dtype=self._dtype)
        if Z.ndim != 2 or Z.shape[1] != self._features:
            raise ValueError(f"expected Z of shape (n, {self._features}), got {tuple(Z.shape)}")
        Z = self.augment(Z)
        if r.shape != (Z.shape[0],):
            raise ValueError(f"expected r of shape ({Z.shape[0]},), got {tuple(r.shape)}")
        return Z, r

    def _checked_state(
        self, state: Mapping[str, Any], keys: tuple[str, ...], settings: Mapping[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """The mean and factor of a :meth:`state_dict` to load, checked against this head.

        Args:
            state: The state to load.
            keys: The keys it must have.
            settings: Hyper-parameters that must equal this head's (the attribute
                ``_<name>``), each with the value a state without it stands for.

        Raises:
            ValueError: A missing key, another dimension or setting, or tensors of the
                wrong shape.
        """
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state_dict is missing {missing}")
        if int(state["dim"]) != self._features:
            raise ValueError(
                f"state_dict has dim {state['dim']}, this head has dim {self._features}"
            )
        for key, default in settings.items():
            mine, theirs = getattr(self, "_" + key), state.get(key, default)
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
        return mean, factor

    def to(self: _Head, device: str | torch.device) -> _Head:
        """Move the state to ``device`` (in place); returns self."""
        self._device = torch.device(device)
        self._set_state(self._S.to(self._device), self._mu.to(self._device))
        return self
