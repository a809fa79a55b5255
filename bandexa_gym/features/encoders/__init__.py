"""Encoders: the learned representation ``z = φ(x, a)`` of the neural agents.

One module per encoder (:mod:`~.mlp`, :mod:`~.two_tower`, :mod:`~.conv`, :mod:`~.resnet`) on
the :class:`~.base.Encoder` base; :mod:`~.spec` rebuilds them from checkpoints and
:mod:`~.defaults` picks the default encoder for an observation space.
"""

from bandexa_gym.features.encoders.base import Encoder, grow_input
from bandexa_gym.features.encoders.conv import ConvEncoder, ImageActionFusion
from bandexa_gym.features.encoders.mlp import MLPEncoder
from bandexa_gym.features.encoders.resnet import (
    RESNET_ARCHS,
    ResNetEncoder,
    freeze_backbone,
    preprocess_mnist_for_resnet,
)
from bandexa_gym.features.encoders.spec import (
    activation_class,
    build_encoder,
    check_encoder,
    encoder_spec,
    register_encoder,
)
from bandexa_gym.features.encoders.two_tower import TwoTowerEncoder

__all__ = [
    "RESNET_ARCHS",
    "ConvEncoder",
    "Encoder",
    "ImageActionFusion",
    "MLPEncoder",
    "ResNetEncoder",
    "TwoTowerEncoder",
    "activation_class",
    "build_encoder",
    "check_encoder",
    "encoder_spec",
    "freeze_backbone",
    "grow_input",
    "preprocess_mnist_for_resnet",
    "register_encoder",
]
