"""A torchvision ResNet backbone with a parallel action path (pretrained weights optional)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from bandexa_gym.features.encoders.base import Encoder, _seeded
from bandexa_gym.features.encoders.conv import ImageActionFusion
from bandexa_gym.features.encoders.spec import _recorded, register_encoder

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_ARCHS",
    "ResNetEncoder",
    "freeze_backbone",
    "preprocess_mnist_for_resnet",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def freeze_backbone(model: nn.Module, trainable: str | Sequence[str] = "layer4") -> list[str]:
    """Set ``requires_grad`` on a backbone's parameters by name.

    Args:
        model: The backbone (e.g. a torchvision ResNet).
        trainable: ``"all"``, ``"none"``, or a module-name prefix or sequence of prefixes
            (e.g. ``"layer4"``, ``("layer3", "layer4")``) whose parameters stay trainable;
            all other parameters are frozen.

    Returns:
        Names of the parameters left trainable.

    Raises:
        ValueError: If a prefix matches no parameter.
    """
    if trainable == "all":
        prefixes: tuple[str, ...] | None = None
    elif trainable == "none":
        prefixes = ()
    else:
        prefixes = (trainable,) if isinstance(trainable, str) else tuple(trainable)
        names = [n for n, _ in model.named_parameters()]
        for p in prefixes:
            if not any(n == p or n.startswith(p + ".") for n in names):
                raise ValueError(f"trainable prefix {p!r} matches no parameter of the backbone")
    kept = []
    for name, param in model.named_parameters():
        keep = prefixes is None or any(name == p or name.startswith(p + ".") for p in prefixes)
        param.requires_grad_(keep)
        if keep:
            kept.append(name)
    return kept


def preprocess_mnist_for_resnet(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """MNIST-like grey images in ``[0, 1]`` to ImageNet-normalised RGB for a ResNet.

    Args:
        x: Images, shape ``(B, 1, H, W)`` (or one ``(1, H, W)``), values in ``[0, 1]``
            (``uint8`` input is scaled by ``1/255``).
        size: Output side.

    Returns:
        Float images of shape ``(B, 3, size, size)`` (or ``(3, size, size)``).
    """
    x = torch.as_tensor(x)
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x: expected shape (B, 1, H, W) or (1, H, W), got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    out = (x.expand(-1, 3, -1, -1) - mean) / std
    return out[0] if single else out


def _weights_cache_file(weights: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _load_pretrained_state(arch: str, download: bool) -> dict[str, torch.Tensor]:
    """ImageNet weights of ``arch`` from torch's cache, downloading only if allowed."""
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    cached = _weights_cache_file(weights)
    hint = (
        f"pretrained {arch} weights ({weights}) are not in the torch cache at {cached.parent}; "
        "put the file there (set TORCH_HOME to choose the cache) or use pretrained=False"
    )
    if not cached.is_file() and not download:
        raise RuntimeError(hint + " (download=False)")
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch, ...
        raise RuntimeError(f"{hint}; download failed: {exc}") from exc


class ResNetEncoder(Encoder):
    """torchvision ResNet backbone (``fc`` removed) plus a trainable action path.

    ``h_img = backbone(x)`` (512 or 2048 features), then :class:`ImageActionFusion`.
    Input is ``(in_channels, H, W)``, ImageNet-normalised for pretrained weights (see
    :func:`preprocess_mnist_for_resnet`). The backbone is frozen except ``trainable``
    (see :func:`freeze_backbone`); the action path and fusion are always trainable.
    Batch-norm layers whose parameters are all frozen stay in eval mode under
    ``train()``, so their running statistics keep their (pretrained) values.

    Args:
        action_dim: ``d_a``.
        arch: One of :data:`RESNET_ARCHS`.
        pretrained: Load torchvision's ``DEFAULT`` ImageNet weights from torch's cache
            (``$TORCH_HOME/hub/checkpoints``).
        download: If the weights are not cached, try to download them (else fail fast).
        feature_dim: ``d``.
        trainable: Backbone freeze policy: ``"layer4"``, ``"all"``, ``"none"`` or prefixes.
        in_channels: Image channels; if not 3, ``conv1`` is replaced (initialised from the
            channel-mean of pretrained ``conv1`` weights when ``pretrained``).
        image_size: Expected image side (or ``(H, W)``), checked on input.
        action_hidden: Size of ``h_act``.
        fuse_hidden: Hidden size of the fuse MLP.
        action_chunk: Default candidate chunk for ``encode_batch``.
        generator: Draw the initial weights from this generator.

    Raises:
        RuntimeError: If ``pretrained`` weights are neither cached nor downloadable.
    """

    offline_kwargs: ClassVar[Mapping[str, Any]] = {"pretrained": False, "download": False}
    """What :func:`build_encoder` forces: a rebuilt encoder never fetches weights."""

    def __init__(
        self,
        action_dim: int,
        *,
        arch: str = "resnet18",
        pretrained: bool = False,
        download: bool = True,
        feature_dim: int = 64,
        trainable: str | Sequence[str] = "layer4",
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 224,
        action_hidden: int = 64,
        fuse_hidden: int = 128,
        action_chunk: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(action_chunk)
        import torchvision.models as tvm

        if arch not in RESNET_ARCHS:
            raise ValueError(f"arch must be one of {RESNET_ARCHS}, got {arch!r}")
        state = _load_pretrained_state(arch, download) if pretrained else None
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.context_shape = (in_channels, height, width)
        self.action_dim, self.feature_dim, self.arch = action_dim, feature_dim, arch
        with _seeded(generator):
            backbone = getattr(tvm, arch)(weights=None)
            if state is not None:
                backbone.load_state_dict(state)
            if in_channels != 3:
                old = backbone.conv1
                backbone.conv1 = nn.Conv2d(
                    in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
                )
                if state is not None:
                    with torch.no_grad():
                        mean_w = old.weight.mean(dim=1, keepdim=True)
                        backbone.conv1.weight.copy_(mean_w.expand(-1, in_channels, -1, -1))
            image_dim = backbone.fc.in_features
            backbone.fc = nn.Identity()
            self.backbone = backbone
            self.fusion = ImageActionFusion(
                image_dim,
                action_dim,
                feature_dim,
                action_hidden=action_hidden,
                fuse_hidden=fuse_hidden,
            )
        self.trainable_backbone = freeze_backbone(self.backbone, trainable)
        self.init_kwargs = _recorded(
            action_dim=action_dim,
            arch=arch,
            pretrained=False,  # a rebuilt copy gets its weights from a checkpoint, not a file
            download=False,
            feature_dim=feature_dim,
            trainable=trainable,
            in_channels=in_channels,
            image_size=image_size,
            action_hidden=action_hidden,
            fuse_hidden=fuse_hidden,
            action_chunk=action_chunk,
        )
        self._frozen_bn = [
            m
            for m in self.backbone.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in m.parameters())
        ]
        self.train(self.training)

    def train(self, mode: bool = True) -> ResNetEncoder:
        """Like ``nn.Module.train``, but fully frozen batch-norm layers stay in eval mode."""
        super().train(mode)
        for m in getattr(self, "_frozen_bn", ()):
            m.eval()
        return self

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """``h_img = backbone(x)``, shape ``(B, 512 or 2048)``."""
        return self.backbone(x)

    def combine(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.fusion(h, a)

    def _grow_action(self, extra: int) -> None:
        self.fusion.grow_action(extra)


register_encoder(ResNetEncoder)
