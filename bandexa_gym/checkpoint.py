"""Inference checkpoints for :class:`LinearTS` and :class:`NeuralLinearTS` agents.

``agent.save(path)`` (or :func:`save_agent`) writes one ``.safetensors`` file;
:func:`load_agent` rebuilds a working agent from it, :func:`load_state` loads it into an
agent you built yourself. Nothing is unpickled: tensors are read by ``safetensors`` and
everything else is JSON in the file's header, so loading a checkpoint from an untrusted
source cannot run code.

What a checkpoint holds (format version 1):

* tensors: the Bayesian head(s) (posterior mean and square-root covariance), for
  ``NeuralLinearTS`` the encoder's ``state_dict`` and the linear readout, and the agent's
  random-generator states (so a reloaded agent draws the same actions as the original);
* JSON metadata (header key ``"bandexa_gym"``): format name and version, library and
  torch versions, the agent kind, a *spec* (everything that must match for the state to
  mean the same thing: context shape, action width, head hyper-parameters, the encoder's
  class name and constructor arguments, the ``NeuralLinearTSConfig``), the scalar state
  (observation counts, round counter) and a SHA-256 digest of the tensor bytes.

What it does not hold: the replay buffer and the Adam moments. It is an *inference*
checkpoint: enough to act exactly as the saved agent did, and to keep updating the head
from new rounds. A reloaded ``NeuralLinearTS`` starts with an empty replay buffer (or
the one passed to :func:`load_agent`), and its next scheduled training burst retrains
the encoder on that buffer and rebuilds the head from it alone, forgetting the rounds
before the save. To continue training, pass the original buffer (reopen the
``DiskReplayBuffer`` folder); to only serve and update the head, set
``agent.config.train_every = 0`` after loading.

Encoders are rebuilt from their class name and constructor arguments, read from the
module's attributes for the built-in encoders (:class:`~bandexa_gym.encoders.MLPEncoder`,
:class:`~bandexa_gym.encoders.TwoTowerEncoder`, :class:`~bandexa_gym.encoders.ConvEncoder`,
:class:`~bandexa_gym.encoders.ResNetEncoder`). Register your own with
:func:`register_encoder`. A ResNet is rebuilt with ``pretrained=False``: its weights come
from the checkpoint, so loading never downloads anything.

Saving is atomic: the file is written under a temporary name in the target folder,
fsync'd and renamed over ``path``, so a crash leaves either the old file or the new one.
Every problem reading a checkpoint (truncated or corrupted file, unknown format version,
an agent or ``expected=`` that does not match) raises :class:`CheckpointError`, a
``ValueError`` whose message says what is wrong.

Example:
    >>> agent.save("runs/agent.safetensors")                          # doctest: +SKIP
    >>> again = load_agent("runs/agent.safetensors", map_location="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from bandexa_gym._atomic import atomic_path
from bandexa_gym.agents.base import Agent, observation_space
from bandexa_gym.agents.linear_ts import LinearTS
from bandexa_gym.agents.neural_linear_ts import NeuralLinearTS, NeuralLinearTSConfig
from bandexa_gym.buffers import ReplayBuffer
from bandexa_gym.encoders import ConvEncoder, Encoder, MLPEncoder, ResNetEncoder, TwoTowerEncoder
from bandexa_gym.posterior import BayesianLinearRegression

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "agent_spec",
    "build_encoder",
    "encoder_spec",
    "load_agent",
    "load_state",
    "probe_scores",
    "read_metadata",
    "register_encoder",
    "save_agent",
]

FORMAT_NAME = "bandexa-gym-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "bandexa_gym"
_HEAD_KEYS = ("prior_var", "noise", "a0", "b0")

PathLike = str | os.PathLike[str]
SpecFn = Callable[[Any], dict[str, Any]]


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: corrupted, truncated, or not matching."""


# ---------------------------------------------------------------------------------------
# Encoder specs: class name + constructor kwargs, read from the module's attributes
# ---------------------------------------------------------------------------------------

_ENCODERS: dict[str, tuple[type[nn.Module], SpecFn]] = {}


