"""Encoder specs: the registry of encoder classes, and building one from its description.

Checkpoints record an encoder as ``{"class": name, "kwargs": init_kwargs}``; :func:`build_encoder`
rebuilds it (``device="meta"`` to check shapes without allocating).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bandexa_gym.features.encoders.base import Encoder

__all__ = [
    "REQUIRED_ENCODER_ATTRIBUTES",
    "activation_class",
    "build_encoder",
    "check_encoder",
    "encoder_spec",
    "register_encoder",
]


def _recorded(**kwargs: Any) -> dict[str, Any]:
    """Constructor arguments as plain JSON values (activation classes by name)."""

    def plain(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, nn.Module):
            if getattr(nn, value.__name__, None) is not value:
                raise ValueError(
                    f"activation {value.__qualname__} is not a torch.nn class; only torch.nn "
                    "activations can be recorded (and saved in checkpoints)"
                )
            return value.__name__
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in kwargs.items()}


_ENCODER_CLASSES: dict[str, type[nn.Module]] = {}


def register_encoder(cls: type[nn.Module]) -> type[nn.Module]:
    """Make encoders of class ``cls`` rebuildable from :func:`encoder_spec` (checkpoints).

    The class must set ``self.init_kwargs``, a dict of JSON-serializable constructor
    arguments (activation classes may be given by their ``torch.nn`` name), so that
    ``cls(**init_kwargs)`` builds the same architecture. Usable as a class decorator.

    Returns:
        ``cls``.
    """
    _ENCODER_CLASSES[cls.__name__] = cls
    return cls


def encoder_spec(encoder: nn.Module) -> dict[str, Any]:
    """``{"class": name, "kwargs": init_kwargs}``: what :func:`build_encoder` rebuilds from.

    Raises:
        ValueError: The class is not registered or has no ``init_kwargs`` dict.
    """
    name = type(encoder).__name__
    if _ENCODER_CLASSES.get(name) is not type(encoder):
        known = ", ".join(sorted(_ENCODER_CLASSES))
        raise ValueError(
            f"cannot describe an encoder of class {type(encoder).__qualname__}: registered "
            f"encoder classes are {known}; decorate it with bandexa_gym.encoders."
            "register_encoder and record its constructor arguments in self.init_kwargs"
        )
    kwargs = getattr(encoder, "init_kwargs", None)
    if not isinstance(kwargs, Mapping):
        raise ValueError(
            f"{name} needs an `init_kwargs` dict attribute holding its constructor arguments"
        )
    return {"class": name, "kwargs": _recorded(**kwargs)}


def activation_class(name: Any) -> type[nn.Module]:
    """The ``torch.nn`` activation class called ``name`` (``"ReLU"``, ``"Tanh"``, ...).

    Only element-wise activations (``torch.nn``'s activation modules that take no
    arguments, and ``Identity``) are accepted, so that a spec cannot put another module
    (a ``Linear``, ``Dropout``, an attention block) where an activation goes.

    Raises:
        ValueError: ``name`` is not such an activation.
    """
    cls = getattr(nn, name, None) if isinstance(name, str) else None
    ok = isinstance(cls, type) and (
        cls is nn.Identity
        or (
            issubclass(cls, nn.Module)
            and cls.__module__ == "torch.nn.modules.activation"
            and cls is not nn.MultiheadAttention
        )
    )
    if not ok:
        raise ValueError(
            f"activation {name!r} is not an activation: expected the name of a torch.nn "
            "activation such as 'ReLU', 'Tanh' or 'GELU'"
        )
    return cls


def build_encoder(spec: Mapping[str, Any], *, device: str | torch.device | None = None) -> Encoder:
    """Construct a (freshly initialised) encoder from an :func:`encoder_spec`.

    Building never reads a file or the network: an encoder class's ``offline_kwargs``
    (``ResNetEncoder``: ``pretrained=False, download=False``) override the spec, because
    the weights of a rebuilt encoder come from the checkpoint it is loaded from.

    Args:
        spec: ``{"class": name, "kwargs": {...}}``.
        device: Build the parameters here; ``"meta"`` allocates nothing (to check shapes).

    Raises:
        ValueError: Unknown class, or arguments the constructor rejects.
    """
    name = spec.get("class") if isinstance(spec, Mapping) else None
    if name not in _ENCODER_CLASSES:
        known = ", ".join(sorted(_ENCODER_CLASSES))
        raise ValueError(
            f"encoder class {name!r} is not registered (known: {known}); import the module "
            "that defines it and call bandexa_gym.encoders.register_encoder before loading"
        )
    kwargs = dict(spec.get("kwargs") or {})
    kwargs.update(getattr(_ENCODER_CLASSES[name], "offline_kwargs", {}))
    if "activation" in kwargs:
        kwargs["activation"] = activation_class(kwargs["activation"])
    for key in ("image_size", "hidden", "channels", "trainable"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    try:
        if device is None:
            return _ENCODER_CLASSES[name](**kwargs)
        with torch.device(device):
            return _ENCODER_CLASSES[name](**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot build {name} from {kwargs}: {err}") from err


REQUIRED_ENCODER_ATTRIBUTES = ("feature_dim", "context_shape", "action_dim")


def check_encoder(encoder: Any) -> None:
    """Raise a ``TypeError`` naming what ``encoder`` lacks to serve a neural agent.

    An encoder is an ``nn.Module`` with ``feature_dim`` (int d), ``context_shape`` (tuple),
    ``action_dim`` (int d_a), a ``forward(x (B, ...), a (B, d_a)) -> (B, d)`` and
    ``encode_candidates`` (subclass :class:`Encoder` and implement ``encode_context`` and
    ``combine`` to get it). See ``docs/development.md``.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch nn.Module, got {type(encoder).__name__}")
    missing = [a for a in REQUIRED_ENCODER_ATTRIBUTES if not hasattr(encoder, a)]
    missing += [m for m in ("encode_candidates",) if not callable(getattr(encoder, m, None))]
    if missing:
        raise TypeError(
            f"{type(encoder).__name__} is not a bandexa encoder: it lacks {', '.join(missing)}. "
            "Subclass bandexa_gym.encoders.Encoder, set feature_dim, context_shape and "
            "action_dim in __init__ and implement encode_context and combine "
            "(docs/development.md shows the recipe)"
        )
    if not any(p.requires_grad for p in encoder.parameters()):
        raise TypeError(f"{type(encoder).__name__} has no trainable parameters")
