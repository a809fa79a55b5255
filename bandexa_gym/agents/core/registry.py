"""The agent registry: names -> factories, ``make_agent``, and the observation space of an env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces

from bandexa_gym.agents.core.duck import (
    build_agent,
    entry_point_factory,
    is_reference,
    resolve_reference,
)
from bandexa_gym.agents.core.protocol import Agent

__all__ = ["AGENTS", "make_agent", "observation_space", "register_agent"]

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
            ``linear_ucb``, ``neural_linear_ts``, ...; a name an installed package registers
            in the ``bandexa_gym.agents`` entry-point group; or ``module:NAME``, a class,
            factory or instance in an importable module (any object with ``act`` and
            ``observe``; see :func:`~bandexa_gym.agents.core.duck.build_agent`).
        env: A ``Bandexa/*`` env, a vector env over one, or its observation space. An env
            whose ``candidates_change`` attribute is True (``Bandexa/Retrieval-v0``) says
            that its candidate rows change from round to round, and the agent is told so
            (:attr:`Agent.candidates_change`).
        seed: Seed of the agent's own random generators.
        device: Torch device for the agent's tensors.
        **overrides: Agent-specific settings (e.g. ``feature_map="disjoint"``,
            ``exploration="ucb"``).

    Raises:
        ValueError: Unknown name, a ``module:NAME`` that does not import, or a bad setting.
        TypeError: An unknown setting.
    """
    if name in AGENTS:
        agent = AGENTS[name](observation_space(env), seed=seed, device=device, **overrides)
    else:
        target = resolve_reference(name) if is_reference(name) else entry_point_factory(name)
        if target is None:
            known = ", ".join(sorted(AGENTS))
            raise ValueError(
                f"unknown agent {name!r}; registered agents: {known}; or module:NAME, or a "
                "name in the 'bandexa_gym.agents' entry-point group"
            )
        space = observation_space(env)
        agent = build_agent(target, space, seed=seed, device=device, label=name, **overrides)
    declared = _declared_candidates_change(env)
    if declared is not None and isinstance(agent, Agent):
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
