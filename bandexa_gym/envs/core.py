"""Base class for contextual-bandit environments whose observation carries the candidate set."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

MAX_ARRAY_BYTES = 2**30
"""The largest array an env may hold (1 GiB): one observation's candidates (K x d_a
float32), an item pool, a problem's parameter matrix. Constructor arguments that would need
more are refused at once by :func:`check_array_size`, before anything is allocated."""


@dataclass
class Round:
    """One round of a candidate-set bandit, as drawn by an environment.

    Attributes:
        context: The context x, shaped like the ``context`` observation space.
        candidates: Candidate action features, shape (K, d_a), float32.
        expected_rewards: Expected reward of every candidate, shape (K,), float64.
        action_mask: 1 for candidates on offer, 0 for padding, shape (K,), int8.
        payload: Anything the subclass needs to draw the reward (e.g. the true label).
    """

    context: np.ndarray
    candidates: np.ndarray
    expected_rewards: np.ndarray
    action_mask: np.ndarray
    payload: Any = None


class CandidateSetEnv(gym.Env[dict, int]):
    """A stream of contextual-bandit rounds with the candidate set in the observation.

    Subclasses build ``context_space`` and call ``super().__init__``; then they implement
    :meth:`_draw_round` (the next context, its candidates and their expected rewards) and
    :meth:`_draw_reward` (the observed reward of the chosen candidate). All randomness
    must come from ``self.np_random`` so that ``reset(seed=s)`` reproduces the stream.

    ## Observation Space

    ``Dict(context=Box, candidates=Box(K, d_a), action_mask=Box(0, 1, (K,), int8))``.

    ## Action Space

    ``Discrete(K)``: the row of ``candidates`` to play. Masked rows are never optimal.

    ## Rewards

    Defined by the subclass. ``info`` carries the oracle for measurement only, as numpy
    values (so that readers which take an info value's ``dtype``, such as TorchRL's
    ``default_info_dict_reader``, accept them): ``expected_reward`` (of the chosen action),
    ``best_expected_reward`` and ``regret`` (their difference, >= 0) as ``np.float64``,
    ``optimal_action`` as ``np.int64``, and ``expected_rewards``: the expected reward of
    every candidate of the round just played, shape (K,), float64, a fresh copy (for logs
    and off-policy evaluation).

    ## Action Masks

    :meth:`action_masks` returns the current round's ``action_mask`` as booleans, the
    method sb3-contrib's ``MaskablePPO`` looks up (through any Gymnasium wrapper, with
    ``get_wrapper_attr``), so masked candidates are never played.

    ## Episode End

    Rounds never terminate; ``truncated`` comes from ``max_episode_steps``.

    ## Shared problems in vector envs

    :attr:`shared_problem_index` is 0 for a standalone env. The vector envs of
    :func:`bandexa_gym.envs.make_vector_env` set it to ``i`` on sub-env ``i``, which is
    reset with seed ``s + i``: subclasses that draw a problem take it from
    :meth:`_problem_rng`, which then gives sub-env ``i`` the generator sub-env 0 drew its
    problem from (seeded ``s``), so all sub-envs play one problem on their own rounds.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        context_space: spaces.Box,
        n_candidates: int,
        action_dim: int,
        candidate_low: float = -np.inf,
        candidate_high: float = np.inf,
    ) -> None:
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        check_array_size(
            "one observation's candidates",
            (n_candidates, action_dim),
            np.float32,
            f"n_candidates={n_candidates!r}, action_dim={action_dim!r}",
        )
        self.n_candidates = int(n_candidates)
        self.action_dim = int(action_dim)
        self.observation_space = spaces.Dict(
            {
                "context": context_space,
                "candidates": spaces.Box(
                    candidate_low, candidate_high, (self.n_candidates, self.action_dim), np.float32
                ),
                "action_mask": spaces.Box(0, 1, (self.n_candidates,), np.int8),
            }
        )
        self.action_space = spaces.Discrete(self.n_candidates)
        self._round: Round | None = None
        #: Index of this env among vector sub-envs that share one problem (0: standalone).
        self.shared_problem_index = 0
        self._reset_seed: int | None = None

    # -- subclass hooks ---------------------------------------------------------------
    def _draw_round(self) -> Round:
        """Draw the next round from ``self.np_random``."""
        raise NotImplementedError

    def _draw_reward(self, round_: Round, action: int) -> float:
        """Draw the observed reward of ``action`` in ``round_`` from ``self.np_random``."""
        raise NotImplementedError

    def _on_reset(self, seeded: bool) -> None:
        """Called by :meth:`reset` after seeding and before the first round is drawn.

        Subclasses draw their problem (reward parameters, fixed action features, item pool)
        here, from ``self.np_random`` or from a fixed problem seed of their own.
        ``seeded`` is True when ``reset`` got a seed; an unseeded reset of an already-built
        problem should keep the problem and only continue the round stream, so that
        libraries that reset between episodes (SB3) keep facing the same bandit.

        Args:
            seeded: Whether ``reset`` was called with ``seed`` set.
        """

    # -- Gymnasium API ----------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._reset_seed = seed
        self._on_reset(seed is not None)
        self._round = self._draw_round()
        return self._observation(), {}

    def step(
        self, action: int | np.integer
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._round is None:
            raise RuntimeError("Call reset() before step().")
        index = self._check_action(action)
        round_ = self._round
        expected = round_.expected_rewards
        offered = np.where(round_.action_mask.astype(bool), expected, -np.inf)
        optimal = int(np.argmax(offered))
        best = float(offered[optimal])
        chosen = float(expected[index])
        reward = float(self._draw_reward(round_, index))
        info = {
            "expected_reward": np.float64(chosen),
            "best_expected_reward": np.float64(best),
            "regret": np.float64(max(best - chosen, 0.0)),
            "optimal_action": np.int64(optimal),
            "expected_rewards": np.array(expected, dtype=np.float64, copy=True),
        }
        self._round = self._draw_round()
        return self._observation(), reward, False, False, info

    def action_masks(self) -> np.ndarray:
        """The current round's mask: True for the candidates on offer, shape (K,), bool.

        sb3-contrib's convention (``MaskablePPO`` calls it before every action, through
        wrappers and vector envs); a fresh copy of ``observation["action_mask"]``.

        Raises:
            RuntimeError: :meth:`reset` was not called yet.
        """
        if self._round is None:
            raise RuntimeError("Call reset() before action_masks(): no round is on offer yet.")
        return self._round.action_mask.astype(bool)

    # -- helpers ----------------------------------------------------------------------
    def _problem_rng(self) -> np.random.Generator:
        """The generator to draw the problem from at a seeded reset (no fixed problem seed).

        ``self.np_random`` for a standalone env (and sub-env 0). For sub-env ``i > 0`` of a
        vector env that shares one problem, a fresh generator seeded as sub-env 0's
        ``np_random`` was (seed ``s = seed - i``), so the subclass draws the very problem
        sub-env 0 draws. A subclass that draws from ``np_random`` before its problem must
        make the same draws from this generator first.

        Raises:
            ValueError: A shared sub-env ``i`` was reset with a seed below ``i``.
        """
        index = self.shared_problem_index
        if index == 0 or self._reset_seed is None:
            return self.np_random
        base = self._reset_seed - index
        if base < 0:
            raise ValueError(
                f"sub-env {index} of a vector env sharing one problem is reset with seed "
                f"{self._reset_seed}: expected the vector env's seed + {index} (>= {index})"
            )
        return seeding.np_random(base)[0]

    def _check_action(self, action: int | np.integer | np.ndarray) -> int:
        if type(action) is int and 0 <= action < self.n_candidates:  # the common case, fast
            return action
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"action must be one integer in [0, {self.n_candidates - 1}], got {action!r}"
            )
        index = int(arr.reshape(()))
        if not 0 <= index < self.n_candidates:
            raise ValueError(
                f"action {index} is outside Discrete({self.n_candidates}): "
                f"expected an integer in [0, {self.n_candidates - 1}]"
            )
        return index

    def _observation(self) -> dict[str, np.ndarray]:
        # Fresh arrays every call: users keep observations, and subclasses may reuse
        # constant arrays (fixed action features) across rounds.
        assert self._round is not None
        return {
            "context": self._round.context.copy(),
            "candidates": self._round.candidates.copy(),
            "action_mask": self._round.action_mask.copy(),
        }


