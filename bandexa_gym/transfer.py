"""Evolve a trained agent to a new configuration without starting over.

A deployed bandit gains context features (a new signal is logged), gains or loses arms
(a label, a product), or gets new hyper-parameters. :func:`evolve` moves what a trained
agent learned into a cold-start *template* agent built for the new configuration::

    template = make_agent("linear_ts", new_env, seed=1)   # the new configuration
    agent = evolve(trained, template)                    # template, filled; trained untouched

The contract, per agent type:

* :class:`~bandexa_gym.agents.LinearTS` ``concat`` (one head over φ = [x; a]): the head
  grows by prior blocks (mean 0, variance ``prior_var``, uncorrelated) for the new context
  and action features. New context features sit *between* x and a, so the grown state is
  permuted to the new layout (rows of the square-root factor, entries of the mean). Mean,
  covariance and the NIG counts of the old block are kept, so the score distribution of
  any input whose new features are zero is unchanged.
* :class:`~bandexa_gym.agents.LinearTS` ``disjoint`` (one head per one-hot position): each
  arm kept by the template keeps its head, grown by prior blocks for new context
  features; arms new to the template start from its prior; arms beyond the template's
  ``action_dim`` are dropped.
* :class:`~bandexa_gym.agents.NeuralLinearTS`: the trained encoder's input layers are
  grown (:func:`~bandexa_gym.encoders.grow_input`) and loaded into the template's encoder.
  Weights reading new context features start at zero; weights reading new action inputs
  (e.g. the one-hot position of a new arm) take the template's initial values. Either way
  they multiply inputs that are zero for every old (context, action) pair, so
  ``z(x ⊕ 0, a ⊕ 0) = z(x, a)`` exactly. (Zero action weights would give every new arm the
  same features ``z(x, 0)``: new arms would be indistinguishable to the head and tied in
  every decision.) The head and the readout are kept; the template's
  optimizer (built over the template's parameters with the template's learning rate)
  receives the trained optimizer's state (Adam moments and step count, zero for the new
  input weights); the replay buffer's transitions are copied, zero-padded, into the
  template's buffer, so the next scheduled training and head rebuild use them
  (``old_transitions="drop"`` leaves them out: see :func:`evolve`). The round
  and training counters are kept: an agent past its warm-up does not re-enter it, and the
  ``train_every`` schedule goes on where it was (a template whose ``warmup_random``
  exceeds the rounds played finishes the remaining warm-up).

Head hyper-parameters (``prior_var``, ``noise``, ``a0``, ``b0``) may differ between the two
agents. The head is then *re-based* exactly: the data's sufficient statistics (``ZᵀZ``,
``Zᵀr``, ``rᵀr``, n) are recovered from the trained posterior and combined with the
template's prior and noise model, which equals the head the template would have after
absorbing the same data (see :func:`rebase_head_state`). With equal hyper-parameters the
state is copied bit for bit.

Exploring new arms: a new ``disjoint`` LinearTS arm starts at its prior, which Thompson
sampling tries at once. NeuralLinearTS has one head over z for all arms, so a new arm is
explored only as far as its features ``z(x, a_new)`` are new to that head. Arms described
by feature vectors are scored from what was learned about similar arms and are taken up
quickly; a new *one-hot* arm may look familiar to a head trained for long and be tried
rarely (on a small 4 -> 6 one-hot problem it was never played in 600 rounds; on MNIST,
labels 8 and 9 were learned, see the example's README).

What cannot be transferred raises ``ValueError`` naming the field: a different agent
class, ``feature_map``, encoder class or architecture (layer types, hidden sizes,
``feature_dim``), a context that shrinks or an image context that changes shape, and an
action input that shrinks (except for ``disjoint`` heads, where it drops arms).

The template is filled in place and returned (build a fresh one per call); the generators
stay the template's (its seed is part of its configuration). Nothing of the trained agent
is modified, except a replay buffer deliberately shared by both agents, which is padded in
place with :meth:`~bandexa_gym.buffers.ReplayBuffer.transform`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn

from bandexa_gym.agents.base import Agent
from bandexa_gym.agents.linear_ts import LinearTS
from bandexa_gym.agents.neural_linear_ts import NeuralLinearTS
from bandexa_gym.encoders import Encoder
from bandexa_gym.posterior import BayesianLinearRegression, safe_cholesky

__all__ = ["evolve", "rebase_head_state"]

logger = logging.getLogger("bandexa_gym.transfer")

AgentT = TypeVar("AgentT", bound=Agent)
OldTransitions = Literal["pad", "drop"]

_HEAD_HYPER = ("noise", "prior_var", "a0", "b0")
_COPY_CHUNK = 4096


def evolve(agent: Agent, template: AgentT, *, old_transitions: OldTransitions = "pad") -> AgentT:
    """Fill the cold-start ``template`` with what ``agent`` learned, where the two overlap.

    Args:
        agent: The trained agent (a :class:`~bandexa_gym.agents.LinearTS` or
            :class:`~bandexa_gym.agents.NeuralLinearTS`); it is not modified.
        template: A cold-start agent of the same class built for the new configuration
            (more context features, more or other arms, other hyper-parameters). Its
            configuration, seed and generators are kept; its learned state is replaced.
        old_transitions: ``NeuralLinearTS`` only: what the template's replay buffer gets.
            ``"pad"`` (default): every old transition, zero-padded to the new inputs, so
            later trainings and head rebuilds use them. ``"drop"``: none; the head
            learned from them is kept until the next scheduled rebuild, which then uses
            only new rounds. Padding is exact for new action inputs (old actions really
            had zeros there); for context features that existed but were not observed,
            zero is only an imputation, and dropping can learn faster (see the README of
            ``examples/04_evolve_model.py``).

    Returns:
        ``template``, filled in place (see the module docstring for what is kept,
        expanded, added and dropped). One ``INFO`` line on the ``bandexa_gym.transfer``
        logger summarises it.

    Raises:
        ValueError: A structural mismatch that cannot be transferred; the message names
            the field and both values. Nothing is modified then.
        TypeError: An agent type that :func:`evolve` does not know.
    """
    if old_transitions not in ("pad", "drop"):
        raise ValueError(f"old_transitions must be 'pad' or 'drop', got {old_transitions!r}")
    if template is agent:
        raise ValueError("template must be a new (cold-start) agent, not the trained agent itself")
    if type(agent) is not type(template):
        raise ValueError(
            f"agent class differs: the trained agent is a {type(agent).__name__}, the template "
            f"a {type(template).__name__}; evolve transfers state between agents of one class"
        )
    if isinstance(agent, LinearTS):
        assert isinstance(template, LinearTS)
        summary = _evolve_linear(agent, template)
    elif isinstance(agent, NeuralLinearTS):
        assert isinstance(template, NeuralLinearTS)
        summary = _evolve_neural(agent, template, old_transitions)
    else:
        raise TypeError(
            f"evolve supports LinearTS and NeuralLinearTS agents, got {type(agent).__name__}"
        )
    logger.info("evolved %s: %s", type(agent).__name__, summary)
    return template


# ---------------------------------------------------------------------------------------
# Bayesian linear regression heads
# ---------------------------------------------------------------------------------------


def _hyper(head: BayesianLinearRegression) -> dict[str, Any]:
    state = head.state_dict()
    return {k: state[k] for k in _HEAD_HYPER}


def _grown_state(
    head: BayesianLinearRegression, new_dim: int, order: Tensor | None = None
) -> dict[str, Any]:
    """State of ``head`` grown to ``new_dim`` by prior blocks, then permuted by ``order``.

    Args:
        head: Source head (not modified).
        new_dim: New feature dimension D >= ``head.dim``; features ``head.dim..D-1`` are new.
        order: Optional permutation (D,): new feature ``j`` is grown feature ``order[j]``.

    Returns:
        A :meth:`BayesianLinearRegression.state_dict` of dimension D. Permuting the rows of
        the square-root factor ``S`` (D, D) permutes ``Σ = S Sᵀ`` symmetrically, so the
        result is a valid factor of the permuted covariance; ``logdet``, n and ``quad``
        are invariant.
    """
    grown = copy.deepcopy(head)
    grown.expand(new_dim)
    state = grown.state_dict()
    if order is not None:
        order = order.to(state["mean"].device)
        state["mean"] = state["mean"][order]
        state["sqrt_covariance"] = state["sqrt_covariance"][order]
    return state


def rebase_head_state(
    state: Mapping[str, Any],
    *,
    prior_var: float,
    noise: str | float,
    a0: float,
    b0: float,
) -> dict[str, Any]:
    """Re-express a head's posterior under another prior and noise model, same data.

    The posterior of :class:`~bandexa_gym.posterior.BayesianLinearRegression` is a
    function of the data's sufficient statistics, which are recovered from the state
    (``v`` = σ² for fixed noise, 1 under NIG; ``Λ = (S Sᵀ)⁻¹``)::

        ZᵀZ = v (Λ − I / prior_var),   Zᵀr = v Λ μ,   rᵀr = v (quad + μᵀ Λ μ)

    and combined with the new hyper-parameters as in ``rebuild``:
    ``Λ' = I / prior_var' + ZᵀZ / v'``, ``μ' = Λ'⁻¹ Zᵀr / v'``, ``S' = L'⁻ᵀ``,
    ``quad' = rᵀr / v' − μ'ᵀ Λ' μ'``; n is kept and ``a``, ``b`` follow from ``a0'``,
    ``b0'``. O(d³), once.

    Args:
        state: A ``BayesianLinearRegression.state_dict()`` (mean (d,), sqrt_covariance
            (d, d), n_obs, quad, logdet and the old hyper-parameters).
        prior_var: New prior variance.
        noise: New noise model, ``"nig"`` or a fixed variance.
        a0: New NIG prior shape.
        b0: New NIG prior scale.

    Returns:
        A state dict for a head with the new hyper-parameters.
    """
    mean = torch.as_tensor(state["mean"])
    factor = torch.as_tensor(state["sqrt_covariance"]).to(mean.dtype)
    d = mean.shape[0]
    eye = torch.eye(d, dtype=mean.dtype, device=mean.device)
    old_v = 1.0 if state["noise"] == "nig" else float(state["noise"])
    new_v = 1.0 if noise == "nig" else float(noise)
    s_inv = torch.linalg.solve(factor, eye)
    prec = s_inv.T @ s_inv
    prec = 0.5 * (prec + prec.T)  # Λ (d, d)
    gram = (prec - eye / float(state["prior_var"])) * old_v  # ZᵀZ
    zr = (prec @ mean) * old_v  # Zᵀr
    rr = old_v * (float(state["quad"]) + float(mean @ prec @ mean))  # rᵀr
    new_prec = gram / new_v + eye / float(prior_var)
    L = safe_cholesky(new_prec)
    new_mean = torch.cholesky_solve((zr / new_v).unsqueeze(1), L).squeeze(1)
    new_factor = torch.linalg.solve_triangular(L, eye, upper=False).T  # L⁻ᵀ
    fit = float((L.T @ new_mean).pow(2).sum())  # μ'ᵀ Λ' μ'
    return {
        "dim": d,
        "noise": noise if noise == "nig" else float(noise),
        "prior_var": float(prior_var),
        "a0": float(a0),
        "b0": float(b0),
        "mean": new_mean,
        "sqrt_covariance": new_factor,
        "n_obs": int(state["n_obs"]),
        "quad": max(rr / new_v - fit, 0.0),
        "logdet": float(-2.0 * L.diagonal().log().sum()),
    }


def _load_head(target: BayesianLinearRegression, state: Mapping[str, Any]) -> bool:
    """Load ``state`` into ``target``, re-basing when the hyper-parameters differ.

    Returns:
        Whether the state was re-based.
    """
    wanted = _hyper(target)
    if all(state[k] == wanted[k] for k in _HEAD_HYPER):
        target.load_state_dict(state)
        return False
    target.load_state_dict(rebase_head_state(state, **wanted))
    return True


def _hyper_note(rebased: bool, old: BayesianLinearRegression, new: BayesianLinearRegression) -> str:
    if not rebased:
        return ""
    before, after = _hyper(old), _hyper(new)
    changed = ", ".join(
        f"{k} {before[k]!r} -> {after[k]!r}" for k in _HEAD_HYPER if before[k] != after[k]
    )
    return f"; head re-based on the template's prior ({changed})"


# ---------------------------------------------------------------------------------------
# LinearTS
# ---------------------------------------------------------------------------------------


def _context_growth(
    old_shape: tuple[int, ...], new_shape: tuple[int, ...], who: str
) -> tuple[int, int]:
    """Check that a context may go from ``old_shape`` to ``new_shape``; (d_x old, d_x new)."""
    if old_shape == new_shape:
        d = math.prod(old_shape)
        return d, d
    if len(old_shape) != 1 or len(new_shape) != 1:
        raise ValueError(
            f"context_shape differs: the trained {who} takes {old_shape}, the template "
            f"{new_shape}; only vector contexts can gain features (image shapes must match)"
        )
    if new_shape[0] < old_shape[0]:
        raise ValueError(
            f"context_shape shrinks from {old_shape} to {new_shape}: the template must keep "
            "every context feature the trained agent learned from (features can only be added)"
        )
    return old_shape[0], new_shape[0]


def _concat_order(dx_old: int, da_old: int, dx_new: int, da_new: int) -> Tensor:
    """Permutation from the grown layout to φ = [x; a] of the new sizes.

    The grown layout is ``[x_old | a_old | new context features | new action features]``
    (``expand`` appends); the target is ``[x_old | new context | a_old | new action]``.
    """
    d_old, extra_x = dx_old + da_old, dx_new - dx_old
    parts = (
        torch.arange(0, dx_old),
        torch.arange(d_old, d_old + extra_x),
        torch.arange(dx_old, d_old),
        torch.arange(d_old + extra_x, dx_new + da_new),
    )
    return torch.cat(parts)


def _ranges(items: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``; ``"none"`` when empty."""
    if not items:
        return "none"
    out, start = [], items[0]
    for prev, cur in zip(items, [*items[1:], None], strict=True):
        if cur != prev + 1:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(out)


