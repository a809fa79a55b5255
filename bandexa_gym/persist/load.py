"""Load agents from checkpoints: :func:`load_agent` builds one, :func:`load_state` fills one.

``agent.save(path)`` writes a checkpoint (:mod:`bandexa_gym.persist.format` is the file
format). Loading finds the agent's class by name, checks the checkpoint's spec against
the expectation and its tensor shapes against the spec *before* building anything (a
crafted spec cannot make the loader allocate an oversized model), verifies the digest,
builds the agent and loads its state all-or-nothing. Every failure is a
:class:`~bandexa_gym.persist.format.CheckpointError` naming what is wrong.

Before any state is set, every tensor is checked here, once for all agents: a tensor the
freshly built agent also holds must come in its dtype (tensors are refused, never cast),
other floating tensors (heads grown with the data) in float64; floating tensors must be
finite, and square-root covariance factors at most :data:`MAX_ABS_FACTOR` in magnitude
(their products must not overflow when the agent samples). Pending decisions
(``pending.*``) are checked against the agent's shapes and ``max_pending``.

Example:
    >>> agent.save("runs/agent.safetensors")                            # doctest: +SKIP
    >>> again = load_agent("runs/agent.safetensors", map_location="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from bandexa_gym.agents.core import (
    AGENT_CLASSES,
    PENDING_TENSORS,
    Agent,
    observation_space,
)
from bandexa_gym.agents.limits import MAX_COUNT
from bandexa_gym.persist.format import (
    CheckpointError,
    read_checkpoint,
    read_metadata,
    read_tensor_shapes,
)

__all__ = ["MAX_ABS_FACTOR", "check_state_tensors", "load_agent", "load_state"]

PathLike = str | os.PathLike[str]
_LOAD_ERRORS = (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError)
MAX_ABS_FACTOR = 1e100
"""Largest magnitude of a loaded square-root covariance entry: a covariance of 1e200 is far
beyond any prior a head is given, and squares of larger entries overflow float64."""


def load_agent(
    path: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    expected: Any = None,
    **kwargs: Any,
) -> Agent:
    """Rebuild the agent saved at ``path``.

    Args:
        path: A file written by ``agent.save``.
        map_location: Device of the rebuilt agent.
        expected: Optional check before anything is built: an ``Agent`` (its whole spec
            must match, exploration rule and schedule included), a ``Bandexa`` env or
            observation space (context shape and action width must match), or a mapping
            of spec fields, e.g. ``{"encoder": {"class": "ConvEncoder"}}`` (``"agent"``
            names the registered agent).
        **kwargs: Passed to the agent's ``from_spec``; e.g. ``buffer=`` for a neural agent:
            the checkpoint holds no replay buffer, so pass the saved agent's (its reopened
            ``DiskReplayBuffer``) to keep training on the old rounds; ``max_pending=`` when
            the checkpoint holds more pending decisions than the default 10,000; the
            outlier policy (``outliers=``, ``outlier_factor=``), which is not saved.

    Returns:
        An agent whose learned state equals the saved agent's. Its generators continue
        the saved agent's streams when ``map_location`` has the device type they were saved
        on (elsewhere they are seeded from the saved seed).

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Corrupted, truncated or edited file, unsupported version, a spec
            that does not fit its tensors, or a mismatch with ``expected``.
    """
    meta = read_metadata(path)
    if expected is not None:
        _check_expected(meta, expected, path)
    cls = AGENT_CLASSES.get(str(meta.get("class")))
    if cls is None:
        raise CheckpointError(
            f"{path}: unknown agent class {meta.get('class')!r} (agent {meta['agent']!r}); "
            "import the module that defines it before loading"
        )
    spec, scalars = meta["spec"], meta["state"]
    try:
        shapes = read_tensor_shapes(path)
        _check_pending_shapes(spec, shapes)
        cls.check_checkpoint(spec, {k: v for k, v in shapes.items() if k not in PENDING_TENSORS})
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    except KeyError as err:
        raise CheckpointError(
            f"{path}: the spec of this {cls.__name__} checkpoint lacks the field {err} that "
            f"a {cls.__name__} spec has (the file names the class {meta.get('class')!r}: was "
            f"it changed? the spec holds the fields {sorted(spec)})"
        ) from err
    except _LOAD_ERRORS as err:
        raise CheckpointError(
            f"{path}: the checkpoint's spec does not fit a {cls.__name__}: {err}"
        ) from err
    meta, tensors = read_checkpoint(path)
    seed = scalars.get("seed")
    try:
        agent = cls.from_spec(spec, seed=seed, device=map_location, **kwargs)
        agent.name = meta["agent"]
        _apply(agent, scalars, tensors)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    except _LOAD_ERRORS as err:
        raise CheckpointError(f"{path}: cannot rebuild the agent: {err}") from err
    return agent


def load_state(agent: Agent, path: PathLike) -> None:
    """Load the checkpoint at ``path`` into ``agent``, which must match it.

    ``agent`` must be of the checkpoint's class with the same shapes, head
    hyper-parameters and representation (``agent.pinned_spec()``); its schedule,
    exploration rule, outlier policy and replay buffer are kept. Its pending decisions are
    replaced by the checkpoint's, and its decision ids keep counting from the larger of its
    own counter and the checkpoint's (an id is never handed out twice). Nothing is changed
    when a check fails.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Corrupted file, or a checkpoint that does not match ``agent`` (the
            message lists every differing field).
    """
    meta = read_metadata(path)
    if meta.get("class") != type(agent).__name__:
        raise CheckpointError(
            f"checkpoint {path} holds a {meta.get('class')} ({meta['agent']!r}), not a "
            f"{type(agent).__name__}"
        )
    problems = _diff(agent.pinned_spec(), meta["spec"], label="agent has")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not match this {type(agent).__name__}:\n  "
            + "\n  ".join(problems)
        )
    meta, tensors = read_checkpoint(path)
    try:
        _apply(agent, meta["state"], tensors)
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    except _LOAD_ERRORS as err:
        raise CheckpointError(f"{path}: checkpoint does not fit the agent: {err}") from err


def _apply(agent: Agent, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Validate everything, then write the checkpoint's state into ``agent``."""
    rounds = scalars.get("rounds", 0)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= MAX_COUNT:
        raise CheckpointError(f"rounds must be an integer in [0, 2**62], got {rounds!r}")
    check_state_tensors(agent, tensors)
    pending = agent.pending_state(scalars, tensors)  # validated, nothing set yet
    scale = agent.input_scale_state(scalars)
    generators = agent.generator_states(scalars, tensors)
    agent.load_state(scalars, {k: v for k, v in tensors.items() if k not in PENDING_TENSORS})
    agent.set_generator_states(generators)  # the state loaded: nothing below can fail
    agent.set_pending_state(*pending)
    agent.input_scale = scale
    agent.rounds = rounds


