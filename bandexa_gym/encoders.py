"""Encoders: the learned representation ``z = φ(x, a)`` of Neural-Linear Thompson sampling.

Every encoder is an :class:`Encoder` (an ``nn.Module``) with ``feature_dim`` (``d``),
``context_shape`` and ``action_dim``, and three entry points:

* ``forward(x, a)`` -- a batch of pairs, ``(B, *context_shape)`` and ``(B, d_a)`` to
  ``(B, d)``; used for training and posterior rebuilds.
* ``encode(x, a)`` -- one pair to ``(d,)``.
* ``encode_batch(x, candidates)`` -- one context and ``K`` candidate actions to ``(K, d)``;
  the hot path of every decision. The context part is computed once and combined with
  all candidates, ``action_chunk`` rows at a time.

Internally an encoder is split into ``encode_context(x) -> h`` (per context) and
``combine(h, a) -> z`` (per pair), so ``forward(x, a) == combine(encode_context(x), a)``
and ``encode_batch`` reuses one ``h`` for all ``K`` candidates.

Inputs may be float, integer or ``uint8`` tensors (or arrays); they are cast to the
module's dtype **without rescaling** and moved to its device. Shape errors raise
``ValueError`` naming the expected shape. Grad mode is the caller's choice (wrap decisions
in ``torch.no_grad()``); modules with batch norm (``ResNetEncoder``) should be in
``eval()`` mode for decisions.

Construction is deterministic under ``torch.manual_seed``; passing ``generator=`` instead
draws the initial weights from that generator and leaves the global RNG untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from bandexa_gym.heads.numerics import seeded_init

__all__ = [
    "RESNET_ARCHS",
    "build_encoder",
    "check_encoder",
    "encoder_spec",
    "register_encoder",
    "ConvEncoder",
    "Encoder",
    "ImageActionFusion",
    "MLPEncoder",
    "ResNetEncoder",
    "TwoTowerEncoder",
    "freeze_backbone",
    "grow_input",
    "preprocess_mnist_for_resnet",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@contextlib.contextmanager
def _seeded(generator: torch.Generator | None) -> Iterator[None]:
    """Draw module initialisation from ``generator`` without touching the global RNG."""
    if generator is None:
        yield
        return
    with seeded_init(int(torch.randint(0, 2**62, (1,), generator=generator))):
        yield


def _mlp(sizes: Sequence[int], activation: type[nn.Module], *, final_act: bool) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear [-> act]`` over consecutive ``sizes``."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if final_act or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _widen_linear(layer: nn.Linear, at: int, extra: int) -> nn.Linear:
    """A copy of ``layer`` with ``extra`` zero input columns inserted before column ``at``."""
    w = layer.weight.detach()
    zeros = w.new_zeros(w.shape[0], extra)
    new = nn.Linear(layer.in_features + extra, layer.out_features, bias=layer.bias is not None)
    new = new.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(torch.cat([w[:, :at], zeros, w[:, at:]], dim=1))
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach())
    new.weight.requires_grad_(layer.weight.requires_grad)
    if layer.bias is not None:
        new.bias.requires_grad_(layer.bias.requires_grad)
    return new


class Encoder(nn.Module):
    """Base class: ``z = φ(x, a)`` with a per-context part computed once per decision.

    Subclasses set ``feature_dim``, ``context_shape``, ``action_dim`` and implement
    :meth:`encode_context` and :meth:`combine`.

    Attributes:
        feature_dim: Size ``d`` of ``z``.
        context_shape: Shape of one context ``x``.
        action_dim: Size ``d_a`` of one action feature vector.
        action_chunk: Default number of candidates per chunk in :meth:`encode_batch`
            (``None``: all at once).
    """

    feature_dim: int
    context_shape: tuple[int, ...]
    action_dim: int
    action_chunk: int | None

    def __init__(self, action_chunk: int | None = None) -> None:
        super().__init__()
        self.action_chunk = _check_chunk(action_chunk)

    # ---- to implement -------------------------------------------------------------------
    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """Per-context part ``h`` from prepared contexts ``(B, *context_shape)``."""
        raise NotImplementedError

    def combine(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``z (B, d)`` from ``h`` (batch ``B`` or broadcastable ``1``) and ``a (B, d_a)``."""
        raise NotImplementedError

    # ---- public API ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the module's parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the module's parameters (inputs are cast to it)."""
        return next(self.parameters()).dtype

    def forward(self, x: Any, a: Any) -> torch.Tensor:
        """Encode a batch of pairs.

        Args:
            x: Contexts, shape ``(B, *context_shape)``.
            a: Actions, shape ``(B, d_a)``.

        Returns:
            ``z`` of shape ``(B, d)``.
        """
        x = self._prep(x, (None, *self.context_shape), "x")
        a = self._prep(a, (None, self.action_dim), "a")
        if x.shape[0] != a.shape[0]:
            raise ValueError(f"x and a batch sizes differ: {x.shape[0]} vs {a.shape[0]}")
        return self.encode_pairs(x, a)

    def encode_pairs(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``z (B, d)`` from prepared ``x (B, *context_shape)`` and ``a (B, d_a)``.

        Subclasses may override it with a form that is cheaper when every pair has its own
        context (training, rebuilds); it must equal ``combine(encode_context(x), a)``.
        """
        return self.combine(self.encode_context(x), a)

    def encode(self, x: Any, a: Any) -> torch.Tensor:
        """Encode one pair: ``x (*context_shape)``, ``a (d_a,)`` to ``z (d,)``."""
        x = self._prep(x, self.context_shape, "x")
        a = self._prep(a, (self.action_dim,), "a")
        return self.combine(self.encode_context(x.unsqueeze(0)), a.unsqueeze(0))[0]

    def encode_batch(
        self, x: Any, candidates: Any, *, action_chunk: int | None = None
    ) -> torch.Tensor:
        """Encode one context against ``K`` candidate actions.

        The context part is computed once; candidates are combined with it in chunks of
        ``action_chunk`` rows (argument, else ``self.action_chunk``; ``None``: one chunk).

        Args:
            x: One context, shape ``context_shape`` (a leading batch dim of 1 is accepted).
            candidates: Candidate actions, shape ``(K, d_a)``.
            action_chunk: Candidates per chunk, overriding ``self.action_chunk``.

        Returns:
            ``Z`` of shape ``(K, d)``; row ``k`` equals ``encode(x, candidates[k])``.
        """
        x = self._prep_one_context(x)
        cand = self._prep(candidates, (None, self.action_dim), "candidates")
        h = self.encode_context(x.unsqueeze(0))
        chunk = _check_chunk(action_chunk) or self.action_chunk
        k = cand.shape[0]
        if chunk is None or chunk >= k:
            return self.combine(h, cand)
        return torch.cat([self.combine(h, cand[i : i + chunk]) for i in range(0, k, chunk)])

    def encode_candidates(
        self, x: Any, candidates: Any, *, action_chunk: int | None = None
    ) -> torch.Tensor:
        """Encode B contexts, each against its own K candidates, in one pass.

        The context part runs once per context (one batched call); the B·K (context,
        candidate) pairs are combined ``action_chunk`` rows at a time. With B = 1 this is
        :meth:`encode_batch`.

        Args:
            x: Contexts, shape ``(B, *context_shape)``.
            candidates: Candidate actions, shape ``(B, K, d_a)``.
            action_chunk: Pairs per chunk, overriding ``self.action_chunk``.

        Returns:
            ``Z`` of shape ``(B, K, d)``; ``Z[b]`` equals ``encode_batch(x[b], candidates[b])``.
        """
        x = self._prep(x, (None, *self.context_shape), "x")
        cand = self._prep(candidates, (None, None, self.action_dim), "candidates")
        if x.shape[0] != cand.shape[0]:
            raise ValueError(
                f"x and candidates batch sizes differ: {x.shape[0]} vs {cand.shape[0]}"
            )
        batch, k = cand.shape[:2]
        h = self.encode_context(x)
        if batch == 1:
            h_rows = h  # broadcast over the K candidates, as encode_batch does
        else:
            h_rows = h.repeat_interleave(k, dim=0)
        pairs = cand.reshape(batch * k, self.action_dim)
        chunk = _check_chunk(action_chunk) or self.action_chunk
        if chunk is None or chunk >= batch * k:
            z = self.combine(h_rows, pairs)
        else:
            z = torch.cat(
                [
                    self.combine(
                        h_rows if batch == 1 else h_rows[i : i + chunk], pairs[i : i + chunk]
                    )
                    for i in range(0, batch * k, chunk)
                ]
            )
        return z.reshape(batch, k, -1)

    def grow_input(
        self, *, context_dim: int | None = None, action_dim: int | None = None
    ) -> Encoder:
        """Accept more context features and/or action inputs, keeping ``z`` unchanged.

        New input columns are zero-initialised, so ``z(x ⊕ 0, a ⊕ 0)`` equals the old
        ``z(x, a)`` exactly. Parameters of widened layers are replaced: rebuild any
        optimizer afterwards. Modifies the encoder in place and returns it.

        Args:
            context_dim: New total number of context features (vector contexts only).
            action_dim: New total number of action features.

        Raises:
            ValueError: If a size shrinks, or the context cannot grow (images).
        """
        if context_dim is not None and len(self.context_shape) != 1:
            raise ValueError(
                f"{type(self).__name__} takes image contexts {self.context_shape}; "
                "context growth only applies to vector contexts (grow action_dim instead)"
            )
        if context_dim is not None and context_dim != self.context_shape[0]:
            if context_dim < self.context_shape[0]:
                raise ValueError(
                    f"context_dim can only grow: {self.context_shape[0]} -> {context_dim}"
                )
            self._grow_context(context_dim - self.context_shape[0])
            self.context_shape = (context_dim,)
            self._record_growth("context_dim", context_dim)
        if action_dim is not None and action_dim != self.action_dim:
            if action_dim < self.action_dim:
                raise ValueError(f"action_dim can only grow: {self.action_dim} -> {action_dim}")
            self._grow_action(action_dim - self.action_dim)
            self.action_dim = action_dim
            self._record_growth("action_dim", action_dim)
        return self

    def _record_growth(self, key: str, value: int) -> None:
        kwargs = getattr(self, "init_kwargs", None)
        if isinstance(kwargs, dict) and key in kwargs:
            kwargs[key] = int(value)

    def _grow_context(self, extra: int) -> None:
        raise ValueError(f"{type(self).__name__} cannot grow its context input")

    def _grow_action(self, extra: int) -> None:
        raise NotImplementedError

    # ---- input handling -----------------------------------------------------------------
    def _prep(self, t: Any, shape: tuple[int | None, ...], name: str) -> torch.Tensor:
        """Cast to the module's dtype/device and check ``shape`` (``None``: any size)."""
        t = torch.as_tensor(t)
        if t.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(t.shape, shape, strict=True)
        ):
            pretty = tuple("B" if s is None else s for s in shape)
            raise ValueError(f"{name}: expected shape {pretty}, got {tuple(t.shape)}")
        param = next(self.parameters())
        return t.to(device=param.device, dtype=param.dtype)

    def _prep_one_context(self, x: Any) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.ndim == len(self.context_shape) + 1 and x.shape[0] == 1:
            x = x[0]
        return self._prep(x, self.context_shape, "x")


