"""A two-tower encoder: ``u = f_ctx(x)``, ``v = f_act(a)``, ``z = [u; v; u * v]``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bandexa_gym.features.encoders.base import Encoder, _mlp, _seeded, _widen_linear
from bandexa_gym.features.encoders.spec import _recorded, register_encoder

__all__ = ["TwoTowerEncoder"]


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


register_encoder(TwoTowerEncoder)
