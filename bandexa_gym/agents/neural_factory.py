"""What the factories of the neural agents share: their settings on the kind of context, and
the default encoders they are built on (the agents' own options named in errors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gymnasium import spaces

from bandexa_gym.features.encoders import Encoder
from bandexa_gym.features.encoders.defaults import seeded_default_encoders

__all__ = ["AGENT_OPTIONS", "neural_config", "neural_encoders"]

AGENT_OPTIONS = (
    "encoder",
    "encoder_kwargs",
    "feature_dim",
    "buffer",
    "exploration",
    "propensity_draws",
    "max_pending",
    "outliers",
    "outlier_factor",
)
"""What a neural factory takes besides its config's settings."""


def neural_config(
    config_type: type,
    space: spaces.Dict,
    settings: Mapping[str, Any],
    image_defaults: Mapping[str, Any],
    also: str = "",
) -> Any:
    """``config_type.from_settings`` of ``settings`` over ``image_defaults`` for an image
    context (a (C, H, W) ``space["context"]``).

    Raises:
        TypeError: An unknown setting; the message lists the factory's options too (and
            ``also``).
    """
    images = len(space["context"].shape) == 3
    try:
        return config_type.from_settings(**{**(image_defaults if images else {}), **settings})
    except TypeError as err:
        options = ", ".join(AGENT_OPTIONS) + (f", {also}" if also else "")
        raise TypeError(f"{err}; also: {options}") from None


def neural_encoders(
    space: spaces.Dict,
    encoder: str | Encoder,
    *,
    seed: int | None,
    feature_dim: int | None,
    encoder_kwargs: dict[str, Any] | None,
    count: int = 1,
) -> list[Encoder]:
    """``count`` default encoders of kind ``encoder`` for ``space`` (built from ``seed``),
    or ``[encoder]`` when it is an encoder already."""
    if not isinstance(encoder, str):
        return [encoder]
    return seeded_default_encoders(
        space,
        encoder,
        seed=seed,
        count=count,
        feature_dim=feature_dim,
        encoder_kwargs=encoder_kwargs,
    )
