"""The outlier screen: rows far beyond what an agent has learned from are left out, refused or
learned (see :class:`~bandexa_gym.agents.core.protocol.Agent`, ``outliers=``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["DEFAULT_OUTLIER_FACTOR", "OUTLIER_POLICIES", "OutlierScreen", "OutlierWarning"]


class OutlierWarning(UserWarning):
    """Rows an agent did not learn because a value was far beyond what it had learned from
    (see :class:`Agent`, ``outliers=``)."""


OUTLIER_POLICIES = ("skip", "raise", "accept")
"""What an agent does with an outlier row: leave it out with a warning, refuse it, learn it."""
DEFAULT_OUTLIER_FACTOR = 1e6
"""A value beyond this many times the largest magnitude learned so far is an outlier."""
_INPUT_KINDS = ("context", "candidate", "reward")


def _largest(values: torch.Tensor) -> float:
    """Largest magnitude in ``values`` (0 when empty)."""
    if values.numel() == 0:
        return 0.0
    if values.device.type == "cpu" and values.dtype != torch.bfloat16:
        # numpy: a fraction of torch's dispatch cost on the small rows of a round
        arr = values.detach().numpy()
        if arr.dtype == np.uint8:
            return float(arr.max())
        if arr.dtype.kind not in "fc":
            arr = arr.astype(np.float64)
        return float(np.abs(arr).max())
    if values.dtype == torch.uint8:  # images: no sign, no copy
        return float(values.max())
    if not values.is_floating_point():
        values = values.to(torch.float64)
    return float(values.abs().max())


def _row_magnitudes(values: torch.Tensor, size: int) -> torch.Tensor:
    """Largest magnitude of each of ``size`` rows, float64 (0 for empty rows)."""
    flat = values.reshape(size, -1)
    if flat.shape[1] == 0:
        return torch.zeros(size, dtype=torch.float64, device=values.device)
    return flat.to(torch.float64).abs().amax(1)


def check_outlier_settings(outliers: Any, outlier_factor: Any) -> tuple[str, float]:
    """``(outliers, outlier_factor)`` validated.

    Raises:
        ValueError: An unknown policy, or a factor that is not a finite number > 1.
    """
    if outliers not in OUTLIER_POLICIES:
        raise ValueError(f"outliers must be one of {OUTLIER_POLICIES}, got {outliers!r}")
    if (
        isinstance(outlier_factor, bool)
        or not isinstance(outlier_factor, (int, float, np.floating, np.integer))
        or not 1.0 < outlier_factor < math.inf
    ):
        raise ValueError(f"outlier_factor must be a finite number > 1, got {outlier_factor!r}")
    return outliers, float(outlier_factor)


class OutlierScreen:
    """Mixin of :class:`~bandexa_gym.agents.core.protocol.Agent`: the largest magnitudes
    learned so far (``input_scale``: contexts, chosen rows, rewards) and the screen."""

    name: str
    outliers: str
    outlier_factor: float
    input_scale: tuple[float, float, float]

    def _screen(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        rewards: torch.Tensor,
        magnitudes: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray | None, tuple[float, float, float]]:
        """Find the outliers among B rows about to be learned (see the class docstring).

        ``magnitudes``: the largest magnitudes of the context and the chosen row of a single
        row, when the caller has them already (else they are computed here).

        Returns:
            (None, the scale after learning every row) when no row is an outlier, else
            (which rows to learn (B,) bool, the scale after learning those).

        Raises:
            ValueError: An outlier under ``outliers="raise"``.
        """
        if self.outliers == "accept":
            return None, self.input_scale
        size = rewards.shape[0]
        if size == 1:  # the common case, in Python floats
            if magnitudes is None:
                magnitudes = (_largest(contexts), _largest(chosen))
            row = (*magnitudes, abs(rewards.item()))
            factor = self.outlier_factor
            if not any(
                0 < s and factor * s < m for s, m in zip(self.input_scale, row, strict=True)
            ):
                return None, tuple(max(s, m) for s, m in zip(self.input_scale, row, strict=True))
        mags = torch.stack(
            [_row_magnitudes(contexts, size), _row_magnitudes(chosen, size), rewards.abs()], 1
        )
        mags = mags.cpu().numpy()
        scale, factor = np.asarray(self.input_scale), self.outlier_factor
        before = np.maximum.accumulate(np.vstack([scale, mags]), axis=0)  # if all were kept
        if not ((before[:-1] > 0) & (mags > factor * before[:-1])).any():
            return None, tuple(float(v) for v in before[-1])
        keep, found = np.ones(size, dtype=bool), []
        for i in range(size):  # rows one at a time: an outlier does not raise the scale
            bad = np.flatnonzero((scale > 0) & (mags[i] > factor * scale))
            if bad.size:
                keep[i] = False
                kind = int(bad[0])
                where = f"row {i}: " if size > 1 else ""
                found.append(f"{where}{_INPUT_KINDS[kind]} {mags[i, kind]:.3g}")
            else:
                scale = np.maximum(scale, mags[i])
        seen = ", ".join(
            f"{kind} {value:.3g}"
            for kind, value in zip(_INPUT_KINDS, self.input_scale, strict=True)
            if value > 0
        )
        rows = f"{len(found)} of {size} rows hold" if size > 1 else "a row holds"
        message = (
            f"{self.name}: {rows} a value more than {factor:.0e} times the largest the agent "
            f"has learned from ({seen}): {'; '.join(found[:3])}"
        )
        if self.outliers == "raise":
            raise ValueError(
                message + "; nothing was learned (rescale the data, or make the agent with "
                "outliers='skip' or 'accept', or a larger outlier_factor)"
            )
        warnings.warn(
            message + "; those rows were not learned (outliers='accept' learns them, "
            "outliers='raise' refuses them)",
            OutlierWarning,
            stacklevel=3,
        )
        return keep, tuple(float(v) for v in scale)

    def input_scale_state(self, scalars: Mapping[str, Any]) -> tuple[float, float, float]:
        """A checkpoint's ``input_scale`` (the largest magnitudes learned), validated.

        Raises:
            ValueError: Not three finite numbers >= 0.
        """
        scale = scalars.get("input_scale", [0.0, 0.0, 0.0])
        if (
            not isinstance(scale, list)
            or len(scale) != 3
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                for v in scale
            )
        ):
            raise ValueError(f"input_scale must be three finite numbers >= 0, got {scale!r}")
        return tuple(float(v) for v in scale)
