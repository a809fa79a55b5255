"""Agents from outside the registry: ``module:NAME`` references, the ``bandexa_gym.agents``
entry-point group, and the capabilities of any object with ``act`` / ``observe``."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any

from gymnasium import spaces

from bandexa_gym.agents.core.protocol import Agent, Capabilities

__all__ = [
    "ENTRY_POINT_GROUP",
    "agent_name",
    "build_agent",
    "entry_point_factory",
    "infer_capabilities",
    "is_reference",
    "resolve_reference",
]

ENTRY_POINT_GROUP = "bandexa_gym.agents"
"""Entry-point group under which installed packages register agents (name -> factory)."""


def is_reference(name: str) -> bool:
    """Whether ``name`` is a ``module:NAME`` reference (not an ``sb3:``/``sb3c:`` baseline
    or a ``peer:`` agent)."""
    module, colon, attribute = name.partition(":")
    return bool(colon and module and attribute) and module not in ("sb3", "sb3c", "peer")


def resolve_reference(reference: str) -> Any:
    """Import ``module`` and return its attribute ``NAME`` (a class, factory or instance).

    Raises:
        ValueError: The module cannot be imported or has no such attribute.
    """
    module, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module)
    except Exception as err:  # ImportError, or the module's own failure
        raise ValueError(
            f"agent {reference!r}: cannot import module {module!r} "
            f"({type(err).__name__}: {err}); expected module:NAME with module on PYTHONPATH"
        ) from err
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"agent {reference!r}: module {module!r} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    return target


def entry_point_factory(name: str) -> Any | None:
    """The object an installed package registers as ``name`` in the ``bandexa_gym.agents``
    entry-point group (loaded only now), or None when no package registers it."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return entry.load()
    return None


def build_agent(
    target: Any,
    space: spaces.Dict,
    *,
    seed: int | None,
    device: Any,
    label: str,
    **overrides: Any,
) -> Any:
    """An agent from a class, factory or instance.

    A class or factory is called as a registered factory is, ``(space, *, seed, device,
    **overrides)``, passing only the arguments its signature accepts (so ``MyAgent()``
    works too); an instance (anything with ``act`` and ``observe``) is copied, so that
    every build starts from the same state.

    Raises:
        TypeError: What ``label`` names is neither, or what it builds has no ``act`` /
            ``observe``.
    """
    if _is_agent_like(target) and not isinstance(target, type):
        if overrides:
            raise TypeError(f"agent {label!r} is an instance: it takes no settings {overrides}")
        agent = copy.deepcopy(target)
    elif callable(target):
        agent = target(*_arguments(target, space, seed, device, overrides), **overrides)
    else:
        raise TypeError(
            f"agent {label!r} is a {type(target).__name__}; expected a class, a factory or an "
            "object with act and observe"
        )
    if not _is_agent_like(agent):
        raise TypeError(
            f"agent {label!r} built a {type(agent).__name__}, which has no act/observe methods"
        )
    return agent


def _arguments(
    target: Callable[..., Any], space: spaces.Dict, seed: int | None, device: Any, overrides: dict
) -> list[Any]:
    """The positional space (if taken) and, into ``overrides``, the seed and device it takes."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: the factory form
        overrides.update(seed=seed, device=device)
        return [space]
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key, value in (("seed", seed), ("device", device)):
        if key in parameters or any_keyword:
            overrides.setdefault(key, value)
    positional = [
        p
        for p in parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        and p.name not in ("seed", "device")
    ]
    return [space] if positional else []


def _is_agent_like(obj: Any) -> bool:
    return callable(getattr(obj, "act", None)) and callable(getattr(obj, "observe", None))


def agent_name(agent: Any) -> str:
    """``agent.name``, or its class name when it has none."""
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) and name else type(agent).__name__


def infer_capabilities(agent: Any) -> Capabilities:
    """What ``agent`` offers: its declared :class:`Capabilities`, less what it does not
    implement, each with the reason.

    An :class:`Agent` that overrides neither ``_distribution`` nor ``_propensities``
    reports no probabilities; one that does not override ``spec`` cannot be saved. Any
    other object offers probabilities only with ``action_distribution`` and ``decide``,
    saving only with ``save``, and is not checked batched (its batched calls are its own).
    """
    declared = getattr(agent, "capabilities", None)
    caps = declared if isinstance(declared, Capabilities) else Capabilities()
    found = {"save": caps.save, "propensities": caps.propensities, "batched": caps.batched}
    reasons = dict(caps.reasons)
    kind = type(agent)
    if isinstance(agent, Agent):
        if kind._distribution is Agent._distribution and kind._propensities is Agent._propensities:
            missing = {"propensities": "it overrides neither _distribution nor _propensities"}
        else:
            missing = {}
        if kind.spec is Agent.spec:
            missing["save"] = "it does not override spec (what a checkpoint rebuilds it from)"
    else:
        plain = f"{kind.__name__} is not an Agent subclass"
        missing = {"batched": f"{plain}: batched act/observe are not checked"}
        if not (callable(getattr(agent, "action_distribution", None)) and hasattr(agent, "decide")):
            missing["propensities"] = f"{plain} and has no action_distribution/decide"
        if not callable(getattr(agent, "save", None)):
            missing["save"] = f"{plain} and has no save"
    for capability, reason in missing.items():
        if found[capability]:
            found[capability] = False
            reasons[capability] = reason
    return Capabilities(
        **found,
        cuda=caps.cuda,
        binary_rewards=caps.binary_rewards,
        changing_candidates=caps.changing_candidates,
        reasons=reasons,
    )
