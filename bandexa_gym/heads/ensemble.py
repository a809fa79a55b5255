"""The belief of a bootstrapped ensemble (Osband et al. 2016): the members' predictions.

:class:`EnsembleHead` reads the predictions of M networks, a Thompson draw being one
member. Like the gradient belief (:mod:`bandexa_gym.heads.gradient`) it implements the part
of the :class:`~bandexa_gym.heads.protocol.Head` protocol the exploration rules use, so they
work on it unchanged. Features ``Z`` are (..., K, M): column m is member m's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bandexa_gym.heads.protocol import tie_split

__all__ = ["BOOTSTRAP_KINDS", "EnsembleHead", "bootstrap_weights"]

BOOTSTRAP_KINDS = ("poisson", "bernoulli", "none")
"""How the members of a bootstrapped ensemble weigh the replay transitions."""
_U64 = np.uint64


class EnsembleHead:
    """The belief of an ensemble of M networks: column m of ``Z`` is member m's prediction.

    * :meth:`predict`: mean and (unbiased; 0 for M = 1) variance over the members;
    * :meth:`thompson_scores`: the predictions of one member drawn uniformly per candidate
      set (one ``randint`` per set, so n sets consume the generator as n single calls);
    * :meth:`probabilities`: the exact probability of each candidate under that draw: the
      share of members whose best unmasked candidate it is, ties split evenly.

    Args:
        size: Number of members M.
    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        self.size = size

    @property
    def dim(self) -> int:
        """Feature width: the number of members M."""
        return self.size

    def _check(self, Z: Tensor) -> Tensor:
        if Z.shape[-1] != self.size:
            raise ValueError(f"expected Z of shape (..., K, {self.size}), got {tuple(Z.shape)}")
        return Z.to(torch.float64)

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance over the members: each (..., K), float64."""
        Z = self._check(Z)
        if self.size == 1:
            return Z[..., 0], torch.zeros_like(Z[..., 0])
        return Z.mean(-1), Z.var(-1, correction=1)

    def draw_members(self, rows: int, generator: torch.Generator | None = None) -> Tensor:
        """``rows`` uniform member indices (rows,) int64 (one generator call per row)."""
        device = generator.device if generator is not None else "cpu"
        return torch.randint(self.size, (rows,), generator=generator, device=device)

    def thompson_scores(
        self, Z: Tensor, generator: torch.Generator | None = None, draws: int | None = None
    ) -> Tensor:
        """One drawn member's predictions per candidate set.

        Args:
            Z: (K, M) or (n, K, M).
            generator: Source of the member draws.
            draws: Instead, M' independent member draws per set (Monte Carlo).

        Returns:
            (K,) or (n, K); with ``draws``, (draws, K) or (draws, n, K). Float64.
        """
        Z = self._check(Z)
        lead = Z.shape[:-2]
        n = math.prod(lead) * (1 if draws is None else int(draws))
        members = self.draw_members(n, generator).to(Z.device)
        flat = Z.reshape(-1, *Z.shape[-2:])  # (n_sets, K, M)
        if draws is not None:
            flat = flat.unsqueeze(0).expand(int(draws), *flat.shape).reshape(-1, *Z.shape[-2:])
        picked = flat.gather(2, members.view(-1, 1, 1).expand(-1, Z.shape[-2], 1)).squeeze(-1)
        shape = Z.shape[:-1] if draws is None else (int(draws), *Z.shape[:-1])
        return picked.reshape(shape)

    def probabilities(self, Z: Tensor, mask: Tensor) -> Tensor:
        """Exact probability of each candidate under a uniform member draw and a uniform
        tie-break: ``mean over members of tie_split(Z[..., m], mask)``.

        Args:
            Z: (..., K, M).
            mask: (..., K) bool.

        Returns:
            (..., K) float64, rows summing to 1.
        """
        Z = self._check(Z)
        per_member = tie_split(Z.movedim(-1, 0), mask.unsqueeze(0).expand(self.size, *mask.shape))
        return per_member.mean(0)

    def update(self, z: Tensor, r: float | Tensor = 0.0) -> None:
        """Nothing to do: the members learn by training on the replay buffer."""

    def update_batch(self, Z: Tensor, r: Tensor | None = None) -> None:
        """Nothing to do (see :meth:`update`)."""

    def state_dict(self) -> dict[str, Any]:
        return {"dim": self.size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("dim", self.size) != self.size:
            raise ValueError(f"ensemble size differs: state {state.get('dim')}, head {self.size}")


def _mix(v: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        v = v + _U64(0x9E3779B97F4A7C15)
        v = (v ^ (v >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        v = (v ^ (v >> _U64(27))) * _U64(0x94D049BB133111EB)
        return v ^ (v >> _U64(31))


# Poisson(1) CDF up to k = 20 (the tail beyond is below 1e-19, under float64 resolution).
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(21)])


def bootstrap_weights(
    key: int, steps: torch.Tensor, members: torch.Tensor, kind: str
) -> torch.Tensor:
    """Bootstrap weight of each (transition step, member) pair, fixed by ``key``.

    Args:
        key: The agent's bootstrap key (an integer in [0, 2⁶⁴)).
        steps: Replay steps (int64, any shape).
        members: Member indices (int64, broadcastable with ``steps``).
        kind: ``"poisson"``, ``"bernoulli"`` or ``"none"``.

    Returns:
        float32 weights of the broadcast shape, on ``steps``' device.
    """
    shape = torch.broadcast_shapes(steps.shape, members.shape)
    if kind == "none":
        return torch.ones(shape, dtype=torch.float32, device=steps.device)
    s = steps.detach().cpu().numpy().astype(np.uint64)
    m = members.detach().cpu().numpy().astype(np.uint64)
    h = _mix(_mix(_mix(np.full((), key, dtype=np.uint64)) ^ s) ^ m)
    u = (h >> _U64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
    if kind == "poisson":
        w = np.searchsorted(_POISSON_CDF, u, side="right").astype(np.float32)
    elif kind == "bernoulli":
        w = (u < 0.5).astype(np.float32)
    else:
        raise ValueError(f"bootstrap must be one of {', '.join(BOOTSTRAP_KINDS)}, got {kind!r}")
    return torch.from_numpy(np.broadcast_to(w, shape).copy()).to(steps.device)