def _evolve_linear(agent: LinearTS, template: LinearTS) -> str:
    dx_old, dx_new = _context_growth(agent.context_shape, template.context_shape, "agent")
    da_old, da_new = agent.action_dim, template.action_dim
    fmap = agent.feature_map
    if fmap == "auto":  # never saw a candidate set: no head yet, nothing learned
        return "the trained agent has no head yet (feature_map 'auto'): nothing to transfer"
    if template.feature_map not in ("auto", fmap):
        raise ValueError(
            f"feature_map differs: the trained agent uses {fmap!r}, the template "
            f"{template.feature_map!r}; a {fmap} posterior cannot become a "
            f"{template.feature_map} one"
        )
    if fmap == "concat" and da_new < da_old:
        raise ValueError(
            f"action_dim shrinks from {da_old} to {da_new}: a 'concat' head cannot drop action "
            "features (only 'disjoint' heads can drop arms)"
        )
    if template.feature_map == "auto":
        template.build_heads(fmap)  # the template would resolve the same way on its data

    context = (
        f"context {dx_old} -> {dx_new} features"
        if dx_new > dx_old
        else f"context unchanged ({dx_old} features)"
    )
    if fmap == "concat":
        old_head, new_head = agent.heads[0], template.heads[0]
        order = _concat_order(dx_old, da_old, dx_new, da_new)
        state = _grown_state(old_head, dx_new + da_new, order)
        rebased = _load_head(new_head, state)
        return (
            f"concat head expanded {old_head.dim} -> {new_head.dim} "
            f"({context}, action {da_old} -> {da_new} features; new weights at the prior, "
            f"new context features placed between x and a); kept mean, covariance and "
            f"n_obs={old_head.n_obs}{_hyper_note(rebased, old_head, new_head)}"
        )
    kept = list(range(min(da_old, da_new)))
    added = list(range(da_old, da_new))
    dropped = list(range(da_new, da_old))
    rebased = False
    for arm in kept:
        state = _grown_state(agent.heads[arm], dx_new)
        rebased |= _load_head(template.heads[arm], state)
    with_data = [arm for arm in kept if agent.heads[arm].n_obs > 0]
    grown = f"heads grown {dx_old} -> {dx_new} by prior blocks; " if dx_new > dx_old else ""
    note = _hyper_note(rebased, agent.heads[0], template.heads[0]) if kept else ""
    return (
        f"disjoint heads, {context}; kept arms {_ranges(kept)} ({grown}with data: "
        f"{_ranges(with_data)}); added arms {_ranges(added)} (at the prior); "
        f"dropped arms {_ranges(dropped)}{note}"
    )