def _check_chunk(chunk: int | None) -> int | None:
    if chunk is not None and chunk < 1:
        raise ValueError(f"action_chunk must be >= 1 or None, got {chunk}")
    return chunk


def grow_input(
    encoder: Encoder, *, context_dim: int | None = None, action_dim: int | None = None
) -> Encoder:
    """Functional form of :meth:`Encoder.grow_input` (modifies and returns ``encoder``)."""
    return encoder.grow_input(context_dim=context_dim, action_dim=action_dim)


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


def build_encoder(spec: Mapping[str, Any], *, device: str | torch.device | None = None) -> Encoder:
    """Construct a (freshly initialised) encoder from an :func:`encoder_spec`.

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
    if "activation" in kwargs:
        activation = getattr(nn, str(kwargs["activation"]), None)
        if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
            raise ValueError(
                f"unknown activation {kwargs['activation']!r}: expected a torch.nn name"
            )
        kwargs["activation"] = activation
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


# ---------------------------------------------------------------------------------------
# Vector contexts
# ---------------------------------------------------------------------------------------


class MLPEncoder(Encoder):
    """MLP on the concatenation ``[x; a]``.

    ``z = act(W_L ... act(W_1 [x; a] + b_1) ...)``. For :meth:`encode_batch` the first layer
    is evaluated split, ``W_x x + b`` once plus ``W_a A`` per candidate, which equals the
    concatenated form; ``self.net`` is the plain concat MLP.

    Args:
        context_dim: ``d_x``.
        action_dim: ``d_a``.
        feature_dim: ``d``.
        hidden: Hidden layer sizes (empty: ``z = act(W [x; a] + b)``).
        activation: Activation class, applied after every layer including the last.
        action_chunk: Default candidate chunk for ``encode_batch``.
        generator: Draw the initial weights from this generator.
    """

    def __init__(
        self,
        context_dim: int,
        action_dim: int,
        *,
        feature_dim: int = 64,
        hidden: Sequence[int] = (64, 64),
        activation: type[nn.Module] = nn.ReLU,
        action_chunk: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(action_chunk)
        self.context_shape, self.action_dim, self.feature_dim = (
            (context_dim,),
            action_dim,
            feature_dim,
        )
        with _seeded(generator):
            self.net = _mlp(
                [context_dim + action_dim, *hidden, feature_dim], activation, final_act=True
            )
        self.init_kwargs = _recorded(
            context_dim=context_dim,
            action_dim=action_dim,
            feature_dim=feature_dim,
            hidden=hidden,
            activation=activation,
            action_chunk=action_chunk,
        )

    @property
    def _first(self) -> nn.Linear:
        layer = self.net[0]
        assert isinstance(layer, nn.Linear)
        return layer

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """``W_x x + b`` of the first layer, shape ``(B, hidden[0])``."""
        dx = self.context_shape[0]
        return F.linear(x, self._first.weight[:, :dx], self._first.bias)

    def encode_pairs(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The plain MLP on ``[x; a]``: one matmul in the first layer, fewer autograd nodes."""
        return self.net(torch.cat([x, a], dim=-1))

    def combine(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        dx = self.context_shape[0]
        out = h + F.linear(a, self._first.weight[:, dx:])
        for layer in list(self.net)[1:]:
            out = layer(out)
        return out

    def _grow_context(self, extra: int) -> None:
        self.net[0] = _widen_linear(self._first, self.context_shape[0], extra)

    def _grow_action(self, extra: int) -> None:
        self.net[0] = _widen_linear(self._first, self._first.in_features, extra)


class TwoTowerEncoder(Encoder):
    """Two towers: ``u = f_ctx(x)``, ``v = f_act(a)``, ``z = [u; v; u * v]``.

    ``feature_dim = 3 * tower_dim``. The context tower runs once per decision; the
    product term lets a linear head on ``z`` score context-action affinity ``<u, v>``.

    Args:
        context_dim: ``d_x``.
        action_dim: ``d_a``.
        tower_dim: Output size of each tower.
        hidden: Hidden sizes of each tower (may be empty: linear towers).
        activation: Activation class inside the towers (towers end linear).
        action_chunk: Default candidate chunk for ``encode_batch``.
        generator: Draw the initial weights from this generator.
    """

    def __init__(
        self,
        context_dim: int,
        action_dim: int,
        *,
        tower_dim: int = 32,
        hidden: Sequence[int] = (64,),
        activation: type[nn.Module] = nn.ReLU,
        action_chunk: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(action_chunk)
        self.context_shape, self.action_dim = (context_dim,), action_dim
        self.tower_dim, self.feature_dim = tower_dim, 3 * tower_dim
        with _seeded(generator):
            self.ctx_tower = _mlp([context_dim, *hidden, tower_dim], activation, final_act=False)
            self.act_tower = _mlp([action_dim, *hidden, tower_dim], activation, final_act=False)
        self.init_kwargs = _recorded(
            context_dim=context_dim,
            action_dim=action_dim,
            tower_dim=tower_dim,
            hidden=hidden,
            activation=activation,
            action_chunk=action_chunk,
        )

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """``u = f_ctx(x)``, shape ``(B, tower_dim)``."""
        return self.ctx_tower(x)

    def combine(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        v = self.act_tower(a)
        u = h.expand_as(v)
        return torch.cat([u, v, u * v], dim=-1)

    def _grow_context(self, extra: int) -> None:
        self.ctx_tower[0] = _widen_linear(self.ctx_tower[0], self.ctx_tower[0].in_features, extra)

    def _grow_action(self, extra: int) -> None:
        self.act_tower[0] = _widen_linear(self.act_tower[0], self.act_tower[0].in_features, extra)


# ---------------------------------------------------------------------------------------
# Image contexts
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# ResNet backbone
# ---------------------------------------------------------------------------------------

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


for _cls in (MLPEncoder, TwoTowerEncoder, ConvEncoder, ResNetEncoder):
    register_encoder(_cls)
