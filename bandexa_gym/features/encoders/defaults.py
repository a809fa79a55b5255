"""The default encoder of every neural agent, chosen from the observation space."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces

from bandexa_gym.features.encoders.base import Encoder
from bandexa_gym.features.encoders.conv import ConvEncoder
from bandexa_gym.features.encoders.mlp import MLPEncoder
from bandexa_gym.features.encoders.resnet import ResNetEncoder
from bandexa_gym.features.encoders.two_tower import TwoTowerEncoder
from bandexa_gym.heads.numerics import seeded_init

__all__ = ["default_encoder", "seeded_default_encoders"]


def default_encoder(
    space: spaces.Dict, kind: str = "auto", *, feature_dim: int | None = None, **kwargs: Any
) -> Encoder:
    """An encoder suited to ``space``: ConvNet for images, two-tower for large candidate sets.

    Args:
        space: The env's single Dict observation space.
        kind: ``"auto"``, ``"mlp"``, ``"two_tower"``, ``"convnet"`` or ``"resnet18"`` ...
            ``"resnet152"``.
        feature_dim: Feature width d (encoder default when None).
        **kwargs: Passed to the encoder constructor.
    """
    context_shape = tuple(space["context"].shape)
    n_candidates, action_dim = space["candidates"].shape
    if kind == "auto":
        if len(context_shape) == 3:
            kind = "convnet"
        elif n_candidates > 64:
            kind = "two_tower"
        else:
            kind = "mlp"
    if feature_dim is not None and kind != "two_tower":
        kwargs["feature_dim"] = feature_dim
    if kind in ("mlp", "two_tower"):
        if len(context_shape) != 1:
            raise ValueError(f"{kind} encoder needs vector contexts, got shape {context_shape}")
        if kind == "mlp":
            return MLPEncoder(context_shape[0], action_dim, **kwargs)
        if feature_dim is not None:
            if feature_dim % 3:
                raise ValueError(
                    f"two_tower feature_dim must be a multiple of 3, got {feature_dim}"
                )
            kwargs["tower_dim"] = feature_dim // 3
        return TwoTowerEncoder(context_shape[0], action_dim, **kwargs)
    if kind == "convnet" or kind.startswith("resnet"):
        if len(context_shape) != 3:
            raise ValueError(f"{kind} encoder needs image contexts (C, H, W), got {context_shape}")
        image = {"in_channels": context_shape[0], "image_size": context_shape[1:]}
        if kind == "convnet":
            return ConvEncoder(action_dim, **image, **kwargs)
        return ResNetEncoder(action_dim, arch=kind, **image, **kwargs)
    raise ValueError(
        f"unknown encoder {kind!r}: expected auto, mlp, two_tower, convnet or resnet18..resnet152"
    )


def seeded_default_encoders(
    space: spaces.Dict,
    kind: str = "auto",
    *,
    seed: int | None,
    count: int = 1,
    feature_dim: int | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
) -> list[Encoder]:
    """``count`` :func:`default_encoder` s for ``space``, initialized one after another from
    ``seed`` (the global RNG when None) without moving the caller's global RNG."""
    with seeded_init(seed):
        return [
            default_encoder(space, kind, feature_dim=feature_dim, **(encoder_kwargs or {}))
            for _ in range(count)
        ]
