"""``peer:mabwiser-lints``: per-arm linear Thompson sampling from
`MABWiser <https://github.com/fidelity/mabwiser>`_ (``LearningPolicy.LinTS``).

MABWiser's LinTS keeps a ridge regression per arm and samples its coefficients from
``N(beta, alpha^2 (X^T X + l2_lambda I)^-1)`` each round. The library inverts the
d x d matrix on every update and factorizes the covariance on every draw, so a round
costs O(K d^3): fine on tabular problems, far too slow on 784-dimensional images
(see :data:`MABWISER_MAX_CONTEXT_DIM`). Arms are candidate indices (see
:class:`~bandexa_gym.agents.peer_base.FixedArms`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from bandexa_gym.agents.core import register_agent
from bandexa_gym.agents.peer_base import PerArmPeer, check_context_dim, import_peer_library

__all__ = ["MABWISER_MAX_CONTEXT_DIM", "MABWiserLinTS"]

MABWISER_MAX_CONTEXT_DIM = 256
"""Widest context ``peer:mabwiser-lints`` takes by default. Measured on 2 busy cores
with one BLAS thread and K = 10: 150-350 rounds/s at 16-36 features, 3-5 at 784 (a
4,096-round MNIST run would take 15-25 minutes a seed)."""


class MABWiserLinTS(PerArmPeer):
    """MABWiser's ``LinTS`` learning policy, one ridge regression per arm.

    The library's model is initialized at its prior with an empty ``fit`` (so it samples
    from round one); deciding asks ``predict_expectations`` for one sampled expected
    reward per arm and plays the largest among the offered arms (MABWiser has no masks,
    so masked arms are sampled and ignored); learning is ``partial_fit`` of the chosen
    arm with the reward as it is (LinTS regresses real-valued rewards).

    Args:
        context_shape: Shape of one context (flattened for the regressions).
        n_candidates: K, the number of arms.
        action_dim: d_a (unused by the model: arms are indices).
        alpha: LinTS's exploration multiplier (library default 1.0).
        l2_lambda: LinTS's ridge regularization (library default 1.0).
        scale: LinTS's feature standardization (library default False).
        intercept: Append a constant 1 feature (each arm gets a bias).
        seed: The ``MAB`` seed (its NumPy generator).
        device: The CPU.
        max_pending: Decisions awaiting feedback that the agent keeps at most.
    """

    name = "peer:mabwiser-lints"
    library = "mabwiser"

    def __init__(
        self,
        context_shape: tuple[int, ...],
        n_candidates: int,
        action_dim: int,
        *,
        alpha: float = 1.0,
        l2_lambda: float = 1.0,
        scale: bool = False,
        intercept: bool = True,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        max_pending: int = 10_000,
    ) -> None:
        self._mab = import_peer_library("mabwiser.mab", self.name)
        self.learning_policy = self._mab.LearningPolicy.LinTS(
            alpha=alpha, l2_lambda=l2_lambda, scale=scale
        )
        super().__init__(
            context_shape,
            n_candidates,
            action_dim,
            intercept=intercept,
            seed=seed,
            device=device,
            max_pending=max_pending,
        )
        self.build()

    def build(self) -> None:
        self.model = self._mab.MAB(
            list(range(self.n_candidates)), self.learning_policy, seed=self.library_seed()
        )
        self.model.fit([], [], np.empty((0, self.feature_dim)))

    def choose_row(self, x: np.ndarray, offered: np.ndarray) -> int:
        expectations = self.model.predict_expectations(x)
        values = np.array([expectations[int(k)] for k in offered])
        return int(offered[int(np.argmax(values))])

    def learn_row(self, x: np.ndarray, arm: int, reward: float) -> None:
        self.model.partial_fit([arm], [reward], x)


@register_agent("peer:mabwiser-lints")
def _make_mabwiser_lints(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    max_context_dim: int | None = MABWISER_MAX_CONTEXT_DIM,
    **overrides: Any,
) -> MABWiserLinTS:
    """MABWiser's per-arm linear Thompson sampling (fixed arms only)."""
    context_shape = space["context"].shape
    check_context_dim(
        "peer:mabwiser-lints",
        int(np.prod(context_shape)),
        max_context_dim,
        "about 3-5 rounds/s at 784 features and 10 arms",
    )
    n_candidates, action_dim = space["candidates"].shape
    return MABWiserLinTS(
        context_shape, n_candidates, action_dim, seed=seed, device=device, **overrides
    )
