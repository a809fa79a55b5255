"""Agents of other bandit libraries, run through adapters and measured like our own.

Registered names (extra ``[peers]``: ``pip install "bandexa-gym[peers]"``):

* ``peer:bayesianbandits``: one normal-inverse-gamma regressor per arm on the context,
  Thompson sampling (:class:`~bandexa_gym.agents.peer_bayesianbandits.BayesianBanditsTS`).
* ``peer:vw-squarecb``: Vowpal Wabbit ``--cb_explore_adf --squarecb`` on shared context
  and per-candidate features (:class:`~bandexa_gym.agents.peer_vw.VWSquareCB`).
* ``peer:mabwiser-lints``: MABWiser's per-arm ``LinTS``
  (:class:`~bandexa_gym.agents.peer_mabwiser.MABWiserLinTS`).

The per-arm peers need a fixed arm set; on problems whose candidates change every round
they raise :class:`~bandexa_gym.agents.core.protocol.NotApplicableError`, and ``bandexa-bench``
reports them as "n/a" there (see :mod:`bandexa_gym.agents.applicability`). A per-arm peer
refuses contexts wider than its ``max_context_dim`` (too slow there) the same way.
The libraries are imported only when a peer is built.
"""

from __future__ import annotations

from bandexa_gym.agents.core import NotApplicableError
from bandexa_gym.agents.peer_base import PEERS_EXTRA, FixedArms, PeerAgent, PerArmPeer
from bandexa_gym.agents.peer_bayesianbandits import (
    BAYESIANBANDITS_MAX_CONTEXT_DIM,
    BayesianBanditsTS,
)
from bandexa_gym.agents.peer_mabwiser import MABWISER_MAX_CONTEXT_DIM, MABWiserLinTS
from bandexa_gym.agents.peer_vw import VWSquareCB

__all__ = [
    "BAYESIANBANDITS_MAX_CONTEXT_DIM",
    "MABWISER_MAX_CONTEXT_DIM",
    "PEERS",
    "PEERS_EXTRA",
    "PEER_LIBRARIES",
    "BayesianBanditsTS",
    "FixedArms",
    "MABWiserLinTS",
    "NotApplicableError",
    "PeerAgent",
    "PerArmPeer",
    "VWSquareCB",
]

PEERS: tuple[str, ...] = ("peer:bayesianbandits", "peer:vw-squarecb", "peer:mabwiser-lints")
"""Registered names of the peer adapters."""

PEER_LIBRARIES: dict[str, str] = {
    "peer:bayesianbandits": "bayesianbandits",
    "peer:vw-squarecb": "vowpalwabbit",
    "peer:mabwiser-lints": "mabwiser",
}
"""The library (distribution name) behind each peer."""