def register_encoder(cls: type[nn.Module], spec_fn: SpecFn | None = None) -> type[nn.Module]:
    """Make encoders of class ``cls`` savable in checkpoints.

    Args:
        cls: The encoder class; it is found again at load time by ``cls.__name__``.
        spec_fn: ``fn(encoder) -> kwargs``, the JSON-serializable keyword arguments that
            rebuild an encoder of the same architecture with ``cls(**kwargs)``. Default:
            the encoder's own ``init_kwargs`` attribute (a dict you set in ``__init__``).

    Returns:
        ``cls``, so this also works as a class decorator.
    """
    if spec_fn is None:

        def spec_fn(encoder: Any) -> dict[str, Any]:
            kwargs = getattr(encoder, "init_kwargs", None)
            if not isinstance(kwargs, Mapping):
                raise CheckpointError(
                    f"{type(encoder).__name__} was registered without a spec function, so it "
                    "needs an `init_kwargs` dict attribute holding its constructor arguments"
                )
            return dict(kwargs)

    _ENCODERS[cls.__name__] = (cls, spec_fn)
    return cls


def _activation_of(modules: Any, default: str = "ReLU") -> str:
    """Name of the first activation among ``modules``; it must be a ``torch.nn`` class."""
    structural = (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.Flatten, nn.Sequential)
    for module in modules:
        if not isinstance(module, structural):
            name = type(module).__name__
            if getattr(nn, name, None) is not type(module):
                raise CheckpointError(
                    f"activation {type(module).__qualname__} is not a torch.nn class; only "
                    "torch.nn activations can be recorded in a checkpoint"
                )
            return name
    return default


def _resolve_activation(name: Any) -> type[nn.Module]:
    cls = getattr(nn, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"unknown activation {name!r}: expected a torch.nn module name")
    return cls


def _linear_sizes(seq: nn.Sequential) -> list[int]:
    return [m.out_features for m in seq if isinstance(m, nn.Linear)]


def _mlp_spec(enc: MLPEncoder) -> dict[str, Any]:
    return {
        "context_dim": enc.context_shape[0],
        "action_dim": enc.action_dim,
        "feature_dim": enc.feature_dim,
        "hidden": _linear_sizes(enc.net)[:-1],
        "activation": _activation_of(enc.net),
        "action_chunk": enc.action_chunk,
    }


def _two_tower_spec(enc: TwoTowerEncoder) -> dict[str, Any]:
    hidden = _linear_sizes(enc.ctx_tower)[:-1]
    if _linear_sizes(enc.act_tower)[:-1] != hidden:
        raise CheckpointError("TwoTowerEncoder towers with different hidden sizes cannot be saved")
    return {
        "context_dim": enc.context_shape[0],
        "action_dim": enc.action_dim,
        "tower_dim": enc.tower_dim,
        "hidden": hidden,
        "activation": _activation_of(enc.ctx_tower),
        "action_chunk": enc.action_chunk,
    }


def _fusion_spec(fusion: nn.Module) -> dict[str, Any]:
    return {
        "action_hidden": fusion.action_dense.out_features,
        "fuse_hidden": _linear_sizes(fusion.fuse)[0],
    }


def _conv_spec(enc: ConvEncoder) -> dict[str, Any]:
    convs = [m for m in enc.image_net if isinstance(m, nn.Conv2d)]
    return {
        "action_dim": enc.action_dim,
        "in_channels": enc.context_shape[0],
        "image_size": list(enc.context_shape[1:]),
        "feature_dim": enc.feature_dim,
        "channels": [c.out_channels for c in convs],
        "kernel_size": convs[0].kernel_size[0],
        "image_hidden": _linear_sizes(enc.image_net)[-1],
        **_fusion_spec(enc.fusion),
        "activation": _activation_of(enc.image_net),
        "action_chunk": enc.action_chunk,
    }


