"""How a trained neural agent moves into a template built for a new configuration.

The contract is documented in :mod:`bandexa_gym.transfer`; this module holds the
neural-specific steps every neural agent shares (encoder growth, optimizer state, replay
buffer) and ``neural_linear_ts``'s whole move (:func:`evolve_neural`). Agents are typed as
their base, :class:`~bandexa_gym.agents.learning.ReplayAgent`.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bandexa_gym.agents._growth import context_growth, hyper_note
from bandexa_gym.agents.learning import ReplayAgent
from bandexa_gym.features.encoders import Encoder
from bandexa_gym.heads.conjugate import load_rebased
from bandexa_gym.heads.logistic import LaplaceLogisticRegression

OldTransitions = Literal["pad", "drop"]
_COPY_CHUNK = 4096


def _structure(module: nn.Module) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in module.named_modules()]


def grow_encoder(encoder: Encoder, template: Encoder) -> Encoder:
    """A copy of ``encoder`` grown to ``template``'s inputs (``encoder`` untouched)."""
    grown = copy.deepcopy(encoder)
    context_dim = template.context_shape[0] if len(template.context_shape) == 1 else None
    grown.grow_input(context_dim=context_dim, action_dim=template.action_dim)
    return grown


def check_evolved_encoders(old: Encoder, new: Encoder) -> Encoder:
    """Validate that ``old`` can become ``new``; returns ``old`` grown to ``new``'s inputs."""
    if type(old) is not type(new):
        raise ValueError(
            f"encoder class differs: the trained agent has a {type(old).__name__}, the "
            f"template a {type(new).__name__}; learned weights only transfer within one "
            "architecture"
        )
    if old.feature_dim != new.feature_dim:
        raise ValueError(
            f"feature_dim differs: the trained encoder outputs d={old.feature_dim}, the "
            f"template's d={new.feature_dim}; the Bayesian head and readout live in that "
            "space, so it must match"
        )
    context_growth(tuple(old.context_shape), tuple(new.context_shape), "encoder")
    if new.action_dim < old.action_dim:
        raise ValueError(
            f"action_dim shrinks from {old.action_dim} to {new.action_dim}: the encoder's "
            "action inputs can only grow"
        )
    grown = grow_encoder(old, new)
    old_structure, new_structure = _structure(grown), _structure(new)
    if old_structure != new_structure:
        end = [("<end>", "-")] * abs(len(old_structure) - len(new_structure))
        padded_old = old_structure + end[: max(0, len(new_structure) - len(old_structure))]
        padded_new = new_structure + end[: max(0, len(old_structure) - len(new_structure))]
        pairs = zip(padded_old, padded_new, strict=True)
        (name_a, kind_a), (name_b, kind_b) = next((a, b) for a, b in pairs if a != b)
        raise ValueError(
            "encoder architecture differs (layers or activations): the trained encoder has "
            f"{name_a!r} ({kind_a}) where the template has {name_b!r} ({kind_b})"
        )
    old_state, new_state = grown.state_dict(), new.state_dict()
    for name in [*old_state, *(k for k in new_state if k not in old_state)]:  # module order
        a, b = old_state.get(name), new_state.get(name)
        if a is None or b is None or a.shape != b.shape:
            shape_a = None if a is None else tuple(a.shape)
            shape_b = None if b is None else tuple(b.shape)
            raise ValueError(
                f"encoder architecture differs: parameter {name!r} has shape {shape_a} in "
                f"the trained encoder (after growing its inputs) and {shape_b} in the "
                "template (hidden sizes or channels differ)"
            )
    return grown


def new_action_inputs(old: Encoder, new: Encoder) -> dict[str, Tensor]:
    """Masks of the weights that read the action inputs ``old`` lacks and ``new`` has.

    Found by growing a copy of ``old`` whose weights are all 1: first its context (the
    new context columns are then set to 1 too), then its actions; the weights still 0
    are exactly those of the new action inputs. Returns ``{parameter name: bool mask}``
    for the parameters that have any.
    """
    if new.action_dim == old.action_dim:
        return {}
    shadow = copy.deepcopy(old)
    with torch.no_grad():
        for p in shadow.parameters():
            p.fill_(1.0)
        if len(new.context_shape) == 1:
            shadow.grow_input(context_dim=new.context_shape[0])
            for p in shadow.parameters():
                p.fill_(1.0)
        shadow.grow_input(action_dim=new.action_dim)
    masks = {name: p.detach() == 0 for name, p in shadow.named_parameters()}
    return {name: mask for name, mask in masks.items() if bool(mask.any())}


def _named_trainables(agent: ReplayAgent) -> dict[str, nn.Parameter]:
    named = {f"encoder.{n}": p for n, p in agent.encoder.named_parameters()}
    named.update({f"readout.{n}": p for n, p in agent.readout.named_parameters()})
    return named


