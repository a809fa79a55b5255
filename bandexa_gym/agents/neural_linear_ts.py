"""Neural-Linear Thompson sampling: a learned encoder z = φ(x, a) under a Bayesian linear head."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from bandexa_gym.agents.base import Agent, masked_argmax, register_agent
from bandexa_gym.buffers import MemoryReplayBuffer, ReplayBuffer
from bandexa_gym.encoders import ConvEncoder, Encoder, MLPEncoder, ResNetEncoder, TwoTowerEncoder
from bandexa_gym.posterior import BayesianLinearRegression

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class NeuralLinearTSConfig:
    """Hyper-parameters of :class:`NeuralLinearTS`.

    Attributes:
        prior_var: Prior variance of each head weight.
        noise: ``"nig"`` (unknown noise variance, normal-inverse-gamma) or a fixed variance.
        a0: Inverse-gamma shape of the noise prior.
        b0: Inverse-gamma scale of the noise prior.
        warmup_random: Rounds of uniform exploration before Thompson sampling starts; the
            encoder is trained and the head rebuilt once at the end of the warm-up, so the
            first exploiting decision already uses learned features.
        train_every: Train the encoder and rebuild the head every this many rounds (0: never).
        optimizer_steps: Gradient steps per training burst.
        batch_size: Minibatch size of encoder training.
        rebuild_chunk: Transitions re-encoded per chunk when rebuilding the head.
        action_chunk: Candidates encoded per chunk when scoring (None: all at once).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        loss: ``"mse"`` on the reward, ``"bce"`` on a {0, 1} reward (logit readout).
        buffer_capacity: Capacity of the default in-memory replay buffer.
    """

    prior_var: float = 1.0
    noise: str | float = "nig"
    a0: float = 1.0
    b0: float = 1.0
    warmup_random: int = 0
    train_every: int = 50
    optimizer_steps: int = 50
    batch_size: int = 64
    rebuild_chunk: int = 4096
    action_chunk: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"
    buffer_capacity: int = 100_000

    def __post_init__(self) -> None:
        for name in ("warmup_random", "train_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("optimizer_steps", "batch_size", "rebuild_chunk", "buffer_capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {self.loss!r}")


class NeuralLinearTS(Agent):
    """Neural-Linear Thompson sampling.

    The encoder maps every (context, candidate) pair to features z (d,). A conjugate Bayesian
    linear regression over z gives closed-form posterior updates after every round and one
    weight draw w per decision; the chosen candidate is ``argmax(Z @ w)``. Every
    ``train_every`` rounds the encoder (with a linear readout) is trained by backprop on the
    replay buffer and the head is rebuilt from the whole buffer, re-encoded in chunks.

    Args:
        encoder: The representation φ; see :mod:`bandexa_gym.encoders`.
        buffer: Replay buffer (default: an in-memory ring of ``config.buffer_capacity``).
        config: Hyper-parameters.
        device: Torch device (default: the encoder's).
        seed: Seed of the agent's generators.
    """

    name = "neural_linear_ts"

    def __init__(
        self,
        encoder: Encoder,
        *,
        buffer: ReplayBuffer | None = None,
        config: NeuralLinearTSConfig | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> None:
        if device is None:
            device = next(encoder.parameters()).device
        self.sample_generator = torch.Generator()  # CPU: drives replay sampling
        super().__init__(seed=seed, device=device)
        self.config = config or NeuralLinearTSConfig()
        self.encoder = encoder.to(self.device)
        self._initial_encoder = copy.deepcopy(self.encoder.state_dict())
        self.buffer = (
            buffer if buffer is not None else MemoryReplayBuffer(self.config.buffer_capacity)
        )
        self._init_learners()

    def new_head(self) -> BayesianLinearRegression:
        """A head at the configured prior over the encoder's features, on the device."""
        cfg = self.config
        return BayesianLinearRegression(
            self.encoder.feature_dim,
            prior_var=cfg.prior_var,
            noise=cfg.noise,
            a0=cfg.a0,
            b0=cfg.b0,
            device=self.device,
        )

    def _init_learners(self) -> None:
        cfg = self.config
        self.posterior = self.new_head()
        with torch.random.fork_rng(devices=[]):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            self.readout = nn.Linear(self.encoder.feature_dim, 1).to(self.device)
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            params + list(self.readout.parameters()),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),  # one kernel per step, not one per tensor
        )
        self.rounds = 0
        self.trainings = 0
        self._last_decision: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _reseed(self, seed: int | None) -> None:
        super()._reseed(seed)
        if seed is None:
            self.sample_generator.seed()
        else:
            self.sample_generator.manual_seed(int(seed) + 1)

    # -- the original low-level API ---------------------------------------------------
    def select_action(
        self, x: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None = None
    ) -> int:
        """Thompson-sample a candidate for context ``x``.

        Args:
            x: One context, shape ``encoder.context_shape``.
            candidates: Candidate action features (K, d_a), K >= 1.
            mask: Optional (K,) bool, False for candidates not on offer.

        Returns:
            The chosen row index.
        """
        x, candidates = self._as_device(x), self._as_device(candidates)
        self._check_candidates(candidates)
        if mask is None:
            mask = torch.ones(candidates.shape[0], dtype=torch.bool, device=self.device)
        z = self.embed(x, candidates)  # (K, d)
        w = self.posterior.sample(generator=self.generator)  # (d,)
        index = int(masked_argmax(z.to(w.dtype) @ w, mask))
        self._last_decision = (x, candidates, z)
        return index

    def update(self, x: torch.Tensor, a: torch.Tensor, r: float) -> None:
        """Store the transition and absorb it into the head with a rank-1 update.

        Args:
            x: One context, shape ``encoder.context_shape``.
            a: Features of the chosen action, shape ``(d_a,)``.
            r: Finite reward.

        Raises:
            ValueError: On a bad shape, a non-finite reward or features, or a context the
                replay buffer rejects (another dtype); neither the buffer nor the head
                changes then.
        """
        self._update(self._as_device(x), self._as_device(a), r, z=None)

    def _update(self, x: torch.Tensor, a: torch.Tensor, r: float, z: torch.Tensor | None) -> None:
        self._check_candidates(a[None])
        if not math.isfinite(float(r)):
            raise ValueError(f"reward must be a finite number, got {r!r}")
        if z is None:
            z = self.embed(x, a[None])[0]
        if not bool(torch.isfinite(z).all()):
            raise ValueError("features z = φ(x, a) are not finite (NaN or inf in the context?)")
        # The buffer validates its schema before storing anything, and the head only fails
        # on non-finite input (checked above), so a rejected transition changes neither.
        self.buffer.add(x.cpu(), a.cpu(), float(r))
        self.posterior.update(z, r)
        self._last_decision = None

    def embed(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Features of one context with each candidate: (K, d), no gradient."""
        if self.encoder.training:
            self.encoder.eval()
        with torch.no_grad():
            return self.encoder.encode_batch(x, candidates, action_chunk=self.config.action_chunk)

    def train_encoder(
        self,
        optimizer_steps: int | None = None,
        batch_size: int | None = None,
        loss: str | LossFn | None = None,
    ) -> float:
        """Train encoder + linear readout on minibatches drawn from the replay buffer.

        Args:
            optimizer_steps: Gradient steps (default ``config.optimizer_steps``).
            batch_size: Minibatch size (default ``config.batch_size``).
            loss: ``"mse"``, ``"bce"`` or ``fn(prediction (B,), reward (B,)) -> scalar``.

        Returns:
            The mean training loss over the steps (``nan`` when the buffer is empty).
        """
        cfg = self.config
        steps = cfg.optimizer_steps if optimizer_steps is None else optimizer_steps
        size = cfg.batch_size if batch_size is None else batch_size
        loss_fn = _loss_fn(cfg.loss if loss is None else loss)
        if len(self.buffer) == 0 or steps <= 0:
            return float("nan")
        self.encoder.train()
        total = torch.zeros((), device=self.device)
        for _ in range(steps):
            x, a, r = (t.to(self.device) for t in self.buffer.sample(size, self.sample_generator))
            prediction = self.readout(self.encoder(x, a)).squeeze(-1)
            value = loss_fn(prediction, r.to(prediction.dtype))
            self.optimizer.zero_grad(set_to_none=True)
            value.backward()
            self.optimizer.step()
            total += value.detach()  # summed on the device: no host sync per step
        self.encoder.eval()
        self.clear_decision_cache()  # features cached before training are stale
        self.trainings += 1
        return float(total) / steps

    def rebuild_posterior(self, chunk_size: int | None = None) -> None:
        """Re-encode the whole buffer with the current encoder and rebuild the head from it."""
        size = self.config.rebuild_chunk if chunk_size is None else chunk_size
        self.encoder.eval()

        def encoded() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            with torch.no_grad():
                for x, a, r in self.buffer.iter_chunks(size):
                    yield self.encoder(x.to(self.device), a.to(self.device)), r.to(self.device)

        self.posterior.rebuild(encoded())
        self.clear_decision_cache()

    def clear_decision_cache(self) -> None:
        """Forget the features cached by the last :meth:`select_action`.

        ``observe`` reuses those features for the chosen candidate instead of encoding it
        again; call this after changing the encoder's weights outside ``train_encoder``
        (e.g. loading a checkpoint) so that stale features are never used.
        """
        self._last_decision = None

    # -- agent protocol ---------------------------------------------------------------
    @property
    def exploring(self) -> bool:
        """True during the uniform warm-up."""
        return self.rounds < self.config.warmup_random

    def _act_one(self, context: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> int:
        if self.exploring:
            self._check_candidates(candidates)
            return self.random_index(mask)
        return self.select_action(context, candidates, mask)

    def _observe_one(
        self, context: torch.Tensor, action: torch.Tensor, reward: float, index: int
    ) -> None:
        self._update(context, action, reward, self._cached_embedding(context, action, index))
        self.rounds += 1
        cfg = self.config
        warmup_done = self.rounds == cfg.warmup_random
        scheduled = cfg.train_every > 0 and self.rounds % cfg.train_every == 0
        if warmup_done or (scheduled and not self.exploring):
            self.train_encoder()
            self.rebuild_posterior()

    def reset(self, seed: int | None = None) -> None:
        """Start over: reseed, restore the initial encoder, a prior head and counters.

        An in-memory replay buffer is replaced by an empty one; a disk buffer is left as is
        (its files belong to the caller), so pass a fresh one to start from nothing.
        """
        super().reset(seed)
        self.encoder.load_state_dict(self._initial_encoder)
        if isinstance(self.buffer, MemoryReplayBuffer):
            self.buffer = MemoryReplayBuffer(self.buffer.capacity)
        self._init_learners()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an inference checkpoint to ``path``; the replay buffer is not saved.

        See :func:`bandexa_gym.checkpoint.save_agent`; load it back with
        :func:`bandexa_gym.checkpoint.load_agent`.
        """
        from bandexa_gym.checkpoint import save_agent  # checkpoint imports this module

        return save_agent(self, path)

    # -- helpers ----------------------------------------------------------------------
    def _as_device(self, t: torch.Tensor | Any) -> torch.Tensor:
        return torch.as_tensor(t).to(self.device)

    def _check_candidates(self, candidates: torch.Tensor) -> None:
        expected = self.encoder.action_dim
        if candidates.ndim != 2 or candidates.shape[0] == 0 or candidates.shape[1] != expected:
            raise ValueError(
                f"candidates must have shape (K, {expected}) with K >= 1, "
                f"got {tuple(candidates.shape)}"
            )

    def _cached_embedding(
        self, x: torch.Tensor, a: torch.Tensor, index: int
    ) -> torch.Tensor | None:
        """The features the last ``select_action`` computed for this (context, row), if any."""
        if self._last_decision is None:
            return None
        x_last, candidates, z = self._last_decision
        same = x.shape == x_last.shape and index < candidates.shape[0] and torch.equal(x, x_last)
        return z[index] if same and torch.equal(candidates[index], a) else None


def _loss_fn(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss == "mse":
        return F.mse_loss
    if loss == "bce":
        return F.binary_cross_entropy_with_logits
    raise ValueError(f"loss must be 'mse', 'bce' or a callable, got {loss!r}")


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(NeuralLinearTSConfig)}


def default_encoder(
    space: spaces.Dict, kind: str = "auto", *, feature_dim: int | None = None, **kwargs: Any
) -> Encoder:
    """An encoder suited to ``space``: ConvNet for images, two-tower for large candidate sets.

    Args:
        space: The env's single Dict observation space.
        kind: ``"auto"``, ``"mlp"``, ``"two_tower"``, ``"convnet"`` or ``"resnet18"`` ...
            ``"resnet152"``.
        feature_dim: Feature width d (encoder default when None).
        **kwargs: Passed to the encoder constructor.
    """
    context_shape = tuple(space["context"].shape)
    n_candidates, action_dim = space["candidates"].shape
    if kind == "auto":
        if len(context_shape) == 3:
            kind = "convnet"
        elif n_candidates > 64:
            kind = "two_tower"
        else:
            kind = "mlp"
    if feature_dim is not None and kind != "two_tower":
        kwargs["feature_dim"] = feature_dim
    if kind in ("mlp", "two_tower"):
        if len(context_shape) != 1:
            raise ValueError(f"{kind} encoder needs vector contexts, got shape {context_shape}")
        if kind == "mlp":
            return MLPEncoder(context_shape[0], action_dim, **kwargs)
        if feature_dim is not None:
            if feature_dim % 3:
                raise ValueError(
                    f"two_tower feature_dim must be a multiple of 3, got {feature_dim}"
                )
            kwargs["tower_dim"] = feature_dim // 3
        return TwoTowerEncoder(context_shape[0], action_dim, **kwargs)
    if kind == "convnet" or kind.startswith("resnet"):
        if len(context_shape) != 3:
            raise ValueError(f"{kind} encoder needs image contexts (C, H, W), got {context_shape}")
        image = {"in_channels": context_shape[0], "image_size": context_shape[1:]}
        if kind == "convnet":
            return ConvEncoder(action_dim, **image, **kwargs)
        return ResNetEncoder(action_dim, arch=kind, **image, **kwargs)
    raise ValueError(
        f"unknown encoder {kind!r}: expected auto, mlp, two_tower, convnet or resnet18..resnet152"
    )


@register_agent("neural_linear_ts")
def _make_neural_linear_ts(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    encoder: str | Encoder = "auto",
    encoder_kwargs: dict[str, Any] | None = None,
    feature_dim: int | None = None,
    buffer: ReplayBuffer | None = None,
    **overrides: Any,
) -> NeuralLinearTS:
    unknown = set(overrides) - _CONFIG_FIELDS
    if unknown:
        raise TypeError(
            f"unknown neural_linear_ts settings {sorted(unknown)}; valid: "
            f"encoder, encoder_kwargs, feature_dim, buffer, {', '.join(sorted(_CONFIG_FIELDS))}"
        )
    images = len(space["context"].shape) == 3
    settings: dict[str, Any] = (
        {"warmup_random": 200, "train_every": 50, "optimizer_steps": 50, "loss": "bce"}
        if images
        else {}
    )
    settings.update(overrides)
    if isinstance(encoder, str):
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            encoder = default_encoder(
                space, encoder, feature_dim=feature_dim, **(encoder_kwargs or {})
            )
    return NeuralLinearTS(
        encoder,
        buffer=buffer,
        config=NeuralLinearTSConfig(**settings),
        device=device,
        seed=seed,
    )
