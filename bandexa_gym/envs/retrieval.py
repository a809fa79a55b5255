"""Large-pool recommendation bandit: cheap retrieval hands a candidate set to the agent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round, check_int, check_nonnegative
from bandexa_gym.envs.synthetic import _check_problem_seed

__all__ = ["RetrievalBanditEnv", "RetrievalRewardModel"]

_BIAS = -1.5
_POPULARITY_WEIGHT = 0.3
_TASTE_RANK = 4  # rank of the nonlinear taste term
_RETRIEVAL_RANK = 4  # rank of the retrieval stage's approximate affinity
_RETRIEVAL_ERROR = 0.5  # relative perturbation of the retrieval stage's affinity matrix


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)


@dataclass(frozen=True)
class RetrievalRewardModel:
    """Parameters of the expected reward of :class:`RetrievalBanditEnv`.

    ``mu(x, a) = sigmoid(-1.5 + x @ W @ a + sum_k c_k tanh((U x)_k (V a)_k) + 0.3 p @ a)``.

    Attributes:
        affinity: ``W``, shape (d_x, d_a), entries N(0, 1 / (d_x d_a)).
        taste_context: ``U``, shape (r, d_x), unit-norm rows (r = 4 or less).
        taste_action: ``V``, shape (r, d_a), unit-norm rows.
        taste_mix: ``c``, shape (r,), entries +-1.
        popularity: ``p``, shape (d_a,), unit norm.
    """

    affinity: np.ndarray
    taste_context: np.ndarray
    taste_action: np.ndarray
    taste_mix: np.ndarray
    popularity: np.ndarray

    def __call__(self, context: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Expected rewards of ``items`` for the user ``context``.

        Args:
            context: User vector, shape (d_x,).
            items: Item features, shape (K, d_a).

        Returns:
            Expected rewards in (0, 1), shape (K,), float64.
        """
        x = np.asarray(context, dtype=np.float64)
        a = np.asarray(items, dtype=np.float64)
        query = self.affinity.T @ x + _POPULARITY_WEIGHT * self.popularity  # (d_a,)
        taste = np.tanh((self.taste_context @ x)[None, :] * (a @ self.taste_action.T))
        logit = _BIAS + a @ query + taste @ self.taste_mix
        return 1.0 / (1.0 + np.exp(-logit))


