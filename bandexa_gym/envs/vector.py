"""Vector envs whose sub-envs play one problem on parallel round streams.

``gym.make_vec("Bandexa/Synthetic-v0", num_envs=N)`` goes through the id's
``vector_entry_point``, which is :func:`make_vector_env`: N sub-envs seeded ``s, s+1, ...``
(so N different round streams) that all play the problem a single env reset with seed
``s`` plays; sub-env 0 is exactly that single env. ``problem="per_env"`` gives each
sub-env its own problem (drawn from its own seed) instead.

Gymnasium's own vectorizers (``vectorization_mode="sync"`` or ``"async"`` in
``gym.make_vec``, or ``SyncVectorEnv([...])`` by hand) know nothing of this: each sub-env
then draws its own problem, unless ``problem_seed=`` fixes one for all. Use
:func:`make_vector_env` directly to wrap the sub-envs (``wrappers=[RegretMonitor]``),
which ``gym.make_vec`` does not allow together with a vector entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from bandexa_gym.envs.core import CandidateSetEnv, check_bool, check_int

__all__ = [
    "SharedProblemAsyncVectorEnv",
    "SharedProblemSyncVectorEnv",
    "make_vector_env",
    "retrieval_vector_env",
    "synthetic_vector_env",
]

Problem = Literal["shared", "per_env"]
Seed = int | Sequence[int | None] | None


class _SharedSeeding:
    """Seed handling of a vector env whose sub-envs share one problem.

    The first reset is always seeded (a random seed when none is given): sub-env ``i``
    gets ``s + i`` and derives the shared problem from ``s``, which an unseeded reset
    could not tell it. Per-sub-env seeds must therefore be consecutive.
    """

    num_envs: int
    _problem_seeded: bool = False

    def _shared_seed(self, seed: Seed) -> int | None:
        if seed is None:
            if self._problem_seeded:
                return None  # continue: every sub-env keeps the shared problem
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        elif not isinstance(seed, int):
            seeds = list(seed)
            if len(seeds) != self.num_envs or any(
                not isinstance(value, int) or value != seeds[0] + i for i, value in enumerate(seeds)
            ):
                raise ValueError(
                    "sub-envs sharing one problem take one integer seed s (sub-env i gets "
                    f"s + i), or the list [s, s + 1, ...]; got {seed!r}. Use "
                    'problem="per_env" for independent problems with seeds of your choice.'
                )
            seed = seeds[0]
        self._problem_seeded = True
        return seed


class SharedProblemSyncVectorEnv(_SharedSeeding, SyncVectorEnv):
    """A :class:`~gymnasium.vector.SyncVectorEnv` whose sub-envs play one problem."""

    def reset(
        self, *, seed: Seed = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return super().reset(seed=self._shared_seed(seed), options=options)


class SharedProblemAsyncVectorEnv(_SharedSeeding, AsyncVectorEnv):
    """An :class:`~gymnasium.vector.AsyncVectorEnv` whose sub-envs play one problem."""

    def reset_async(self, seed: Seed = None, options: dict[str, Any] | None = None) -> None:
        super().reset_async(seed=self._shared_seed(seed), options=options)


def _sub_env_factory(
    env_id: str,
    index: int,
    share: bool,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]],
    env_kwargs: dict[str, Any],
) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(env_id, **env_kwargs)
        base = env.unwrapped
        if share:
            if not isinstance(base, CandidateSetEnv):
                raise TypeError(
                    f'problem="shared" needs a Bandexa candidate-set env; {env_id} builds '
                    f"{type(base).__name__}"
                )
            base.shared_problem_index = index
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    return make


def make_vector_env(
    env_id: str,
    num_envs: int = 1,
    *,
    problem: Problem = "shared",
    asynchronous: bool = False,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] | None = None,
    vector_kwargs: dict[str, Any] | None = None,
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A vector env over a Bandexa id: N round streams of one problem by default.

    Example:
        >>> from bandexa_gym.envs import RegretMonitor, make_vector_env
        >>> vec = make_vector_env("Bandexa/Synthetic-v0", 4, wrappers=[RegretMonitor])
        >>> obs, _ = vec.reset(seed=0)  # sub-env i: seed i, the problem of seed 0
        >>> obs["context"].shape
        (4, 10)

    Args:
        env_id: A registered id (``"Bandexa/Synthetic-v0"``, ...).
        num_envs: Number of sub-envs (>= 1).
        problem: ``"shared"``: every sub-env plays the problem that a single env reset with
            the vector env's seed ``s`` plays, on its own round stream (seed ``s + i``);
            an unseeded first reset picks a random ``s``. ``"per_env"``: sub-env ``i``
            draws its own problem from its own seed, as with Gymnasium's vectorizers.
            Envs whose problem is a dataset (MNIST, classification) share it either way.
        asynchronous: Run the sub-envs in worker processes
            (:class:`~gymnasium.vector.AsyncVectorEnv`) instead of in this one.
        wrappers: Applied to each sub-env in order, e.g. ``[RegretMonitor]``.
        vector_kwargs: Passed to the vector env's constructor.
        **env_kwargs: Passed to ``gym.make(env_id, ...)`` for every sub-env.

    Returns:
        The vector env (a :class:`SharedProblemSyncVectorEnv` /
        :class:`SharedProblemAsyncVectorEnv` when shared).

    Raises:
        ValueError: ``problem`` or ``num_envs`` is invalid.
        TypeError: ``asynchronous`` is not a bool.
    """
    num_envs = check_int("num_envs", num_envs)
    if problem not in ("shared", "per_env"):
        raise ValueError(f'problem must be "shared" or "per_env", got {problem!r}')
    asynchronous = check_bool("asynchronous", asynchronous)
    share = problem == "shared"
    fns = [
        _sub_env_factory(env_id, i, share, tuple(wrappers or ()), env_kwargs)
        for i in range(num_envs)
    ]
    if share:
        cls: type[gym.vector.VectorEnv] = (
            SharedProblemAsyncVectorEnv if asynchronous else SharedProblemSyncVectorEnv
        )
    else:
        cls = AsyncVectorEnv if asynchronous else SyncVectorEnv
    return cls(fns, **(vector_kwargs or {}))


def _vector_entry_point(env_id: str) -> Callable[..., gym.vector.VectorEnv]:
    def create(num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
        return make_vector_env(env_id, num_envs, **kwargs)

    create.__doc__ = f"``vector_entry_point`` of ``{env_id}``: :func:`make_vector_env`."
    return create


#: ``vector_entry_point`` of ``Bandexa/Synthetic-v0``.
synthetic_vector_env = _vector_entry_point("Bandexa/Synthetic-v0")
#: ``vector_entry_point`` of ``Bandexa/Retrieval-v0``.
retrieval_vector_env = _vector_entry_point("Bandexa/Retrieval-v0")
