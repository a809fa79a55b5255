"""Reward networks on the encoders: ``f(x, a) = readout(φ(x, a))``, its per-candidate
gradients, and ensembles of such networks evaluated in one vectorized call.

* :class:`RewardNetwork` -- an :class:`~bandexa_gym.encoders.Encoder` and a linear readout:
  the reward model of NeuralTS / NeuralUCB and of each member of a bootstrapped ensemble.
* :class:`CandidateGradients` -- ``[f(x, a); ∇_θ f(x, a) / sqrt(m)]`` for every candidate
  of every context, from one ``torch.func`` pass (``vmap`` over ``grad`` of a
  ``functional_call``): no Python loop over candidates.
* :class:`Ensemble` -- M reward networks with stacked parameters
  (``torch.func.stack_module_state``), scored and trained for all members at once
  (``vmap`` over the member axis).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from bandexa_gym.features.encoders import Encoder, build_encoder, check_encoder

__all__ = [
    "GRADIENT_PARAMS",
    "CandidateGradients",
    "Ensemble",
    "RewardNetwork",
    "gradient_parameters",
]

GRADIENT_PARAMS = ("all", "last", "readout")
"""Named parameter subsets a :class:`CandidateGradients` can cover."""


class RewardNetwork(nn.Module):
    """``f(x, a) = w · φ(x, a) + b``: an encoder under a linear readout.

    Args:
        encoder: The representation φ (checked: a clear ``TypeError`` names what a custom
            module lacks).
        readout: The readout ``Linear(d, 1)`` (default: a fresh one, drawn from the
            global RNG).
    """

    def __init__(self, encoder: Encoder, readout: nn.Linear | None = None) -> None:
        super().__init__()
        check_encoder(encoder)
        self.encoder = encoder
        self.readout = readout if readout is not None else nn.Linear(encoder.feature_dim, 1)
        if self.readout.in_features != encoder.feature_dim or self.readout.out_features != 1:
            raise ValueError(
                f"readout must be Linear({encoder.feature_dim}, 1), got {self.readout}"
            )

    @classmethod
    def shapes_of_spec(cls, spec: Mapping[str, Any]) -> RewardNetwork:
        """The network a checkpoint spec describes, built on the meta device (no memory),
        to read its parameter shapes from.

        Args:
            spec: An agent spec with ``encoder`` (an encoder spec) and the
                ``context_shape``, ``action_dim`` and ``feature_dim`` it must agree with.

        Raises:
            ValueError: The encoder spec and the spec's sizes disagree.
        """
        with torch.device("meta"):  # allocates nothing
            encoder = build_encoder(spec["encoder"], device="meta")
            network = cls(encoder, nn.Linear(encoder.feature_dim, 1))
        for key in ("context_shape", "action_dim", "feature_dim"):
            mine = getattr(encoder, key)
            mine = list(mine) if isinstance(mine, tuple) else mine
            if mine != spec[key]:
                raise ValueError(
                    f"the encoder spec gives {key}={mine}, the checkpoint says {spec[key]}"
                )
        return network

    @property
    def width(self) -> int:
        """``m``: the readout's input width (the encoder's ``feature_dim``)."""
        return int(self.encoder.feature_dim)

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        """Predicted rewards.

        Args:
            x: Contexts (B, *context_shape).
            a: One action per context (B, d_a), or K candidates per context (B, K, d_a).

        Returns:
            (B,) for pairs, (B, K) for candidate sets.
        """
        if a.ndim == 3:
            return self.readout(self.encoder.encode_candidates(x, a)).squeeze(-1)
        return self.readout(self.encoder(x, a)).squeeze(-1)


def gradient_parameters(network: RewardNetwork, which: str | Sequence[str] = "all") -> list[str]:
    """Names of the trainable parameters of ``network`` a gradient feature covers.

    Args:
        network: The reward network.
        which: ``"all"`` (every trainable parameter, as in the NeuralUCB/NeuralTS papers),
            ``"last"`` (the readout and the encoder's last trainable layer in module
            order: ``net.4`` of the default MLP, ``fusion.fuse.2`` of the ConvNet,
            ``act_tower.2`` of the two-tower), ``"readout"`` (the readout only: then
            ``g = [φ(x, a); 1] / sqrt(m)``), or a sequence of name prefixes such as
            ``["readout.", "encoder.net.4."]``.

    Returns:
        Parameter names in the network's order.

    Raises:
        ValueError: An unknown option, or a selection that covers no trainable parameter.
    """
    trainable = [n for n, p in network.named_parameters() if p.requires_grad]
    if isinstance(which, str):
        if which == "all":
            prefixes: tuple[str, ...] = ("",)
        elif which == "readout":
            prefixes = ("readout.",)
        elif which == "last":
            last = [
                name
                for name, module in network.encoder.named_modules()
                if any(p.requires_grad for p in module.parameters(recurse=False))
            ]
            prefixes = ("readout.",) + ((f"encoder.{last[-1]}.",) if last else ())
        else:
            raise ValueError(
                f"gradient_params must be one of {', '.join(GRADIENT_PARAMS)} or a list of "
                f"parameter-name prefixes, got {which!r}"
            )
    else:
        if not all(isinstance(p, str) for p in which):
            raise ValueError(f"gradient_params prefixes must be strings, got {which!r}")
        prefixes = tuple(which)
    names = [n for n in trainable if any(n.startswith(p) for p in prefixes)]
    if not names:
        raise ValueError(
            f"gradient_params={which!r} covers no trainable parameter; the network has "
            f"{trainable[:8]}"
        )
    return names


class CandidateGradients:
    """Per-candidate features ``[f(x, a); g(x, a)]`` with ``g = ∇_θ f(x, a) / sqrt(m)``.

    One call computes the gradients of all B·K (context, candidate) pairs in a single
    ``torch.func`` pass: ``vmap`` over the B contexts of ``vmap`` over their K candidates of
    ``grad`` of a ``functional_call`` of the network. The context is unbatched in the inner
    map, so its part of the forward pass (e.g. the ConvNet on an image) runs once per
    context; the backward pass is per candidate. θ is the subset of parameters chosen by
    ``which`` (see :func:`gradient_parameters`), P numbers in all, and ``m`` is the
    readout's input width.

    Cost per candidate: one forward and one backward pass through the covered part of
    the network, O(P) time and memory; per decision O(K·P) (plus the context part once).

    Args:
        network: The reward network (its current parameters are read at every call).
        which: The parameter subset (``"all"``, ``"last"``, ``"readout"`` or prefixes).
    """

    def __init__(self, network: RewardNetwork, which: str | Sequence[str] = "all") -> None:
        self.network = network
        self.names = gradient_parameters(network, which)
        params = dict(network.named_parameters())
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.dim = sum(math.prod(s) for s in self.shapes)
        self.scale = 1.0 / math.sqrt(network.width)

        scale = self.scale

        def value(theta: dict[str, Tensor], x: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
            out = functional_call(network, theta, (x.unsqueeze(0), a.unsqueeze(0)))[0]
            return out * scale, out  # differentiate f / sqrt(m): g comes out scaled

        self._one = vmap(grad_and_value(value, has_aux=True), in_dims=(None, None, 0))
        self._many = vmap(self._one, in_dims=(None, 0, 0))

    def _pass(self, theta: dict[str, Tensor], contexts: Tensor, candidates: Tensor) -> Any:
        if contexts.shape[0] == 1:  # one context: skip the outer map (its overhead dominates)
            grads, (_, values) = self._one(theta, contexts[0], candidates[0])
            return {n: g.unsqueeze(0) for n, g in grads.items()}, values.unsqueeze(0)
        grads, (_, values) = self._many(theta, contexts, candidates)
        return grads, values

    def __call__(
        self, contexts: Tensor, candidates: Tensor, *, action_chunk: int | None = None
    ) -> Tensor:
        """Features of every candidate of every context.

        Args:
            contexts: (B, *context_shape), cast to the network's dtype.
            candidates: (B, K, d_a).
            action_chunk: Candidates per pass (None: all K at once); bounds the memory of
                one pass to O(B · action_chunk · P).

        Returns:
            (B, K, 1 + P): column 0 is ``f(x, a)``, the rest ``g(x, a)``, in the
            network's dtype, without autograd history.
        """
        param = next(self.network.parameters())
        contexts = contexts.to(device=param.device, dtype=param.dtype)
        candidates = candidates.to(device=param.device, dtype=param.dtype)
        if self.names == ["readout.weight", "readout.bias"]:
            return self._readout_features(contexts, candidates, action_chunk)
        theta = {n: p.detach() for n, p in self.network.named_parameters() if n in self.names}
        k = candidates.shape[1]
        chunk = k if action_chunk is None else max(1, min(int(action_chunk), k))
        parts = []
        with torch.no_grad():
            for start in range(0, k, chunk):
                grads, values = self._pass(theta, contexts, candidates[:, start : start + chunk])
                lead = values.shape
                flat = [grads[n].reshape(*lead, -1) for n in self.names]
                parts.append(torch.cat([values.unsqueeze(-1), *flat], dim=-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _readout_features(
        self, contexts: Tensor, candidates: Tensor, action_chunk: int | None
    ) -> Tensor:
        """The readout's gradient in closed form, ``g = [φ(x, a); 1] / sqrt(m)``: no
        backward pass (the same features as the ``torch.func`` pass, cheaper)."""
        with torch.no_grad():
            z = self.network.encoder.encode_candidates(
                contexts, candidates, action_chunk=action_chunk
            )
            values = self.network.readout(z)
            return torch.cat([values, z * self.scale, torch.full_like(values, self.scale)], -1)

    def spread(self, flat: Tensor) -> dict[str, Tensor]:
        """A flat (P,) vector as tensors shaped like the covered parameters, by name."""
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            out[name] = flat[start : start + size].reshape(shape)
            start += size
        return out


class Ensemble(nn.Module):
    """M reward networks of one architecture with stacked parameters.

    The parameters are held as (M, *shape) leaves (``torch.func.stack_module_state``); a
    call evaluates all members with ``vmap`` over the member axis of a ``functional_call``
    on a parameter-free copy of the architecture (on the ``meta`` device). One optimizer
    over :meth:`parameters` trains all members at once; with a loss that sums the members'
    losses each member's gradient is its own (Adam's per-element update keeps the
    members independent).

    Args:
        networks: M >= 1 networks of identical architecture (their current weights
            become the members'); encoders with buffers (batch norm) are not supported.
    """

    def __init__(self, networks: Sequence[RewardNetwork]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        if any(True for _ in networks[0].buffers()):
            raise ValueError(
                "ensemble members must have no buffers (batch-norm statistics cannot be "
                f"stacked); {type(networks[0].encoder).__name__} has some"
            )
        params, _ = stack_module_state(list(networks))
        self.size = len(networks)
        self.names = list(params)
        for i, name in enumerate(self.names):
            self.register_parameter(f"p{i}", nn.Parameter(params[name].detach().clone()))
        skeleton = copy.deepcopy(networks[0]).to("meta")
        object.__setattr__(self, "_skeleton", skeleton)  # not a submodule: no parameters

        def member(theta: dict[str, Tensor], x: Tensor, a: Tensor) -> Tensor:
            return functional_call(skeleton, theta, (x, a))

        self._shared = vmap(member, in_dims=(0, None, None))
        self._own = vmap(member, in_dims=(0, 0, 0))

    @property
    def stacked(self) -> dict[str, Tensor]:
        """Parameter name (of one member) -> its stacked (M, *shape) tensor."""
        return {name: getattr(self, f"p{i}") for i, name in enumerate(self.names)}

    @property
    def skeleton(self) -> RewardNetwork:
        """The members' architecture, without weights (``meta`` device)."""
        return self._skeleton

    def forward(self, x: Tensor, a: Tensor, *, per_member: bool = False) -> Tensor:
        """Predictions of every member.

        Args:
            x: Contexts (B, *context_shape), or (M, B, ...) with ``per_member``.
            a: Actions (B, d_a) or candidate sets (B, K, d_a); (M, ...) with ``per_member``.
            per_member: Each member reads its own inputs (leading axis M).

        Returns:
            (M, B) or (M, B, K).
        """
        fn = self._own if per_member else self._shared
        return fn(self.stacked, x, a)

    def member_state(self, index: int) -> dict[str, Tensor]:
        """Member ``index``'s weights as a state dict of one :class:`RewardNetwork`."""
        return {name: t[index].detach() for name, t in self.stacked.items()}

    def check_members(self, stacked: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless ``stacked`` holds every member weight, (M, *shape)."""
        own = self.stacked
        if set(stacked) != set(own):
            raise ValueError(
                f"ensemble weights do not fit: missing {sorted(set(own) - set(stacked))[:5]}, "
                f"unexpected {sorted(set(stacked) - set(own))[:5]}"
            )
        wrong = [n for n in own if tuple(stacked[n].shape) != tuple(own[n].shape)]
        if wrong:
            raise ValueError(
                f"ensemble weight {wrong[0]!r} has shape {tuple(stacked[wrong[0]].shape)}, "
                f"expected {tuple(own[wrong[0]].shape)}"
            )

    def load_members(self, stacked: dict[str, Any]) -> None:
        """Replace every member's weights with (M, *shape) tensors (shapes checked first)."""
        self.check_members(stacked)
        own = self.stacked
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(stacked[name])
