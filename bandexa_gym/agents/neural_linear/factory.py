"""The registered Neural-Linear agents: ``neural_linear_ts``, ``neural_linear_ucb``,
``neural_greedy`` and ``neural_epsilon_greedy``, one class with different exploration rules."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

from bandexa_gym.agents.core import (
    DEFAULT_OUTLIER_FACTOR,
    register_agent,
)
from bandexa_gym.agents.neural_factory import neural_config, neural_encoders
from bandexa_gym.agents.neural_linear.agent import NeuralLinearTS
from bandexa_gym.agents.neural_linear.config import (
    _HEAD_FIELDS,
    _SCHEDULE_FIELDS,
    HEAD_KINDS,
    NeuralLinearTSConfig,
)
from bandexa_gym.buffers import ReplayBuffer
from bandexa_gym.features.encoders import Encoder

__all__ = ["make_neural_linear"]


def make_neural_linear(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    encoder: str | Encoder = "auto",
    encoder_kwargs: dict[str, Any] | None = None,
    feature_dim: int | None = None,
    buffer: ReplayBuffer | None = None,
    exploration: Any = "thompson",
    propensity_draws: int = 100,
    max_pending: int = 10_000,
    outliers: str = "skip",
    outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
    **settings: Any,
) -> NeuralLinearTS:
    """A :class:`NeuralLinearTS` sized for ``space`` with the default settings for its kind
    of context (images: ConvNet and 200 uniform warm-up rounds; the loss is the squared
    error on standardized rewards for every kind: on ``Bandexa/MNIST-v0`` it gave 0.139×
    uniform's regret at 4,096 rounds against 0.184× with the logistic loss, two seeds).

    ``head="logistic"`` (or ``head_kind="logistic"``) puts the Laplace logistic head on
    the features, for rewards in {0, 1}, and trains the encoder with ``loss="bce"``;
    ``head`` may otherwise be ``"gaussian"`` (the default) or the Gaussian head's
    :class:`HeadConfig` (or a dict of its fields).
    """
    head = settings.pop("head", None)
    if isinstance(head, str):
        if head not in HEAD_KINDS:
            raise ValueError(
                f"head must be 'gaussian', 'logistic', a HeadConfig or a dict of its fields, "
                f"got {head!r}"
            )
        if settings.setdefault("head_kind", head) != head:
            raise ValueError(f"head={head!r} and head_kind={settings['head_kind']!r} disagree")
    elif head is not None:
        settings["head"] = head
    images = {"warmup_random": 200, "train_every": 50, "optimizer_steps": 50}
    valid = ", ".join(sorted({*_SCHEDULE_FIELDS, *_HEAD_FIELDS}))
    config = neural_config(NeuralLinearTSConfig, space, settings, images, also=valid)
    (encoder,) = neural_encoders(
        space, encoder, seed=seed, feature_dim=feature_dim, encoder_kwargs=encoder_kwargs
    )
    return NeuralLinearTS(
        encoder,
        buffer=buffer,
        config=config,
        exploration=exploration,
        device=device,
        seed=seed,
        propensity_draws=propensity_draws,
        max_pending=max_pending,
        outliers=outliers,
        outlier_factor=outlier_factor,
    )


@register_agent("neural_linear_ts")
def _make_neural_linear_ts(space: spaces.Dict, **kwargs: Any) -> NeuralLinearTS:
    """Neural-Linear Thompson sampling (the default encoder for the space)."""
    return make_neural_linear(space, **kwargs)


@register_agent("neural_linear_ucb")
def _make_neural_linear_ucb(
    space: spaces.Dict, alpha: float = 1.0, **kwargs: Any
) -> NeuralLinearTS:
    """UCB (width ``alpha`` posterior standard deviations) on the neural-linear head."""
    kwargs.setdefault("exploration", {"name": "ucb", "alpha": alpha})
    return make_neural_linear(space, **kwargs)


@register_agent("neural_greedy")
def _make_neural_greedy(space: spaces.Dict, **kwargs: Any) -> NeuralLinearTS:
    """The neural-linear model played greedily (posterior mean): the no-exploration baseline."""
    kwargs.setdefault("exploration", "greedy")
    return make_neural_linear(space, **kwargs)


@register_agent("neural_epsilon_greedy")
def _make_neural_epsilon_greedy(
    space: spaces.Dict,
    epsilon: float = 0.1,
    decay: float = 0.0,
    min_epsilon: float = 0.0,
    **kwargs: Any,
) -> NeuralLinearTS:
    """The neural-linear model played ε-greedily (ε_t = max(min_epsilon, ε / (1 + decay t)))."""
    rule = {
        "name": "epsilon_greedy",
        "epsilon": epsilon,
        "decay": decay,
        "min_epsilon": min_epsilon,
    }
    kwargs.setdefault("exploration", rule)
    return make_neural_linear(space, **kwargs)