def _trainable_policy(backbone: nn.Module) -> str | list[str]:
    """The backbone's current freeze state as a ``freeze_backbone`` policy."""
    flags = {name: p.requires_grad for name, p in backbone.named_parameters()}
    if all(flags.values()):
        return "all"
    if not any(flags.values()):
        return "none"
    prefixes: list[str] = []
    for child, module in backbone.named_children():
        child_flags = [p.requires_grad for p in module.parameters()]
        if child_flags and all(child_flags):
            prefixes.append(child)
        elif any(child_flags):
            prefixes += [f"{child}.{n}" for n, p in module.named_parameters() if p.requires_grad]
    return prefixes


def _resnet_spec(enc: ResNetEncoder) -> dict[str, Any]:
    return {
        "action_dim": enc.action_dim,
        "arch": enc.arch,
        "pretrained": False,  # the weights come from the checkpoint
        "download": False,
        "feature_dim": enc.feature_dim,
        "trainable": _trainable_policy(enc.backbone),
        "in_channels": enc.context_shape[0],
        "image_size": list(enc.context_shape[1:]),
        **_fusion_spec(enc.fusion),
        "action_chunk": enc.action_chunk,
    }


register_encoder(MLPEncoder, _mlp_spec)
register_encoder(TwoTowerEncoder, _two_tower_spec)
register_encoder(ConvEncoder, _conv_spec)
register_encoder(ResNetEncoder, _resnet_spec)


def encoder_spec(encoder: nn.Module) -> dict[str, Any]:
    """``{"class": name, "kwargs": {...}}`` from which :func:`build_encoder` rebuilds it.

    Raises:
        CheckpointError: The class is not registered (see :func:`register_encoder`).
    """
    name = type(encoder).__name__
    entry = _ENCODERS.get(name)
    if entry is None or entry[0] is not type(encoder):
        known = ", ".join(sorted(_ENCODERS))
        raise CheckpointError(
            f"cannot save an encoder of class {type(encoder).__qualname__}: registered encoder "
            f"classes are {known}; call bandexa_gym.checkpoint.register_encoder({name}, spec_fn)"
        )
    kwargs = _jsonable(entry[1](encoder), f"{name} constructor arguments")
    return {"class": name, "kwargs": kwargs}


def build_encoder(spec: Mapping[str, Any]) -> Encoder:
    """Construct a (freshly initialised) encoder from an :func:`encoder_spec`.

    Raises:
        CheckpointError: Unknown class or arguments the constructor rejects.
    """
    name = spec.get("class")
    if name not in _ENCODERS:
        known = ", ".join(sorted(_ENCODERS))
        raise CheckpointError(
            f"checkpoint encoder class {name!r} is not registered (known: {known}); import the "
            "module that defines it and call register_encoder() before loading"
        )
    cls = _ENCODERS[name][0]
    kwargs = dict(spec.get("kwargs") or {})
    if "activation" in kwargs:
        kwargs["activation"] = _resolve_activation(kwargs["activation"])
    for key in ("image_size", "hidden", "channels"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"cannot rebuild {name} from the checkpoint's spec {kwargs}: {err}"
        ) from err


# ---------------------------------------------------------------------------------------
# Agent specs and state
# ---------------------------------------------------------------------------------------


def _head_params(head_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: head_kwargs[k] for k in _HEAD_KEYS}
    noise = params["noise"]
    params["noise"] = noise if isinstance(noise, str) else float(noise)
    for key in ("prior_var", "a0", "b0"):
        params[key] = float(params[key])
    return params


def agent_spec(agent: Agent) -> dict[str, Any]:
    """What must match between a checkpoint and an agent for the state to carry over.

    Returns:
        A JSON-serializable dict: ``agent`` (registered name), ``context_shape``,
        ``action_dim``, and for ``linear_ts`` the ``feature_map`` and ``head``
        hyper-parameters, for ``neural_linear_ts`` the ``feature_dim``, ``encoder``
        (:func:`encoder_spec`) and ``config`` (``NeuralLinearTSConfig`` fields).

    Raises:
        CheckpointError: Not a ``LinearTS`` or ``NeuralLinearTS``.
    """
    if isinstance(agent, LinearTS):
        return {
            "agent": "linear_ts",
            "context_shape": list(agent.context_shape),
            "action_dim": agent.action_dim,
            "feature_map": agent.feature_map,
            "requested_feature_map": agent.requested_feature_map,
            "head": _head_params(agent.head_kwargs),
        }
    if isinstance(agent, NeuralLinearTS):
        config = dataclasses.asdict(agent.config)
        return {
            "agent": "neural_linear_ts",
            "context_shape": list(agent.encoder.context_shape),
            "action_dim": agent.encoder.action_dim,
            "feature_dim": agent.encoder.feature_dim,
            "encoder": encoder_spec(agent.encoder),
            "config": _jsonable(config, "NeuralLinearTSConfig"),
        }
    raise CheckpointError(
        f"checkpoints cover LinearTS and NeuralLinearTS agents, got {type(agent).__name__}"
    )


