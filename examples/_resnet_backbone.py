"""ResNet backbone for ``02_mnist_bandit.py``: building the encoder and its freeze policy.

The policy lives here, not on the command line, so the example stays small: edit
``TRAINABLE_BACKBONE`` to change which parts of the backbone learn. ``ResNetEncoder``
applies it at construction with :func:`bandexa_gym.encoders.freeze_backbone` (at
construction, so that fully frozen batch-norm layers are known and kept in eval mode;
calling ``freeze_backbone`` on a built encoder would miss that). Policies:

* ``"none"``: freeze the whole backbone (only the action path and fusion layers learn);
* ``"all"``: fine-tune everything (slow on a CPU, and it can wash out pretrained features);
* a module-name prefix or a tuple of them, e.g. ``"layer4"`` or ``("layer3", "layer4")``.

The default, ``("layer4",)``, trains the last residual stage: a little task adaptation on
top of features that stay mostly as they were. The action path (``action_dense``) and the
``fuse`` layers of :class:`bandexa_gym.encoders.ResNetEncoder` always train. Batch-norm
layers whose parameters are all frozen stay in eval mode, so their running statistics
keep their (pretrained) values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from bandexa_gym.encoders import ResNetEncoder

#: Backbone parameters left trainable (a ``freeze_backbone`` policy). Edit to taste.
TRAINABLE_BACKBONE: str | Sequence[str] = ("layer4",)


def build_resnet_encoder(
    arch: str,
    *,
    action_dim: int,
    pretrained: bool,
    image_size: int,
    feature_dim: int,
    action_chunk: int | None = None,
    trainable: str | Sequence[str] = TRAINABLE_BACKBONE,
) -> ResNetEncoder:
    """A ``ResNetEncoder`` for ImageNet-normalised ``(3, image_size, image_size)`` inputs.

    Args:
        arch: ``resnet18`` ... ``resnet152``.
        action_dim: Width of the one-hot label rows.
        pretrained: Load torchvision's ImageNet weights (from torch's cache, downloading
            them if they are missing). Without them the backbone is randomly initialised.
        image_size: Side of the (resized) input images.
        feature_dim: Size of the features z seen by the Bayesian head.
        action_chunk: Candidates encoded per chunk (None: all at once).
        trainable: Freeze policy (see the module docstring).

    Raises:
        RuntimeError: ``pretrained`` weights are neither cached nor downloadable; the
            message says where to put the file.
    """
    return ResNetEncoder(
        action_dim,
        arch=arch,
        pretrained=pretrained,
        download=pretrained,
        image_size=image_size,
        feature_dim=feature_dim,
        trainable=trainable,
        action_chunk=action_chunk,
    )


def describe(encoder: ResNetEncoder) -> str:
    """One line: trainable vs total parameters of the backbone and of the whole encoder."""

    def count(params: Iterable[torch.nn.Parameter]) -> int:
        return sum(p.numel() for p in params)

    backbone = list(encoder.backbone.parameters())
    trainable_backbone = [p for p in backbone if p.requires_grad]
    everything = list(encoder.parameters())
    trainable = [p for p in everything if p.requires_grad]
    stages = sorted({n.split(".")[0] for n in encoder.trainable_backbone}) or ["none"]
    return (
        f"{encoder.arch}: backbone {count(trainable_backbone):,}/{count(backbone):,} parameters "
        f"trainable ({', '.join(stages)}); encoder {count(trainable):,}/{count(everything):,}"
    )
