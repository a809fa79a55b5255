"""Scaling: rewards and learned features standardized, so priors mean the same everywhere.

* :class:`RewardScaler`: rewards standardized by their running mean and standard deviation
  (every agent that learns on rewards; ``standardize_rewards``).
* :class:`TargetStats`: the raw-reward statistics of the rows a linear head absorbed, with
  which the head is re-expressed exactly for new reward units, without the data.
* :func:`feature_standardization`: the shift and gain that standardize learned features
  ``z̃ = (z − shift) · gain`` (``neural_linear_ts``'s ``standardize_features``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["RewardScaler", "TargetStats", "feature_standardization"]


class RewardScaler:
    """Standardizes rewards, ``r̃ = (r − shift) / scale``, from the rewards seen so far.

    Heads and encoders then learn on targets of mean 0 and variance 1 whatever the reward's
    units: an agent decides the same on rewards multiplied by 100 or shifted by +100 (the
    argmax of standardized scores is the argmax of raw ones), its priors mean the same
    thing on every problem, and a network's readout does not have to move by tens. The
    running mean and variance are updated with every reward; ``shift`` and ``scale``
    change only at :meth:`refit`, after which the agent re-expresses its head in the new
    units (exactly: see ``BayesianLinearRegression.retarget`` and ``rebuild``).

    Args:
        enabled: When False, ``shift = 0`` and ``scale = 1`` always (raw rewards).
        tolerance: :meth:`refit` reports a change only when the shift moves by more than
            this many scales or the scale by more than this factor (relative).
    """

    def __init__(self, enabled: bool = True, tolerance: float = 0.05) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"standardize_rewards must be True or False, got {enabled!r}")
        self.enabled, self.tolerance = enabled, float(tolerance)
        self.shift, self.scale = 0.0, 1.0
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, rewards: torch.Tensor) -> None:
        """Add rewards (n,) to the running moments (Chan et al.'s parallel update)."""
        n = int(rewards.numel())
        if n == 0:
            return
        if n == 1:  # the per-round case: no tensor arithmetic
            mean, m2 = float(rewards.reshape(())), 0.0
        else:
            values = rewards.detach().to("cpu", torch.float64)
            mean, m2 = float(values.mean()), float(((values - values.mean()) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def refit(self) -> bool:
        """Set ``shift``/``scale`` to the running mean/std; True if they changed notably.

        The scale stays 1 until two distinct rewards have been seen (a variance of 0 says
        nothing about the reward's units).
        """
        if not self.enabled or self.count == 0:
            return False
        variance = self.m2 / self.count
        scale = math.sqrt(variance) if variance > 1e-24 * (1.0 + self.mean * self.mean) else None
        new_scale = self.scale if scale is None else scale
        moved = abs(self.mean - self.shift) > self.tolerance * self.scale
        rescaled = abs(math.log(new_scale / self.scale)) > self.tolerance
        if not (moved or rescaled):
            return False
        self.shift, self.scale = self.mean, new_scale
        return True

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        """Standardized rewards (same shape)."""
        if self.shift == 0.0 and self.scale == 1.0:
            return rewards
        return (rewards - self.shift) / self.scale

    def adopt(self, source: RewardScaler) -> None:
        """Take ``source``'s running moments and units (``evolve``: the heads carried over
        from it are in its units)."""
        self.count, self.mean, self.m2 = source.count, source.mean, source.m2
        self.shift, self.scale = source.shift, source.scale

    def back_to_raw(self) -> bool:
        """A scaler that does not standardize returns to raw units (shift 0, scale 1).

        Returns:
            True when that changed its units: what learned in the old ones (a head) must be
            re-expressed.
        """
        if self.enabled or (self.shift, self.scale) == (0.0, 1.0):
            return False
        self.shift, self.scale = 0.0, 1.0
        return True

    def state(self) -> dict[str, float | int]:
        """JSON scalars for checkpoints."""
        return {"shift": self.shift, "scale": self.scale, "count": self.count,
                "mean": self.mean, "m2": self.m2}  # fmt: skip

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` output.

        Raises:
            ValueError: Non-finite values, a scale <= 0 or a negative count.
        """
        values = {k: state[k] for k in ("shift", "scale", "count", "mean", "m2")}
        if not all(math.isfinite(float(v)) for v in values.values()):
            raise ValueError(f"reward scaler state holds non-finite values: {values}")
        if values["scale"] <= 0 or values["count"] < 0 or values["m2"] < 0:
            raise ValueError(f"invalid reward scaler state: {values}")
        self.shift, self.scale = float(values["shift"]), float(values["scale"])
        self.count, self.mean, self.m2 = (
            int(values["count"]),
            float(values["mean"]),
            float(values["m2"]),
        )


class TargetStats:
    """Raw-reward statistics of the rows one head absorbed: ``Zᵀr``, ``Zᵀ1``, n, Σr, Σr².

    With them a head can be re-expressed for standardized targets ``(r − shift) / scale`` at
    any time, exactly and in O(d²) (``BayesianLinearRegression.retarget``), without the data.

    Attributes:
        zr: ``Zᵀr`` (d,), float64.
        zs: ``Zᵀ1`` (d,), float64.
        moments: ``[n, Σr, Σr²]`` (3,), float64.
    """

    def __init__(self, dim: int, device: torch.device) -> None:
        self.zr = torch.zeros(dim, dtype=torch.float64, device=device)
        self.zs = torch.zeros(dim, dtype=torch.float64, device=device)
        self.moments = torch.zeros(3, dtype=torch.float64, device=device)

    def discount(self, factor: float) -> None:
        """Weigh everything so far by ``factor`` (as a forgetting head does its data)."""
        for value in (self.zr, self.zs, self.moments):
            value.mul_(factor)

    def add(self, Z: torch.Tensor, r: torch.Tensor) -> None:
        """Add rows Z (n, d) with raw rewards r (n,)."""
        if Z.shape[0] == 1:  # the per-round case, in fewer (and the same exact) operations
            value = float(r.reshape(()))
            self.zr.add_(Z[0], alpha=value)
            self.zs.add_(Z[0])
            self.moments.add_(self.moments.new_tensor((1.0, value, value * value)))
            return
        self.zr.addmv_(Z.T, r)
        self.zs.add_(Z.sum(dim=0))
        self.moments.add_(torch.stack((r.new_tensor(float(r.numel())), r.sum(), r.dot(r))))

    def standardized(self, scaler: RewardScaler) -> tuple[torch.Tensor, torch.Tensor]:
        """``Zᵀr̃`` and ``r̃ᵀr̃`` for the scaler's ``r̃ = (r − shift) / scale``."""
        n, total, squares = self.moments
        shift, scale = scaler.shift, scaler.scale
        zr = (self.zr - shift * self.zs) / scale
        rr = (squares - 2.0 * shift * total + n * shift * shift) / (scale * scale)
        return zr, rr

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.zr": self.zr, f"{prefix}.zs": self.zs, f"{prefix}.moments": self.moments}

    def load(self, tensors: Mapping[str, torch.Tensor], prefix: str) -> TargetStats:
        """A copy holding the checkpoint's tensors (shapes checked)."""
        out = TargetStats(self.zr.shape[0], self.zr.device)
        for name in ("zr", "zs", "moments"):
            key = f"{prefix}.{name}"
            if key not in tensors:
                raise ValueError(f"checkpoint lacks tensor {key!r}")
            value = tensors[key].to(out.zr.device, torch.float64)
            if value.shape != getattr(out, name).shape or not bool(torch.isfinite(value).all()):
                raise ValueError(f"tensor {key} has the wrong shape or is not finite")
            setattr(out, name, value.clone())
        return out


def feature_standardization(
    features: Iterable[torch.Tensor], dim: int, *, center: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The shift and gain that standardize features, ``z̃ = (z − shift) · gain``.

    From their mean and standard deviation over chunks of raw features ``(n, dim)``. A
    feature whose standard deviation is below 1e-3 of the largest one's gets gain 0;
    without ``center`` (a head without an intercept, which is what would carry the mean) the
    shift is 0: the features are scaled but not centered.

    Returns:
        ``(shift, gain)``, each (dim,) float64 on ``device``; None with fewer than 2 rows in
        all (nothing to standardize by).
    """
    total = torch.zeros(dim, dtype=torch.float64, device=device)
    squares = torch.zeros_like(total)
    count = 0
    for z in features:
        z = z.to(torch.float64)
        total += z.sum(dim=0)
        squares += (z * z).sum(dim=0)
        count += z.shape[0]
    if count < 2:
        return None
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0.0).sqrt()
    live = std > 1e-3 * std.max()
    gain = torch.where(live, 1.0 / std.clamp_min(1e-300), torch.zeros_like(std))
    if not center:
        mean = torch.zeros_like(mean)
    return mean, gain
