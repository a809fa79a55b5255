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
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from bandexa_gym.heads.numerics import seeded_init

__all__ = ["Encoder", "grow_input"]


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
