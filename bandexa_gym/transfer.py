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

import logging
from typing import Literal, TypeVar

from bandexa_gym.agents.core import Agent
from bandexa_gym.heads.conjugate import rebase_head_state

__all__ = ["evolve", "rebase_head_state"]

logger = logging.getLogger("bandexa_gym.transfer")

AgentT = TypeVar("AgentT", bound=Agent)
OldTransitions = Literal["pad", "drop"]


def evolve(agent: Agent, template: AgentT, *, old_transitions: OldTransitions = "pad") -> AgentT:
    """Fill the cold-start ``template`` with what ``agent`` learned, where the two overlap.

    Every agent class states how in its ``evolve_from`` method; this function checks the
    pair, dispatches and logs one summary line.

    Args:
        agent: The trained agent (e.g. a :class:`~bandexa_gym.agents.LinearTS` or
            :class:`~bandexa_gym.agents.NeuralLinearTS`); it is not modified.
        template: A cold-start agent of the same class built for the new configuration
            (more context features, more or other arms, other hyper-parameters). Its
            configuration, seed and generators are kept; its learned state is replaced.
        old_transitions: Agents with a replay buffer only: what the template's buffer
            gets. ``"pad"`` (default): every old transition, zero-padded to the new inputs,
            so later trainings and head rebuilds use them. ``"drop"``: none; the head
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
        TypeError: An agent class that does not support evolve.
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
    evolve_from = getattr(template, "evolve_from", None)
    if evolve_from is None:
        raise TypeError(f"{type(agent).__name__} agents do not support evolve")
    summary = evolve_from(agent, old_transitions=old_transitions)
    logger.info("evolved %s: %s", type(agent).__name__, summary)
    return template
