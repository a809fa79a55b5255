"""The agent protocol, observation handling shared by every agent, and the agent registry.

Every agent answers the same calls (``act``, ``decide``, ``action_distribution``,
``observe``, ``feedback``, ``reset``, ``save``) on observations exactly as a ``Bandexa/*``
env produces them, single or batched (a vector env). Subclasses implement a few hooks on
tensors: :meth:`Agent._choose` (B decisions with a frozen agent) and :meth:`Agent._learn`
(B rewards, absorbed as if observed one at a time, all-or-nothing), and state their
persistence (:meth:`Agent.spec`, :meth:`Agent.state_tensors`, :meth:`Agent.load_state`,
:meth:`Agent.from_spec`).
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from bandexa_gym import checkpoint
from bandexa_gym.agents.limits import check_count
from bandexa_gym.exploration import select

__all__ = [
    "AGENTS",
    "AGENT_CLASSES",
    "Agent",
    "Capabilities",
    "Decision",
    "NotApplicableError",
    "OUTLIER_POLICIES",
    "OutlierWarning",
    "Observations",
    "PENDING_TENSORS",
    "PerformanceHint",
    "make_agent",
    "observation_space",
    "register_agent",
]

Observation = Mapping[str, Any]
MAX_ABS_REWARD = 1e100
"""Rewards beyond this magnitude are rejected: their squares overflow the heads' statistics."""
MAX_ABS_INPUT = 1e100
"""Context and candidate values beyond this magnitude are rejected for the same reason."""


class PerformanceHint(UserWarning):
    """A setting that makes an agent much slower than it needs to be (said once)."""


_THREADS_HINTED = False
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _hint_threads(device: torch.device) -> None:
    """Once per process: say that several torch CPU threads slow small models down.

    The hint names its category once and points at the caller's line (the first frame
    outside this package, e.g. the user's ``make_agent`` call), not at library internals.
    """
    global _THREADS_HINTED
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or _THREADS_HINTED:
        return
    _THREADS_HINTED = True
    level, frame = 1, inspect.currentframe()
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(
        f"torch uses {threads} CPU threads; bandit agents run small models whose operations "
        "are too short to split, and on a busy machine several threads made neural_linear_ts "
        "10-40x slower. Call torch.set_num_threads(1) first (bandexa-bench, the examples and "
        "notebooks do). Said once per process; warnings.filterwarnings('ignore', "
        "message='torch uses') silences it",
        PerformanceHint,
        stacklevel=level,
    )


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


class OutlierWarning(UserWarning):
    """Rows an agent did not learn because a value was far beyond what it had learned from
    (see :class:`Agent`, ``outliers=``)."""


OUTLIER_POLICIES = ("skip", "raise", "accept")
"""What an agent does with an outlier row: leave it out with a warning, refuse it, learn it."""
DEFAULT_OUTLIER_FACTOR = 1e6
"""A value beyond this many times the largest magnitude learned so far is an outlier."""
_INPUT_KINDS = ("context", "candidate", "reward")


def _largest(values: torch.Tensor) -> float:
    """Largest magnitude in ``values`` (0 when empty)."""
    if values.numel() == 0:
        return 0.0
    if values.dtype == torch.uint8:  # images: no sign, no copy
        return float(values.max())
    if not values.is_floating_point():
        values = values.to(torch.float64)
    return float(values.abs().max())


def _row_magnitudes(values: torch.Tensor, size: int) -> torch.Tensor:
    """Largest magnitude of each of ``size`` rows, float64 (0 for empty rows)."""
    flat = values.reshape(size, -1)
    if flat.shape[1] == 0:
        return torch.zeros(size, dtype=torch.float64, device=values.device)
    return flat.to(torch.float64).abs().amax(1)


class Observations(NamedTuple):
    """An observation as tensors on the agent's device, always with a batch dim.

    Attributes:
        contexts: (B, *context_shape), the env's dtype.
        candidates: (B, K, d_a) float32.
        masks: (B, K) bool, True for candidates on offer.
        batched: Whether the observation came batched (a vector env).
    """

    contexts: torch.Tensor
    candidates: torch.Tensor
    masks: torch.Tensor
    batched: bool

    @property
    def size(self) -> int:
        """Number of rows B."""
        return int(self.candidates.shape[0])

    def rows(self, index: torch.Tensor | slice) -> Observations:
        """The observations of the selected rows."""
        return Observations(
            self.contexts[index], self.candidates[index], self.masks[index], self.batched
        )


