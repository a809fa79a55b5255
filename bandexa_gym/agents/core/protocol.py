"""The agent protocol: the calls every agent answers, on the parts of ``agents/core``.

Every agent answers the same calls (``act``, ``decide``, ``action_distribution``,
``observe``, ``feedback``, ``reset``, ``save``) on observations exactly as a ``Bandexa/*``
env produces them, single or batched (a vector env). Subclasses implement a few hooks on
tensors: :meth:`Agent._choose` (B decisions with a frozen agent) and :meth:`Agent._learn`
(B rewards, absorbed as if observed one at a time, all-or-nothing), and declare what
persistence needs (:meth:`Agent.spec`, :meth:`Agent.spec_arguments`,
:meth:`Agent.expected_shapes`, :meth:`Agent.parts`; :mod:`bandexa_gym.persist` does the rest).

The class is assembled from mixins, one job each: :mod:`~.observations` (validating and
converting observations, rewards and actions), :mod:`~.randomness` (generators),
:mod:`~.pending` (decisions awaiting feedback), :mod:`~.outliers` (the outlier screen);
:mod:`~.registry` holds ``make_agent`` and the registered names.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bandexa_gym.agents.core.hints import _hint_threads
from bandexa_gym.agents.core.observations import (
    Observation,
    ObservationParsing,
    Observations,
    _check_actions,
    _unbatch,
)
from bandexa_gym.agents.core.outliers import (
    DEFAULT_OUTLIER_FACTOR,
    OutlierScreen,
    check_outlier_settings,
)
from bandexa_gym.agents.core.pending import PendingDecisions, _Pending
from bandexa_gym.agents.core.randomness import Randomness, _check_seed
from bandexa_gym.agents.limits import check_count
from bandexa_gym.persist import format as checkpoint
from bandexa_gym.persist.state import Part, compare_shapes, load_parts, walk_state

__all__ = ["AGENT_CLASSES", "Agent", "Capabilities", "Decision", "NotApplicableError"]


@dataclass(frozen=True)
class Decision:
    """What an agent decided for one observation (or, batched, arrays of B).

    Attributes:
        action: Index of the chosen candidate (``int``, or (B,) ``np.ndarray``).
        propensity: Probability with which the agent chose it (``float`` or (B,)).
        id: Identifier to pass to :meth:`Agent.feedback` with the reward (``int`` or (B,)).
    """

    action: int | np.ndarray
    propensity: float | np.ndarray
    id: int | np.ndarray


@dataclass(frozen=True)
class Capabilities:
    """What an agent supports; a missing capability comes with the reason checkers print.

    Attributes:
        save: Pickle-free ``save``/``load_agent`` round trips.
        propensities: ``decide`` and ``action_distribution`` report probabilities.
        batched: Batched ``act``/``observe`` equal the looped single-observation calls.
        cuda: Runs with ``device="cuda"``.
        binary_rewards: Learns only from rewards in {0, 1} (others are a ``ValueError``).
        changing_candidates: Handles candidate sets whose rows change from round to round.
            False for per-arm models that identify an arm by its candidate index: they need
            the same candidate rows every round and raise :class:`NotApplicableError` on a
            problem whose candidates change (see
            :func:`bandexa_gym.agents.applicability.not_applicable_reason`).
        reasons: Capability name -> why it is missing.
    """

    save: bool = True
    propensities: bool = True
    batched: bool = True
    cuda: bool = True
    binary_rewards: bool = False
    changing_candidates: bool = True
    reasons: Mapping[str, str] = field(default_factory=dict)

    def reason(self, capability: str) -> str:
        """Why ``capability`` is missing (``"not supported"`` when no reason was given)."""
        return self.reasons.get(capability, "not supported")


class NotApplicableError(ValueError):
    """An agent cannot play a problem at all (not a bad setting): for example a per-arm
    model on a problem whose candidates change every round, or a library too slow for the
    problem's size. ``bandexa-bench`` reports such a pair as "n/a" with the message as the
    reason instead of failing the grid."""


AGENT_CLASSES: dict[str, type[Agent]] = {}
"""Every ``Agent`` subclass by class name (checkpoints find the class to rebuild here)."""


class Agent(ObservationParsing, Randomness, PendingDecisions, OutlierScreen, ABC):
    """A contextual-bandit agent driven by Gymnasium observations.

    ``act`` and ``observe`` take observations exactly as a ``Bandexa/*`` env produces them:
    a single observation (``candidates`` of shape (K, d_a)) gives an ``int``; a batched one
    from a vector env (``candidates`` of shape (B, K, d_a)) gives an ``np.ndarray`` of B
    actions. Rows whose ``action_mask`` is 0 are never chosen.

    Batches: ``act`` on B rows decides all B with the agent as it is (frozen), consuming
    its generators as B single calls would; ``observe`` on B rows learns as if the rows
    were observed one at a time, in order (so it equals the loop ``for row: observe(row)``,
    training bursts included) and is all-or-nothing: a bad row rejects the whole batch
    before anything is learned.

    Randomness comes from three generators seeded from ``seed``: ``generator`` (exploration
    draws), ``tie_generator`` (keys that break exact ties uniformly at random) and
    ``propensity_generator`` (Monte Carlo action probabilities), so that ``act`` and
    ``decide`` make the same choices.

    Outliers: a single finite value far beyond anything an agent has learned from (a
    context of 1e20 among values of order 1, a reward of 1e30) would dominate its posterior
    for the rest of the run. Every agent keeps the largest magnitude it has learned from so
    far, separately for contexts, chosen candidate rows and rewards, and screens each row
    it is about to learn from (:meth:`observe`, :meth:`feedback`): a row with a value more
    than ``outlier_factor`` times that magnitude is an outlier. ``outliers="skip"``
    (default) leaves the row out of learning and says so with an :class:`OutlierWarning`;
    ``"raise"`` refuses the call with a ``ValueError`` (nothing learned); ``"accept"``
    learns it. Values within the factor never trigger, so runs on ordinary data are
    unchanged; the first row of each kind sets the scale (an outlier there cannot be told).
    Skipped rows do not count as learned rounds; their decision ids are used up.

    Args:
        seed: Seed of the agent's generators (None: nondeterministic).
        device: Torch device of the agent's tensors.
        max_pending: Decisions awaiting :meth:`feedback` that the agent keeps at most.
        outliers: ``"skip"``, ``"raise"`` or ``"accept"`` (see above).
        outlier_factor: How many times the largest magnitude learned so far a value may
            reach before it is an outlier (> 1; default 1e6).
    """

    name: str = "agent"
    capabilities: ClassVar[Capabilities] = Capabilities()
    candidates_change: bool | None = None
    """What the env declared about its candidate rows (``make_agent`` copies an env's
    ``candidates_change``; None: nothing declared). When True, agents that would take a
    small candidate set for a fixed set of arms (one head per arm) start with one head for
    all candidates instead."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AGENT_CLASSES[cls.__name__] = cls

    def __init__(
        self,
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        max_pending: int = 10_000,
        outliers: str = "skip",
        outlier_factor: float = DEFAULT_OUTLIER_FACTOR,
    ) -> None:
        self.device = torch.device(device)
        _hint_threads(self.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.seed = _check_seed(seed)
        self.max_pending = check_count("max_pending", max_pending)
        self.outliers, self.outlier_factor = check_outlier_settings(outliers, outlier_factor)
        self.input_scale = (0.0, 0.0, 0.0)
        self.generator = torch.Generator(device=self.device)
        self.tie_generator = torch.Generator(device=self.device)
        self.propensity_generator = torch.Generator(device=self.device)
        self.rounds = 0
        self.input_shapes: tuple[tuple[int, ...], int] | None = None
        self._converted: tuple[tuple, list, Observations, tuple | None] | None = None
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._next_id = 0
        self._reseed(self.seed)

    # -- public protocol --------------------------------------------------------------
    def act(self, obs: Observation) -> int | np.ndarray:
        """Choose one candidate index per observation (see the class docstring)."""
        batch = self.observations(obs)
        return _unbatch(self._choose(batch), batch.batched)

    def decide(self, obs: Observation, *, propensity: bool = True) -> Decision:
        """Choose like :meth:`act` (the same action) and say with what probability.

        The decision is remembered until its reward comes back through :meth:`feedback`.

        Args:
            obs: A single or batched observation.
            propensity: Estimate the probability of the chosen action (a Monte Carlo
                estimate costs extra posterior draws for Thompson sampling); when False
                ``Decision.propensity`` is NaN.

        Raises:
            ValueError: More than ``max_pending`` decisions await feedback.
        """
        batch = self.observations(obs)
        if len(self._pending) + batch.size > self.max_pending:
            raise ValueError(
                f"{len(self._pending)} decisions already await feedback and max_pending is "
                f"{self.max_pending}: feed rewards back with agent.feedback(id, reward) (or "
                "raise max_pending)"
            )
        actions = self._choose(batch)
        if propensity:
            propensities = self._propensities(batch, actions)
        else:
            propensities = torch.full((batch.size,), math.nan, dtype=torch.float64)
        rows = torch.arange(batch.size, device=actions.device)
        chosen = batch.candidates[rows, actions]
        ids = []
        for b, index in enumerate(actions.tolist()):
            self._pending[self._next_id] = _Pending(batch.contexts[b], chosen[b], index)
            ids.append(self._next_id)
            self._next_id += 1
        return Decision(
            _unbatch(actions, batch.batched),
            _unbatch(propensities, batch.batched),
            np.asarray(ids, dtype=np.int64) if batch.batched else ids[0],
        )

    def action_distribution(self, obs: Observation) -> np.ndarray:
        """Probability of playing each candidate: (K,) (or (B, K)), 0 on masked candidates.

        Exact for deterministic rules (ties split evenly) and ε-greedy; a Monte Carlo
        estimate for Thompson sampling (see the agent's exploration rule).

        Raises:
            NotImplementedError: The agent cannot report probabilities (see
                ``capabilities``).
        """
        batch = self.observations(obs)
        probs = self._distribution(batch).to("cpu", torch.float64).numpy()
        return probs if batch.batched else probs[0]

    def observe(
        self, obs: Observation, action: int | np.ndarray, reward: float | np.ndarray
    ) -> None:
        """Learn from the reward of ``action`` taken on ``obs`` (single or batched).

        Raises:
            ValueError: A bad action index (out of range, or a candidate whose
                ``action_mask`` is 0) or reward (nothing is learned then).
            TypeError: An action or reward of the wrong type.
        """
        batch = self.observations(obs)
        n_candidates = batch.candidates.shape[1]
        offered = self._converted[1][2]  # the mask's (B, K) copy, None without a mask
        checked = _check_actions(action, batch.size, n_candidates, batch.batched, offered)
        rewards = self._check_rewards(reward, batch.size, batch.batched)
        indices = torch.from_numpy(checked)
        if self.device.type != "cpu":
            indices = indices.to(self.device)
        if batch.size == 1:
            chosen = batch.candidates[:, int(checked[0])]
        else:
            chosen = batch.candidates[torch.arange(batch.size, device=self.device), indices]
        magnitudes = self._converted[3]  # from the parse: (context, each candidate row)
        magnitudes = magnitudes and (magnitudes[0], float(magnitudes[1][int(checked[0])]))
        keep, scale = self._screen(batch.contexts, chosen, rewards, magnitudes)
        if keep is None:
            self._learn(batch.contexts, chosen, indices, rewards)
            self.input_scale = scale
        elif keep.any():  # learn the other rows as a batch of their own (screened the same)
            rows = torch.from_numpy(np.flatnonzero(keep)).to(self.device)
            kept = {
                "context": batch.contexts[rows].cpu().numpy(),
                "candidates": batch.candidates[rows].cpu().numpy(),
                "action_mask": batch.masks[rows].cpu().numpy().astype(np.int8),
            }
            self.observe(kept, indices[rows].cpu().numpy(), rewards[rows].cpu().numpy())

    def feedback(self, decision_id: int | np.ndarray, reward: float | np.ndarray) -> None:
        """Learn from the reward of an earlier :meth:`decide`, in any order.

        Args:
            decision_id: ``Decision.id`` (or an array of ids, learned in that order).
            reward: The reward (or one per id).

        Raises:
            ValueError: An unknown or already used id, or a bad reward; nothing is
                learned and no pending decision is used up then.
        """
        ids = np.asarray(decision_id).reshape(-1)
        if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"decision_id must be an int or an array of ints, got {decision_id!r}")
        batched = np.ndim(decision_id) > 0
        rewards = self._check_rewards(reward, ids.size, batched)
        keys = [int(i) for i in ids]
        unknown = [k for k in keys if k not in self._pending]
        if unknown or len(set(keys)) != len(keys):
            what = (
                f"unknown or already used decision ids {unknown[:5]}"
                if unknown
                else ("a decision id repeated in one call")
            )
            raise ValueError(f"feedback: {what}; each decide() id takes exactly one reward")
        pending = [self._pending[k] for k in keys]
        contexts = torch.stack([p.context for p in pending])
        chosen = torch.stack([p.chosen for p in pending])
        keep, scale = self._screen(contexts, chosen, rewards)
        if keep is None:
            index = torch.as_tensor([p.index for p in pending], device=self.device)
            self._learn(contexts, chosen, index, rewards)
            self.input_scale = scale
        elif keep.any():  # the other ids as a call of their own (screened the same)
            rows = np.flatnonzero(keep)
            self.feedback(np.asarray(keys, dtype=np.int64)[rows], rewards.cpu().numpy()[rows])
        for k in keys:
            self._pending.pop(k, None)  # skipped outliers use their ids up too

    def reset(self, seed: int | None = None) -> None:
        """Forget everything learned and reseed (``seed=None`` keeps the construction seed).

        Pending decisions are dropped (their ids are refused by :meth:`feedback` from then
        on); decision ids keep counting up, so an id is never handed out twice by an agent,
        across resets, saves and loads alike (see :meth:`save`).
        """
        self.seed = self.seed if seed is None else _check_seed(seed)
        self._reseed(self.seed)
        self.rounds = 0
        self._pending.clear()
        self.input_scale = (0.0, 0.0, 0.0)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a pickle-free checkpoint of this agent to ``path`` (atomically).

        Load it back with :func:`bandexa_gym.agents.load_agent` (a new agent) or
        :func:`bandexa_gym.agents.load_state` (into a matching agent). What it holds is
        the agent's :meth:`spec`, its :meth:`state_tensors` and scalars, its random
        generators, so a reloaded agent acts exactly as this one would, and its decisions
        still awaiting :meth:`feedback` (at most ``max_pending``: each one's context, chosen
        candidate row and index) with the decision-id counter.

        Decision ids are saved rather than made unique per agent instance: a reward that
        arrives after a restart (delayed feedback) must still reach the decision it belongs
        to, so the reloaded agent answers ``feedback`` for the ids handed out before the
        save and continues the count after them; an id is never handed out twice, and one
        that was not pending at the save is refused.

        Raises:
            bandexa_gym.persist.format.CheckpointError: The agent cannot be saved.
        """
        if not self.capabilities.save:
            raise checkpoint.CheckpointError(
                f"{self.name} cannot be saved: {self.capabilities.reason('save')}"
            )
        try:
            spec = self.spec()
        except ValueError as err:
            raise checkpoint.CheckpointError(f"{self.name} cannot be saved: {err}") from err
        scalars, tensors = self.state_tensors()
        for gen_name, gen in self._generators().items():
            tensors[f"rng.{gen_name}"] = gen.get_state()
        tensors.update(self._pending_tensors())
        scalars = {
            **scalars,
            "seed": self.seed,
            "rounds": self.rounds,
            "generator_device": self.device.type,
            "next_decision_id": self._next_id,
            "input_scale": list(self.input_scale),
        }
        meta = {"agent": self.name, "class": type(self).__name__, "spec": spec, "state": scalars}
        return checkpoint.write_checkpoint(path, meta, tensors)

    # -- hooks ------------------------------------------------------------------------
    @abstractmethod
    def _choose(self, batch: Observations) -> torch.Tensor:
        """Decide every row with the agent as it is: (B,) int64 on the device."""

    @abstractmethod
    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        """Learn from B validated rows, as if observed one at a time; all-or-nothing.

        Args:
            contexts: (B, *context_shape).
            chosen: Features of the chosen candidates (B, d_a), float32.
            indices: Their indices in the candidate sets (B,) int64.
            rewards: (B,) float64, finite.

        Implementations validate everything before changing any state and advance
        ``self.rounds`` by B.
        """

    def _distribution(self, batch: Observations) -> torch.Tensor:
        """Probabilities (B, K) float64 of :meth:`_choose`'s choices."""
        reason = self.capabilities.propensities and "it does not override _distribution"
        reason = reason or self.capabilities.reason("propensities")
        raise NotImplementedError(f"{self.name} does not report action probabilities: {reason}")

    def _propensities(self, batch: Observations, actions: torch.Tensor) -> torch.Tensor:
        """Probability (B,) with which ``actions`` were chosen (default: from
        :meth:`_distribution`; NaN where the agent cannot say, or does not override it)."""
        if not self.capabilities.propensities or type(self)._distribution is Agent._distribution:
            return torch.full((batch.size,), math.nan, dtype=torch.float64)
        probs = self._distribution(batch)
        return probs.gather(1, actions.unsqueeze(1).to(probs.device)).squeeze(1).cpu()

    # -- persistence: what describes the agent (spec) and what it learned (parts) -----
    def spec(self) -> dict[str, Any]:
        """JSON-serializable description from which :meth:`from_spec` rebuilds this agent
        (untrained): shapes, hyper-parameters, exploration rule, representation."""
        raise ValueError(f"{type(self).__name__} does not describe itself for checkpoints")

    def pinned_spec(self) -> dict[str, Any]:
        """The part of :meth:`spec` a checkpoint must match to be loaded into this agent
        (default: all of it; agents leave out their schedule)."""
        return self.spec()

    def parts(self) -> list[Part]:
        """The parts of the learned state, each under its checkpoint names (none here)."""
        return []

    def state_tensors(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Learned state as (JSON scalars, named tensors): the :meth:`parts`' states;
        generators, pending decisions and counters are added by :meth:`save`."""
        return walk_state(self.parts())

    def load_state(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace the learned state with a checkpoint's (all-or-nothing): every part
        validates its values before any is set (an agent without parts refuses tensors).

        Raises:
            ValueError: The state does not fit this agent; nothing is changed then.
        """
        parts = self.parts()
        if not parts:
            self.check_checkpoint(self.spec(), {k: tuple(v.shape) for k, v in tensors.items()})
        load_parts(parts, scalars, tensors)
        self.after_load()

    def after_load(self) -> None:
        """Called once a checkpoint's state is set (drop caches, modules to eval mode)."""

    @classmethod
    def expected_shapes(
        cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]
    ) -> dict[str, tuple]:
        """The tensor shapes a checkpoint with this ``spec`` holds, computed without
        allocating (``shapes``, the file's, only tell how many heads it has grown)."""
        return {}

    @classmethod
    def check_checkpoint(cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]) -> None:
        """Validate a checkpoint's spec against its tensor shapes before anything is built.

        Raises:
            ValueError: A tensor missing, unexpected or of another shape (named).
        """
        compare_shapes(cls.expected_shapes(spec, shapes), shapes)

    spec_overrides: ClassVar[tuple[str, ...]] = ()  # arguments a loader may set over the spec

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        """The constructor arguments that rebuild an untrained agent from ``spec``."""
        raise ValueError(f"{cls.__name__} cannot be rebuilt from a checkpoint")

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Agent:
        """An untrained agent described by ``spec``; ``kwargs`` add arguments the spec does
        not fix (a buffer, ``max_pending``), or replace those in ``spec_overrides``.
        Raises:
            TypeError: ``kwargs`` name an argument the checkpoint fixes."""
        arguments = cls.spec_arguments(spec, seed)
        clash = sorted(set(arguments) & set(kwargs) - set(cls.spec_overrides))
        if clash:
            raise TypeError(f"the checkpoint fixes {clash}: they cannot be passed to the loader")
        agent = cls(**{**arguments, **kwargs}, seed=seed, device=device)
        agent.after_build(spec)
        return agent

    def after_build(self, spec: Mapping[str, Any]) -> None:
        """Called by :meth:`from_spec`: what the spec holds beyond constructor arguments."""
