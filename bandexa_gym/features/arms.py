"""Fixed arm sets: which head scores a candidate row, and the one switch to a shared head.

An agent with one head per arm (``linear_ts``'s ``per_arm`` / ``disjoint`` maps,
``neural_linear_ts``'s ``arm_heads``) takes the first candidate set for a fixed set of arms
when it is one-hot or has at most :data:`MAX_FIXED_ARMS` rows and the env does not declare
``candidates_change`` (:func:`fixed_arm_set`); :class:`ArmRegistry` names the arms.
When more distinct rows come than a fixed arm set may have, :func:`arms_or_switch` says so
once, has the agent switch to one shared head and raises :class:`SwitchedToShared`; the
call that met the new rows is made again on the shared head (:func:`retry_if_switched`).
:class:`ArmHeads` shows the per-arm heads to the exploration rules as one head.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.numerics import (
    GAMMA_NORMALS,
    draw_row_length,
    gamma_variates,
    standard_gamma,
)

__all__ = [
    "MAX_FIXED_ARMS",
    "ArmFeatures",
    "ArmHeads",
    "ArmRegistry",
    "ArmSetChanged",
    "SwitchedToShared",
    "arms_or_switch",
    "fixed_arm_set",
    "is_one_hot",
    "retry_if_switched",
]

T = TypeVar("T")

MAX_FIXED_ARMS = 64
"""The most arms of a fixed arm set (one head per arm): a first candidate set of up to this
many rows is taken for one, and more distinct rows than this in all end it."""


def is_one_hot(candidates: torch.Tensor) -> bool:
    """Whether every row of ``candidates`` (..., K, d_a) is a one-hot vector."""
    binary = ((candidates == 0) | (candidates == 1)).all()
    return bool(binary and (candidates.sum(dim=-1) == 1).all())


def fixed_arm_set(candidates: torch.Tensor, candidates_change: bool | None) -> bool:
    """Whether a first candidate set (..., K, d_a) is taken for a fixed set of arms.

    One-hot rows always are (the arm is the position of the 1); other rows when there are at
    most :data:`MAX_FIXED_ARMS` of them and the env does not declare that its candidate rows
    change (``candidates_change``, e.g. retrieval).
    """
    small = candidates.shape[-2] <= MAX_FIXED_ARMS and not candidates_change
    return small or is_one_hot(candidates)


class ArmSetChanged(ValueError):
    """Candidate rows keep changing: they are not a fixed set of arms (one head each)."""


class ArmRegistry:
    """Names the arms of a fixed arm set: which head scores a candidate row.

    One-hot rows are the arm at the position of their 1 (labels, classes). Other rows are
    arms by their content: the first distinct row seen is arm 0, the next arm 1, ... (the
    fixed arms of a synthetic bandit), up to ``capacity`` distinct rows; a row beyond it
    raises :class:`ArmSetChanged` (the candidates are not a fixed arm set after all).

    Args:
        action_dim: d_a.
        capacity: Most distinct content-keyed rows (ignored for one-hot rows).
    """

    def __init__(self, action_dim: int, capacity: int) -> None:
        self.action_dim, self.capacity = int(action_dim), int(capacity)
        self.one_hot: bool | None = None  # decided by the first candidate set
        self.rows: list[bytes] = []
        self._index: dict[bytes, int] = {}

    @property
    def n_arms(self) -> int:
        """Arms known so far (``action_dim`` for one-hot rows)."""
        return self.action_dim if self.one_hot else len(self.rows)

    def arms(self, candidates: torch.Tensor) -> torch.Tensor:
        """Arm index of every row of ``candidates`` (..., K, d_a): (..., K) int64.

        Raises:
            ArmSetChanged: More distinct rows than ``capacity``, or a non-one-hot row after
                one-hot ones (nothing is registered then).
        """
        if self.one_hot is None:
            self.one_hot = is_one_hot(candidates)
        if self.one_hot:
            if not is_one_hot(candidates):
                raise ArmSetChanged("a candidate row is not one-hot, unlike the first ones")
            return candidates.argmax(dim=-1)
        flat = candidates.reshape(-1, self.action_dim).to("cpu", torch.float32).numpy()
        keys = [row.tobytes() for row in flat]
        new = list(dict.fromkeys(k for k in keys if k not in self._index))
        if len(self.rows) + len(new) > self.capacity:
            raise ArmSetChanged(
                f"more than {self.capacity} distinct candidate rows: the candidates change "
                "from round to round, so they are not a fixed set of arms"
            )
        for key in new:
            self._index[key] = len(self.rows)
            self.rows.append(key)
        ids = torch.tensor([self._index[k] for k in keys], dtype=torch.int64)
        return ids.reshape(candidates.shape[:-1]).to(candidates.device)

    def state(self) -> tuple[dict[str, Any], torch.Tensor]:
        """(JSON scalars, the content-keyed rows (n, d_a) float32) for checkpoints."""
        rows = torch.tensor(
            [list(np.frombuffer(k, dtype=np.float32)) for k in self.rows], dtype=torch.float32
        ).reshape(len(self.rows), self.action_dim)
        return {"one_hot": self.one_hot, "capacity": self.capacity}, rows

    def load(self, scalars: Mapping[str, Any], rows: torch.Tensor) -> None:
        """Restore :meth:`state` output.

        Raises:
            ValueError: Rows of the wrong width or repeated rows.
        """
        if rows.ndim != 2 or rows.shape[1] != self.action_dim:
            raise ValueError(f"arm rows must be (n, {self.action_dim}), got {tuple(rows.shape)}")
        keys = [row.tobytes() for row in rows.to(torch.float32).numpy()]
        if len(set(keys)) != len(keys):
            raise ValueError("arm rows repeat a row")
        one_hot = scalars.get("one_hot")
        if one_hot not in (None, True, False):
            raise ValueError(f"one_hot must be a bool or null, got {one_hot!r}")
        self.one_hot, self.rows = one_hot, keys
        self._index = {k: i for i, k in enumerate(keys)}


class ArmFeatures(NamedTuple):
    """Features for per-arm heads: what each candidate's head reads, and its arm.

    Attributes:
        x: (B, d) shared by the candidates of a row (the context, for per-arm linear
            heads), or (B, K, d) one per candidate (learned features z(x, a)).
        arms: Arm index of every candidate (B, K), int64.
    """

    x: torch.Tensor
    arms: torch.Tensor


class ArmHeads:
    """One head per arm seen as one head (what the exploration rules read).

    ``predict`` and ``thompson_scores`` on :class:`ArmFeatures`: candidate ``k`` of row ``b``
    is scored by the head of its arm. A Thompson draw samples, row by row, one weight
    vector per arm present in the row, in ascending arm order (so B rows consume the
    generator as B single rows do).
    """

    def __init__(self, heads: list[Any]) -> None:
        self.heads = heads

    def predict(self, features: ArmFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        x, arms = features
        present = torch.unique(arms)
        if x.shape[0] * arms.shape[1] * len(present) <= 4096 and self._gaussian_alike():
            return self._predict_at_once(x, arms, present)
        dtype = self.heads[0].dtype
        mean = torch.empty(arms.shape, dtype=dtype, device=x.device)
        variance = torch.empty_like(mean)
        for arm in torch.unique(arms).tolist():
            where = arms == arm
            if x.ndim == 2:  # one feature vector per row, shared by its candidates
                m, v = self.heads[arm].predict(x[:, None, :])  # (B, 1)
                mean = torch.where(where, m, mean)
                variance = torch.where(where, v, variance)
            else:
                mean[where], variance[where] = self.heads[arm].predict(x[where])
        return mean, variance

    def thompson_scores(
        self,
        features: ArmFeatures,
        generator: torch.Generator | None = None,
        draws: int | None = None,
    ) -> torch.Tensor:
        x, arms = features
        if draws is not None and all(
            len(set(row)) == len(row) for row in arms.tolist()
        ):  # every candidate its own arm: independent scores, drawn as scalars
            return self._independent_draws(features, draws, generator)
        shared = x.ndim == 2
        if not shared:
            x = x.to(self.heads[0].dtype)
        f = self.heads[0].dim  # a draw is [w | intercept] for a head with an intercept
        if draws is None and arms.shape[0] > 1 and self._gaussian_alike():
            return self._batched_draws(x, arms, f, generator)
        rows = []
        for b in range(arms.shape[0]):
            row_arms = arms[b].tolist()
            present = sorted(set(row_arms))
            w = {arm: self.heads[arm].sample(draws, generator=generator) for arm in present}
            if shared:  # (K,) or (M, K)
                parts = [_dot(w[arm], x[b], f) for arm in row_arms]
            else:
                parts = [_dot(w[arm], x[b, k], f) for k, arm in enumerate(row_arms)]
            rows.append(torch.stack(parts, dim=-1 if draws else 0))
        return torch.stack(rows, dim=0 if draws is None else 1)

    def _gaussian_alike(self) -> bool:
        """Whether every head is a Gaussian head of one width and noise model (their draws
        then take rows of normals of one length)."""
        first = self.heads[0]
        return all(
            isinstance(h, BayesianLinearRegression)
            and (h.dim, h.state_dim, h.noise) == (first.dim, first.state_dim, first.noise)
            for h in self.heads
        )

    def _predict_at_once(
        self, x: torch.Tensor, arms: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` for small batches: every candidate projected on the ``[S | μ]``
        of every arm present in one product (A times the needed arithmetic, a handful of
        operations instead of a loop over arms), then each candidate's own arm picked."""
        heads = [self.heads[arm] for arm in present.tolist()]
        first = heads[0]
        projections = torch.stack([h.projection for h in heads])  # (A, d', d' + 1)
        z = first.augment(x.to(first.dtype))  # (B, d') or (B, K, d')
        if z.ndim == 2:
            z = z[:, None, :].expand(-1, arms.shape[1], -1)
        proj = torch.einsum("bki,aij->bkaj", z, projections)  # (B, K, A, d' + 1)
        slot = torch.searchsorted(present, arms)  # each candidate's arm among the present
        mine = proj.gather(2, slot[..., None, None].expand(-1, -1, 1, proj.shape[-1]))[..., 0, :]
        scales = torch.tensor([h.noise_scale() for h in heads], dtype=first.dtype)
        d = first.state_dim
        variance = mine[..., :d].pow(2).sum(-1) * scales.to(x.device)[slot]
        return mine[..., d], variance

    def _batched_draws(
        self,
        x: torch.Tensor,
        arms: torch.Tensor,
        f: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One Thompson score per candidate (B, K), the draws of every row at once.

        The same numbers as the row-by-row loop: the loop's draws (row by row, one per arm
        present, ascending) take one row of normals each, so all the rows of normals are
        drawn in one call in that order and each head turns its own rows into weights.
        """
        first = self.heads[0]
        order = [(b, arm) for b in range(arms.shape[0]) for arm in sorted(set(arms[b].tolist()))]
        normals = torch.randn(
            len(order),
            draw_row_length(first.state_dim, first.noise == "nig"),
            generator=generator,
            dtype=first.dtype,
            device=x.device,
        )
        owners = torch.tensor([arm for _, arm in order], device=x.device)
        gammas = None
        if first.noise == "nig":  # every draw's Gamma(a) variate in one vectorized call
            shapes = torch.tensor([self.heads[arm].a for _, arm in order], dtype=first.dtype)
            d = first.state_dim
            gammas = standard_gamma(shapes, normals[:, d : d + GAMMA_NORMALS], generator)
        weights = torch.empty(len(order), first.state_dim, dtype=first.dtype, device=x.device)
        for arm in torch.unique(owners).tolist():
            rows = (owners == arm).nonzero().squeeze(1)
            weights[rows] = self.heads[arm].draws_from_normals(
                normals[rows], generator, None if gammas is None else gammas[rows]
            )
        slot = {key: i for i, key in enumerate(order)}
        index = torch.tensor(
            [[slot[(b, arm)] for arm in row] for b, row in enumerate(arms.tolist())],
            device=x.device,
        )
        w = weights[index]  # (B, K, d') the draw of each candidate's arm
        z = x[:, None, :] if x.ndim == 2 else x
        scores = (z * w[..., :f]).sum(-1)
        return scores + w[..., f] if w.shape[-1] > f else scores

    def _independent_draws(
        self, features: ArmFeatures, draws: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``draws`` posterior draws of every candidate's score (M, B, K), one arm each.

        Heads are independent, so candidate k's score ``z·w`` has its exact marginal: a
        Gaussian ``N(m, q)`` for a fixed-noise head, a scaled t for a NIG head (drawn as
        ``m + sqrt(b / g) · sqrt(q) · ε`` with ``g ~ Gamma(a)``), where ``m`` and ``q`` are
        the posterior mean and the σ²-scaled variance of the score; ``N(m, c² q)`` for a
        logistic head, whose draws are ``w ~ N(μ, c² Σ)`` (``c = sample_scale``). O(M·K)
        draws instead of M weight vectors per arm.
        """
        mean, variance = self.predict(features)  # (B, K) each
        heads = self.heads
        arms = features.arms
        shape = (draws, *mean.shape)
        eps = torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
        if hasattr(heads[0], "sample_scale"):  # Gaussian draws N(μ, c² Σ): a logistic head
            c = torch.tensor([h.sample_scale for h in heads], dtype=mean.dtype, device=mean.device)
            return mean + c[arms] * torch.sqrt(variance) * eps
        scale = torch.tensor([h.noise_scale() for h in heads], dtype=mean.dtype, device=mean.device)
        q = variance / scale[arms]  # σ²-scaled variance of each candidate's score
        if heads[0].noise == "nig":
            a = torch.tensor([h.a for h in heads], dtype=mean.dtype, device=mean.device)[arms]
            b = torch.tensor([h.b for h in heads], dtype=mean.dtype, device=mean.device)[arms]
            eps = eps * torch.sqrt(b / gamma_variates(a.expand(shape), generator))
        return mean + torch.sqrt(q) * eps


