"""The Neural-Linear agent: a learned encoder z = φ(x, a) under a Bayesian linear head, one
head shared by all candidates or one per arm."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import partial
from typing import Any

import torch
from torch import nn

from bandexa_gym.agents.core import (
    Capabilities,
    Observations,
)
from bandexa_gym.agents.head_agent import HeadAgent, absorb, is_power_of_two
from bandexa_gym.agents.learning import (
    LossFn,
    ReplayAgent,
    loss_function,
)
from bandexa_gym.agents.neural_evolve import evolve_neural
from bandexa_gym.agents.neural_linear.config import NeuralLinearTSConfig
from bandexa_gym.agents.neural_linear.parts import NeuralLinearPersistence
from bandexa_gym.buffers import ReplayBuffer
from bandexa_gym.features.arms import (
    MAX_FIXED_ARMS,
    ArmFeatures,
    ArmHeads,
    ArmRegistry,
    SwitchedToShared,
    arms_or_switch,
    fixed_arm_set,
    retry_if_switched,
)
from bandexa_gym.features.encoders import Encoder, check_encoder
from bandexa_gym.features.scaling import RewardScaler, feature_standardization
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig
from bandexa_gym.heads.numerics import seeded_init

__all__ = ["NeuralLinearTS"]


class NeuralLinearTS(NeuralLinearPersistence, ReplayAgent):
    """Neural-Linear bandit: exploration on a Bayesian linear head over learned features.

    The encoder maps every (context, candidate) pair to features z (d,). A conjugate Bayesian
    linear regression over z gives closed-form posterior updates after every round; the
    exploration rule (Thompson sampling by default: one weight draw w per decision, the
    chosen candidate is ``argmax(Z @ w)``) picks the candidate. Every ``train_every``
    rounds the encoder (with a linear readout) is trained by backprop on the replay buffer
    and the head is rebuilt from the whole buffer, re-encoded in chunks.

    A batch of B observations (a vector env) is decided in one pass (one encoder call over
    the B·K candidates, B posterior draws in one call) and learned as if observed one at a
    time: its rows are absorbed up to a scheduled training round, the encoder is trained,
    and the rest follow with the new features.

    Args:
        encoder: The representation φ; see :mod:`bandexa_gym.encoders` (checked on
            construction: a clear ``TypeError`` names what a custom module lacks).
        buffer: Replay buffer (default: an in-memory ring of ``config.buffer_capacity``).
        config: Hyper-parameters.
        exploration: Exploration rule (see :class:`~bandexa_gym.agents.head_agent.HeadAgent`).
        device: Torch device (default: the encoder's).
        seed: Seed of the agent's generators.
        **kwargs: :class:`HeadAgent` options (``propensity_draws``, ``max_pending``,
            ``outliers``, ``outlier_factor``: a context or reward far beyond those learned
            so far is skipped with a warning by default, see
            :class:`~bandexa_gym.agents.core.protocol.Agent`).
    """

    name = "neural_linear_ts"

    def __init__(
        self,
        encoder: Encoder,
        *,
        buffer: ReplayBuffer | None = None,
        config: NeuralLinearTSConfig | None = None,
        exploration: Any = "thompson",
        device: str | torch.device | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        check_encoder(encoder)
        if device is None:
            device = next(encoder.parameters()).device
        self.config = config or NeuralLinearTSConfig()
        if not isinstance(self.config, NeuralLinearTSConfig):
            raise TypeError(f"config must be a NeuralLinearTSConfig, got {config!r}")
        if self.config.head_kind == "logistic":  # observe() rejects rewards outside {0, 1}
            self.capabilities = Capabilities(binary_rewards=True)
        input_shapes = (tuple(encoder.context_shape), int(encoder.action_dim))
        super().__init__(
            buffer=buffer,
            input_shapes=input_shapes,
            exploration=exploration,
            seed=seed,
            device=device,
            **kwargs,
        )
        self.encoder = encoder.to(self.device)
        self.input_shapes = input_shapes
        self._initial_encoder = copy.deepcopy(self.encoder.state_dict())
        self._init_learners()

    def new_head(self) -> BayesianLinearRegression | LaplaceLogisticRegression:
        """A head of ``config.head_kind`` at the configured prior over the encoder's
        features, on the device."""
        d, head = self.encoder.feature_dim, self.config.head
        if self.config.head_kind == "logistic":
            config = LogisticHeadConfig(
                prior_var=head.prior_var, intercept=head.intercept, forgetting=head.forgetting
            )
            return LaplaceLogisticRegression(d, config, device=self.device)
        return BayesianLinearRegression(d, head, device=self.device)

    def _init_learners(self) -> None:
        cfg = self.config
        self.heads = [self.new_head()]
        self.arm_mode = "shared" if cfg.arm_heads == "shared" else None  # None: not yet known
        self.registry = ArmRegistry(self.encoder.action_dim, MAX_FIXED_ARMS)
        with seeded_init(self.seed):
            self.readout = nn.Linear(self.encoder.feature_dim, 1).to(self.device)
            self.arm_readout = nn.Linear(self.encoder.feature_dim, self.encoder.action_dim).to(
                self.device
            )
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            params + list(self.readout.parameters()) + list(self.arm_readout.parameters()),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),  # one kernel per step, not one per tensor
        )
        self.rounds = 0
        self.trainings = 0
        self.reward_scaler = RewardScaler(cfg.standardize_rewards)  # also with loss="bce"
        self._burst_loss = (loss_function(cfg.loss), cfg.loss == "mse")  # see train_encoder
        d = self.encoder.feature_dim
        self.feature_shift = torch.zeros(d, device=self.device)
        self.feature_gain = torch.ones(d, device=self.device)
        self._warned_non_finite = False
        self.clear_feature_cache()

    @property
    def context_only(self) -> bool:
        """Whether the features are φ(x) alone, the same for every candidate.

        True with one head per arm over one-hot arms (labels, classes): the head already
        tells the arms apart, so the encoder gets a zero arm input, is trained with one
        readout per arm, and must carry what varies with the context (the Neural-Linear
        network of Riquelme et al. 2018). Arms with content keep ``φ(x, a)``, which can
        generalize across arms.
        """
        return self.arm_mode == "per_arm" and bool(self.registry.one_hot)

    def encode(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Raw features of (context, action) rows: x (B, ...), a (B, d_a) -> (B, d)."""
        return self.encoder(x, torch.zeros_like(a) if self.context_only else a)

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        """Features as the head sees them (``standardize_features``): (..., d) -> (..., d)."""
        return (z - self.feature_shift) * self.feature_gain

    @property
    def posterior(self) -> BayesianLinearRegression | LaplaceLogisticRegression:
        """The shared head (an agent with one head per arm has ``heads`` instead)."""
        if self.arm_mode == "per_arm":
            raise AttributeError("this agent has one head per arm: use .heads")
        return self.heads[0]

    @posterior.setter
    def posterior(self, head: BayesianLinearRegression | LaplaceLogisticRegression) -> None:
        if self.arm_mode == "per_arm":
            raise AttributeError("this agent has one head per arm: set .heads")
        self.heads = [head]

    @property
    def head(self) -> BayesianLinearRegression | LaplaceLogisticRegression | ArmHeads:
        return ArmHeads(self.heads) if self.arm_mode == "per_arm" else self.heads[0]

    def _resolve_arms(self, candidates: torch.Tensor) -> None:
        """Fix the arm mode on the first candidate set (``arm_heads="auto"``).

        Rows learned before (``update`` or ``observe`` before any decision) went to the
        shared head; with one head per arm they are re-learned from the replay buffer.
        """
        if self.arm_mode is not None:
            return
        if self.config.arm_heads == "per_arm" or fixed_arm_set(candidates, self.candidates_change):
            self.arm_mode = "per_arm"
            self.heads = []
            try:
                self._arms(candidates)  # registers the arms and makes their heads
            except SwitchedToShared:
                return
            if len(self.buffer):
                self.rebuild_posterior()
        else:
            self.arm_mode = "shared"

    def _arms(self, candidates: torch.Tensor) -> torch.Tensor:
        """Arm of every candidate row (..., K, d_a), heads grown for new arms.

        Raises:
            ValueError: ``arm_heads="per_arm"`` and the rows are not a fixed arm set.
            SwitchedToShared: ``"auto"`` found changing rows and switched to a shared head.
        """
        arms = arms_or_switch(
            self.registry,
            candidates,
            owner=self.name,
            option="arm_heads",
            required=self.config.arm_heads == "per_arm",
            shared="one head for all candidates, rebuilt from the replay buffer",
            switch=self._switch_to_shared,
        )
        while len(self.heads) < self.registry.n_arms:
            self.heads.append(self.new_head())
        return arms

    def _switch_to_shared(self) -> None:
        """One head for all candidates from now on, rebuilt from the replay buffer."""
        self.arm_mode, self.heads = "shared", [self.new_head()]
        self.rebuild_posterior()

    # -- the original low-level API ---------------------------------------------------
    def select_action(
        self, x: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None = None
    ) -> int:
        """Choose a candidate for context ``x`` with the exploration rule (no warm-up).

        Args:
            x: One context, shape ``encoder.context_shape``.
            candidates: Candidate action features (K, d_a), K >= 1.
            mask: Optional (K,) bool, False for candidates not on offer.

        Returns:
            The chosen row index.
        """
        obs = {"context": x, "candidates": candidates}
        if mask is not None:
            obs["action_mask"] = mask
        batch = self.observations(obs)
        self._check_candidates(batch.candidates)
        self._resolve_arms(batch.candidates)
        return int(retry_if_switched(partial(HeadAgent._choose, self, batch))[0])

    def update(self, x: torch.Tensor, a: torch.Tensor, r: float) -> None:
        """Store the transition and absorb it into the head with a rank-1 update.

        Does not advance the round counter or the training schedule (``observe`` does).

        Args:
            x: One context, shape ``encoder.context_shape``.
            a: Features of the chosen action, shape ``(d_a,)``.
            r: Finite reward.

        Raises:
            ValueError: On a bad shape, a non-finite reward or features, or a context the
                replay buffer rejects (another dtype); neither the buffer nor the head
                changes then.
        """
        x, a = torch.as_tensor(x).to(self.device), torch.as_tensor(a).to(self.device)
        self._check_candidates(a[None, None])
        rewards = self._check_rewards(r, 1, False)
        self._absorb(x[None], a[None], None, rewards)

    def embed(self, x: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Features of one context with each candidate: (K, d), no gradient."""
        x, candidates = torch.as_tensor(x), torch.as_tensor(candidates)
        features = self.compute_features(x.to(self.device)[None], candidates.to(self.device)[None])
        return (features.x if isinstance(features, ArmFeatures) else features)[0]

    def compute_features(self, contexts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Features (B, K, d) of B contexts with their candidates, in one encoder pass
        (standardized as the head sees them)."""
        if self.encoder.training:
            self.encoder.eval()
        with torch.no_grad():
            if self.context_only:
                B, K, d_a = candidates.shape
                z = self.encoder(contexts, candidates.new_zeros(B, d_a))
                Z = self.standardize(z)[:, None, :].expand(B, K, z.shape[-1])
            else:
                Z = self.standardize(
                    self.encoder.encode_candidates(
                        contexts, candidates, action_chunk=self.config.action_chunk
                    )
                )
        return Z if self.arm_mode != "per_arm" else ArmFeatures(Z, self._arms(candidates))

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
        loss = self.config.loss if loss is None else loss
        # A logistic loss needs the raw {0, 1} targets; the squared error standardized ones.
        self._burst_loss = (loss_function(loss), loss == "mse")
        return self.train_network(optimizer_steps, batch_size)

    def training_loss(
        self, x: torch.Tensor, a: torch.Tensor, r: torch.Tensor, steps: torch.Tensor
    ) -> torch.Tensor:
        loss_fn, standardize = self._burst_loss
        if self.context_only:  # one readout per one-hot arm
            z = self.encoder(x, torch.zeros_like(a))
            prediction = self.arm_readout(z).gather(1, a.argmax(dim=1, keepdim=True))
        else:
            prediction = self.readout(self.encoder(x, a))
        prediction = prediction.squeeze(-1)
        if standardize:
            r = self.reward_scaler(r)
        return loss_fn(prediction, r.to(prediction.dtype))

    def train_mode(self, training: bool) -> None:
        self.encoder.train(training)

    def fit_feature_standardization(self, features: Iterable[torch.Tensor]) -> None:
        """Set :attr:`feature_shift` and :attr:`feature_gain` from raw features ``(n, d)``
        chunks (``standardize_features``; needs 2 rows in all, else nothing changes).

        See :func:`~bandexa_gym.features.scaling.feature_standardization`: a feature that
        barely varies gets gain 0; without an intercept the features are scaled but not
        centered (the intercept is what would carry the mean).
        """
        if not self.config.standardize_features:
            return
        d, center = self.encoder.feature_dim, self.config.head.intercept
        fitted = feature_standardization(features, d, center=center, device=self.device)
        if fitted is not None:
            dtype = self.feature_shift.dtype
            self.feature_shift, self.feature_gain = (t.to(dtype) for t in fitted)

    def rebuild_posterior(self, chunk_size: int | None = None) -> None:
        """Re-encode the whole buffer with the current encoder (one pass, in chunks of
        ``chunk_size`` rows), re-fit the feature standardization on those features and
        rebuild the head from them.

        Holds the buffer's raw features ``(N, d)`` in memory, not its contexts.
        """
        size = self.config.rebuild_chunk if chunk_size is None else chunk_size
        self.encoder.eval()
        gamma, window = self.config.head.forgetting, self.config.window
        weighted = gamma != 1.0 or window is not None
        last = self.buffer.last_step if weighted else None
        chunks: list[tuple[torch.Tensor, ...]] = []  # (z, r[, w][, arm]) per chunk
        with torch.no_grad():
            for chunk in self.buffer.iter_chunks(size, with_steps=weighted):
                x, a, r = (t.to(self.device) for t in chunk[:3])
                row = [self.encode(x, a), self.reward_scaler(r.to(torch.float64))]
                if weighted:
                    age = (last - chunk[3]).to(self.device, torch.float64)
                    w = torch.pow(gamma, age)  # the data discounted, the prior kept
                    row.append(w * (age < window) if window is not None else w)
                if self.arm_mode == "per_arm":
                    row.append(self._arms(a[:, None])[:, 0])
                chunks.append(tuple(row))
        self.fit_feature_standardization(chunk[0] for chunk in chunks)
        chunks = [(self.standardize(chunk[0]), *chunk[1:]) for chunk in chunks]
        if self.arm_mode != "per_arm":
            self.heads[0].rebuild(chunks)
            self.clear_feature_cache()
            return
        # One head per arm: route every row to its arm's head, then rebuild each head.
        parts: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        for *data, arms in chunks:
            for arm in torch.unique(arms).tolist():
                rows = arms == arm
                parts.setdefault(arm, []).append(tuple(t[rows] for t in data))
        fresh = [self.new_head() for _ in self.heads]
        for arm, head in enumerate(fresh):
            if arm in parts:
                head.rebuild(parts[arm])  # each head's own refit (a logistic one: Newton)
        self.heads = fresh
        self.clear_feature_cache()

    def clear_decision_cache(self) -> None:
        """Forget cached features; call after changing the encoder's weights outside
        ``train_encoder`` (e.g. loading a checkpoint). Same as :meth:`clear_feature_cache`."""
        self.clear_feature_cache()

    # -- agent protocol ---------------------------------------------------------------
    def _choose(self, batch: Observations) -> torch.Tensor:
        self._check_inputs(batch.contexts, batch.candidates)
        self._resolve_arms(batch.candidates)
        return retry_if_switched(partial(super()._choose, batch))

    def _distribution(self, batch: Observations) -> torch.Tensor:
        self._check_inputs(batch.contexts, batch.candidates)
        self._resolve_arms(batch.candidates)
        return retry_if_switched(partial(super()._distribution, batch))

    def _check_inputs(self, contexts: torch.Tensor, candidates: torch.Tensor) -> None:
        self._check_candidates(candidates)

    def _work_due(self, rounds: int) -> bool:
        """Whether training or re-standardizing follows the round that reaches ``rounds``."""
        return self.config.training_due(rounds) or is_power_of_two(rounds)

    def _scheduled_work(self, rounds: int) -> None:
        """Train and rebuild the head; at rounds 1, 2, 4, ... re-standardize (rebuild)."""
        if self.config.training_due(rounds):
            self.reward_scaler.refit()
            self.train_encoder()
            self.rebuild_posterior()
        else:
            rescaled = self.reward_scaler.refit()
            if rescaled or self.config.standardize_features:
                self.rebuild_posterior()  # the head in the new feature and reward units

    def _absorb(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor | None,
        rewards: torch.Tensor,
    ) -> None:
        """Store the rows and update the head; all-or-nothing (``indices`` None: rows that
        no decision scored, as :meth:`update`'s, get their features computed)."""
        z = None if indices is None else self.cached_chosen_features(contexts, chosen, indices)
        if z is None:
            # rows chosen at random may end the fixed arm set: then once more, shared
            features = retry_if_switched(partial(self.compute_features, contexts, chosen[:, None]))
            z = (features.x if isinstance(features, ArmFeatures) else features)[:, 0]
        if not bool(torch.isfinite(z).all()):
            raise ValueError("features z = φ(x, a) are not finite (NaN or inf in the context?)")
        # The buffer validates its schema before storing anything, and the head only fails
        # on non-finite input (checked above), so a rejected transition changes neither.
        targets = self.reward_scaler(rewards)
        arms = None
        if self.arm_mode == "per_arm":
            try:
                arms = self._arms(chosen[:, None])[:, 0]
            except SwitchedToShared:
                pass  # one shared head from now on
        self._store(contexts, chosen, rewards)
        gamma = self.config.head.forgetting
        if arms is None:
            absorb(self.heads[0], z, targets)
        elif gamma != 1.0:  # every arm's head forgets every round: rows one at a time
            for row, arm in enumerate(arms.tolist()):
                for other, head in enumerate(self.heads):
                    if other != arm:
                        head.discount(gamma)
                self.heads[arm].update(z[row], targets[row])
        else:
            for arm in torch.unique(arms).tolist():
                rows = arms == arm
                absorb(self.heads[arm], z[rows], targets[rows])

    def reset(self, seed: int | None = None) -> None:
        """Start over: reseed, restore the initial encoder, a prior head and counters.

        An in-memory replay buffer is replaced by an empty one; a disk buffer is left as is
        (its files belong to the caller), so pass a fresh one to start from nothing.
        """
        super().reset(seed)
        self.encoder.load_state_dict(self._initial_encoder)
        self._init_learners()

    def evolve_from(self, trained: NeuralLinearTS, **options: Any) -> str:
        """Fill this cold-start agent with what ``trained`` learned (see
        :func:`bandexa_gym.transfer.evolve`); returns a one-line summary."""
        return evolve_neural(trained, self, **options)

    # -- helpers ----------------------------------------------------------------------
    def _check_candidates(self, candidates: torch.Tensor) -> None:
        """``candidates`` (B, K, d_a) must have K >= 1 and the encoder's d_a."""
        expected = self.encoder.action_dim
        if candidates.ndim != 3 or candidates.shape[1] == 0 or candidates.shape[2] != expected:
            shape = tuple(candidates.shape[1:]) if candidates.ndim == 3 else tuple(candidates.shape)
            raise ValueError(f"candidates must have shape (K, {expected}) with K >= 1, got {shape}")