class RetrievalBanditEnv(CandidateSetEnv):
    """Recommend one of a few hundred items retrieved from a large pool for each user.

    ## Description

    A pool of ``n_actions`` items with latent features ``a ~ N(0, I)`` (``action_dim``)
    is drawn at a seeded reset. Each round a user ``x ~ N(0, I)`` (``context_dim``)
    arrives and a cheap retrieval stage proposes ``candidate_size`` items: the top
    ``(1 - random_fraction)`` share by an approximate affinity (a rank-4, perturbed copy of
    the true bilinear affinity, scored as one matrix-vector product over the pool and
    ``argpartition``) plus a ``random_fraction`` share of uniformly random other items,
    shuffled together. The agent reranks the candidates; regret is measured inside the
    candidate set, against the best candidate retrieved.

    The expected reward (a click-through rate) is::

        mu(x, a) = sigmoid(-1.5 + x @ W @ a + sum_k c_k tanh((U x)_k (V a)_k) + 0.3 p @ a)

    Only the small popularity term ``p @ a`` is shared by all users, so a model linear in
    ``concat(x, a)`` cannot personalize (about 0.4 regret per round with the defaults);
    a two-tower network with ``u * v`` features can learn the bilinear part and most of the
    nonlinear taste term. With the defaults the best candidate averages about 0.93 and the
    mean candidate about 0.4.

    The model and pool are drawn at a seeded reset from ``np_random``, or once from
    ``problem_seed`` when given (then the sub-envs of a vector env share one pool and
    model; without it each sub-env is a different problem). Items come from their own
    stream, row by row, so for one seed a larger ``n_actions`` extends the same pool and
    meets the same users.

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, (context_dim,), float32)``;
    ``candidates``: ``Box(-inf, inf, (K, action_dim), float32)`` with ``K =
    candidate_size`` (or ``n_actions`` when ``candidate_size <= 0``); ``action_mask``:
    all ones, ``Box(0, 1, (K,), int8)``. :attr:`candidate_ids` gives the pool indices of
    the current candidates.

    ## Action Space

    ``Discrete(K)``: the candidate (row of ``candidates``) to recommend.

    ## Rewards

    ``mu(x, a) + N(0, noise_std^2)`` (Gaussian, not clipped, so that Bayesian linear
    regression heads see their own noise model). ``info`` holds the oracle within the
    candidate set.

    ## Starting State and Episode End

    ``reset(seed=s)`` redraws the model and the pool from ``s`` (unless ``problem_seed``
    fixes them); ``reset()`` without a seed keeps them. Rounds never terminate; the id is
    registered without ``max_episode_steps``.

    ## Arguments

    ```python
    gym.make("Bandexa/Retrieval-v0", n_actions=10_000, context_dim=16, action_dim=16,
             candidate_size=512, random_fraction=0.25, noise_std=0.1, problem_seed=None)
    ```

    - ``n_actions``: pool size (>= 1).
    - ``context_dim``, ``action_dim``: user and item feature sizes (>= 1).
    - ``candidate_size``: candidates per round, at most ``n_actions``; ``<= 0`` offers the
      whole pool in pool order (no retrieval stage).
    - ``random_fraction``: share of candidates drawn at random instead of retrieved, in
      [0, 1].
    - ``noise_std``: standard deviation of the Gaussian reward noise (>= 0).
    - ``problem_seed``: draw the reward model and pool from this seed instead of the reset
      seed (``None``: from the reset seed).

    ## Version History

    - v0: Initial version.
    """

    def __init__(
        self,
        n_actions: int = 10_000,
        context_dim: int = 16,
        action_dim: int = 16,
        candidate_size: int = 512,
        random_fraction: float = 0.25,
        noise_std: float = 0.1,
        problem_seed: int | None = None,
    ) -> None:
        for name, value in (
            ("n_actions", n_actions),
            ("context_dim", context_dim),
            ("action_dim", action_dim),
        ):
            check_int(name, value)
        if isinstance(candidate_size, bool) or not isinstance(candidate_size, (int, np.integer)):
            raise ValueError(
                f"candidate_size must be an integer (<= 0 for the whole pool), "
                f"got {candidate_size!r}"
            )
        if candidate_size > n_actions:
            raise ValueError(
                f"candidate_size must be at most n_actions={n_actions} (or <= 0 for the whole "
                f"pool), got {candidate_size}"
            )
        if not 0.0 <= random_fraction <= 1.0:
            raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction!r}")
        check_nonnegative("noise_std", noise_std)

        self.n_actions = int(n_actions)
        self.context_dim = int(context_dim)
        self.full_pool = candidate_size <= 0 or candidate_size == n_actions
        self.candidate_size = self.n_actions if self.full_pool else int(candidate_size)
        self.random_fraction = float(random_fraction)
        self.noise_std = float(noise_std)
        self.problem_seed = _check_problem_seed(problem_seed)
        self._n_random = 0 if self.full_pool else round(self.random_fraction * self.candidate_size)
        self._n_top = self.candidate_size - self._n_random
        super().__init__(
            context_space=spaces.Box(-np.inf, np.inf, (self.context_dim,), np.float32),
            n_candidates=self.candidate_size,
            action_dim=int(action_dim),
        )
        self.reward_model: RetrievalRewardModel | None = None
        self.items: np.ndarray | None = None
        self._retrieval_query: np.ndarray | None = None  # (rank, d_x)
        self._retrieval_items: np.ndarray | None = None  # (n_actions, rank)
        self._all_ids = np.arange(self.n_actions)
        self._mask = np.ones(self.candidate_size, dtype=np.int8)

    @property
    def candidate_ids(self) -> np.ndarray:
        """Pool indices of the current round's candidates, shape (K,)."""
        if self._round is None:
            raise RuntimeError("Call reset() first.")
        return np.array(self._round.payload, copy=True)

    def _on_reset(self, seeded: bool) -> None:
        if self.reward_model is not None and (not seeded or self.problem_seed is not None):
            return  # keep the problem: unseeded reset, or a problem fixed by problem_seed
        if self.problem_seed is None:
            rng = self.np_random
        else:
            rng = np.random.default_rng(self.problem_seed)
        d_x, d_a = self.context_dim, self.action_dim
        rank = min(_TASTE_RANK, d_x, d_a)
        scale = 1.0 / np.sqrt(d_x * d_a)
        self.reward_model = RetrievalRewardModel(
            affinity=rng.standard_normal((d_x, d_a)) * scale,
            taste_context=_unit_rows(rng.standard_normal((rank, d_x))),
            taste_action=_unit_rows(rng.standard_normal((rank, d_a))),
            taste_mix=rng.choice(np.array([-1.0, 1.0]), size=rank),
            popularity=_unit_rows(rng.standard_normal((1, d_a)))[0],
        )
        # The retrieval stage: a low-rank, perturbed copy of the affinity, factored so that
        # a round costs one (n_actions x rank) matrix-vector product.
        noisy = self.reward_model.affinity + _RETRIEVAL_ERROR * scale * rng.standard_normal(
            (d_x, d_a)
        )
        u, s, vt = np.linalg.svd(noisy, full_matrices=False)
        r = min(_RETRIEVAL_RANK, s.size)
        self._retrieval_query = (u[:, :r] * s[:r]).T.astype(np.float32)
        # Items from their own stream, row by row: a larger pool extends the same items and
        # leaves the users unchanged.
        item_rng = np.random.default_rng(int(rng.integers(2**63)))
        items = item_rng.standard_normal((self.n_actions, d_a)).astype(np.float32)
        items.setflags(write=False)
        self.items = items
        self._retrieval_items = np.ascontiguousarray(items @ vt[:r].T.astype(np.float32))

    def _retrieve(self, context: np.ndarray) -> np.ndarray:
        if self.full_pool:
            return self._all_ids
        assert self._retrieval_items is not None and self._retrieval_query is not None
        rng = self.np_random
        if self._n_top == 0:
            return rng.choice(self.n_actions, self.candidate_size, replace=False)
        scores = self._retrieval_items @ (self._retrieval_query @ context)
        # Not full pool, so n_top <= candidate_size < n_actions.
        order = np.argpartition(-scores, self._n_top - 1)
        ids = order[: self._n_top]
        if self._n_random:
            rest = order[self._n_top :]
            ids = np.concatenate([ids, rest[rng.choice(rest.size, self._n_random, replace=False)]])
        rng.shuffle(ids)
        return ids

    def _draw_round(self) -> Round:
        assert self.reward_model is not None and self.items is not None
        context = self.np_random.standard_normal(self.context_dim).astype(np.float32)
        ids = self._retrieve(context)
        candidates = self.items if self.full_pool else self.items[ids]
        return Round(
            context=context,
            candidates=candidates,
            expected_rewards=self.reward_model(context, candidates),
            action_mask=self._mask,
            payload=ids,
        )

    def _draw_reward(self, round_: Round, action: int) -> float:
        noise = self.np_random.normal(0.0, self.noise_std)
        return float(round_.expected_rewards[action] + noise)