class _Pending(NamedTuple):
    context: torch.Tensor  # (*context_shape)
    chosen: torch.Tensor  # (d_a,)
    index: int


AGENT_CLASSES: dict[str, type[Agent]] = {}
"""Every ``Agent`` subclass by class name (checkpoints find the class to rebuild here)."""


class Agent(ABC):
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
        if outliers not in OUTLIER_POLICIES:
            raise ValueError(f"outliers must be one of {OUTLIER_POLICIES}, got {outliers!r}")
        if (
            isinstance(outlier_factor, bool)
            or not isinstance(outlier_factor, (int, float, np.floating, np.integer))
            or not 1.0 < outlier_factor < math.inf
        ):
            raise ValueError(f"outlier_factor must be a finite number > 1, got {outlier_factor!r}")
        self.outliers, self.outlier_factor = outliers, float(outlier_factor)
        self.input_scale = (0.0, 0.0, 0.0)
        self.generator = torch.Generator(device=self.device)
        self.tie_generator = torch.Generator(device=self.device)
        self.propensity_generator = torch.Generator(device=self.device)
        self.rounds = 0
        self.input_shapes: tuple[tuple[int, ...], int] | None = None
        self._converted: tuple[tuple, list, Observations] | None = None
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
        indices = torch.from_numpy(
            _check_actions(action, batch.size, n_candidates, batch.batched, offered)
        )
        rewards = self._check_rewards(reward, batch.size, batch.batched)
        indices = indices.to(self.device)
        if batch.size == 1:
            chosen = batch.candidates[:, int(indices[0])]
        else:
            chosen = batch.candidates[torch.arange(batch.size, device=self.device), indices]
        keep, scale = self._screen(batch.contexts, chosen, rewards)
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

    @property
    def pending(self) -> int:
        """Decisions awaiting :meth:`feedback`."""
        return len(self._pending)

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
            bandexa_gym.checkpoint.CheckpointError: The agent cannot be saved.
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
        raise NotImplementedError(
            f"{self.name} does not report action probabilities: "
            f"{self.capabilities.reason('propensities')}"
        )

    def _propensities(self, batch: Observations, actions: torch.Tensor) -> torch.Tensor:
        """Probability (B,) with which ``actions`` were chosen (default: from
        :meth:`_distribution`; NaN where the agent cannot say)."""
        if not self.capabilities.propensities:
            return torch.full((batch.size,), math.nan, dtype=torch.float64)
        probs = self._distribution(batch)
        return probs.gather(1, actions.unsqueeze(1).to(probs.device)).squeeze(1).cpu()

    # -- persistence hooks ------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-serializable description from which :meth:`from_spec` rebuilds this agent
        (untrained): shapes, hyper-parameters, exploration rule, representation."""
        raise ValueError(f"{type(self).__name__} does not describe itself for checkpoints")

    def pinned_spec(self) -> dict[str, Any]:
        """The part of :meth:`spec` a checkpoint must match to be loaded into this agent
        (default: all of it; agents leave out their schedule)."""
        return self.spec()

    def state_tensors(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Learned state as (JSON scalars, named tensors); generators are added by
        :meth:`save`."""
        return {}, {}

    def load_state(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace the learned state with a checkpoint's (all-or-nothing).

        The default is for agents without learned tensors.

        Raises:
            ValueError: The state does not fit this agent; nothing is changed then.
        """
        self.check_checkpoint(self.spec(), {k: tuple(v.shape) for k, v in tensors.items()})

    @classmethod
    def check_checkpoint(cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]) -> None:
        """Validate a checkpoint's spec against its tensor shapes before anything is built.

        The default is for agents without learned tensors: only generator states.

        Raises:
            ValueError: Something does not fit.
        """
        unexpected = sorted(k for k in shapes if not k.startswith("rng."))
        if unexpected:
            raise ValueError(f"unexpected tensors {unexpected[:5]} for a {cls.__name__}")

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Agent:
        """An untrained agent described by ``spec``."""
        raise ValueError(f"{cls.__name__} cannot be rebuilt from a checkpoint")

    # -- helpers ----------------------------------------------------------------------
    def _screen(
        self, contexts: torch.Tensor, chosen: torch.Tensor, rewards: torch.Tensor
    ) -> tuple[np.ndarray | None, tuple[float, float, float]]:
        """Find the outliers among B rows about to be learned (see the class docstring).

        Returns:
            (None, the scale after learning every row) when no row is an outlier, else
            (which rows to learn (B,) bool, the scale after learning those).

        Raises:
            ValueError: An outlier under ``outliers="raise"``.
        """
        if self.outliers == "accept":
            return None, self.input_scale
        size = rewards.shape[0]
        if size == 1:  # the common case, in Python floats
            row = (_largest(contexts), _largest(chosen), abs(rewards.item()))
            factor = self.outlier_factor
            if not any(
                0 < s and factor * s < m for s, m in zip(self.input_scale, row, strict=True)
            ):
                return None, tuple(max(s, m) for s, m in zip(self.input_scale, row, strict=True))
        mags = torch.stack(
            [_row_magnitudes(contexts, size), _row_magnitudes(chosen, size), rewards.abs()], 1
        )
        mags = mags.cpu().numpy()
        scale, factor = np.asarray(self.input_scale), self.outlier_factor
        before = np.maximum.accumulate(np.vstack([scale, mags]), axis=0)  # if all were kept
        if not ((before[:-1] > 0) & (mags > factor * before[:-1])).any():
            return None, tuple(float(v) for v in before[-1])
        keep, found = np.ones(size, dtype=bool), []
        for i in range(size):  # rows one at a time: an outlier does not raise the scale
            bad = np.flatnonzero((scale > 0) & (mags[i] > factor * scale))
            if bad.size:
                keep[i] = False
                kind = int(bad[0])
                where = f"row {i}: " if size > 1 else ""
                found.append(f"{where}{_INPUT_KINDS[kind]} {mags[i, kind]:.3g}")
            else:
                scale = np.maximum(scale, mags[i])
        seen = ", ".join(
            f"{kind} {value:.3g}"
            for kind, value in zip(_INPUT_KINDS, self.input_scale, strict=True)
            if value > 0
        )
        rows = f"{len(found)} of {size} rows hold" if size > 1 else "a row holds"
        message = (
            f"{self.name}: {rows} a value more than {factor:.0e} times the largest the agent "
            f"has learned from ({seen}): {'; '.join(found[:3])}"
        )
        if self.outliers == "raise":
            raise ValueError(
                message + "; nothing was learned (rescale the data, or make the agent with "
                "outliers='skip' or 'accept', or a larger outlier_factor)"
            )
        warnings.warn(
            message + "; those rows were not learned (outliers='accept' learns them, "
            "outliers='raise' refuses them)",
            OutlierWarning,
            stacklevel=3,
        )
        return keep, tuple(float(v) for v in scale)

    def input_scale_state(self, scalars: Mapping[str, Any]) -> tuple[float, float, float]:
        """A checkpoint's ``input_scale`` (the largest magnitudes learned), validated.

        Raises:
            ValueError: Not three finite numbers >= 0.
        """
        scale = scalars.get("input_scale", [0.0, 0.0, 0.0])
        if (
            not isinstance(scale, list)
            or len(scale) != 3
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                for v in scale
            )
        ):
            raise ValueError(f"input_scale must be three finite numbers >= 0, got {scale!r}")
        return tuple(float(v) for v in scale)

    def _pending_tensors(self) -> dict[str, torch.Tensor]:
        """The pending decisions as ``pending.*`` tensors (none when nothing is pending)."""
        if not self._pending:
            return {}
        items = list(self._pending.items())
        return {
            "pending.ids": torch.tensor([k for k, _ in items], dtype=torch.int64),
            "pending.contexts": torch.stack([p.context for _, p in items]),
            "pending.chosen": torch.stack([p.chosen for _, p in items]),
            "pending.indices": torch.tensor([p.index for _, p in items], dtype=torch.int64),
        }

    def pending_state(
        self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> tuple[OrderedDict[int, Any], int]:
        """A checkpoint's pending decisions and id counter, validated, for
        :meth:`set_pending_state` (nothing is changed here).

        Raises:
            ValueError: More pending decisions than ``max_pending``, ids that repeat or are
                not below the counter, or contexts and rows that do not fit this agent.
        """
        next_id = scalars.get("next_decision_id", 0)
        if isinstance(next_id, bool) or not isinstance(next_id, int) or not 0 <= next_id < 2**62:
            raise ValueError(f"next_decision_id must be an integer in [0, 2**62), got {next_id!r}")
        names = PENDING_TENSORS
        present = [n for n in names if n in tensors]
        if not present:
            return OrderedDict(), next_id
        if len(present) != len(names):
            raise ValueError(f"pending decisions need tensors {list(names)}, got {present}")
        ids, contexts, chosen, indices = (tensors[n] for n in names)
        count = int(ids.shape[0]) if ids.ndim == 1 else -1
        if count > self.max_pending:
            raise ValueError(
                f"{count} decisions await feedback but max_pending is {self.max_pending} "
                "(pass max_pending= to load_agent to keep them)"
            )
        want = {"pending.ids": torch.int64, "pending.chosen": torch.float32,
                "pending.indices": torch.int64}  # fmt: skip
        for name, dtype in want.items():
            if tensors[name].dtype != dtype:
                raise ValueError(f"tensor {name} has dtype {tensors[name].dtype}, not {dtype}")
        if contexts.dtype.is_complex or contexts.dtype not in _CONTEXT_DTYPES:
            raise ValueError(f"tensor pending.contexts has dtype {contexts.dtype}")
        context_shape, action_dim = self.input_shapes or (tuple(contexts.shape[1:]), None)
        shapes = {
            "pending.ids": (count,),
            "pending.indices": (count,),
            "pending.contexts": (count, *context_shape),
            "pending.chosen": (count, chosen.shape[-1] if action_dim is None else action_dim),
        }
        for name, shape in shapes.items():
            if count < 1 or tuple(tensors[name].shape) != shape:
                raise ValueError(
                    f"tensor {name} has shape {tuple(tensors[name].shape)}, not {shape}"
                )
        keys = ids.tolist()
        if len(set(keys)) != count or min(keys) < 0 or max(keys) >= next_id:
            raise ValueError(f"pending decision ids must be distinct, in [0, {next_id})")
        for name, values in (("pending.contexts", contexts), ("pending.chosen", chosen)):
            if not _within(values.to(torch.float64), MAX_ABS_INPUT):
                raise ValueError(f"{name} holds NaN, inf or values beyond {MAX_ABS_INPUT:.0e}")
        if int(indices.min()) < 0:
            raise ValueError("pending.indices holds a negative candidate index")
        pending = OrderedDict(
            (key, _Pending(contexts[i].to(self.device), chosen[i].to(self.device), int(index)))
            for i, (key, index) in enumerate(zip(keys, indices.tolist(), strict=True))
        )
        return pending, next_id

    def set_pending_state(self, pending: OrderedDict[int, Any], next_id: int) -> None:
        """Set the pending decisions from :meth:`pending_state` output; the id counter never
        goes back (ids this agent already handed out stay used)."""
        self._pending = pending
        self._next_id = max(self._next_id, next_id)

    def _generators(self) -> dict[str, torch.Generator]:
        return {
            "generator": self.generator,
            "tie_generator": self.tie_generator,
            "propensity_generator": self.propensity_generator,
        }

    def _reseed(self, seed: int | None) -> None:
        for offset, gen in enumerate(self._generators().values()):
            if seed is None:
                gen.seed()
            else:
                gen.manual_seed(derived_seed(seed, offset))

    def generator_states(
        self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The checkpoint's generator states, validated, for :meth:`set_generator_states`.

        Only states saved on this agent's device type are used (a CPU checkpoint loaded
        on a GPU keeps the generators seeded from the saved seed).

        Raises:
            ValueError: An invalid generator state.
        """
        if scalars.get("generator_device") != self.device.type:
            return {}
        states = {}
        for gen_name, gen in self._generators().items():
            state = tensors.get(f"rng.{gen_name}")
            if state is None:
                continue
            try:  # validate on a scratch generator
                torch.Generator(device=gen.device).set_state(state.to(torch.uint8))
            except RuntimeError as err:
                raise ValueError(f"invalid random-generator state {gen_name!r}: {err}") from err
            states[gen_name] = state.to(torch.uint8)
        return states

    def set_generator_states(self, states: Mapping[str, torch.Tensor]) -> None:
        """Set generators from :meth:`generator_states` output."""
        generators = self._generators()
        for gen_name, state in states.items():
            generators[gen_name].set_state(state)

    def tie_keys(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Uniform tie-break keys from ``tie_generator`` (B rows consume it as B calls)."""
        return torch.rand(shape, generator=self.tie_generator, device=self.device)

    def uniform_choice(self, masks: torch.Tensor) -> torch.Tensor:
        """A uniformly random unmasked index per row of ``masks`` (B, K), from ``generator``."""
        return torch.multinomial(masks.to(torch.float32), 1, generator=self.generator).squeeze(1)

    def select(self, scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Best unmasked score per row (B, K) -> (B,), exact ties broken at random."""
        return select(scores, masks, self.tie_keys(scores.shape))

    def observations(self, obs: Observation) -> Observations:
        """Validate ``obs`` and convert it to tensors on the device, with a batch dim.

        The tensors are the agent's own copies (a caller may reuse or mutate its arrays).
        The last conversion is reused when the same arrays come back with the same
        content (``observe`` right after ``act``), compared by value, never by identity
        alone.

        Raises:
            ValueError: Missing keys, bad shapes, NaN or inf values (or magnitudes beyond
                ``MAX_ABS_INPUT``), or no candidate on offer in some row.
            TypeError: Complex or non-numeric values.
        """
        try:
            parts = (obs["context"], obs["candidates"], obs.get("action_mask"))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                "observation must be a mapping with 'context' and 'candidates' "
                "(and optionally 'action_mask'), as produced by a Bandexa env"
            ) from err
        cached = self._converted
        if cached is not None and all(
            _same(new, old_ref, old_copy)
            for new, old_ref, old_copy in zip(parts, cached[0], cached[1], strict=True)
        ):
            return cached[2]
        context, candidates, mask = (
            None if p is None else _real_array(p, n) for p, n in zip(parts, _OBS_KEYS, strict=True)
        )
        assert context is not None and candidates is not None
        if candidates.ndim not in (2, 3) or candidates.shape[-2] == 0:
            raise ValueError(
                "candidates must have shape (K, d_a) or (B, K, d_a) with K >= 1, "
                f"got {tuple(candidates.shape)}"
            )
        batched = candidates.ndim == 3
        if mask is not None and mask.shape != candidates.shape[:-1]:
            raise ValueError(
                f"action_mask must have shape {tuple(candidates.shape[:-1])}, got {mask.shape}"
            )
        if self.input_shapes is not None:
            context_shape, action_dim = self.input_shapes
            if tuple(context.shape[batched:]) != context_shape:
                raise ValueError(
                    f"context must have shape {context_shape} (or (B, *{context_shape}) batched), "
                    f"got {tuple(context.shape)}"
                )
            if candidates.shape[-1] != action_dim:
                raise ValueError(
                    f"candidates must have {action_dim} features per row, got shape "
                    f"{tuple(candidates.shape)}"
                )
        if batched and context.shape[:1] != candidates.shape[:1]:
            raise ValueError(
                f"batched context and candidates disagree on B: {context.shape} vs "
                f"{candidates.shape}"
            )
        # One copy of each array, shared by the tensors and the change check.
        copies = [
            np.array(context, copy=True),
            np.array(candidates, dtype=np.float32, copy=True),
            np.ones(candidates.shape[:-1], bool) if mask is None else np.array(mask != 0),
        ]
        if mask is not None and not copies[2].any(axis=-1).all():
            raise ValueError("action_mask leaves no candidate on offer")
        for name, values in zip(_OBS_KEYS[:2], copies[:2], strict=True):
            # NaN fails the comparison, so this one reduction checks finiteness too.
            if values.size and not float(np.abs(values).max()) <= MAX_ABS_INPUT:
                raise ValueError(
                    f"{name} holds NaN, inf or values beyond {MAX_ABS_INPUT:.0e} in magnitude"
                )
        tensors = [torch.from_numpy(a if batched else a[None]) for a in copies]
        if self.device.type != "cpu":
            tensors = [t.to(self.device) for t in tensors]
        batch = Observations(*tensors, batched=batched)
        kept = [None if p is None else c for p, c in zip(parts, copies, strict=True)]
        self._converted = (parts, kept, batch)
        return batch

    def _check_rewards(self, reward: Any, size: int, batched: bool) -> torch.Tensor:
        """Rewards as (B,) float64 on the device, validated (see :meth:`observe`)."""
        if type(reward) is float and size == 1 and not batched:  # the common case, fast
            if not abs(reward) <= MAX_ABS_REWARD or (
                self.capabilities.binary_rewards and reward not in (0.0, 1.0)
            ):
                return self._check_rewards(np.float64(reward), size, batched)  # the error path
            return torch.tensor([reward], dtype=torch.float64, device=self.device)
        arr = np.asarray(reward)
        if arr.dtype == object or arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
            raise TypeError(
                f"reward must be a real number (or an array of {size} for a batch), got {reward!r}"
            )
        if (arr.ndim > 0) != batched and not (arr.size == 1 and size == 1):
            raise ValueError(f"expected {size} reward(s), got shape {arr.shape}")
        values = arr.astype(np.float64).reshape(-1)
        if values.size != size:
            raise ValueError(f"expected {size} rewards, got {values.size}")
        if not np.isfinite(values).all():
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        if np.abs(values).max() > MAX_ABS_REWARD:
            raise ValueError(
                f"reward {values[np.argmax(np.abs(values))]:.3g} is too large for the agent's "
                f"head (|reward| must be at most {MAX_ABS_REWARD:.0e}; rescale the rewards)"
            )
        if self.capabilities.binary_rewards and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(
                f"{self.name} models rewards in {{0, 1}} (Bernoulli), got {reward!r}; use an "
                "agent with a Gaussian head for other rewards"
            )
        return torch.as_tensor(values, dtype=torch.float64, device=self.device)


def derived_seed(seed: int, stream: int) -> int:
    """Seed of the agent's ``stream``-th generator: the seed itself for stream 0, else a
    mix that keeps the streams of nearby seeds apart."""
    if stream == 0:
        return int(seed)
    return (int(seed) * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) % (2**63)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    return int(seed)


_OBS_KEYS = ("context", "candidates", "action_mask")
PENDING_TENSORS = ("pending.ids", "pending.contexts", "pending.chosen", "pending.indices")
"""Checkpoint tensors of the decisions awaiting feedback (see :meth:`Agent.save`)."""
_CONTEXT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                   torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)  # fmt: skip


