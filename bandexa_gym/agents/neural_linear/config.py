"""The settings of a Neural-Linear agent: :class:`NeuralLinearTSConfig` and its default head."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bandexa_gym.agents.learning import (
    Schedule,
    check_training_settings,
)
from bandexa_gym.agents.limits import check_count
from bandexa_gym.heads.protocol import HEAD_FIELDS, HeadConfig

__all__ = ["HEAD_KINDS", "NeuralLinearTSConfig", "default_head"]

_HEAD_FIELDS = HEAD_FIELDS
HEAD_KINDS = ("gaussian", "logistic")
_COUNTS = ("warmup_random", "train_every", "optimizer_steps", "batch_size", "rebuild_chunk",
           "buffer_capacity")  # fmt: skip


@dataclass
class NeuralLinearTSConfig(Schedule):
    """Hyper-parameters of :class:`NeuralLinearTS`.

    Attributes:
        head: The Bayesian head's hyper-parameters (:class:`HeadConfig`; None (default):
            :func:`default_head`, an intercept and, for the Gaussian head, ``prior_var=0.1``).
        head_kind: ``"gaussian"`` (default): Bayesian linear regression on the reward;
            ``"logistic"``: the Laplace logistic head for rewards in {0, 1}
            (:class:`~bandexa_gym.posterior.LaplaceLogisticRegression`, prior
            ``N(0, head.prior_var · I)``, refit by Newton's method at every rebuild; other
            rewards are a ``ValueError`` at ``observe``; ``predict`` reports the logit's
            mean and variance). It takes ``head.prior_var``, ``intercept`` and
            ``forgetting``, trains with ``loss="bce"`` on unstandardized rewards, and
            leaves ``head.noise``, ``a0``, ``b0`` at their defaults (they are Gaussian).
        warmup_random: Rounds of uniform exploration before the exploration rule takes
            over; the encoder is trained and the head rebuilt once at the end of the
            warm-up, so the first rule-driven decision already uses learned features.
        train_every: Train the encoder and rebuild the head every this many rounds (0: never).
        optimizer_steps: Gradient steps per training burst.
        batch_size: Minibatch size of encoder training.
        rebuild_chunk: Transitions re-encoded per chunk when rebuilding the head.
        action_chunk: Candidates encoded per chunk when scoring (None: all at once).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        loss: ``"mse"`` on the reward, ``"bce"`` on a {0, 1} reward (logit readout); None
            (default): ``"mse"`` for the Gaussian head, ``"bce"`` for the logistic one.
        buffer_capacity: Capacity of the default in-memory replay buffer.
        arm_heads: ``"per_arm"``: one head per arm over the shared learned features
            (the Neural-Linear design of Riquelme et al. 2018: each arm's uncertainty shrinks
            only with its own data); ``"shared"``: one head for all candidates; ``"auto"``
            (default): per arm for one-hot candidates or a set of at most
            ``MAX_FIXED_ARMS`` (64) rows (switching once to a shared head, rebuilt from the
            buffer, if more than 64 distinct rows come), shared for large candidate sets
            and on an env that declares ``candidates_change``.
        window: Sliding window: rebuilds use only the last ``window`` rounds of the replay
            buffer (and training favours them, half-life ``window / 2``); None (default)
            uses the whole buffer. With the head's ``forgetting=γ`` instead, rebuilds weight
            a row of age k by ``γᵏ`` (the prior is kept) and training favours recent rows
            with half-life ``ln 2 / −ln γ`` rounds.
        standardize_features: The head sees every learned feature standardized,
            ``z̃ = (z − mean) / std`` with the mean and standard deviation of the replay
            buffer's features under the current encoder (re-fitted at every rebuild: after each
            training burst and at rounds 1, 2, 4, 8, ...; a feature that does not vary is
            dropped; without an intercept the features are scaled, not centered). A trained
            encoder's features share a large common part and vary little from context to
            context, so on raw features a prior ``N(0, prior_var)`` per weight says little
            about how rewards may differ between contexts and the head stops exploring too
            early; standardized, every direction the features can move in gets the same prior
            width. Hence the Gaussian head's default ``prior_var=0.1`` per standardized
            feature.
        standardize_rewards: The head and the (MSE) readout learn rewards standardized by
            their running mean and standard deviation, re-fitted before every training burst
            and at rounds 2, 4, 8, ... (the head is then rebuilt), so the agent decides the
            same whatever the reward's units and its priors mean the same thing everywhere.
            None (default): True for the Gaussian head, False for the logistic one (which
            learns the raw {0, 1} rewards).

    Raises:
        ValueError: A setting out of range (named in the message), at construction.
    """

    head: HeadConfig | None = None
    head_kind: str = "gaussian"
    warmup_random: int = 0
    train_every: int = 50
    optimizer_steps: int = 50
    batch_size: int = 64
    rebuild_chunk: int = 4096
    action_chunk: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str | None = None
    buffer_capacity: int = 100_000
    arm_heads: str = "auto"
    window: int | None = None
    standardize_features: bool = True
    standardize_rewards: bool | None = None

    def __post_init__(self) -> None:
        if self.head_kind not in HEAD_KINDS:
            raise ValueError(f"head_kind must be 'gaussian' or 'logistic', got {self.head_kind!r}")
        gaussian_head = self.head_kind == "gaussian"
        if self.head is None:
            self.head = default_head(self.head_kind)
        if self.loss is None:
            self.loss = "mse" if gaussian_head else "bce"
        if self.standardize_rewards is None:
            self.standardize_rewards = gaussian_head
        if isinstance(self.head, Mapping):
            self.head = HeadConfig.from_dict(self.head)
        if not isinstance(self.head, HeadConfig):
            raise TypeError(f"head must be a HeadConfig, got {self.head!r}")
        check_training_settings(self, _COUNTS)
        if self.arm_heads not in ("auto", "shared", "per_arm"):
            raise ValueError(
                f"arm_heads must be 'auto', 'shared' or 'per_arm', got {self.arm_heads!r}"
            )
        if self.window is not None:
            self.window = check_count("window", self.window)
        if not isinstance(self.standardize_features, bool):
            raise TypeError(
                f"standardize_features must be True or False, got {self.standardize_features!r}"
            )
        if not isinstance(self.standardize_rewards, bool):
            raise TypeError(
                f"standardize_rewards must be True or False, got {self.standardize_rewards!r}"
            )
        if self.head_kind == "logistic":
            if self.loss != "bce" or self.standardize_rewards:
                raise ValueError(
                    "head_kind='logistic' models the raw {0, 1} rewards: the encoder trains "
                    f"with loss='bce' and rewards are not standardized, got loss={self.loss!r}, "
                    f"standardize_rewards={self.standardize_rewards!r}"
                )
            default = HeadConfig()
            gaussian = {k: getattr(self.head, k) for k in ("noise", "a0", "b0")}
            if any(getattr(default, k) != v for k, v in gaussian.items()):
                raise ValueError(
                    f"head settings {gaussian} are for the Gaussian head; the logistic head "
                    "takes prior_var, intercept and forgetting (leave noise, a0, b0 at their "
                    "defaults)"
                )

    @classmethod
    def from_settings(cls, **settings: Any) -> NeuralLinearTSConfig:
        """A config from flat settings: head fields (``prior_var``, ``noise``, ``a0``,
        ``b0``) go into ``head``, the rest are config fields.

        Raises:
            TypeError: An unknown setting.
        """
        head = {k: settings.pop(k) for k in _HEAD_FIELDS if k in settings}
        unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        if head:
            base = settings.pop("head", None) or default_head(settings.get("head_kind", "gaussian"))
            base = HeadConfig.from_dict(base) if isinstance(base, Mapping) else base
            settings["head"] = dataclasses.replace(base, **head)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable fields (the head as a dict)."""
        return dataclasses.asdict(self)

    @property
    def recency_half_life(self) -> float | None:
        """Half-life (in rounds) of the replay sampling's recency weights, or None: half the
        window, or that of the head's ``forgetting``."""
        gamma, window = self.head.forgetting, self.window
        if window is not None:
            return window / 2.0
        return math.log(2.0) / -math.log(gamma) if gamma != 1.0 else None


def default_head(head_kind: str = "gaussian") -> HeadConfig:
    """The head settings a :class:`NeuralLinearTSConfig` starts from: an intercept, and for
    the Gaussian head a prior variance of 0.1 per standardized feature."""
    if head_kind == "gaussian":
        return HeadConfig(intercept=True, prior_var=0.1)
    return HeadConfig(intercept=True)


_SCHEDULE_FIELDS = tuple(
    f.name for f in dataclasses.fields(NeuralLinearTSConfig) if f.name != "head"
)
