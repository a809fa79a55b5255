"""How every neural agent learns: one replay schedule and one training loop.

``neural_linear_ts`` (and its UCB, greedy and ε-greedy variants), ``neural_ts`` /
``neural_ucb`` and ``bootstrapped_nn`` share the schedule settings (:class:`ReplaySchedule`:
``warmup_random``, ``train_every``, ``optimizer_steps``, ``batch_size``, ...), the uniform
warm-up, learning a batch of rounds as if one at a time around the work that falls inside
it, and the training burst on replay minibatches (:class:`ReplayAgent`). What differs is
the head (a linear head on z, gradient features, an ensemble), what a round stores
(``_absorb``), what a training step minimizes (``training_loss``) and the rule.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from bandexa_gym.agents.core import Observations
from bandexa_gym.agents.head_agent import HeadAgent, split_at
from bandexa_gym.agents.limits import check_count, check_rows_fit
from bandexa_gym.buffers import MemoryReplayBuffer, ReplayBuffer
from bandexa_gym.features.encoders import build_encoder, encoder_spec
from bandexa_gym.features.scaling import RewardScaler
from bandexa_gym.heads.numerics import seeded_init

__all__ = [
    "LossFn",
    "ReplayAgent",
    "ReplaySchedule",
    "Schedule",
    "check_training_settings",
    "carry_scaler",
    "check_shapes",
    "loss_function",
    "neural_spec",
    "new_scaler",
    "neural_spec_arguments",
    "step_if_finite",
]

_COUNTS = ("warmup_random", "train_every", "optimizer_steps", "batch_size", "buffer_capacity")


class Schedule:
    """When a neural agent trains: what every neural agent's config shares (mixin).

    A config with this mixin has ``warmup_random`` and ``train_every``; the agent trains
    once at the end of the warm-up and every ``train_every`` rounds after it.
    """

    warmup_random: int
    train_every: int

    def training_due(self, rounds: int) -> bool:
        """Whether a training burst follows the round that brings the count to ``rounds``."""
        if rounds == self.warmup_random:
            return True
        return (
            self.train_every > 0 and rounds % self.train_every == 0 and rounds >= self.warmup_random
        )


def check_training_settings(config: Any, counts: tuple[str, ...]) -> None:
    """Validate (and normalize) a neural config's training settings in place: the integer
    ``counts`` (``warmup_random`` and ``train_every`` may be 0, the others >= 1, all
    bounded), ``action_chunk``, ``lr``, ``weight_decay`` and ``loss``.

    Raises:
        TypeError, ValueError: A setting of the wrong type or out of range (named).
    """
    for name in counts:
        low = 0 if name in ("warmup_random", "train_every") else 1
        setattr(config, name, check_count(name, getattr(config, name), low=low))
    if config.action_chunk is not None:
        config.action_chunk = check_count("action_chunk", config.action_chunk)
    for name in ("lr", "weight_decay"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if config.loss not in ("mse", "bce"):
        raise ValueError(f"loss must be 'mse' or 'bce', got {config.loss!r}")


@dataclass
class ReplaySchedule(Schedule):
    """Training schedule and optimizer of a network trained on the replay buffer.

    Attributes:
        warmup_random: Rounds of uniform play before the exploration rule takes over; the
            network is trained once at the end of the warm-up.
        train_every: Train every this many rounds (0: never).
        optimizer_steps: Adam steps per training burst.
        batch_size: Minibatch size (per network).
        action_chunk: Candidates per pass when scoring (None: all at once).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        loss: ``"mse"`` on the reward, or ``"bce"`` on a {0, 1} reward (logit readout).
        buffer_capacity: Capacity of the default in-memory replay buffer.
        forgetting: Discount γ in (0, 1] for rewards that drift: training favours recent
            transitions (half-life ``ln 2 / −ln γ`` rounds) and the agent's belief
            discounts old rounds (see the agent). 1 (default) forgets nothing.
        standardize_rewards: With the MSE loss, the network learns rewards standardized by
            their running mean and standard deviation (re-fitted before every training
            burst), so its scale, and the exploration settings, mean the same thing
            whatever the reward's units (as ``neural_linear_ts`` does).

    Raises:
        TypeError, ValueError: A setting of the wrong type or out of range (named).
    """

    warmup_random: int = 0
    train_every: int = 50
    optimizer_steps: int = 50
    batch_size: int = 64
    action_chunk: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"
    buffer_capacity: int = 100_000
    forgetting: float = 1.0
    standardize_rewards: bool = True

    def __post_init__(self) -> None:
        check_training_settings(self, _COUNTS)
        gamma = self.forgetting
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
            raise TypeError(f"forgetting must be a number in (0, 1], got {gamma!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"forgetting must be in (0, 1], got {gamma!r}")
        self.forgetting = float(gamma)
        if not isinstance(self.standardize_rewards, bool):
            raise TypeError(
                f"standardize_rewards must be True or False, got {self.standardize_rewards!r}"
            )

    @property
    def recency_half_life(self) -> float | None:
        """Half-life (rounds) of replay sampling's recency weights; None without forgetting."""
        gamma = self.forgetting
        return math.log(2.0) / -math.log(gamma) if gamma != 1.0 else None

    @classmethod
    def from_settings(cls, **settings: Any) -> Any:
        """A config from flat settings.

        Raises:
            TypeError: An unknown setting (the message lists the valid ones).
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(settings) - fields
        if unknown:
            raise TypeError(
                f"unknown settings {sorted(unknown)}; valid: {', '.join(sorted(fields))}"
            )
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serializable dict."""
        return dataclasses.asdict(self)