def _within(values: torch.Tensor, bound: float) -> bool:
    """Whether every value is finite and at most ``bound`` in magnitude (True when empty)."""
    return values.numel() == 0 or bool(values.abs().max() <= bound)


def _real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a numpy array of real numbers (a view where possible: copied later)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor")
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in ("b", "i", "u", "f"):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr


def _same(new: Any, old_ref: Any, old_copy: np.ndarray | None) -> bool:
    """Whether ``new`` is the object converted last time and still holds the same values."""
    if new is None or old_ref is None:
        return new is None and old_ref is None
    if new is not old_ref or not isinstance(new, np.ndarray):
        return False
    return new.shape == old_copy.shape and np.array_equal(new, old_copy)


def _check_actions(
    action: Any, size: int, n_candidates: int, batched: bool, offered: np.ndarray | None = None
) -> np.ndarray:
    """Actions as (B,) int64 indices; ``offered`` (B, K) bool refuses masked candidates."""
    if type(action) is int and size == 1:  # the common case, fast
        if not 0 <= action < n_candidates:
            raise ValueError(f"action {action} is outside [0, {n_candidates - 1}]")
        if offered is not None and not offered.reshape(-1)[action]:
            raise ValueError(f"action {action} is masked (its action_mask is 0): not on offer")
        return np.array([action], dtype=np.int64)
    arr = np.asarray(action)
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise TypeError(
            f"action must be an integer in [0, {n_candidates - 1}] (one per row of a batch), "
            f"got {action!r}"
        )
    flat = arr.reshape(-1)
    if flat.size != size or (arr.ndim > 0) != batched and size != 1:
        raise ValueError(f"expected {size} action(s), got shape {arr.shape}")
    bad = flat[(flat < 0) | (flat >= n_candidates)]
    if bad.size:
        raise ValueError(f"action {int(bad[0])} is outside [0, {n_candidates - 1}]")
    if offered is not None:
        masked = ~offered.reshape(size, n_candidates)[np.arange(size), flat]
        if masked.any():
            row = int(np.argmax(masked))
            raise ValueError(
                f"action {int(flat[row])} in row {row} is masked (its action_mask is 0): not on "
                "offer"
            )
    return flat.astype(np.int64)