def _dot(w: torch.Tensor, x: torch.Tensor, f: int) -> torch.Tensor:
    """``x · w`` for draws ``w`` (d',) or (M, d') of a head over f features (+ intercept)."""
    out = w[..., :f] @ x
    return out + w[..., f] if w.shape[-1] > f else out


class SwitchedToShared(Exception):
    """Raised once an agent has switched from one head per arm to one shared head (the
    candidate rows are not a fixed arm set): the call that raised it is made again."""


def arms_or_switch(
    registry: ArmRegistry,
    candidates: torch.Tensor,
    *,
    owner: str,
    option: str,
    required: bool,
    shared: str,
    switch: Callable[[], None],
) -> torch.Tensor:
    """Arm of every candidate row (..., K, d_a), or the one switch to a shared head.

    Args:
        registry: The agent's arm registry (:meth:`ArmRegistry.arms`).
        candidates: The rows to name.
        owner: The agent's name, first in the warning.
        option: The agent's setting that asked for per-arm heads (``"feature_map"``,
            ``"arm_heads"``), named in the error.
        required: The user asked for per-arm heads (``option='per_arm'``): no switch.
        shared: What the agent switches to, in the warning (e.g. "one head over [x; a]").
        switch: Puts the agent on its shared head (called before the raise).

    Raises:
        ValueError: ``required`` and the rows are not a fixed arm set.
        SwitchedToShared: The rows are not a fixed arm set: ``switch`` ran, with a warning.
    """
    try:
        return registry.arms(candidates)
    except ArmSetChanged as err:
        if required:
            raise ValueError(f"{option}='per_arm' needs a fixed arm set: {err}") from None
        warnings.warn(
            f"{owner}: {err}; switching to {shared} (an env with candidates_change = True "
            "starts there, without this warning)",
            RuntimeWarning,
            stacklevel=4,  # the caller of the agent's own arm lookup
        )
        switch()
        raise SwitchedToShared from None


def retry_if_switched(call: Callable[[], T]) -> T:
    """``call()``, made once more if it switched its agent to a shared head."""
    try:
        return call()
    except SwitchedToShared:
        return call()