def _head_scalars(head: BayesianLinearRegression) -> dict[str, Any]:
    state = head.state_dict()
    return {"n_obs": state["n_obs"], "quad": state["quad"], "logdet": state["logdet"]}


def _generator_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state().detach().cpu().clone()


def _collect(agent: Agent) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(scalar state, tensors) of a supported agent."""
    tensors: dict[str, torch.Tensor] = {}
    generators: dict[str, torch.Generator] = {"generator": agent.generator}
    if isinstance(agent, LinearTS):
        heads = []
        for i, head in enumerate(agent.heads):
            state = head.state_dict()
            tensors[f"heads.{i}.mean"] = state["mean"]
            tensors[f"heads.{i}.sqrt_covariance"] = state["sqrt_covariance"]
            heads.append(_head_scalars(head))
        scalars: dict[str, Any] = {"heads": heads}
    else:
        assert isinstance(agent, NeuralLinearTS)
        for key, value in agent.encoder.state_dict().items():
            tensors[f"encoder.{key}"] = value
        for key, value in agent.readout.state_dict().items():
            tensors[f"readout.{key}"] = value
        state = agent.posterior.state_dict()
        tensors["posterior.mean"] = state["mean"]
        tensors["posterior.sqrt_covariance"] = state["sqrt_covariance"]
        scalars = {
            "posterior": _head_scalars(agent.posterior),
            "rounds": agent.rounds,
            "trainings": agent.trainings,
        }
        generators["sample_generator"] = agent.sample_generator
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = _generator_state(gen)
    scalars["seed"] = agent.seed
    scalars["generator_device"] = {n: g.device.type for n, g in generators.items()}
    # Own, contiguous CPU copies: safetensors refuses shared or strided storage.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return scalars, tensors


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------


def save_agent(agent: Agent, path: PathLike) -> Path:
    """Write an inference checkpoint of ``agent`` to ``path`` (one safetensors file).

    The file is written to a temporary name in the same folder, fsync'd and atomically
    renamed over ``path``; parent folders are created.

    Args:
        agent: A ``LinearTS`` or ``NeuralLinearTS``.
        path: Target file (conventionally ``*.safetensors``).

    Returns:
        The path written.

    Raises:
        CheckpointError: The agent (or its encoder) cannot be described in a checkpoint.
    """
    import bandexa_gym

    path = Path(path)
    spec = agent_spec(agent)
    scalars, tensors = _collect(agent)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": bandexa_gym.__version__,
        "torch_version": torch.__version__,
        "agent": spec["agent"],
        "spec": spec,
        "state": scalars,
        "sha256": _digest(tensors),
    }
    header = {_META_KEY: json.dumps(_jsonable(meta, "checkpoint metadata"), allow_nan=False)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


# ---------------------------------------------------------------------------------------
# Read and check
# ---------------------------------------------------------------------------------------


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without reading its tensors.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Not a (readable) bandexa-gym checkpoint of a supported version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupted or truncated?): {err}"
        ) from err
    raw = header.get(_META_KEY)
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not a bandexa-gym checkpoint "
            f"(no {_META_KEY!r} metadata in its header)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: metadata does not describe a {FORMAT_NAME}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported by this "
            f"bandexa-gym (reads version {FORMAT_VERSION})"
        )
    for key in ("agent", "spec", "state", "sha256"):
        if key not in meta:
            raise CheckpointError(f"{path}: checkpoint metadata lacks {key!r}")
    return meta


def _read(path: PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint's tensors (corrupted or truncated?): {err}"
        ) from err
    if _digest(tensors) != meta["sha256"]:
        raise CheckpointError(
            f"{path}: tensor data does not match the checkpoint's SHA-256 digest "
            "(the file is corrupted)"
        )
    return meta, tensors


def _diff(mine: Any, theirs: Any, where: str = "", label: str = "expected") -> list[str]:
    """Differences between the fields of ``mine`` and the checkpoint's ``theirs``.

    Only the keys of ``mine`` are compared; a key absent from ``theirs`` counts. An
    ``agent`` kind that differs is reported alone (the other fields do not compare).
    """
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        if not where and "agent" in mine and mine["agent"] != theirs.get("agent"):
            return [f"agent: {label} {mine['agent']!r}, checkpoint has {theirs.get('agent')!r}"]
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
    if isinstance(value, (tuple, list)):
        return [_normalize(v) for v in value]
    if isinstance(value, torch.Size):
        return list(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _expected_spec(expected: Any) -> dict[str, Any]:
    """The part of a spec that ``expected`` pins down."""
    if isinstance(expected, Agent):
        spec = agent_spec(expected)
        spec.pop("requested_feature_map", None)  # LinearTS only; how it was asked, not what it is
        if spec.get("feature_map") == "auto":
            spec.pop("feature_map")  # an unresolved agent accepts either map
        return spec
    if isinstance(expected, (gym.Env, gym.vector.VectorEnv, spaces.Dict)):
        space = observation_space(expected)
        return {
            "context_shape": list(space["context"].shape),
            "action_dim": int(space["candidates"].shape[-1]),
        }
    if isinstance(expected, Mapping):
        return dict(expected)
    raise TypeError(
        "expected must be an Agent, a Bandexa env (or its observation space) or a mapping of "
        f"spec fields, got {type(expected).__name__}"
    )


def _check_expected(meta: Mapping[str, Any], expected: Any, path: PathLike) -> None:
    problems = _diff(_expected_spec(expected), meta["spec"])
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not match what was expected:\n  " + "\n  ".join(problems)
        )


# ---------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------


def load_agent(
    path: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    expected: Any = None,
    buffer: ReplayBuffer | None = None,
) -> Agent:
    """Rebuild the agent saved at ``path``.

    Args:
        path: A file written by :func:`save_agent` / ``agent.save``.
        map_location: Device of the rebuilt agent.
        expected: Optional check before anything is built: an ``Agent`` (its whole spec,
            config included, must match), a ``Bandexa`` env or observation space (context
            shape and action width must match), or a mapping of spec fields, e.g.
            ``{"agent": "neural_linear_ts", "encoder": {"class": "ConvEncoder"}}``.
        buffer: Replay buffer of a rebuilt ``NeuralLinearTS`` (default: an empty in-memory
            one of ``config.buffer_capacity``); the checkpoint holds none. Pass the saved
            agent's buffer (e.g. its reopened ``DiskReplayBuffer``) to keep training on
            the old rounds: the next training burst rebuilds the head from this buffer.

    Returns:
        A ``LinearTS`` or ``NeuralLinearTS`` whose heads, encoder, readout and round counter
        equal the saved agent's. Its generators continue the saved agent's streams when
        ``map_location`` has the device type they were saved on (a CPU checkpoint loaded
        on a GPU instead reseeds the GPU generator from the saved seed).

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Corrupted or truncated file, unsupported version, or a mismatch
            with ``expected``.
    """
    meta, tensors = _read(path)
    if expected is not None:
        _check_expected(meta, expected, path)
    spec, seed = meta["spec"], meta["state"].get("seed")
    try:
        if meta["agent"] == "linear_ts":
            agent: Agent = LinearTS(
                tuple(spec["context_shape"]),
                int(spec["action_dim"]),
                feature_map=spec["feature_map"],
                seed=seed,
                device=map_location,
                **spec["head"],
            )
            agent.requested_feature_map = spec["requested_feature_map"]
        elif meta["agent"] == "neural_linear_ts":
            fields = {f.name for f in dataclasses.fields(NeuralLinearTSConfig)}
            unknown = set(spec["config"]) - fields
            if unknown:
                raise CheckpointError(
                    f"{path}: config fields {sorted(unknown)} are unknown to this bandexa-gym"
                )
            config = NeuralLinearTSConfig(**spec["config"])
            with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
                torch.manual_seed(0 if seed is None else int(seed))
                encoder = build_encoder(spec["encoder"])
            agent = NeuralLinearTS(
                encoder, buffer=buffer, config=config, device=map_location, seed=seed
            )
        else:
            raise CheckpointError(f"{path}: unknown agent kind {meta['agent']!r}")
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: incomplete checkpoint spec: {err!r}") from err
    _apply(agent, meta, tensors, path)
    return agent


def load_state(agent: Agent, path: PathLike) -> None:
    """Load the checkpoint at ``path`` into ``agent``, which must match it.

    ``agent`` must be the same kind with the same context shape, action width, head
    hyper-parameters and (``NeuralLinearTS``) encoder architecture; its schedule
    (``train_every``, ...) and replay buffer are kept. Nothing is changed when the check
    fails.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Corrupted file, or a checkpoint that does not match ``agent`` (the
            message lists every differing field).
    """
    meta, tensors = _read(path)
    mine = agent_spec(agent)
    theirs = meta["spec"]
    pinned = {k: v for k, v in mine.items() if k not in ("config", "requested_feature_map")}
    if pinned.get("feature_map") == "auto":
        pinned.pop("feature_map")
    if "config" in mine:  # only the head's hyper-parameters must agree, not the schedule
        pinned["config"] = {k: mine["config"][k] for k in _HEAD_KEYS}
    problems = _diff(pinned, theirs, label="agent has")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not match this {type(agent).__name__}:\n  "
            + "\n  ".join(problems)
        )
    _apply(agent, meta, tensors, path)


def _head_state(
    scalars: Mapping[str, Any], mean: torch.Tensor, factor: torch.Tensor, params: Mapping
) -> dict[str, Any]:
    return {
        "dim": int(mean.shape[0]) if mean.ndim == 1 else -1,
        **params,
        "mean": mean,
        "sqrt_covariance": factor,
        "n_obs": scalars["n_obs"],
        "quad": scalars["quad"],
        "logdet": scalars["logdet"],
    }


def _take(tensors: Mapping[str, torch.Tensor], name: str, path: PathLike) -> torch.Tensor:
    if name not in tensors:
        raise CheckpointError(f"{path}: checkpoint lacks tensor {name!r}")
    return tensors[name]


def _module_state(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, path: PathLike
) -> dict[str, torch.Tensor]:
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
        raise CheckpointError(
            f"{path}: {prefix[:-1]} weights do not fit the module: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    return state


def _apply(
    agent: Agent, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], path: PathLike
) -> None:
    """Validate everything first, then write the checkpoint's state into ``agent``."""
    spec, scalars = meta["spec"], meta["state"]
    try:
        if isinstance(agent, LinearTS):
            n_heads = len(scalars["heads"])
            expected_heads = {"concat": 1, "disjoint": agent.action_dim, "auto": 0}
            if n_heads != expected_heads[spec["feature_map"]]:
                raise CheckpointError(
                    f"{path}: {n_heads} heads do not fit feature_map={spec['feature_map']!r}"
                )
            states = [
                _head_state(
                    scalars["heads"][i],
                    _take(tensors, f"heads.{i}.mean", path),
                    _take(tensors, f"heads.{i}.sqrt_covariance", path),
                    spec["head"],
                )
                for i in range(n_heads)
            ]
            dim = agent.context_dim + (agent.action_dim if spec["feature_map"] == "concat" else 0)
            for state in states:
                if state["dim"] != dim:
                    raise CheckpointError(
                        f"{path}: head dimension {state['dim']} does not fit this agent ({dim})"
                    )
            # Load into fresh heads and swap them in at the end, so a state that fails to
            # load leaves the agent's own heads untouched.
            fresh = [agent.new_head(dim) for _ in states]
            for head, state in zip(fresh, states, strict=True):
                head.load_state_dict(state)
            _restore_generators(agent, scalars, tensors)
            if spec["feature_map"] != "auto":
                agent.feature_map, agent.heads = spec["feature_map"], fresh
            return
        elif isinstance(agent, NeuralLinearTS):
            encoder_state = _module_state(agent.encoder, tensors, "encoder.", path)
            readout_state = _module_state(agent.readout, tensors, "readout.", path)
            head = _head_state(
                scalars["posterior"],
                _take(tensors, "posterior.mean", path),
                _take(tensors, "posterior.sqrt_covariance", path),
                {k: spec["config"][k] for k in _HEAD_KEYS},
            )
            if head["noise"] != "nig":
                head["noise"] = float(head["noise"])
            posterior = agent.new_head()
            posterior.load_state_dict(head)  # fails here, before the agent is touched
            _restore_generators(agent, scalars, tensors)
            # The module states were checked above: nothing fails from here on.
            agent.posterior = posterior
            agent.encoder.load_state_dict(encoder_state)
            agent.readout.load_state_dict(readout_state)
            agent.rounds = int(scalars["rounds"])
            agent.trainings = int(scalars["trainings"])
            agent.encoder.eval()
            agent.clear_decision_cache()
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: incomplete checkpoint state: {err!r}") from err
    except ValueError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: checkpoint does not fit the agent: {err}") from err