def _unbatch(values: torch.Tensor, batched: bool) -> Any:
    if not batched:
        item = values[0].item()
        return int(item) if isinstance(item, int) else float(item)
    return values.detach().cpu().numpy()


# -- registry -------------------------------------------------------------------------
AgentFactory = Callable[..., Agent]
AGENTS: dict[str, AgentFactory] = {}
"""Registered agent names -> factories ``(space, *, seed, device, **overrides) -> Agent``."""


def register_agent(name: str) -> Callable[[AgentFactory], AgentFactory]:
    """Register ``factory(space, *, seed, device, **overrides) -> Agent`` under ``name``.

    The agents it builds carry ``name`` (``agent.name``), which checkpoints record.
    """

    def decorator(factory: AgentFactory) -> AgentFactory:
        def named(*args: Any, **kwargs: Any) -> Agent:
            agent = factory(*args, **kwargs)
            agent.name = name
            return agent

        named.__doc__, named.__name__ = factory.__doc__, factory.__name__
        AGENTS[name] = named
        return named

    return decorator


def make_agent(
    name: str,
    env: gym.Env | gym.vector.VectorEnv | spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> Agent:
    """Build a registered agent sized for ``env``'s observation space.

    Settings are validated here, so a bad one fails before the first round. Small models
    run fastest on one CPU thread: call ``torch.set_num_threads(1)`` (the bench CLI and the
    examples do) unless the encoder is large.

    Args:
        name: A registered name (``bandexa_gym.agents.AGENTS``): ``uniform``, ``linear_ts``,
            ``linear_ucb``, ``neural_linear_ts``, ...
        env: A ``Bandexa/*`` env, a vector env over one, or its observation space. An env
            whose ``candidates_change`` attribute is True (``Bandexa/Retrieval-v0``) says
            that its candidate rows change from round to round, and the agent is told so
            (:attr:`Agent.candidates_change`).
        seed: Seed of the agent's own random generators.
        device: Torch device for the agent's tensors.
        **overrides: Agent-specific settings (e.g. ``feature_map="disjoint"``,
            ``exploration="ucb"``).

    Raises:
        ValueError: Unknown name or a bad setting.
        TypeError: An unknown setting.
    """
    if name not in AGENTS:
        known = ", ".join(sorted(AGENTS))
        raise ValueError(f"unknown agent {name!r}; registered agents: {known}")
    agent = AGENTS[name](observation_space(env), seed=seed, device=device, **overrides)
    declared = _declared_candidates_change(env)
    if declared is not None:
        agent.candidates_change = declared
    return agent


def _declared_candidates_change(env: gym.Env | gym.vector.VectorEnv | spaces.Dict) -> bool | None:
    """An env's own word on whether its candidate rows change (its ``candidates_change``)."""
    if isinstance(env, spaces.Space):
        return None
    sub_envs = getattr(env, "envs", None)  # a synchronous vector env's sub-envs
    base = sub_envs[0] if sub_envs else env
    declared = getattr(getattr(base, "unwrapped", base), "candidates_change", None)
    return declared if isinstance(declared, bool) else None


def observation_space(env: gym.Env | gym.vector.VectorEnv | spaces.Dict) -> spaces.Dict:
    """The single (unbatched) Dict observation space of an env, vector env or space."""
    space = (
        env
        if isinstance(env, spaces.Space)
        else getattr(env, "single_observation_space", env.observation_space)
    )
    if not isinstance(space, spaces.Dict) or not {"context", "candidates"} <= set(space.spaces):
        raise ValueError(
            "expected a Bandexa env whose observation space is Dict(context, candidates, "
            f"action_mask), got {space}"
        )
    return space