# ---------------------------------------------------------------------------------------
# NeuralLinearTS
# ---------------------------------------------------------------------------------------


def _structure(module: nn.Module) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in module.named_modules()]


def _grow(encoder: Encoder, template: Encoder) -> Encoder:
    """A copy of ``encoder`` grown to ``template``'s inputs (``encoder`` untouched)."""
    grown = copy.deepcopy(encoder)
    context_dim = template.context_shape[0] if len(template.context_shape) == 1 else None
    grown.grow_input(context_dim=context_dim, action_dim=template.action_dim)
    return grown


def _check_encoders(old: Encoder, new: Encoder) -> Encoder:
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
    _context_growth(tuple(old.context_shape), tuple(new.context_shape), "encoder")
    if new.action_dim < old.action_dim:
        raise ValueError(
            f"action_dim shrinks from {old.action_dim} to {new.action_dim}: the encoder's "
            "action inputs can only grow"
        )
    grown = _grow(old, new)
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


def _new_action_inputs(old: Encoder, new: Encoder) -> dict[str, Tensor]:
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


def _named_trainables(agent: NeuralLinearTS) -> dict[str, nn.Parameter]:
    named = {f"encoder.{n}": p for n, p in agent.encoder.named_parameters()}
    named.update({f"readout.{n}": p for n, p in agent.readout.named_parameters()})
    return named