def _restore_generators(
    agent: Agent, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> None:
    """Restore generator states saved on the same device type (else keep the seeded ones)."""
    generators = {"generator": agent.generator}
    if isinstance(agent, NeuralLinearTS):
        generators["sample_generator"] = agent.sample_generator
    saved_on = scalars.get("generator_device", {})
    states = {}
    for name, gen in generators.items():
        state = tensors.get(f"rng.{name}")
        if state is not None and saved_on.get(name) == gen.device.type:
            try:  # validate on a scratch generator before touching the agent's
                torch.Generator(device=gen.device).set_state(state.to(torch.uint8))
            except RuntimeError as err:
                raise CheckpointError(f"invalid random-generator state {name!r}: {err}") from err
            states[name] = state.to(torch.uint8)
    for name, state in states.items():
        generators[name].set_state(state)


# ---------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------


def probe_scores(agent: Agent, obs: Mapping[str, Any]) -> torch.Tensor:
    """Posterior-mean score of every candidate of one observation: (K,) float64, CPU.

    Deterministic (no sampling), so two agents with the same state give identical
    scores; used to check a save/load round trip.

    Raises:
        ValueError: A ``LinearTS`` that has not resolved its feature map yet, or an
            unsupported agent.
    """
    context = torch.as_tensor(np.asarray(obs["context"]))
    candidates = torch.as_tensor(np.asarray(obs["candidates"]), dtype=torch.float32)
    if isinstance(agent, LinearTS):
        x = context.reshape(-1).to(torch.float64).to(agent.device)
        cand = candidates.to(torch.float64).to(agent.device)
        if agent.feature_map == "concat":
            mean = agent.heads[0].mean
            scores = cand @ mean[agent.context_dim :] + x @ mean[: agent.context_dim]
        elif agent.feature_map == "disjoint":
            arms = cand.argmax(dim=-1).tolist()
            scores = torch.stack([x @ agent.heads[arm].mean for arm in arms])
        else:
            raise ValueError("this LinearTS has not resolved feature_map='auto' yet")
        return scores.cpu()
    if isinstance(agent, NeuralLinearTS):
        z = agent.embed(context.to(agent.device), candidates.to(agent.device))
        return (z.to(torch.float64) @ agent.posterior.mean).cpu()
    raise ValueError(f"probe_scores supports LinearTS and NeuralLinearTS, got {type(agent)}")


def _jsonable(value: Any, what: str) -> Any:
    """``value`` with tuples as lists, checked to survive a JSON round trip."""
    norm = _normalize_tree(value)
    try:
        text = json.dumps(norm, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{what} are not JSON-serializable: {err}") from err
    return json.loads(text)


def _normalize_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _normalize_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, torch.Size)):
        return [_normalize_tree(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"non-finite value {value!r} cannot be stored")
    return _normalize(value)