def check_state_tensors(agent: Agent, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse checkpoint tensors of the wrong dtype or with values no agent can hold.

    Args:
        agent: The agent the tensors are for (its own :meth:`Agent.state_tensors` give the
            dtypes expected).
        tensors: The checkpoint's tensors.

    Raises:
        CheckpointError: A dtype other than the agent's (generator states: uint8; floating
            tensors the agent does not hold yet: float64), a NaN or infinite value, or a
            square-root covariance entry beyond :data:`MAX_ABS_FACTOR`.
    """
    reference = {_pattern(k): v.dtype for k, v in agent.state_tensors()[1].items()}
    for name, tensor in tensors.items():
        if name in PENDING_TENSORS:
            continue  # their dtypes and values are checked with the decisions
        if name.startswith("rng."):
            want = torch.uint8
        else:
            want = reference.get(_pattern(name))
            if want is None and tensor.dtype.is_floating_point:
                want = torch.float64
        if want is not None and tensor.dtype != want:
            raise CheckpointError(
                f"tensor {name} has dtype {tensor.dtype}, but a {type(agent).__name__} holds "
                f"it as {want} (checkpoint tensors are not cast)"
            )
        if tensor.dtype.is_floating_point and tensor.numel():
            largest = float(tensor.abs().max())
            if not math.isfinite(largest):
                raise CheckpointError(f"tensor {name} holds NaN or infinite values")
            if name.endswith("sqrt_covariance") and largest > MAX_ABS_FACTOR:
                raise CheckpointError(
                    f"tensor {name} holds {largest:.3g}: a square-root covariance must stay "
                    f"within {MAX_ABS_FACTOR:.0e} in magnitude"
                )


def _pattern(name: str) -> str:
    """A tensor name with its numeric parts (head, layer indices) as ``#``."""
    return ".".join("#" if part.isdigit() else part for part in name.split("."))


