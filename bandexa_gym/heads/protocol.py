"""What every head shares: the :class:`Head` protocol, hyper-parameters and scoring.

:class:`Head` is the interface every head implements (what the exploration rules and the
agents rely on); :class:`HeadConfig` holds the hyper-parameters of the Gaussian head that
agents, checkpoints and :func:`bandexa_gym.transfer.evolve` share, and :class:`HeadSettings`
the validation and dict round trip every head's config class has. :func:`score` is the one
matmul that scores candidates under weight draws, and :func:`tie_split` the probabilities
of the uniform tie-break among the best candidates (the exploration rules and the ensemble
head both state probabilities with it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "HEAD_FIELDS",
    "Head",
    "HeadConfig",
    "HeadSettings",
    "check_positive",
    "score",
    "score_dtype",
    "tie_split",
]

_Settings = TypeVar("_Settings", bound="HeadSettings")


def check_positive(name: str, value: Any) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a positive finite real."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class HeadSettings:
    """What the frozen config dataclasses of the heads share: the checks of ``intercept``,
    of the positive fields (stored as floats) and of ``forgetting`` in (0, 1], and the
    round trip through a JSON-serializable dict."""

    intercept: bool
    forgetting: float
    positive: ClassVar[tuple[str, ...]] = ()
    """The fields that must be positive finite numbers."""
    unknown_message: ClassVar[str] = "unknown head settings {}"
    """The error :meth:`from_dict` raises for unknown keys (``{}``: their sorted list)."""

    def check(self) -> None:
        """Validate the common fields (called from ``__post_init__``)."""
        if not isinstance(self.intercept, bool):
            raise TypeError(f"intercept must be True or False, got {self.intercept!r}")
        for name in self.positive:
            check_positive(name, getattr(self, name))
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.forgetting > 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {self.forgetting!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Settings], values: Mapping[str, Any]) -> _Settings:
        """Build from :meth:`to_dict` output (unknown keys are a ``ValueError``)."""
        unknown = set(values) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(cls.unknown_message.format(sorted(unknown)))
        return cls(**values)


@dataclass(frozen=True)
class HeadConfig(HeadSettings):
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

    positive = ("prior_var", "a0", "b0", "forgetting")  # not a field: no annotation

    prior_var: float = 1.0
    noise: str | float = "nig"
    a0: float = 1.0
    b0: float = 1.0
    intercept: bool = False
    forgetting: float = 1.0

    def __post_init__(self) -> None:
        self.check()
        if isinstance(self.noise, str):
            if self.noise != "nig":
                raise ValueError(f"noise must be 'nig' or a positive number, got {self.noise!r}")
        else:
            check_positive("noise", self.noise)
            object.__setattr__(self, "noise", float(self.noise))


HEAD_FIELDS: tuple[str, ...] = tuple(HeadConfig.__dataclass_fields__)
"""The names of :class:`HeadConfig`'s fields (the settings agents accept one by one)."""


@runtime_checkable
class Head(Protocol):
    """What an exploration rule and an agent need from a Bayesian head over features ``z``.

    Shapes: ``Z`` is (..., K, d), one row per candidate; scores, means and variances are
    (..., K). :class:`~bandexa_gym.heads.gaussian.BayesianLinearRegression` is the reference
    implementation.
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


def tie_split(scores: Tensor, mask: Tensor) -> Tensor:
    """Probabilities of :func:`~bandexa_gym.exploration.select` with random keys: 1 / (number
    of ties) on the best.

    Args:
        scores: (..., K).
        mask: (..., K) bool.

    Returns:
        (..., K) float64, 0 off the best unmasked candidates, rows summing to 1.
    """
    masked = scores.masked_fill(~mask, -math.inf)
    ties = ((masked == masked.amax(dim=-1, keepdim=True)) & mask).to(torch.float64)
    return ties / ties.sum(dim=-1, keepdim=True)
