"""The agent protocol, observation handling shared by every agent, and the agent registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

Observation = Mapping[str, Any]


class Agent(ABC):
    """A contextual-bandit agent driven by Gymnasium observations.

    ``act`` and ``observe`` take observations exactly as a ``Bandexa/*`` env produces them:
    a single observation (``candidates`` of shape (K, d_a)) gives an ``int``; a batched one
    from a vector env (``candidates`` of shape (B, K, d_a)) gives an ``np.ndarray`` of B
    actions, one posterior draw per row. Rows whose ``action_mask`` is 0 are never chosen.

    Subclasses implement :meth:`_act_one` and :meth:`_observe_one` on torch tensors, and may
    override :meth:`_act_batch` / :meth:`_observe_batch` with vectorized versions.
    """

    name: str = "agent"

    def __init__(self, *, seed: int | None = None, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.seed = seed
        self._converted: tuple[Observation, tuple[torch.Tensor, ...]] | None = None
        self._reseed(seed)

    # -- public protocol --------------------------------------------------------------
    def act(self, obs: Observation) -> int | np.ndarray:
        """Choose one candidate index per observation (see the class docstring)."""
        contexts, candidates, masks = self._tensors(obs)
        if candidates.ndim == 2:
            return self._act_one(contexts, candidates, masks)
        return np.asarray(self._act_batch(contexts, candidates, masks), dtype=np.int64)

    def observe(
        self, obs: Observation, action: int | np.ndarray, reward: float | np.ndarray
    ) -> None:
        """Learn from the reward of ``action`` taken on ``obs`` (single or batched)."""
        contexts, candidates, masks = self._tensors(obs)
        if candidates.ndim == 2:
            index = _check_index(action, candidates.shape[0])
            self._observe_one(contexts, candidates[index], _check_reward(reward), index)
            return
        batch = candidates.shape[0]
        actions = np.asarray(action).reshape(-1)
        rewards = np.asarray(reward, dtype=np.float64).reshape(-1)
        if actions.shape[0] != batch or rewards.shape[0] != batch:
            raise ValueError(
                f"batched observe expects {batch} actions and {batch} rewards, "
                f"got {actions.shape[0]} and {rewards.shape[0]}"
            )
        indices = [_check_index(a, candidates.shape[1]) for a in actions]
        values = [_check_reward(r) for r in rewards]
        self._observe_batch(contexts, candidates, indices, values)

    def reset(self, seed: int | None = None) -> None:
        """Forget everything learned and reseed (``seed=None`` keeps the construction seed)."""
        self._reseed(self.seed if seed is None else seed)

    # -- hooks ------------------------------------------------------------------------
    @abstractmethod
    def _act_one(self, context: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor) -> int:
        """Choose a row of ``candidates`` (K, d_a) for ``context`` given ``mask`` (K,) bool."""

    @abstractmethod
    def _observe_one(
        self, context: torch.Tensor, action: torch.Tensor, reward: float, index: int
    ) -> None:
        """Learn from ``reward`` for the chosen candidate row ``action`` (d_a,) at ``index``."""

    def _act_batch(
        self, contexts: torch.Tensor, candidates: torch.Tensor, masks: torch.Tensor
    ) -> list[int]:
        return [self._act_one(x, c, m) for x, c, m in zip(contexts, candidates, masks, strict=True)]

    def _observe_batch(
        self,
        contexts: torch.Tensor,
        candidates: torch.Tensor,
        indices: list[int],
        rewards: list[float],
    ) -> None:
        for x, c, i, r in zip(contexts, candidates, indices, rewards, strict=True):
            self._observe_one(x, c[i], r, i)

    def _reseed(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    # -- helpers ----------------------------------------------------------------------
    def _tensors(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Convert an observation to (context, candidates float32, mask bool) on the device.

        ``observe`` usually gets the very observation ``act`` just converted; that conversion
        is reused (the observation object is held, so its identity cannot be recycled).
        """
        if self._converted is not None and self._converted[0] is obs:
            return self._converted[1]  # type: ignore[return-value]
        tensors = self._convert(obs)
        self._converted = (obs, tensors)
        return tensors

    def _convert(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        try:
            context, candidates = obs["context"], obs["candidates"]
        except (KeyError, TypeError) as err:
            raise ValueError(
                "observation must be a mapping with 'context' and 'candidates' "
                "(and optionally 'action_mask'), as produced by a Bandexa env"
            ) from err
        candidates = torch.as_tensor(np.asarray(candidates), dtype=torch.float32).to(self.device)
        if candidates.ndim not in (2, 3) or candidates.shape[-2] == 0:
            raise ValueError(
                "candidates must have shape (K, d_a) or (B, K, d_a) with K >= 1, "
                f"got {tuple(candidates.shape)}"
            )
        mask = obs.get("action_mask")
        if mask is None:
            masks = torch.ones(candidates.shape[:-1], dtype=torch.bool, device=self.device)
        else:
            masks = torch.as_tensor(np.asarray(mask)).to(self.device).bool()
            if masks.shape != candidates.shape[:-1]:
                raise ValueError(
                    f"action_mask must have shape {tuple(candidates.shape[:-1])}, "
                    f"got {tuple(masks.shape)}"
                )
        if not bool(masks.any(dim=-1).all()):
            raise ValueError("action_mask leaves no candidate on offer")
        return torch.as_tensor(np.asarray(context)).to(self.device), candidates, masks

    def random_index(self, mask: torch.Tensor) -> int:
        """Draw a uniformly random unmasked index from the agent's generator."""
        weights = mask.to(torch.float32)
        return int(torch.multinomial(weights, 1, generator=self.generator).item())


def masked_argmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Argmax over the last dim of ``scores`` (..., K) ignoring rows where ``mask`` is False."""
    return torch.where(mask, scores, torch.finfo(scores.dtype).min).argmax(dim=-1)


def _check_index(action: Any, n_candidates: int) -> int:
    arr = np.asarray(action)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"action must be one integer in [0, {n_candidates - 1}], got {action!r}")
    index = int(arr.reshape(()))
    if not 0 <= index < n_candidates:
        raise ValueError(f"action {index} is outside [0, {n_candidates - 1}]")
    return index


def _check_reward(reward: Any) -> float:
    value = float(np.asarray(reward, dtype=np.float64).reshape(()))
    if not np.isfinite(value):
        raise ValueError(f"reward must be a finite number, got {reward!r}")
    return value


# -- registry -------------------------------------------------------------------------
AgentFactory = Callable[..., Agent]
AGENTS: dict[str, AgentFactory] = {}


def register_agent(name: str) -> Callable[[AgentFactory], AgentFactory]:
    """Register ``factory(env, *, seed, device, **overrides) -> Agent`` under ``name``."""

    def decorator(factory: AgentFactory) -> AgentFactory:
        AGENTS[name] = factory
        return factory

    return decorator


def make_agent(
    name: str,
    env: gym.Env | gym.vector.VectorEnv,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> Agent:
    """Build a registered agent sized for ``env``'s observation space.

    Args:
        name: A registered name: ``uniform``, ``linear_ts`` or ``neural_linear_ts``.
        env: A ``Bandexa/*`` env or a vector env over one.
        seed: Seed of the agent's own random generator.
        device: Torch device for the agent's tensors.
        **overrides: Agent-specific settings (e.g. ``feature_map="disjoint"``).

    Raises:
        ValueError: Unknown name.
    """
    if name not in AGENTS:
        known = ", ".join(sorted(AGENTS))
        raise ValueError(f"unknown agent {name!r}; registered agents: {known}")
    return AGENTS[name](observation_space(env), seed=seed, device=device, **overrides)


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
