"""The belief of NeuralTS and NeuralUCB over a network's gradient features.

:class:`DiagonalGradientHead` is the belief of NeuralTS (Zhang et al. 2021) and NeuralUCB
(Zhou et al. 2020): each candidate's expected reward is ``N(f, ν² λ gᵀ U⁻¹ g)`` with ``g``
the network's gradient features and ``U`` the diagonal of ``λ I + Σ g gᵀ`` over the chosen
candidates so far. Like the ensemble's belief (:mod:`bandexa_gym.heads.ensemble`) it
implements the part of the :class:`~bandexa_gym.heads.protocol.Head` protocol the
exploration rules use (``predict`` and ``thompson_scores``), so Thompson sampling, UCB,
greedy and ε-greedy work on it unchanged, as do an agent's ``decide`` and
``action_distribution``. Features ``Z`` are (..., K, dim) as for every head.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from bandexa_gym.heads.numerics import normal_row_length

__all__ = ["DiagonalGradientHead"]


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class DiagonalGradientHead:
    """``N(f, ν² λ gᵀ U⁻¹ g)`` per candidate, ``U = diag(λ I + Σₜ gₜ gₜᵀ)``.

    The features of a candidate are ``z = [f(x, a); g(x, a)]`` (1 + P numbers): the
    network's prediction and its gradient features (see
    :class:`~bandexa_gym.networks.CandidateGradients`). ``U`` keeps only the diagonal of the
    design matrix, as NeuralTS and NeuralUCB do in practice: ``U = λ + Σₜ gₜ²``
    elementwise, over the chosen candidates ``gₜ`` absorbed by :meth:`update`, in
    float64. Then

    * :meth:`predict`: mean ``f``, variance ``ν² λ Σⱼ gⱼ² / Uⱼ``: O(P) per candidate;
    * :meth:`thompson_scores`: ``f + sqrt(variance) · ε``, one standard normal per
      candidate, drawn independently (NeuralTS);
    * the UCB rule with ``alpha = γ`` and ``ν = 1`` gives NeuralUCB's ``f + γ sqrt(λ gᵀ U⁻¹ g)``.

    Args:
        dim: Feature width 1 + P.
        lam: λ, the prior precision of the design matrix (> 0); larger means more
            exploration that decays more slowly.
        nu: ν, the scale of the belief's standard deviation (> 0).
        forgetting: γ in (0, 1]: before every update the data part of ``U`` is discounted,
            ``U ← λ + γ (U − λ)`` (the prior is kept), so a round ``k`` updates old weighs
            ``γᵏ`` -- for rewards that drift. 1 (default) forgets nothing.
        device: Device of the state.
    """

    def __init__(
        self,
        dim: int,
        *,
        lam: float = 1.0,
        nu: float = 1.0,
        forgetting: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an integer >= 2 (1 + P gradient features), got {dim!r}")
        self._dim = dim
        self.lam = _check_positive("lam", lam)
        self.nu = _check_positive("nu", nu)
        self.forgetting = _check_positive("forgetting", forgetting)
        if self.forgetting > 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting!r}")
        self._device = torch.device(device)
        self.reset()

    @property
    def dim(self) -> int:
        """Feature width 1 + P."""
        return self._dim

    @property
    def precision(self) -> Tensor:
        """The diagonal of ``U`` (P,), float64."""
        return self._precision

    @property
    def n_obs(self) -> int:
        """Observations absorbed since the last reset."""
        return self._n

    def reset(self) -> None:
        """Return to the prior ``U = λ I``."""
        self._precision = torch.full(
            (self._dim - 1,), self.lam, dtype=torch.float64, device=self._device
        )
        self._n = 0
        self._inverse: Tensor | None = None

    def _gradients(self, Z: Tensor) -> Tensor:
        if Z.shape[-1] != self._dim:
            raise ValueError(f"expected Z of shape (..., K, {self._dim}), got {tuple(Z.shape)}")
        return Z[..., 1:]

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``f`` and variance ``ν² λ Σⱼ gⱼ² / Uⱼ`` of every candidate.

        Args:
            Z: Features (..., K, 1 + P).

        Returns:
            ``(mean, variance)``, each (..., K), float64.
        """
        G = self._gradients(Z)
        if self._inverse is None or self._inverse.dtype != G.dtype:
            self._inverse = (self.nu**2 * self.lam / self._precision).to(G.dtype)
        variance = (G.square() @ self._inverse).to(torch.float64)
        return Z[..., 0].to(torch.float64), variance

    def thompson_scores(
        self, Z: Tensor, generator: torch.Generator | None = None, draws: int | None = None
    ) -> Tensor:
        """Scores ``f + sd · ε`` with independent standard normals ``ε`` per candidate.

        Args:
            Z: Features (K, 1 + P) of one candidate set or (n, K, 1 + P) of n sets
                (consuming the generator as n single calls).
            generator: Source of ``ε``.
            draws: Instead, M independent score draws per set (Monte Carlo).

        Returns:
            (K,) or (n, K); with ``draws=M``, (M, K) or (M, n, K). Float64.
        """
        mean, variance = self.predict(Z)
        k = mean.shape[-1]
        rows = math.prod(mean.shape[:-1]) * (1 if draws is None else int(draws))
        normals = torch.randn(
            rows,
            normal_row_length(k),  # one row per set: a batch draws as single calls do
            generator=generator,
            dtype=torch.float64,
            device=mean.device,
        )[:, :k]
        shape = mean.shape if draws is None else (int(draws), *mean.shape)
        return mean + variance.sqrt() * normals.reshape(shape)

    def update(self, z: Tensor, r: float | Tensor = 0.0) -> None:
        """Absorb the chosen candidate's features (1 + P,): ``U += g²``.

        The reward is not needed (the network learns it); it is accepted for the
        :class:`~bandexa_gym.heads.protocol.Head` protocol.

        Raises:
            ValueError: Wrong shape or non-finite features (nothing is changed then).
        """
        g = self._gradients(z).to(device=self._device, dtype=torch.float64)
        if g.shape != (self._dim - 1,) or not bool(torch.isfinite(g).all()):
            raise ValueError(
                f"expected finite features of shape ({self._dim},), got {tuple(z.shape)}"
            )
        self._precision = self._discounted(self._precision) + g.square()
        self._n += 1
        self._inverse = None

    def update_batch(self, Z: Tensor, r: Tensor | None = None) -> None:
        """Absorb n chosen candidates (n, 1 + P) exactly as n calls of :meth:`update`."""
        G = self._gradients(Z).to(device=self._device, dtype=torch.float64)
        if G.ndim != 2 or not bool(torch.isfinite(G).all()):
            raise ValueError(
                f"expected finite features of shape (n, {self._dim}), got {tuple(Z.shape)}"
            )
        precision = self._precision
        for g in G:  # row by row: the same float64 sums as single updates
            precision = self._discounted(precision) + g.square()
        self._precision = precision
        self._n += G.shape[0]
        self._inverse = None

    def _discounted(self, precision: Tensor) -> Tensor:
        if self.forgetting == 1.0:
            return precision
        return (precision - self.lam).mul_(self.forgetting).add_(self.lam)

    def rebuild(self, chunks: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Reset to the prior and absorb a stream of ``(Z, r)`` chunks (Z (n, 1 + P))."""
        self.reset()
        for Z, r in chunks:
            self.update_batch(Z, r)

    def sample(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Not available: this belief has no weight vector to draw (use
        :meth:`thompson_scores`)."""
        raise NotImplementedError(
            "DiagonalGradientHead has no weight posterior to sample; Thompson sampling draws "
            "scores with thompson_scores()"
        )

    def state_dict(self) -> dict[str, Any]:
        """``dim``, ``lam``, ``nu``, ``forgetting``, ``n_obs`` and ``precision`` (P,)."""
        return {
            "dim": self._dim,
            "lam": self.lam,
            "nu": self.nu,
            "forgetting": self.forgetting,
            "n_obs": self._n,
            "precision": self._precision.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict` output (``lam``, ``nu`` and ``forgetting`` stay this
        head's); all-or-nothing.

        Raises:
            ValueError: Another ``dim``, a wrong shape, or entries that are not finite or
                below ``lam`` (a diagonal ``λ + Σ g²`` never is).
        """
        if state.get("dim", self._dim) != self._dim:
            raise ValueError(f"head dim differs: state {state.get('dim')}, head {self._dim}")
        precision = torch.as_tensor(state["precision"]).to(self._device, torch.float64)
        if precision.shape != (self._dim - 1,):
            raise ValueError(
                f"precision must have shape ({self._dim - 1},), got {tuple(precision.shape)}"
            )
        if not bool(torch.isfinite(precision).all()) or bool((precision <= 0).any()):
            raise ValueError("precision must be finite and positive")
        n_obs = state.get("n_obs", 0)
        if isinstance(n_obs, bool) or not isinstance(n_obs, int) or n_obs < 0:
            raise ValueError(f"n_obs must be an integer >= 0, got {n_obs!r}")
        self._precision = precision.clone()
        self._n = n_obs
        self._inverse = None