def carry_optimizer_state(agent: ReplayAgent, template: ReplayAgent) -> str:
    """Give the template's optimizer the trained optimizer's per-parameter state.

    Tensors shaped like a parameter (Adam's moments) are grown like the encoder, so the
    new input weights get zero moments; other entries (the step count) are copied.
    """
    if type(agent.optimizer) is not type(template.optimizer):
        return "optimizer: fresh (the template uses another optimizer class)"
    old_named = _named_trainables(agent)
    old_state = {n: agent.optimizer.state.get(p) for n, p in old_named.items()}
    if not any(old_state.values()):
        return "optimizer: fresh (the trained optimizer has taken no step)"
    # Grow every moment tensor with the encoder's own widening rule (zeros for new inputs).
    moment_keys = {
        key
        for name, entry in old_state.items()
        if entry and name.startswith("encoder.")
        for key, value in entry.items()
        if torch.is_tensor(value) and value.shape == old_named[name].shape
    }
    grown_moments: dict[str, dict[str, Tensor]] = {}
    for key in moment_keys:
        shadow = copy.deepcopy(agent.encoder)
        with torch.no_grad():
            for n, p in shadow.named_parameters():
                entry = old_state.get(f"encoder.{n}")
                value = entry.get(key) if entry else None
                p.copy_(value if value is not None and value.shape == p.shape else 0.0)
        shadow = grow_encoder(shadow, template.encoder)
        grown_moments[key] = {f"encoder.{n}": p.detach() for n, p in shadow.named_parameters()}
    in_optimizer = {id(p) for group in template.optimizer.param_groups for p in group["params"]}
    carried = 0
    for name, param in _named_trainables(template).items():
        source = old_state.get(name)
        if not source or id(param) not in in_optimizer:
            continue
        entry: dict[str, Any] = {}
        for key, value in source.items():
            if torch.is_tensor(value):
                if key in grown_moments and value.shape == old_named[name].shape:
                    value = grown_moments[key].get(name, value)
                entry[key] = value.detach().clone().to(param.device)
            else:
                entry[key] = copy.deepcopy(value)
        template.optimizer.state[param] = entry
        carried += 1
    return f"optimizer: template's, with the trained state of {carried} tensors carried over"