def _check_pending_shapes(spec: Mapping[str, Any], shapes: Mapping[str, tuple]) -> None:
    """Shapes of the pending decisions' tensors against each other and the spec (before
    anything is read or built)."""
    present = {k: tuple(v) for k, v in shapes.items() if k.startswith("pending.")}
    if not present:
        return
    if set(present) != set(PENDING_TENSORS):
        raise CheckpointError(
            f"pending decisions need tensors {list(PENDING_TENSORS)}, got {sorted(present)}"
        )
    count = present["pending.ids"][0] if len(present["pending.ids"]) == 1 else -1
    context = list(spec.get("context_shape", present["pending.contexts"][1:]))
    action_dim = spec.get("action_dim", present["pending.chosen"][-1])
    wanted = {
        "pending.ids": (count,),
        "pending.indices": (count,),
        "pending.contexts": (count, *context),
        "pending.chosen": (count, action_dim),
    }
    for name, want in wanted.items():
        if count < 1 or present[name] != tuple(want):
            raise CheckpointError(
                f"tensor {name} has shape {present[name]}, the spec needs {tuple(want)}"
            )


def _diff(mine: Any, theirs: Any, where: str = "", label: str = "expected") -> list[str]:
    """Differences between the fields of ``mine`` and the checkpoint's ``theirs``.

    Only the keys of ``mine`` are compared; a key absent from ``theirs`` counts.
    """
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        out = []
        for key, value in mine.items():
            name = f"{where}.{key}" if where else str(key)
            if key not in theirs:
                out.append(f"{name}: {label} {value!r}, the checkpoint has no such field")
            else:
                out += _diff(value, theirs[key], name, label)
        return out
    if _normalize(mine) != _normalize(theirs):
        return [f"{where}: {label} {_normalize(mine)!r}, checkpoint has {theirs!r}"]
    return []


def _normalize(value: Any) -> Any:
    if isinstance(value, (tuple, list, torch.Size)):
        return [_normalize(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _check_expected(meta: Mapping[str, Any], expected: Any, path: PathLike) -> None:
    if isinstance(expected, Agent):
        if meta.get("class") != type(expected).__name__:
            raise CheckpointError(
                f"checkpoint {path} does not match what was expected:\n  class: expected "
                f"{type(expected).__name__!r}, checkpoint has {meta.get('class')!r}"
            )
        mine = expected.spec()
        if mine.get("feature_map") == "auto":
            mine.pop("feature_map")  # an unresolved agent accepts either map
        mine.pop("requested_feature_map", None)  # how it was asked, not what it is
        problems = _diff(mine, meta["spec"])
    elif isinstance(expected, (gym.Env, gym.vector.VectorEnv, spaces.Dict)):
        space = observation_space(expected)
        pinned = {
            "context_shape": list(space["context"].shape),
            "action_dim": int(space["candidates"].shape[-1]),
        }
        problems = _diff(pinned, meta["spec"])
    elif isinstance(expected, Mapping):
        wanted = dict(expected)
        problems = []
        if "agent" in wanted and wanted.pop("agent") != meta["agent"]:
            problems.append(
                f"agent: expected {expected['agent']!r}, checkpoint has {meta['agent']!r}"
            )
        problems += _diff(wanted, meta["spec"])
    else:
        raise TypeError(
            "expected must be an Agent, a Bandexa env (or its observation space) or a mapping "
            f"of spec fields, got {type(expected).__name__}"
        )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not match what was expected:\n  " + "\n  ".join(problems)
        )
