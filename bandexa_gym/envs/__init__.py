"""Contextual-bandit environments whose observation carries the candidate set.

``import bandexa_gym`` registers the ids below (idempotently); so does
``gym.make("bandexa_gym:Bandexa/<Name>-v0")`` with no import at all.

=============================  ================================================================
id                             entry point
=============================  ================================================================
``Bandexa/Synthetic-v0``       :class:`SyntheticBanditEnv`
``Bandexa/MNIST-v0``           :class:`MNISTBanditEnv`
``Bandexa/FashionMNIST-v0``    :class:`FashionMNISTBanditEnv`
``Bandexa/Retrieval-v0``       :class:`RetrievalBanditEnv`
``Bandexa/Classification-v0``  :class:`ClassificationBanditEnv` (``X``/``y`` or ``dataset=``)
``Bandexa/Adult-v0``           :class:`AdultBanditEnv`
``Bandexa/Letter-v0``          :class:`LetterBanditEnv`
``Bandexa/Satimage-v0``        :class:`SatimageBanditEnv`
``Bandexa/Pendigits-v0``       :class:`PendigitsBanditEnv`
``Bandexa/Wheel-v0``           :class:`WheelBanditEnv` (hard exploration, rare large rewards)
=============================  ================================================================

No id sets ``max_episode_steps``: a bandit is one unending stream of rounds, and an
episode boundary would only make RL loops call ``reset()``. Pass
``gym.make(id, max_episode_steps=N)`` when episodes are wanted (unseeded resets keep the
same problem, so truncation only splits the stream).

Ids whose problem is drawn at random (Synthetic, Retrieval) have a ``vector_entry_point``
(:data:`VECTOR_ENTRY_POINTS`): ``gym.make_vec(id, num_envs=N)`` gives N round streams of
one problem, ``problem="per_env"`` one problem per sub-env (see :func:`make_vector_env`).
The data-backed ids share their dataset across sub-envs with any vectorizer.
"""

from __future__ import annotations

import gymnasium as gym

from bandexa_gym.envs.classification import ClassificationBanditEnv
from bandexa_gym.envs.core import CandidateSetEnv, Round
from bandexa_gym.envs.datafiles import CorruptDataError, MissingDataError
from bandexa_gym.envs.drift import Drift
from bandexa_gym.envs.mnist import FashionMNISTBanditEnv, MNISTBanditEnv
from bandexa_gym.envs.retrieval import RetrievalBanditEnv
from bandexa_gym.envs.synthetic import SyntheticBanditEnv
from bandexa_gym.envs.uci import (
    AdultBanditEnv,
    LetterBanditEnv,
    PendigitsBanditEnv,
    SatimageBanditEnv,
)
from bandexa_gym.envs.vector import make_vector_env
from bandexa_gym.envs.wheel import WheelBanditEnv
from bandexa_gym.envs.wrappers import FlattenCandidates, RegretMonitor, RewardAffine

__all__ = [
    "ENV_IDS",
    "VECTOR_ENTRY_POINTS",
    "AdultBanditEnv",
    "CandidateSetEnv",
    "ClassificationBanditEnv",
    "CorruptDataError",
    "Drift",
    "FashionMNISTBanditEnv",
    "FlattenCandidates",
    "LetterBanditEnv",
    "MNISTBanditEnv",
    "MissingDataError",
    "PendigitsBanditEnv",
    "RegretMonitor",
    "RetrievalBanditEnv",
    "RewardAffine",
    "Round",
    "SatimageBanditEnv",
    "SyntheticBanditEnv",
    "WheelBanditEnv",
    "make_vector_env",
    "register_envs",
]

#: Registered ids and their entry points.
ENV_IDS: dict[str, str] = {
    "Bandexa/Synthetic-v0": "bandexa_gym.envs.synthetic:SyntheticBanditEnv",
    "Bandexa/MNIST-v0": "bandexa_gym.envs.mnist:MNISTBanditEnv",
    "Bandexa/FashionMNIST-v0": "bandexa_gym.envs.mnist:FashionMNISTBanditEnv",
    "Bandexa/Retrieval-v0": "bandexa_gym.envs.retrieval:RetrievalBanditEnv",
    "Bandexa/Classification-v0": "bandexa_gym.envs.classification:ClassificationBanditEnv",
    "Bandexa/Adult-v0": "bandexa_gym.envs.uci:AdultBanditEnv",
    "Bandexa/Letter-v0": "bandexa_gym.envs.uci:LetterBanditEnv",
    "Bandexa/Satimage-v0": "bandexa_gym.envs.uci:SatimageBanditEnv",
    "Bandexa/Pendigits-v0": "bandexa_gym.envs.uci:PendigitsBanditEnv",
    "Bandexa/Wheel-v0": "bandexa_gym.envs.wheel:WheelBanditEnv",
}

#: Vector entry points: ``gym.make_vec`` shares one problem across the sub-envs.
VECTOR_ENTRY_POINTS: dict[str, str] = {
    "Bandexa/Synthetic-v0": "bandexa_gym.envs.vector:synthetic_vector_env",
    "Bandexa/Retrieval-v0": "bandexa_gym.envs.vector:retrieval_vector_env",
}


def register_envs() -> None:
    """Register the ``Bandexa/*`` ids with Gymnasium; a no-op for ids already registered.

    Safe to call any number of times (no "overriding environment" warning).
    """
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=VECTOR_ENTRY_POINTS.get(env_id),
            )