def pad_fn(
    context_shape: tuple[int, ...], old_dims: tuple[int, int], new_dims: tuple[int, int]
) -> Any:
    """``fn(X, A) -> (X, A)`` zero-padding contexts (vector only) and actions at the end."""
    (dx_old, da_old), (dx_new, da_new) = old_dims, new_dims

    def pad(X: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
        if len(context_shape) == 1 and dx_new > dx_old:
            X = torch.cat([X, X.new_zeros(X.shape[0], dx_new - dx_old)], dim=1)
        if da_new > da_old:
            A = torch.cat([A, A.new_zeros(A.shape[0], da_new - da_old)], dim=1)
        return X, A

    return pad


def move_buffer(
    agent: ReplayAgent, template: ReplayAgent, pad: Any, old_transitions: OldTransitions
) -> str:
    source, target = agent.buffer, template.buffer
    if old_transitions == "drop":
        return f"buffer: {len(source)} old transitions dropped (old_transitions='drop')"
    if target is source:
        source.transform(pad)
        return f"buffer: shared with the trained agent, {len(source)} transitions padded in place"
    copied, padded = 0, False
    for X, A, R in source.iter_chunks(_COPY_CHUNK):
        X_new, A_new = pad(X, A)
        padded = padded or X_new.shape != X.shape or A_new.shape != A.shape
        target.add_batch(X_new, A_new, R)
        copied += X.shape[0]
    kept = len(target)
    how = " zero-padded" if padded else ""
    lost = f" ({copied - kept} oldest beyond its capacity dropped)" if kept < copied else ""
    return f"buffer: {copied} transitions copied{how} into the template's{lost}"


def _carry_head(new: Any, old: Any) -> bool:
    """Load ``old``'s state into ``new``; a Gaussian head is re-based on ``new``'s prior if it
    differs (returns whether it was), a logistic one is copied (same prior, checked before)."""
    if isinstance(new, LaplaceLogisticRegression):
        new.load_state_dict(old.state_dict())
        return False
    return load_rebased(new, old.state_dict())


def _carry_heads(agent: ReplayAgent, template: ReplayAgent) -> tuple[bool, str]:
    """Move the head(s): the shared head, or one head per arm (arms keep their identity:
    one-hot positions, or content rows padded with zeros for new action features)."""
    if agent.arm_mode != "per_arm":
        template.arm_mode = agent.arm_mode if template.config.arm_heads == "auto" else "shared"
        template.heads = [template.new_head()]
        rebased = _carry_head(template.heads[0], agent.heads[0])
        head = agent.heads[0]
        return rebased, f"head kept (d={head.dim}, n_obs={head.n_obs})"
    if template.config.arm_heads == "shared":
        raise ValueError(
            "arm heads differ: the trained agent has one head per arm, the template "
            "arm_heads='shared'; per-arm heads cannot become one shared head"
        )
    scalars, rows = agent.registry.state()
    width = template.encoder.action_dim
    padded = torch.cat([rows, rows.new_zeros(rows.shape[0], width - rows.shape[1])], dim=1)
    template.registry.load(scalars, padded)
    template.arm_mode = "per_arm"
    template.heads = [template.new_head() for _ in range(template.registry.n_arms)]
    rebased = False
    for old, new in zip(agent.heads, template.heads, strict=False):
        rebased |= _carry_head(new, old)
    added = len(template.heads) - len(agent.heads)
    return rebased, f"{len(agent.heads)} per-arm heads kept, {added} new arms at the prior"


def _carry_reward_units(agent: ReplayAgent, template: ReplayAgent) -> None:
    """The template's head came in the trained agent's reward units: take its scaler too
    (a template that does not standardize rebuilds its head in raw units)."""
    template.reward_scaler.adopt(agent.reward_scaler)
    if template.reward_scaler.back_to_raw() and len(template.buffer):
        template.rebuild_posterior()


def evolve_neural(
    agent: ReplayAgent, template: ReplayAgent, old_transitions: OldTransitions = "pad"
) -> str:
    """Fill the cold-start ``template`` with what ``agent`` learned (see
    :func:`bandexa_gym.transfer.evolve` for the contract); returns a one-line summary."""
    if old_transitions not in ("pad", "drop"):
        raise ValueError(f"old_transitions must be 'pad' or 'drop', got {old_transitions!r}")
    kind = getattr(agent.config, "head_kind", "gaussian")
    if getattr(template.config, "head_kind", "gaussian") != kind:
        raise ValueError(
            f"head_kind differs: the trained agent has a {kind!r} head, the template a "
            f"{template.config.head_kind!r} one"
        )
    if kind == "logistic" and template.config.head.prior_var != agent.config.head.prior_var:
        raise ValueError(
            f"prior_var differs ({agent.config.head.prior_var} -> "
            f"{template.config.head.prior_var}): a logistic head cannot be re-based on another "
            "prior (its posterior is not conjugate); evolve with the same prior_var"
        )
    old_enc, new_enc = agent.encoder, template.encoder
    grown = check_evolved_encoders(old_enc, new_enc)
    if old_transitions == "drop" and template.buffer is agent.buffer:
        raise ValueError(
            "old_transitions='drop' needs a template with its own (empty) buffer; this "
            "template shares the trained agent's buffer"
        )
    if template.buffer is not agent.buffer and len(template.buffer) > 0:
        raise ValueError(
            f"template.buffer already holds {len(template.buffer)} transitions; evolve expects "
            "a cold-start template with an empty buffer (or the trained agent's own buffer)"
        )
    dx_old = old_enc.context_shape[0] if len(old_enc.context_shape) == 1 else 0
    dx_new = new_enc.context_shape[0] if len(new_enc.context_shape) == 1 else 0
    pad = pad_fn(
        tuple(old_enc.context_shape), (dx_old, old_enc.action_dim), (dx_new, new_enc.action_dim)
    )

    state = grown.state_dict()
    initial = new_enc.state_dict()  # the template's cold-start weights
    for name, mask in new_action_inputs(old_enc, new_enc).items():
        dev = initial[name].device
        state[name] = torch.where(mask.to(dev), initial[name], state[name].to(dev))
    with torch.no_grad():
        new_enc.load_state_dict(state)
        template.readout.load_state_dict(agent.readout.state_dict())
        arms = agent.arm_readout.out_features  # one row per one-hot arm; new arms keep theirs
        template.arm_readout.weight[:arms].copy_(agent.arm_readout.weight)
        template.arm_readout.bias[:arms].copy_(agent.arm_readout.bias)
        template.feature_shift = agent.feature_shift.to(template.device).clone()
        template.feature_gain = agent.feature_gain.to(template.device).clone()
    rebased, head_note = _carry_heads(agent, template)
    optimizer_note = carry_optimizer_state(agent, template)
    buffer_note = move_buffer(agent, template, pad, old_transitions)
    template.rounds = agent.rounds
    template.trainings = agent.trainings
    template.encoder.eval()
    template.clear_feature_cache()  # its encoder weights were replaced
    _carry_reward_units(agent, template)

    growth = []
    if tuple(new_enc.context_shape) != tuple(old_enc.context_shape):
        growth.append(f"context {dx_old} -> {dx_new} features, new weights zero")
    if new_enc.action_dim != old_enc.action_dim:
        growth.append(
            f"action {old_enc.action_dim} -> {new_enc.action_dim} inputs, new weights from the "
            "template's initialisation"
        )
    encoder_note = (
        f"encoder {type(new_enc).__name__} inputs expanded ({'; '.join(growth)})"
        if growth
        else f"encoder {type(new_enc).__name__} kept (same inputs)"
    )
    phase = "still in warm-up" if template.exploring else "past warm-up"
    return (
        f"{encoder_note}; {head_note}"
        f"{hyper_note(rebased, agent.config.head, template.config.head)}; readout kept; "
        f"{optimizer_note}; {buffer_note}; rounds={template.rounds} kept ({phase})"
    )
