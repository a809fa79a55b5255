"""An MLP encoder of vector contexts on the concatenation ``[x; a]``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bandexa_gym.features.encoders.base import Encoder, _mlp, _seeded, _widen_linear
from bandexa_gym.features.encoders.spec import _recorded, register_encoder

__all__ = ["MLPEncoder"]


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


register_encoder(MLPEncoder)