class ReplayAgent(HeadAgent):
    """A head agent whose network trains on its replay buffer on a schedule.

    Rounds before ``warmup_random`` play uniformly at random (exact propensities). A batch
    of B rounds is learned as if observed one at a time: its rows are absorbed up to a
    round where work is due (:meth:`_work_due`: a training burst by default), the work is
    done (:meth:`_scheduled_work`), and the remaining rows follow with the new network.
    Replay minibatches come from the agent's own ``sample_generator`` (seeded from the
    agent's seed + 1, saved and restored with the other generators).

    Subclasses set ``self.config`` (a :class:`ReplaySchedule`, or a config with the same
    schedule fields and methods), ``self.optimizer`` and the head, and implement
    :meth:`_absorb`, :meth:`training_loss` and :meth:`_check_inputs`.

    Args:
        buffer: Replay buffer (default: an in-memory ring of ``config.buffer_capacity``).
        input_shapes: ``(context_shape, d_a)`` of a row, to bound the default buffer by
            what the machine can hold (coarsely when None).
        **kwargs: :class:`HeadAgent` options (``exploration``, ``seed``, ``device``, ...).
    """

    config: ReplaySchedule
    optimizer: torch.optim.Optimizer

    def __init__(
        self,
        *,
        buffer: ReplayBuffer | None = None,
        input_shapes: tuple[tuple[int, ...], int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.sample_generator = torch.Generator()  # CPU: drives replay sampling
        super().__init__(**kwargs)
        if buffer is None:
            if input_shapes is not None:
                check_rows_fit("buffer_capacity", self.config.buffer_capacity, *input_shapes)
            buffer = MemoryReplayBuffer(self.config.buffer_capacity)
        self.buffer = buffer
        self._init_schedule_state()

    def _generators(self) -> dict[str, torch.Generator]:
        return {**super()._generators(), "sample_generator": self.sample_generator}

    def _reseed(self, seed: int | None) -> None:
        super()._reseed(seed)
        if seed is None:
            self.sample_generator.seed()
        else:
            self.sample_generator.manual_seed(int(seed) + 1)

    def _init_schedule_state(self) -> None:
        """Counters and the reward scaler at their start (construction and reset)."""
        self.trainings = 0
        self.reward_scaler = new_scaler(self.config)
        self._warned_non_finite = False

    # -- what subclasses provide ----------------------------------------------------------
    def _check_inputs(self, contexts: torch.Tensor, candidates: torch.Tensor) -> None:
        """Raise ``ValueError`` unless contexts (B, ...) and candidates (B, K, d_a) fit."""
        raise NotImplementedError

    def _absorb(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        """Store the rows and update the head; all-or-nothing."""
        raise NotImplementedError

    def training_loss(
        self, x: torch.Tensor, a: torch.Tensor, r: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        """The loss of one optimizer step on a replay minibatch (on the device); ``r`` are
        the raw rewards (standardize them with ``self.reward_scaler`` where the loss does)."""
        raise NotImplementedError

    @property
    def replay_batch(self) -> int:
        """Transitions drawn from the buffer per optimizer step."""
        return self.config.batch_size

    @property
    def recency_half_life(self) -> float | None:
        """Half-life in rounds of the replay minibatches' recency weights (None: uniform)."""
        return self.config.recency_half_life

    # -- schedule ---------------------------------------------------------------------------
    @property
    def exploring(self) -> bool:
        """True during the uniform warm-up."""
        return self.rounds < self.config.warmup_random

    def train_network(
        self, optimizer_steps: int | None = None, batch_size: int | None = None
    ) -> float:
        """Run a training burst on minibatches from the replay buffer.

        With ``forgetting`` (or a window) the minibatches favour recent transitions. A step
        whose loss or gradients are not finite is skipped (said once per agent).

        Args:
            optimizer_steps: Steps (default ``config.optimizer_steps``).
            batch_size: Transitions per step (default :attr:`replay_batch`).

        Returns:
            The mean loss over the steps taken (``nan`` when the buffer is empty).
        """
        steps = self.config.optimizer_steps if optimizer_steps is None else optimizer_steps
        size = self.replay_batch if batch_size is None else batch_size
        if len(self.buffer) == 0 or steps <= 0:
            return float("nan")
        recency = self.recency_half_life

        def loss() -> torch.Tensor:
            x, a, r, step = (
                t.to(self.device)
                for t in self.buffer.sample(
                    size, self.sample_generator, with_steps=True, recency=recency
                )
            )
            return self.training_loss(x, a, r, step)

        self.train_mode(True)  # and back, even if a step fails
        try:
            mean = optimizer_steps_skipping_non_finite(self, steps, loss)
        finally:
            self.train_mode(False)
        self.trainings += 1
        self.clear_feature_cache()  # features computed before training are stale
        return mean

    def train_mode(self, training: bool) -> None:
        """Put the networks in training (True) or evaluation mode around a burst."""

    def _work_due(self, rounds: int) -> bool:
        """Whether scheduled work follows the round that brings the count to ``rounds``."""
        return self.config.training_due(rounds)

    def _scheduled_work(self, rounds: int) -> None:
        """The work due after ``rounds`` rounds: refit the reward units, train."""
        self.reward_scaler.refit()  # the network learns in the new units from here
        self.train_network()

    # -- agent protocol -----------------------------------------------------------------------
    def _choose(self, batch: Observations) -> torch.Tensor:
        self._check_inputs(batch.contexts, batch.candidates)
        if self.exploring:
            return self.uniform_choice(batch.masks)
        return super()._choose(batch)

    def _distribution(self, batch: Observations) -> torch.Tensor:
        self._check_inputs(batch.contexts, batch.candidates)
        if self.exploring:
            masks = batch.masks.to(torch.float64)
            return masks / masks.sum(-1, keepdim=True)
        return super()._distribution(batch)

    def _propensities(self, batch: Observations, actions: torch.Tensor) -> torch.Tensor:
        if self.exploring:
            return self._distribution(batch).gather(1, actions[:, None]).squeeze(1).cpu()
        return super()._propensities(batch, actions)

    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        self._check_inputs(contexts, chosen[:, None])
        for name, values in (("context", contexts), ("action", chosen)):
            # Checked for every row before any is learned: a batch whose later rows the
            # buffer (float32) or the network would reject must not be half absorbed.
            if values.is_floating_point() and not bool(torch.isfinite(values.float()).all()):
                raise ValueError(
                    f"{name} values exceed float32's range (|v| <= 3.4e38); nothing was learned"
                )
        for begin, end in split_at(self.rounds, contexts.shape[0], self._work_due):
            rows = slice(begin, end)
            self._absorb(contexts[rows], chosen[rows], indices[rows], rewards[rows])
            self.rounds += end - begin
            if self._work_due(self.rounds):
                self._scheduled_work(self.rounds)

    def _store(self, contexts: torch.Tensor, chosen: torch.Tensor, rewards: torch.Tensor) -> None:
        """Add the rows to the buffer (which validates before storing anything) and their
        rewards to the running moments of the reward scaler."""
        if contexts.shape[0] == 1:
            self.buffer.add(contexts[0].cpu(), chosen[0].cpu(), float(rewards[0]))
        else:
            self.buffer.add_batch(contexts.cpu(), chosen.cpu(), rewards.cpu())
        self.reward_scaler.update(rewards)

    def reset(self, seed: int | None = None) -> None:
        """Start over: reseed and forget the counters; subclasses restore their networks.

        An in-memory replay buffer is replaced by an empty one; a disk buffer is left as is
        (its files belong to the caller).
        """
        super().reset(seed)
        if isinstance(self.buffer, MemoryReplayBuffer):
            self.buffer = MemoryReplayBuffer(self.buffer.capacity)
        self._init_schedule_state()


def check_shapes(encoder: Any, contexts: torch.Tensor, candidates: torch.Tensor) -> None:
    """Contexts (B, *context_shape) and candidates (B, K, d_a) with K >= 1, else ValueError."""
    expected = tuple(encoder.context_shape)
    if tuple(contexts.shape[1:]) != expected:
        raise ValueError(
            f"context must have shape {expected} (or (B, *{expected}) batched), got "
            f"{tuple(contexts.shape[1:])}"
        )
    d_a = encoder.action_dim
    if candidates.ndim != 3 or candidates.shape[1] == 0 or candidates.shape[2] != d_a:
        shape = tuple(candidates.shape[1:]) if candidates.ndim == 3 else tuple(candidates.shape)
        raise ValueError(f"candidates must have shape (K, {d_a}) with K >= 1, got {shape}")


def neural_spec(agent: Any) -> dict[str, Any]:
    """What describes a neural agent: its input shapes, encoder, config and exploration rule."""
    encoder = agent.encoder
    return {
        "context_shape": list(encoder.context_shape),
        "action_dim": encoder.action_dim,
        "feature_dim": encoder.feature_dim,
        "encoder": encoder_spec(encoder),
        "config": agent.config.to_dict(),
        "exploration": agent.exploration.spec(),
    }


def neural_spec_arguments(
    spec: Mapping[str, Any], seed: int | None, config_type: type, encoders: int | None = None
) -> dict[str, Any]:
    """Constructor arguments of a neural agent from its spec: its config, its exploration
    rule and its encoder (``encoders`` of them, as a list, when given), built from the spec
    under ``seed`` without moving the caller's global random state."""
    config = config_type(**spec["config"])
    with seeded_init(0 if seed is None else seed):
        built = [build_encoder(spec["encoder"]) for _ in range(encoders or 1)]
    return {
        "encoders" if encoders else "encoder": built if encoders else built[0],
        "config": config,
        "exploration": spec.get("exploration", "thompson"),
    }


def new_scaler(config: ReplaySchedule) -> RewardScaler:
    """A reward scaler for ``config``: standardizing under the MSE loss when asked to."""
    return RewardScaler(config.standardize_rewards and config.loss == "mse")


def optimizer_steps_skipping_non_finite(
    agent: Any, steps: int, loss: Callable[[], torch.Tensor]
) -> float:
    """``steps`` steps of ``agent.optimizer`` on the losses ``loss()`` gives, each skipped
    when its loss or gradients are not finite (:func:`step_if_finite`; said once per agent,
    through ``agent._warned_non_finite``). No host synchronization per step.

    Returns:
        The mean loss over the steps taken (``nan`` if none was).
    """
    total = torch.zeros((), device=agent.device)
    skipped = torch.zeros((), device=agent.device)
    for _ in range(steps):
        value = loss()
        agent.optimizer.zero_grad(set_to_none=True)
        value.backward()
        bad = step_if_finite(agent.optimizer, agent.device)
        skipped += bad
        total += torch.where(bad.bool(), 0.0, value.detach())
    n_skipped = int(skipped.item())
    if n_skipped and not agent._warned_non_finite:
        agent._warned_non_finite = True
        warnings.warn(
            f"{agent.name}: skipped {n_skipped} of {steps} training steps whose loss or "
            "gradients were not finite (extreme contexts or rewards in the replay buffer?); "
            "training goes on without them (said once per agent)",
            RuntimeWarning,
            stacklevel=3,
        )
    done = steps - n_skipped
    return float(total) / done if done else float("nan")


def step_if_finite(optimizer: torch.optim.Optimizer, device: torch.device) -> torch.Tensor:
    """One optimizer step, skipped when a gradient is NaN or inf; returns a 0-d 1.0 if
    skipped. Fused Adam reads the flag on the device (no host synchronization)."""
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    found_inf = torch.zeros((), device=device)
    if optimizer.defaults.get("fused"):
        torch._amp_foreach_non_finite_check_and_unscale_(
            grads, found_inf, torch.ones((), device=device)
        )
        optimizer.found_inf = found_inf  # Adam's fused kernel skips the update
        optimizer.step()
        optimizer.found_inf = None
    elif all(bool(torch.isfinite(g).all()) for g in grads):
        optimizer.step()
    else:
        found_inf.fill_(1.0)
    return found_inf


def carry_scaler(source: RewardScaler, target: RewardScaler) -> None:
    """Give ``target`` the reward units and moments of ``source`` (evolve: the network
    carried over learned in those units); a disabled ``target`` keeps raw units."""
    target.count, target.mean, target.m2 = source.count, source.mean, source.m2
    if target.enabled:
        target.shift, target.scale = source.shift, source.scale


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(prediction (B,), reward (B,)) -> scalar`` (``reduction=`` where the agent weighs rows)."""


def loss_function(loss: str | LossFn) -> LossFn:
    """The training loss named ``loss``: ``"mse"`` (squared error on the reward) or ``"bce"``
    (binary cross-entropy of a logit on a {0, 1} reward); a callable is returned as is.

    Raises:
        ValueError: Another name.
    """
    if callable(loss):
        return loss
    if loss == "mse":
        return F.mse_loss
    if loss == "bce":
        return F.binary_cross_entropy_with_logits
    raise ValueError(f"loss must be 'mse', 'bce' or a callable, got {loss!r}")
