"""Large-pool recommendation bandit: cheap retrieval hands a candidate set to the agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import (
    CandidateSetEnv,
    Round,
    check_array_size,
    check_int,
    check_nonnegative,
    check_unit_interval,
)
from bandexa_gym.envs.drift import Drift, DriftClock, drift_seed_sequence, parse_drift, walk
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


@dataclass(frozen=True)
class _Latent:
    """The Gaussian draws behind a :class:`RetrievalRewardModel`, before scaling.

    Drift moves these; the model scales ``affinity`` and normalizes the unit-norm rows.
    """

    affinity: np.ndarray  # (d_x, d_a), N(0, 1)
    taste_context: np.ndarray  # (r, d_x)
    taste_action: np.ndarray  # (r, d_a)
    taste_mix: np.ndarray  # (r,), +-1
    popularity: np.ndarray  # (1, d_a)


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
    ``problem_seed`` when given. Items come from their own stream, row by row, so for one
    seed a larger ``n_actions`` extends the same pool and meets the same users.
    ``gym.make_vec(id, num_envs=N)`` gives N streams of one problem: sub-env ``i`` is seeded
    ``s + i`` and plays the model and pool that ``reset(seed=s)`` draws (sub-env 0 is
    exactly ``gym.make(id)`` reset with ``s``); ``problem="per_env"`` gives each sub-env its
    own problem. See :func:`bandexa_gym.envs.make_vector_env`.

    With ``drift`` (see :mod:`bandexa_gym.envs.drift`) the user tastes move: the reward
    parameters ``W, U, V, c, p`` change, the item pool does not. Abrupt drift redraws them
    from their prior at the change points; gradual drift moves the Gaussian draws behind
    ``W, U, V, p`` by a mean-reverting random-walk step before every round and keeps the
    signs ``c``. The retrieval stage is refit on the current affinity whenever it moves
    (as a production retrieval model retrained on fresh data; its perturbation is redrawn
    at abrupt changes and kept under gradual drift), so retrieval stays as good as in the
    stationary problem and the reranker must track the change. The moves come from the
    problem's own stream: a seed reproduces them, sub-envs sharing a problem drift
    together, and users and noise are those of the stationary env with the same seed. The
    oracle in ``info`` uses the parameters of the round played (regret against a moving
    optimum, see ``docs/nonstationary.md``).

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, (context_dim,), float32)``;
    ``candidates``: ``Box(-inf, inf, (K, action_dim), float32)`` with ``K =
    candidate_size`` (or ``n_actions`` when ``candidate_size <= 0``); ``action_mask``:
    all ones, ``Box(0, 1, (K,), int8)``. :attr:`candidate_ids` gives the pool indices of
    the current candidates. :attr:`candidates_change` declares that the candidate rows
    change from round to round (False when the whole pool is offered), so that agents built
    by ``make_agent`` start with one head for all candidates instead of one per arm.

    ## Action Space

    ``Discrete(K)``: the candidate (row of ``candidates``) to recommend.

    ## Rewards

    ``mu(x, a) + N(0, noise_std^2)`` (Gaussian, not clipped, so that Bayesian linear
    regression heads see their own noise model). ``info`` holds the oracle within the
    candidate set (``expected_reward``, ``best_expected_reward``, ``regret``,
    ``optimal_action``, and ``expected_rewards`` of every candidate).

    ## Starting State and Episode End

    ``reset(seed=s)`` redraws the model and the pool from ``s`` (unless ``problem_seed``
    fixes them; then a seeded reset restores the initial model and restarts the drift);
    ``reset()`` without a seed keeps them and the drift. Rounds never terminate; the id is
    registered without ``max_episode_steps``.

    ## Arguments

    ```python
    gym.make("Bandexa/Retrieval-v0", n_actions=10_000, context_dim=16, action_dim=16,
             candidate_size=512, random_fraction=0.25, noise_std=0.1, problem_seed=None,
             drift=None)
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
    - ``drift``: ``None`` (stationary), or when the tastes move:
      ``{"kind": "abrupt", "every": N}``, ``{"kind": "abrupt", "at": [t1, t2, ...]}``,
      ``{"kind": "gradual", "rate": r}`` or a :class:`~bandexa_gym.envs.Drift`.

    ## Version History

    - v0: Initial version.
    - v0 (unreleased): ``gym.make_vec`` shares one problem across sub-envs by default
      (``problem="per_env"`` for the former behaviour); ``drift=``;
      ``info["expected_rewards"]``; ``noise_std`` and ``random_fraction`` must be numbers
      (``TypeError`` otherwise). Without drift the round stream of a single env is
      unchanged.
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
        drift: Drift | Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (
            ("n_actions", n_actions),
            ("context_dim", context_dim),
            ("action_dim", action_dim),
        ):
            check_int(name, value)
        sizes = f"n_actions={n_actions!r}, context_dim={context_dim!r}, action_dim={action_dim!r}"
        check_array_size("the item pool", (n_actions, action_dim), np.float32, sizes)
        check_array_size("the pool's item ids", (n_actions,), np.int64, sizes)
        check_array_size("the affinity matrix", (context_dim, action_dim), np.float64, sizes)
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
        check_unit_interval("random_fraction", random_fraction)
        check_nonnegative("noise_std", noise_std)

        self.n_actions = int(n_actions)
        self.context_dim = int(context_dim)
        self.full_pool = candidate_size <= 0 or candidate_size == n_actions
        self.candidate_size = self.n_actions if self.full_pool else int(candidate_size)
        self.candidates_change = not self.full_pool  # read by make_agent
        self.random_fraction = float(random_fraction)
        self.noise_std = float(noise_std)
        self.problem_seed = _check_problem_seed(problem_seed)
        self.drift = parse_drift(drift)
        self._n_random = 0 if self.full_pool else round(self.random_fraction * self.candidate_size)
        self._n_top = self.candidate_size - self._n_random
        super().__init__(
            context_space=spaces.Box(-np.inf, np.inf, (self.context_dim,), np.float32),
            n_candidates=self.candidate_size,
            action_dim=int(action_dim),
        )
        self.reward_model: RetrievalRewardModel | None = None
        self._latent: _Latent | None = None
        self._retrieval_error: np.ndarray | None = None  # (d_x, d_a), N(0, 1)
        self._initial: tuple[_Latent, RetrievalRewardModel, np.ndarray] | None = None
        self._clock: DriftClock | None = None
        self.items: np.ndarray | None = None
        self._retrieval_query: np.ndarray | None = None  # (rank, d_x)
        self._retrieval_basis: np.ndarray | None = None  # (d_a, rank)
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
        if self.reward_model is not None and not seeded:
            return  # unseeded reset: keep the problem and its drift, continue the rounds
        if self.problem_seed is not None and self._initial is not None:
            # A problem fixed by problem_seed is kept; its drift starts over.
            latent, model, error = self._initial
            if model is not self.reward_model:
                self._set_parameters(latent, error)
            if self._clock is not None:
                self._clock.restart()
            return
        if self.problem_seed is None:
            rng = self._problem_rng()
        else:
            rng = np.random.default_rng(self.problem_seed)
        latent = self._draw_latent(rng)
        error = rng.standard_normal((self.context_dim, self.action_dim))
        self._set_parameters(latent, error)
        assert self.reward_model is not None
        self._initial = (latent, self.reward_model, error)
        # Items from their own stream, row by row: a larger pool extends the same items and
        # leaves the users unchanged.
        item_rng = np.random.default_rng(int(rng.integers(2**63)))
        items = item_rng.standard_normal((self.n_actions, self.action_dim)).astype(np.float32)
        items.setflags(write=False)
        self.items = items
        self._fit_retrieval_items()
        self._clock = None
        if self.drift is not None:
            self._clock = DriftClock(self.drift, drift_seed_sequence(rng))

    def _draw_latent(self, rng: np.random.Generator) -> _Latent:
        d_x, d_a = self.context_dim, self.action_dim
        rank = min(_TASTE_RANK, d_x, d_a)
        return _Latent(
            affinity=rng.standard_normal((d_x, d_a)),
            taste_context=rng.standard_normal((rank, d_x)),
            taste_action=rng.standard_normal((rank, d_a)),
            taste_mix=rng.choice(np.array([-1.0, 1.0]), size=rank),
            popularity=rng.standard_normal((1, d_a)),
        )

    def _set_parameters(self, latent: _Latent, retrieval_error: np.ndarray) -> None:
        """Install the reward model of ``latent`` and refit the retrieval stage on it."""
        scale = 1.0 / np.sqrt(self.context_dim * self.action_dim)
        self._latent = latent
        self._retrieval_error = retrieval_error
        self.reward_model = RetrievalRewardModel(
            affinity=latent.affinity * scale,
            taste_context=_unit_rows(latent.taste_context),
            taste_action=_unit_rows(latent.taste_action),
            taste_mix=latent.taste_mix,
            popularity=_unit_rows(latent.popularity)[0],
        )
        # The retrieval stage: a low-rank, perturbed copy of the affinity, factored so that
        # a round costs one (n_actions x rank) matrix-vector product.
        noisy = self.reward_model.affinity + _RETRIEVAL_ERROR * scale * retrieval_error
        u, s, vt = np.linalg.svd(noisy, full_matrices=False)
        r = min(_RETRIEVAL_RANK, s.size)
        self._retrieval_query = (u[:, :r] * s[:r]).T.astype(np.float32)
        self._retrieval_basis = vt[:r].T.astype(np.float32)  # (d_a, rank)
        if self.items is not None:
            self._fit_retrieval_items()

    def _fit_retrieval_items(self) -> None:
        """Project the pool on the retrieval basis, or leave it for per-round scoring.

        Under gradual drift the basis changes every round: projecting the whole pool
        (n_actions x d_a x rank) each time would cost more than scoring it unprojected.
        """
        assert self.items is not None and self._retrieval_basis is not None
        if self.drift is not None and self.drift.kind == "gradual":
            self._retrieval_items = None
        else:
            self._retrieval_items = np.ascontiguousarray(self.items @ self._retrieval_basis)

    def retrieval_scores(self, context: np.ndarray) -> np.ndarray:
        """The retrieval stage's approximate affinity of every pool item for a user.

        Args:
            context: User vector, shape (d_x,).

        Returns:
            Scores, shape (n_actions,), float32; the top ``candidate_size`` share of the
            candidates are the highest.
        """
        assert self.items is not None
        assert self._retrieval_query is not None and self._retrieval_basis is not None
        query = self._retrieval_query @ np.asarray(context, dtype=np.float32)  # (rank,)
        if self._retrieval_items is None:
            return self.items @ (self._retrieval_basis @ query)
        return self._retrieval_items @ query

    def _move_parameters(self, clock: DriftClock) -> None:
        """Apply one drift event to the tastes (not to the item pool)."""
        assert self._latent is not None and self._retrieval_error is not None
        assert self.drift is not None
        if self.drift.kind == "abrupt":
            latent = self._draw_latent(clock.rng)
            error = clock.rng.standard_normal(self._retrieval_error.shape)
        else:
            rate = float(self.drift.rate)  # type: ignore[arg-type]
            latent = _Latent(
                affinity=walk(self._latent.affinity, rate, clock.rng),
                taste_context=walk(self._latent.taste_context, rate, clock.rng),
                taste_action=walk(self._latent.taste_action, rate, clock.rng),
                taste_mix=self._latent.taste_mix,
                popularity=walk(self._latent.popularity, rate, clock.rng),
            )
            error = self._retrieval_error
        self._set_parameters(latent, error)

    def _retrieve(self, context: np.ndarray) -> np.ndarray:
        if self.full_pool:
            return self._all_ids
        rng = self.np_random
        if self._n_top == 0:
            return rng.choice(self.n_actions, self.candidate_size, replace=False)
        scores = self.retrieval_scores(context)
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
        if self._clock is not None and self._clock.tick():
            self._move_parameters(self._clock)
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
