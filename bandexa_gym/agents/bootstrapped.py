"""Bootstrapped neural ensemble (Osband et al. 2016): M reward networks, each trained on its
own bootstrap resample of the replay buffer; Thompson sampling plays one member per round.

Every member is ``readout(φ(x, a))`` on the default encoder of ``neural_linear_ts`` (MLP
for vector contexts, ConvNet for images, two-tower for large candidate sets) with its own
random initialization. The members' parameters are stacked
(:class:`~bandexa_gym.networks.Ensemble`), so scoring and training run for all members
in one ``vmap``-ed call.

* Bootstrap weights: transition ``t`` counts ``w[m, t]`` times in member ``m``'s loss,
  ``w ~ Poisson(1)`` (default) or a Bernoulli(0.5) mask, or 1 (``bootstrap="none"``:
  diversity from the initializations and minibatches only). The weights are a
  deterministic function of the agent's ``bootstrap_key``, the transition's replay step
  and ``m`` (a counter-based generator, SplitMix64), so they are fixed for the
  transition's lifetime, cost no storage, and survive buffer trimming, disk buffers and
  checkpoints.
* Training: every optimizer step draws an independent minibatch of ``batch_size`` for
  each member and minimizes the sum over members of their bootstrap-weighted mean losses.
* Deciding: each candidate set draws one member uniformly from the agent's ``generator``
  (one draw per set, so a batch consumes it as single calls do) and plays that member's
  best candidate. The action distribution is exact: the share of members whose best
  unmasked candidate each candidate is, ties split evenly.

Cost per decision: M forward passes of the network over the K candidates (the context
part once per member), O(M · K · cost(f)); per training step M minibatches.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from bandexa_gym.agents.core import (
    DEFAULT_OUTLIER_FACTOR,
    Observations,
    derived_seed,
    register_agent,
)
from bandexa_gym.agents.learning import (
    ReplayAgent,
    ReplaySchedule,
    carry_scaler,
    check_shapes,
    neural_spec,
    neural_spec_arguments,
    new_scaler,
)
from bandexa_gym.agents.limits import check_count
from bandexa_gym.agents.neural_evolve import (
    check_evolved_encoders,
    move_buffer,
    new_action_inputs,
    pad_fn,
)
from bandexa_gym.agents.neural_factory import neural_config, neural_encoders
from bandexa_gym.buffers import ReplayBuffer
from bandexa_gym.exploration import ThompsonSampling
from bandexa_gym.features.encoders import Encoder, build_encoder, encoder_spec
from bandexa_gym.heads.ensemble import BOOTSTRAP_KINDS, EnsembleHead, bootstrap_weights
from bandexa_gym.heads.numerics import seeded_init
from bandexa_gym.networks import Ensemble, RewardNetwork
from bandexa_gym.persist.state import Commit, Counter, Part, Scaler

__all__ = ["BOOTSTRAP_KINDS", "BootstrappedConfig", "BootstrappedNN", "bootstrap_weights"]

_KEY_STREAM = 7  # derived_seed stream of the bootstrap key


@dataclass
class BootstrappedConfig(ReplaySchedule):
    """Hyper-parameters of :class:`BootstrappedNN` (the schedule fields are
    :class:`~bandexa_gym.agents.learning.ReplaySchedule`'s).

    Attributes:
        n_members: Ensemble size M >= 1. Default 5: on ``Bandexa/Synthetic-v0`` (4,000
            rounds, seeds 0 and 1) M = 5 and M = 10 both gave 509 and 506 mean regret
            with Poisson weights, while training and scoring cost grows with M (M
            ConvNets per step on MNIST).
        bootstrap: Weights of a transition in a member's loss: ``"poisson"`` (Poisson(1),
            the online bootstrap; default: mean regret 509 / 506 at M = 5 / 10 in the runs
            above), ``"bernoulli"`` (a Bernoulli(0.5) mask, 0 or 1: 549 / 589) or
            ``"none"`` (all 1).
    """

    n_members: int = 5
    bootstrap: str = "poisson"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.n_members = check_count("n_members", self.n_members)
        if self.bootstrap not in BOOTSTRAP_KINDS:
            raise ValueError(
                f"bootstrap must be one of {', '.join(BOOTSTRAP_KINDS)}, got {self.bootstrap!r}"
            )


class BootstrappedNN(ReplayAgent):
    """Bootstrapped ensemble of reward networks, one member played per round.

    See the module docstring. With the default rule (Thompson sampling: a uniformly drawn
    member) action probabilities are exact. ``exploration="ucb"`` scores ensemble mean +
    ``alpha`` · ensemble standard deviation, ``"greedy"`` the ensemble mean.

    Args:
        encoders: One encoder per member (M of one architecture, independently
            initialized).
        buffer: Replay buffer (default: an in-memory ring of ``config.buffer_capacity``).
        config: Hyper-parameters; ``config.n_members`` must equal ``len(encoders)``.
        exploration: Exploration rule over the ensemble's predictions.
        readouts: One ``Linear(d, 1)`` per member (default: fresh ones, seeded from
            ``seed``).
        device: Torch device (default: the first encoder's).
        seed: Seed of the agent's generators and of the bootstrap key.
        **kwargs: :class:`~bandexa_gym.agents.head_agent.HeadAgent` options
            (``propensity_draws``, ``max_pending``, ``outliers``, ``outlier_factor``: an
            outlier row is skipped with a warning by default, see
            :class:`~bandexa_gym.agents.core.protocol.Agent`).
    """

    name = "bootstrapped_nn"

    def __init__(
        self,
        encoders: Sequence[Encoder],
        *,
        buffer: ReplayBuffer | None = None,
        config: BootstrappedConfig | None = None,
        exploration: Any = "thompson",
        readouts: Sequence[nn.Linear] | None = None,
        device: str | torch.device | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.config = config if config is not None else BootstrappedConfig()
        if not isinstance(self.config, BootstrappedConfig):
            raise TypeError(f"config must be a BootstrappedConfig, got {config!r}")
        encoders = list(encoders)
        if len(encoders) != self.config.n_members:
            raise ValueError(
                f"expected {self.config.n_members} encoders (config.n_members), got {len(encoders)}"
            )
        specs = [encoder_spec(e) for e in encoders]
        if any(s != specs[0] for s in specs):
            raise ValueError("every member's encoder must have the same architecture")
        if device is None:
            device = next(encoders[0].parameters()).device
        self.bootstrap_key = 0
        super().__init__(buffer=buffer, exploration=exploration, seed=seed, device=device, **kwargs)
        if readouts is None:
            with seeded_init(seed):
                readouts = [nn.Linear(encoders[0].feature_dim, 1) for _ in encoders]
        members = [RewardNetwork(e, r) for e, r in zip(encoders, readouts, strict=True)]
        self.ensemble = Ensemble(members).to(self.device)
        self.input_shapes = (tuple(encoders[0].context_shape), int(encoders[0].action_dim))
        self._encoder_spec = specs[0]
        self._initial_state = {k: v.detach().clone() for k, v in self.ensemble.stacked.items()}
        self._init_learners()

    def _init_learners(self) -> None:
        cfg = self.config
        self.posterior = EnsembleHead(cfg.n_members)
        self.optimizer = torch.optim.Adam(
            self.ensemble.parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        self._loss = F.mse_loss if cfg.loss == "mse" else F.binary_cross_entropy_with_logits
        self.rounds = 0
        self.trainings = 0
        self.clear_feature_cache()

    def _reseed(self, seed: int | None) -> None:
        super()._reseed(seed)
        if seed is None:
            self.bootstrap_key = int(np.random.SeedSequence().entropy) % 2**64
        else:
            self.bootstrap_key = derived_seed(seed, _KEY_STREAM)

    @property
    def head(self) -> EnsembleHead:
        return self.posterior

    @property
    def encoder(self) -> Encoder:
        """The members' encoder architecture (weights on the ``meta`` device)."""
        return self.ensemble.skeleton.encoder

    @property
    def replay_batch(self) -> int:
        return self.config.batch_size * self.config.n_members

    # -- features, learning -------------------------------------------------------------------
    def compute_features(self, contexts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Every member's prediction for every candidate: (B, K, M)."""
        param = next(self.ensemble.parameters())
        with torch.no_grad():
            scores = self.ensemble(
                contexts.to(param.dtype), candidates.to(param.dtype)
            )  # (M, B, K)
        return scores.permute(1, 2, 0)

    def _absorb(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        self._store(contexts, chosen, rewards)  # the members learn at the next training

    def training_loss(
        self, x: torch.Tensor, a: torch.Tensor, r: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        m, size = self.config.n_members, self.config.batch_size
        param = next(self.ensemble.parameters())
        x = x.to(param.dtype).reshape(m, size, *x.shape[1:])
        a = a.to(param.dtype).reshape(m, size, a.shape[-1])
        r = self.reward_scaler(r).to(param.dtype).reshape(m, size)
        members = torch.arange(m, device=steps.device).unsqueeze(1)
        weights = bootstrap_weights(
            self.bootstrap_key, steps.reshape(m, size), members, self.config.bootstrap
        ).to(param.device)
        prediction = self.ensemble(x, a, per_member=True)  # (M, batch)
        losses = self._loss(prediction, r, reduction="none")
        return (weights * losses).mean(dim=1).sum()

    def _check_inputs(self, contexts: torch.Tensor, candidates: torch.Tensor) -> None:
        check_shapes(self.encoder, contexts, candidates)

    def _thompson(self) -> bool:
        return isinstance(self.exploration, ThompsonSampling)

    def _distribution(self, batch: Observations) -> torch.Tensor:
        if self.exploring or not self._thompson():
            return super()._distribution(batch)
        self._check_inputs(batch.contexts, batch.candidates)
        return self.posterior.probabilities(self.features(batch), batch.masks)

    def _propensities(self, batch: Observations, actions: torch.Tensor) -> torch.Tensor:
        if self.exploring or not self._thompson():
            return super()._propensities(batch, actions)
        probs = self._distribution(batch)  # exact: no Monte Carlo correction
        return probs.gather(1, actions.unsqueeze(1).to(probs.device)).squeeze(1).cpu()

    def reset(self, seed: int | None = None) -> None:
        """Start over: reseed, restore the members' initial weights and the counters."""
        super().reset(seed)
        self.ensemble.load_members(self._initial_state)
        self._init_learners()

    # -- persistence --------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {**neural_spec(self), "encoder": copy.deepcopy(self._encoder_spec)}

    def pinned_spec(self) -> dict[str, Any]:
        spec = self.spec()
        del spec["exploration"]
        spec["config"] = {"n_members": self.config.n_members}  # the schedule may differ
        return spec

    def parts(self) -> list[Part]:
        return [
            _Members(self),
            Counter(self, "trainings"),
            Counter(self, "bootstrap_key", below=2**64),
            Scaler(self, lambda: new_scaler(self.config)),
        ]

    def after_load(self) -> None:
        self.clear_feature_cache()

    @classmethod
    def expected_shapes(
        cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]
    ) -> dict[str, tuple]:
        config = BootstrappedConfig(**spec["config"])
        network = RewardNetwork.shapes_of_spec(spec)
        m = config.n_members
        return {f"members.{k}": (m, *v.shape) for k, v in network.state_dict().items()}

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        config = BootstrappedConfig(**spec["config"])
        return neural_spec_arguments(spec, seed, BootstrappedConfig, encoders=config.n_members)

    # -- evolve -------------------------------------------------------------------------------
    def evolve_from(self, trained: BootstrappedNN, **options: Any) -> str:
        """Fill this cold-start agent with what ``trained`` learned (see
        :func:`bandexa_gym.transfer.evolve`); returns a one-line summary.

        Every member's encoder grows its inputs as ``neural_linear_ts``'s does (new context
        weights zero, new action weights the template member's initial values) and keeps
        its readout; the replay buffer and counters carry over, and so does the bootstrap
        key (a copied buffer renumbers its steps from 0, so members see fresh bootstrap
        weights for old transitions when the trained buffer had been trimmed). The
        optimizer starts fresh (Adam moments of stacked members are not grown).

        Raises:
            ValueError: Another ensemble size or encoder architecture, or shrinking
                inputs; nothing is modified then.
        """
        old_transitions = options.pop("old_transitions", "pad")
        if options:
            raise TypeError(f"unknown evolve options {sorted(options)}")
        if old_transitions not in ("pad", "drop"):
            raise ValueError(f"old_transitions must be 'pad' or 'drop', got {old_transitions!r}")
        if trained.config.n_members != self.config.n_members:
            raise ValueError(
                f"n_members differs: the trained ensemble has {trained.config.n_members}, the "
                f"template {self.config.n_members}"
            )
        if self.buffer is not trained.buffer and len(self.buffer) > 0:
            raise ValueError(
                f"template.buffer already holds {len(self.buffer)} transitions; evolve expects "
                "a cold-start template with an empty buffer (or the trained agent's own buffer)"
            )
        if old_transitions == "drop" and self.buffer is trained.buffer:
            raise ValueError("old_transitions='drop' needs a template with its own buffer")
        stacked: dict[str, list[torch.Tensor]] = {}
        for m in range(self.config.n_members):
            old = _member(trained, m)
            new = _member(self, m)
            grown = check_evolved_encoders(old.encoder, new.encoder)
            state = grown.state_dict()
            initial = new.encoder.state_dict()
            for name, mask in new_action_inputs(old.encoder, new.encoder).items():
                state[name] = torch.where(mask, initial[name], state[name])
            member_state = {f"encoder.{k}": v for k, v in state.items()}
            member_state.update({f"readout.{k}": v for k, v in old.readout.state_dict().items()})
            for name, value in member_state.items():
                stacked.setdefault(name, []).append(value.detach())
        old_enc, new_enc = trained.encoder, self.encoder
        dx_old = old_enc.context_shape[0] if len(old_enc.context_shape) == 1 else 0
        dx_new = new_enc.context_shape[0] if len(new_enc.context_shape) == 1 else 0
        pad = pad_fn(
            tuple(old_enc.context_shape),
            (dx_old, old_enc.action_dim),
            (dx_new, new_enc.action_dim),
        )
        self.ensemble.load_members({k: torch.stack(v) for k, v in stacked.items()})
        buffer_note = move_buffer(trained, self, pad, old_transitions)
        self.bootstrap_key = trained.bootstrap_key
        carry_scaler(trained.reward_scaler, self.reward_scaler)
        self.rounds, self.trainings = trained.rounds, trained.trainings
        self._init_optimizer_only()
        self.clear_feature_cache()
        return (
            f"{self.config.n_members} members {type(new_enc).__name__} + readouts kept (inputs "
            f"{dx_old}+{old_enc.action_dim} -> {dx_new}+{new_enc.action_dim}); optimizer "
            f"fresh; {buffer_note}; rounds={self.rounds} kept"
        )

    def _init_optimizer_only(self) -> None:
        cfg = self.config
        self.optimizer = torch.optim.Adam(
            self.ensemble.parameters(),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )


def _member(agent: BootstrappedNN, index: int) -> RewardNetwork:
    """Member ``index`` of ``agent`` as a standalone network (a CPU copy of its weights)."""
    with seeded_init(None):  # the weights are overwritten: leave the RNG alone
        encoder = build_encoder(agent.spec()["encoder"])
        network = RewardNetwork(encoder, nn.Linear(encoder.feature_dim, 1))
    network.load_state_dict({k: v.cpu() for k, v in agent.ensemble.member_state(index).items()})
    return network


def make_bootstrapped(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    encoder: str = "auto",
    encoder_kwargs: dict[str, Any] | None = None,
    feature_dim: int | None = None,
    buffer: ReplayBuffer | None = None,
    exploration: Any = "thompson",
    propensity_draws: int = 100,
    max_pending: int = 10_000,
    outliers: str = "skip",
    outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
    **settings: Any,
) -> BootstrappedNN:
    """A :class:`BootstrappedNN` sized for ``space``: ``n_members`` independently initialized
    default encoders (``neural_linear_ts``'s, by kind of context) on its schedule (images:
    200 uniform warm-up rounds; the squared error on standardized rewards everywhere, as for
    ``neural_ts``, whose greedy read of a network trained so was the better classifier).

    Raises:
        TypeError: An unknown setting (the message lists the valid ones).
        ValueError: A setting out of range.
    """
    config = neural_config(BootstrappedConfig, space, settings, {"warmup_random": 200})
    if not isinstance(encoder, str):
        raise TypeError(
            "encoder must be a default encoder kind ('auto', 'mlp', 'two_tower', 'convnet'); "
            "for custom encoders build BootstrappedNN([...one per member...]) directly"
        )
    encoders = neural_encoders(
        space,
        encoder,
        seed=seed,
        count=config.n_members,
        feature_dim=feature_dim,
        encoder_kwargs=encoder_kwargs,
    )
    return BootstrappedNN(
        encoders,
        buffer=buffer,
        config=config,
        exploration=exploration,
        device=device,
        seed=seed,
        propensity_draws=propensity_draws,
        max_pending=max_pending,
        outliers=outliers,
        outlier_factor=outlier_factor,
    )


@register_agent("bootstrapped_nn")
def _make_bootstrapped_nn(space: spaces.Dict, **kwargs: Any) -> BootstrappedNN:
    """Bootstrapped neural ensemble (Osband et al. 2016): one member played per round."""
    return make_bootstrapped(space, **kwargs)


class _Members(Part):
    """The ensemble's stacked member weights, as the tensors ``members.<name>``."""

    def __init__(self, agent: BootstrappedNN) -> None:
        self.agent = agent

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {f"members.{k}": v.detach() for k, v in self.agent.ensemble.stacked.items()}

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        prefix = "members."
        stacked = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        self.agent.ensemble.check_members(stacked)
        return lambda: self.agent.ensemble.load_members(stacked)
