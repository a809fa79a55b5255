"""Encoders of image contexts: a small ConvNet, and the image/action fusion it shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bandexa_gym.features.encoders.base import Encoder, _mlp, _seeded, _widen_linear
from bandexa_gym.features.encoders.spec import _recorded, register_encoder

__all__ = ["ConvEncoder", "ImageActionFusion"]


class ImageActionFusion(nn.Module):
    """Fuses image features with an action: ``z = fuse([h_img; h_act; h_img ⊙ g(a)])``.

    ``h_act = act(action_dense(a))`` is the parallel action path and ``g(a) =
    action_gate(a)`` a per-action reweighting of the image features, so a linear head
    on ``z`` can score image × action interactions (e.g. "is this the right label").

    Args:
        image_dim: Size of ``h_img``.
        action_dim: ``d_a``.
        feature_dim: ``d``.
        action_hidden: Size of ``h_act``.
        fuse_hidden: Hidden size of the fuse MLP.
        activation: Activation class (also applied to ``z``).
    """

    def __init__(
        self,
        image_dim: int,
        action_dim: int,
        feature_dim: int,
        *,
        action_hidden: int = 64,
        fuse_hidden: int = 128,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.action_dense = nn.Linear(action_dim, action_hidden)
        self.action_act = activation()
        self.action_gate = nn.Linear(action_dim, image_dim)
        self.fuse = _mlp(
            [2 * image_dim + action_hidden, fuse_hidden, feature_dim], activation, final_act=True
        )

    def forward(self, h_img: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``h_img (B or 1, image_dim)``, ``a (B, d_a)`` -> ``z (B, d)``."""
        h_act = self.action_act(self.action_dense(a))
        gated = h_img * self.action_gate(a)
        return self.fuse(torch.cat([h_img.expand_as(gated), h_act, gated], dim=-1))

    def grow_action(self, extra: int) -> None:
        """Append ``extra`` zero action-input columns (``z`` unchanged on zero-padded ``a``)."""
        self.action_dense = _widen_linear(self.action_dense, self.action_dense.in_features, extra)
        self.action_gate = _widen_linear(self.action_gate, self.action_gate.in_features, extra)


class ConvEncoder(Encoder):
    """Small ConvNet for small images with a parallel action path.

    ``h_img = act(Linear(flatten(pool(act(conv(... pool(act(conv(x)))))))))`` with
    ``"same"``-padded ``kernel_size`` convolutions and 2×2 max pooling, then
    :class:`ImageActionFusion`. The default suits MNIST ``(1, 28, 28)``.

    Args:
        action_dim: ``d_a``.
        in_channels: Image channels.
        image_size: Image side (or ``(H, W)``).
        feature_dim: ``d``.
        channels: Output channels of each conv block.
        kernel_size: Convolution kernel size.
        image_hidden: Size of ``h_img``.
        action_hidden: Size of ``h_act``.
        fuse_hidden: Hidden size of the fuse MLP.
        activation: Activation class.
        action_chunk: Default candidate chunk for ``encode_batch``.
        generator: Draw the initial weights from this generator.
    """

    def __init__(
        self,
        action_dim: int,
        *,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        feature_dim: int = 64,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        image_hidden: int = 128,
        action_hidden: int = 64,
        fuse_hidden: int = 128,
        activation: type[nn.Module] = nn.ReLU,
        action_chunk: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(action_chunk)
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.context_shape = (in_channels, height, width)
        self.action_dim, self.feature_dim = action_dim, feature_dim
        with _seeded(generator):
            blocks: list[nn.Module] = []
            c_in = in_channels
            for c_out in channels:
                blocks += [
                    nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                    activation(),
                    nn.MaxPool2d(2),
                ]
                c_in = c_out
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ValueError(
                    f"image_size {image_size} is too small for {len(channels)} pooling steps"
                )
            blocks += [nn.Flatten(), nn.Linear(c_in * height * width, image_hidden), activation()]
            self.image_net = nn.Sequential(*blocks)
            self.fusion = ImageActionFusion(
                image_hidden,
                action_dim,
                feature_dim,
                action_hidden=action_hidden,
                fuse_hidden=fuse_hidden,
                activation=activation,
            )
        self.init_kwargs = _recorded(
            action_dim=action_dim,
            in_channels=in_channels,
            image_size=image_size,
            feature_dim=feature_dim,
            channels=channels,
            kernel_size=kernel_size,
            image_hidden=image_hidden,
            action_hidden=action_hidden,
            fuse_hidden=fuse_hidden,
            activation=activation,
            action_chunk=action_chunk,
        )

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """``h_img``, shape ``(B, image_hidden)``."""
        return self.image_net(x)

    def combine(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.fusion(h, a)

    def _grow_action(self, extra: int) -> None:
        self.fusion.grow_action(extra)


register_encoder(ConvEncoder)
