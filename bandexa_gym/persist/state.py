"""An agent's learned state as declared parts: one walk writes, checks and loads them all.

An agent lists its parts (:meth:`~bandexa_gym.agents.core.protocol.Agent.parts`): module
weights, counters, its reward scaler, its heads. Each part knows the checkpoint names of its
scalars and tensors (the names are the file format's), so saving merges the parts' states
and loading asks every part to validate the checkpoint's values *before* any part commits
them: a checkpoint that fails anywhere changes nothing. Shapes are checked against the spec
before anything is built (:func:`compare_shapes`, from each agent's ``expected_shapes``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "Commit",
    "Counter",
    "Part",
    "Scaler",
    "Weights",
    "check_counter",
    "compare_shapes",
    "heads_state",
    "load_heads",
    "load_parts",
    "module_state",
    "take",
    "walk_state",
]

Commit = Callable[[], None]
"""What a part does to the agent once every part has accepted the checkpoint."""


class Part(ABC):
    """One piece of an agent's learned state, under its checkpoint names."""

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(scalars, tensors)`` of this part, keyed by their checkpoint names."""

    @abstractmethod
    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        """Validate this part's values in a checkpoint and return what sets them.

        Raises:
            ValueError: A missing or invalid value (nothing of the agent is changed here).
        """


class Weights(Part):
    """An ``nn.Module``'s state dict, as the tensors ``prefix.<name>``."""

    def __init__(self, prefix: str, module: nn.Module) -> None:
        self.prefix, self.module = prefix, module

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {f"{self.prefix}.{k}": v for k, v in self.module.state_dict().items()}

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        state = module_state(self.module, tensors, f"{self.prefix}.")
        return lambda: self.module.load_state_dict(state)


class Counter(Part):
    """An integer attribute of ``owner`` (``trainings``, say) in ``[0, below)``, as the
    scalar of its name."""

    def __init__(self, owner: Any, name: str, below: int | None = None) -> None:
        self.owner, self.name, self.below = owner, name, below

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {self.name: getattr(self.owner, self.name)}, {}

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        value = check_counter(self.name, scalars.get(self.name), self.below)
        return lambda: setattr(self.owner, self.name, value)


class Scaler(Part):
    """The owner's ``reward_scaler`` (as the scalar ``reward_scaler``), loaded into a new one
    from ``new()`` (the owner's settings decide whether it standardizes)."""

    def __init__(self, owner: Any, new: Callable[[], Any]) -> None:
        self.owner, self.new = owner, new

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"reward_scaler": self.owner.reward_scaler.state()}, {}

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        if "reward_scaler" not in scalars:
            raise ValueError("checkpoint lacks the scalar 'reward_scaler'")
        scaler = self.new()
        scaler.load(scalars["reward_scaler"])
        return lambda: setattr(self.owner, "reward_scaler", scaler)


def walk_state(parts: Iterable[Part]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The parts' ``(scalars, tensors)`` merged (a name used twice is a programming error)."""
    scalars: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for part in parts:
        part_scalars, part_tensors = part.state()
        clash = (scalars.keys() & part_scalars.keys()) | (tensors.keys() & part_tensors.keys())
        if clash:
            raise RuntimeError(f"two parts write the checkpoint names {sorted(clash)}")
        scalars.update(part_scalars)
        tensors.update(part_tensors)
    return scalars, tensors


def load_parts(
    parts: Iterable[Part], scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> None:
    """Validate every part's values, then set them all (all-or-nothing).

    Raises:
        ValueError: A part refuses the checkpoint; no part has been set then.
    """
    commits = [part.prepare(scalars, tensors) for part in parts]
    for commit in commits:
        commit()


def take(tensors: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """The checkpoint tensor ``name``, else ``ValueError`` naming it."""
    if name not in tensors:
        raise ValueError(f"checkpoint lacks tensor {name!r}")
    return tensors[name]


def check_counter(name: str, value: Any, below: int | None = None) -> int:
    """A checkpoint counter (an integer >= 0, and below ``below`` when given), else
    ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if below is not None and value >= below:
        raise ValueError(f"{name} must be an integer in [0, {below}), got {value!r}")
    return value


def module_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """The ``prefix.*`` tensors as a state dict for ``module``, keys and shapes checked."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)}, module {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{prefix[:-1]} weights do not fit the module: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    return state


def compare_shapes(want: Mapping[str, tuple], shapes: Mapping[str, tuple]) -> None:
    """Raise ``ValueError`` listing missing, unexpected and wrongly shaped tensors (the
    generator states ``rng.*`` and pending decisions ``pending.*`` are checked elsewhere)."""
    have = {k: tuple(v) for k, v in shapes.items() if not k.startswith(("rng.", "pending."))}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = [f"{k}: {have[k]} (spec: {want[k]})" for k in want if k in have and have[k] != want[k]]
    if missing or unexpected or wrong:
        raise ValueError(
            f"tensors do not fit the spec: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {wrong[:5]}"
        )


def heads_state(heads: Iterable[Any]) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """A list of Gaussian or logistic heads as the scalars ``heads`` (one dict of counts
    each) and the tensors ``heads.<i>.mean`` and ``heads.<i>.sqrt_covariance``."""
    scalars, tensors = [], {}
    for i, head in enumerate(heads):
        state = head.state_dict()
        tensors[f"heads.{i}.mean"] = state["mean"]
        tensors[f"heads.{i}.sqrt_covariance"] = state["sqrt_covariance"]
        scalars.append({k: state[k] for k in ("n_obs", "quad", "logdet") if k in state})
    return scalars, tensors


def load_heads(
    new_head: Callable[[], Any],
    settings: Mapping[str, Any],
    scalars: Any,
    tensors: Mapping[str, torch.Tensor],
) -> list[Any]:
    """New heads (from ``new_head()``) holding the checkpoint's ``heads`` (see
    :func:`heads_state`); ``settings`` are the heads' own hyper-parameters.

    Raises:
        ValueError: ``scalars`` is not a list of dicts, or a head refuses its state.
    """
    if not isinstance(scalars, list) or not all(isinstance(h, Mapping) for h in scalars):
        raise ValueError(f"the scalar 'heads' must be a list of dicts, got {type(scalars)}")
    heads = []
    for i, head_scalars in enumerate(scalars):
        head = new_head()
        head.load_state_dict(
            {
                "dim": head.dim,
                **settings,
                "mean": take(tensors, f"heads.{i}.mean"),
                "sqrt_covariance": take(tensors, f"heads.{i}.sqrt_covariance"),
                **head_scalars,
            }
        )
        heads.append(head)
    return heads