def _carry_optimizer_state(agent: NeuralLinearTS, template: NeuralLinearTS) -> str:
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
        shadow = _grow(shadow, template.encoder)
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


def _pad_fn(
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


def _move_buffer(
    agent: NeuralLinearTS, template: NeuralLinearTS, pad: Any, old_transitions: OldTransitions
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


def _evolve_neural(
    agent: NeuralLinearTS, template: NeuralLinearTS, old_transitions: OldTransitions
) -> str:
    old_enc, new_enc = agent.encoder, template.encoder
    grown = _check_encoders(old_enc, new_enc)
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
    pad = _pad_fn(
        tuple(old_enc.context_shape), (dx_old, old_enc.action_dim), (dx_new, new_enc.action_dim)
    )

    state = grown.state_dict()
    initial = new_enc.state_dict()  # the template's cold-start weights
    for name, mask in _new_action_inputs(old_enc, new_enc).items():
        dev = initial[name].device
        state[name] = torch.where(mask.to(dev), initial[name], state[name].to(dev))
    with torch.no_grad():
        new_enc.load_state_dict(state)
        template.readout.load_state_dict(agent.readout.state_dict())
    rebased = _load_head(template.posterior, agent.posterior.state_dict())
    optimizer_note = _carry_optimizer_state(agent, template)
    buffer_note = _move_buffer(agent, template, pad, old_transitions)
    template.rounds = agent.rounds
    template.trainings = agent.trainings
    template.encoder.eval()
    template.clear_decision_cache()  # its encoder weights were replaced

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
        f"{encoder_note}; head kept (d={agent.posterior.dim}, n_obs={agent.posterior.n_obs})"
        f"{_hyper_note(rebased, agent.posterior, template.posterior)}; readout kept; "
        f"{optimizer_note}; {buffer_note}; rounds={template.rounds} kept ({phase})"
    )
