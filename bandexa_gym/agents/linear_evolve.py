"""Evolving a trained linear agent (``linear_ts``, ``logistic_ts``) to new context features
and arms: ``LinearTS.evolve_from``. Functions on the agents' heads (typed as their base
:class:`~bandexa_gym.agents.head_agent.HeadAgent`)."""

from __future__ import annotations

import torch

from bandexa_gym.agents._growth import context_growth, hyper_note
from bandexa_gym.agents.head_agent import HeadAgent
from bandexa_gym.heads.conjugate import grown_state, load_rebased

__all__ = ["evolve_linear"]


def _concat_order(dx_old: int, da_old: int, dx_new: int, da_new: int) -> torch.Tensor:
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


def _carry_reward_units(
    agent: HeadAgent, template: HeadAgent, dx_old: int, da_old: int, dx_new: int, da_new: int
) -> None:
    """Give the template the trained agent's reward statistics, grown like its heads.

    New features were absent (zero) in every old row, so their ``Zᵀr`` and ``Zᵀ1`` are 0.
    """
    concat = agent.feature_map == "concat"
    order = _concat_order(dx_old, da_old, dx_new, da_new) if concat else None
    f_old = dx_old + (da_old if concat else 0)
    f_new = dx_new + (da_new if concat else 0)
    extra = int(agent.head_config.intercept and template.head_config.intercept)
    for old, new in zip(agent.target_stats, template.target_stats, strict=False):
        for name in ("zr", "zs"):
            source, grown = getattr(old, name), getattr(new, name).zero_()
            grown[:f_old] = source[:f_old]  # features; the new ones were absent (zero)
            if order is not None:
                grown[:f_new] = grown[:f_new][order.to(grown.device)].clone()
            if extra:
                grown[f_new] = source[f_old]  # the intercept's (Σr, n) stays last
        new.moments.copy_(old.moments)
    template.reward_scaler.adopt(agent.reward_scaler)  # the units the heads are in


def _settle_reward_units(template: HeadAgent) -> None:
    """A template that does not standardize rewards gets its heads back in raw units."""
    if template.reward_scaler.back_to_raw():
        template.retarget_heads()


def evolve_linear(agent: HeadAgent, template: HeadAgent) -> str:
    """Fill the cold-start ``template`` with what ``agent`` learned (see
    :func:`bandexa_gym.transfer.evolve`): heads grown to the new features and arms, reward
    units carried over; returns a one-line summary."""
    dx_old, dx_new = context_growth(agent.context_shape, template.context_shape, "agent")
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
    if fmap in ("concat", "per_arm") and da_new < da_old:
        raise ValueError(
            f"action_dim shrinks from {da_old} to {da_new}: a {fmap!r} agent cannot drop "
            "action features (only 'disjoint' heads can drop arms)"
        )
    if template.feature_map == "auto":
        template.build_heads(fmap)  # the template would resolve the same way on its data
    if fmap == "per_arm":  # the same arms, their rows padded with zeros for new features
        _, rows = agent.registry.state()
        padded = torch.cat([rows, rows.new_zeros(rows.shape[0], da_new - da_old)], dim=1)
        template.registry.load({"one_hot": False}, padded)
        template._grow_heads()
    template.rounds = agent.rounds
    _carry_reward_units(agent, template, dx_old, da_old, dx_new, da_new)
    note = hyper_note(True, agent.head_config, template.head_config)
    context = (
        f"context {dx_old} -> {dx_new} features"
        if dx_new > dx_old
        else f"context unchanged ({dx_old} features)"
    )
    if fmap == "concat":
        old_head, new_head = agent.heads[0], template.heads[0]
        order = _concat_order(dx_old, da_old, dx_new, da_new)
        rebased = load_rebased(new_head, grown_state(old_head, dx_new + da_new, order))
        _settle_reward_units(template)
        return (
            f"concat head expanded {old_head.dim} -> {new_head.dim} "
            f"({context}, action {da_old} -> {da_new} features; new weights at the prior, "
            f"new context features placed between x and a); kept mean, covariance and "
            f"n_obs={old_head.n_obs}{note if rebased else ''}"
        )
    if fmap == "per_arm":
        rebased = False
        for old_head, new_head in zip(agent.heads, template.heads, strict=True):
            rebased |= load_rebased(new_head, grown_state(old_head, dx_new))
        _settle_reward_units(template)
        return (
            f"per-arm heads, {context}; kept all {len(agent.heads)} arms (rows padded to "
            f"{da_new} action features){note if rebased else ''}"
        )
    kept = list(range(min(da_old, da_new)))
    added = list(range(da_old, da_new))
    dropped = list(range(da_new, da_old))
    rebased = False
    for arm in kept:
        rebased |= load_rebased(template.heads[arm], grown_state(agent.heads[arm], dx_new))
    _settle_reward_units(template)
    with_data = [arm for arm in kept if agent.heads[arm].n_obs > 0]
    grown = f"heads grown {dx_old} -> {dx_new} by prior blocks; " if dx_new > dx_old else ""
    return (
        f"disjoint heads, {context}; kept arms {_ranges(kept)} ({grown}with data: "
        f"{_ranges(with_data)}); added arms {_ranges(added)} (at the prior); "
        f"dropped arms {_ranges(dropped)}{note if rebased and kept else ''}"
    )