def check_array_size(what: str, shape: tuple[int, ...], dtype: Any, arguments: str) -> None:
    """Refuse an array over :data:`MAX_ARRAY_BYTES` before it is allocated.

    Args:
        what: What the array is, for the error ("one observation's candidates").
        shape: Its shape (Python integers: the product does not overflow).
        dtype: Its numpy dtype.
        arguments: The constructor arguments that set the shape, as the user wrote them.

    Raises:
        ValueError: The array would take more than :data:`MAX_ARRAY_BYTES`, naming the
            arguments, the size and the bound.
    """
    nbytes = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    if nbytes > MAX_ARRAY_BYTES:
        dims = " x ".join(str(int(n)) for n in shape)
        raise ValueError(
            f"{arguments}: {what} would be a {dims} {np.dtype(dtype).name} array of "
            f"{nbytes / 2**30:,.1f} GiB; an env holds no array over "
            f"{MAX_ARRAY_BYTES / 2**30:g} GiB (MAX_ARRAY_BYTES): choose smaller sizes"
        )


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` as an ``int`` in [low, high], else a ``ValueError`` naming the expected form."""
    valid = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not valid or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``; anything but ``True``/``False`` is a ``TypeError``.

    Strings such as ``"no"`` are truthy, so accepting them would silently mean ``True``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_real(name: str, value: Any) -> float:
    """``value`` as a ``float``; a non-number (``"0.1"``, ``None``, ``True``) is a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` >= 0: ``TypeError`` for a non-number, else ``ValueError``."""
    number = check_real(name, value)
    if not np.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_unit_interval(name: str, value: Any, high: float = 1.0) -> float:
    """``value`` as a ``float`` in [0, high]: ``TypeError`` for a non-number, else ``ValueError``.

    Args:
        name: The argument named in the error.
        value: The value to check.
        high: Upper bound (inclusive).
    """
    number = check_real(name, value)
    if not 0.0 <= number <= high:
        raise ValueError(f"{name} must be in [0, {high:g}], got {value!r}")
    return number
