"""What the adapters of other bandit libraries (the peers) share.

A peer is an :class:`~bandexa_gym.agents.core.protocol.Agent` whose decisions come from another
library's model: the adapter turns the observation tensors into what the library reads
(NumPy arrays or text), asks the library to choose or to learn, and maps the answer back
to a candidate index. Peers are measured by the same ``RegretMonitor`` through
:func:`bandexa_gym.runner.run` as every other agent.

The libraries are optional (``pip install "bandexa-gym[peers]"``) and imported lazily by
:func:`import_peer_library`, when a peer is built; importing :mod:`bandexa_gym.agents`
never needs them.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

from bandexa_gym.agents.core import (
    Agent,
    Capabilities,
    NotApplicableError,
    Observation,
    Observations,
    derived_seed,
)

__all__ = [
    "LIBRARY_STREAM",
    "PEERS_EXTRA",
    "FixedArms",
    "PeerAgent",
    "PerArmPeer",
    "check_context_dim",
    "import_peer_library",
]

PEERS_EXTRA = 'pip install "bandexa-gym[peers]"'
"""The command that installs every peer library."""

LIBRARY_STREAM = 5
"""The ``derived_seed`` stream of the seed a peer hands its library (streams 0-2 seed the
agent's own generators)."""

_NO_SAVE = (
    "the library keeps its model in its own objects, which only pickle can store; "
    "bandexa checkpoints are pickle-free"
)
_CPU_ONLY = "the library computes on the CPU with NumPy (or C++); it has no GPU path"


def import_peer_library(module: str, agent: str) -> ModuleType:
    """Import a peer library, or say in one line which extra installs it.

    Args:
        module: The library's top-level module (``"vowpalwabbit"``).
        agent: The registered name of the peer that needs it (for the message).

    Raises:
        ImportError: The library is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{agent} needs the {module!r} package, which is not installed: {PEERS_EXTRA}"
        ) from err


def check_context_dim(agent: str, context_dim: int, max_context_dim: int | None, rate: str) -> None:
    """Refuse a problem too large for a peer to play in reasonable time.

    Args:
        agent: Registered name of the peer.
        context_dim: Flattened context width of the problem.
        max_context_dim: The largest width the peer accepts (None: any).
        rate: What was measured, e.g. ``"about 4 rounds/s at 784 features"``.

    Raises:
        NotApplicableError: ``context_dim`` exceeds ``max_context_dim``.
    """
    if max_context_dim is not None and context_dim > max_context_dim:
        raise NotApplicableError(
            f"{agent} is too slow for {context_dim}-dimensional contexts ({rate}); it is "
            f"limited to max_context_dim={max_context_dim}: pass max_context_dim=None to "
            "run it anyway"
        )


class FixedArms:
    """The candidate rows of the first round seen, checked on every later round.

    Per-arm models identify an arm by its candidate index, which is only meaningful when
    the rows behind the indices stay the same. The first candidate set an agent sees
    becomes the arm set; any later unmasked row that differs from it (bit for bit) is a
    :class:`NotApplicableError`. Masked rows are not compared: they are never played.

    Args:
        agent: Registered name of the agent (for the message).
    """

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.rows: torch.Tensor | None = None

    def clear(self) -> None:
        """Forget the arm set (the next round seen defines it again)."""
        self.rows = None

    def check(self, candidates: torch.Tensor, masks: torch.Tensor) -> None:
        """Record or check a batch of candidate sets.

        Args:
            candidates: (B, K, d_a).
            masks: (B, K) bool.

        Raises:
            NotApplicableError: Some unmasked row differs from the arm set.
        """
        if self.rows is None:
            self.rows = candidates[0].clone()
        rows = self.rows
        if candidates.shape[1:] != rows.shape or bool(((candidates != rows).any(-1) & masks).any()):
            self._fail()

    def check_chosen(self, chosen: torch.Tensor, indices: torch.Tensor) -> None:
        """Check that each chosen row (B, d_a) is the arm at its index (B,)."""
        if self.rows is not None and not torch.equal(chosen, self.rows[indices]):
            self._fail()

    def _fail(self) -> None:
        raise NotApplicableError(
            f"{self.agent} keeps one model per candidate index and needs the same candidate "
            "rows every round, but this problem changed them (as Bandexa/Retrieval-v0 and "
            "Bandexa/Synthetic-v0 with resample_actions=True do): it is not applicable here"
        )


class PeerAgent(Agent):
    """Base of the peer adapters: flat float64 contexts, CPU only, library seeding.

    Args:
        context_shape: Shape of one context; the libraries read it flattened (d_x).
        n_candidates: K, candidates per round.
        action_dim: d_a, width of a candidate row.
        seed: Seeds the adapter's generators and the library's own.
        device: Must be the CPU (see ``capabilities``).
        max_pending: Decisions awaiting feedback that the agent keeps at most.
    """

    library: ClassVar[str] = ""
    """The library's distribution name (``pip install`` name)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        save=False, cuda=False, reasons={"save": _NO_SAVE, "cuda": _CPU_ONLY}
    )

    def __init__(
        self,
        context_shape: tuple[int, ...],
        n_candidates: int,
        action_dim: int,
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        max_pending: int = 10_000,
    ) -> None:
        if torch.device(device).type != "cpu":
            raise ValueError(
                f"{type(self).__name__} runs on the CPU only ({_CPU_ONLY}); use device='cpu'"
            )
        super().__init__(seed=seed, device=device, max_pending=max_pending)
        self.context_shape = tuple(int(s) for s in context_shape)
        self.context_dim = math.prod(self.context_shape)
        self.n_candidates = int(n_candidates)
        self.action_dim = int(action_dim)
        self.input_shapes = (self.context_shape, self.action_dim)
        self._threadpools: Any = None

    def library_seed(self) -> int:
        """The seed handed to the library, in [0, 2**31): a stream of the agent's seed of its
        own (``derived_seed(seed, LIBRARY_STREAM)``, never the seed itself, whose NumPy
        stream ``default_rng(seed)`` is an env's ``np_random`` for ``reset(seed=seed)``), or
        a fresh one drawn from the (then nondeterministic) agent generator without a seed."""
        if self.seed is not None:
            return derived_seed(self.seed, LIBRARY_STREAM) % 2**31
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))

    def blas_threads(self) -> contextlib.AbstractContextManager[Any]:
        """A context that limits NumPy's BLAS to ``torch.get_num_threads()`` threads.

        The libraries do their linear algebra in NumPy/SciPy, whose BLAS starts one thread
        per core; on a shared or busy machine those threads contend and a round gets tens
        of times slower (MABWiser on Adult: 12 instead of 700 rounds/s on 2 busy cores).
        Limited to torch's thread count, the peers follow the same setting as the torch
        agents (``bandexa-bench --threads``, default 1).
        """
        if self._threadpools is None:  # created late: after the library loaded its BLAS
            threadpoolctl = import_peer_library("threadpoolctl", self.name)
            self._threadpools = threadpoolctl.ThreadpoolController()
        return self._threadpools.limit(limits=torch.get_num_threads(), user_api="blas")

    def flat_contexts(self, contexts: torch.Tensor) -> np.ndarray:
        """(B, *context_shape) -> (B, d_x) float64 NumPy array.

        Raises:
            ValueError: Contexts of another shape than the agent was built for.
        """
        if tuple(contexts.shape[1:]) != self.context_shape:
            raise ValueError(
                f"{self.name} was built for contexts of shape {self.context_shape}, got "
                f"{tuple(contexts.shape[1:])}"
            )
        return contexts.reshape(contexts.shape[0], -1).to("cpu", torch.float64).numpy()

    def spec(self) -> dict[str, Any]:
        raise ValueError(f"{self.name} cannot be saved: {_NO_SAVE}")


class PerArmPeer(PeerAgent):
    """A peer with one model per candidate index: needs a fixed arm set (see
    :class:`FixedArms`) and learns from the context alone.

    Subclasses implement :meth:`choose_row` and :meth:`learn_row` on NumPy arrays; the
    arm check, the masks, the row loop (so a batch equals the loop of single calls) and
    the optional intercept are done here.

    Args:
        intercept: Append a constant 1 to the context, so each arm's linear model has a
            bias (the libraries fit none of their own).
        **kwargs: See :class:`PeerAgent`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        save=False,
        propensities=False,
        cuda=False,
        changing_candidates=False,
        reasons={
            "save": _NO_SAVE,
            "cuda": _CPU_ONLY,
            "propensities": (
                "the library samples inside its own policy and exposes no action "
                "probabilities (decide() reports NaN)"
            ),
            "changing_candidates": (
                "the agent keeps one model per candidate index, which needs the same "
                "candidate rows every round"
            ),
        },
    )

    def __init__(self, *args: Any, intercept: bool = True, **kwargs: Any) -> None:
        if not isinstance(intercept, bool):
            raise TypeError(f"intercept must be True or False, got {intercept!r}")
        super().__init__(*args, **kwargs)
        self.intercept = intercept
        self.arm_set = FixedArms(self.name)

    @property
    def feature_dim(self) -> int:
        """Width of the features the library's models read (context plus intercept)."""
        return self.context_dim + int(self.intercept)

    def features(self, contexts: torch.Tensor) -> np.ndarray:
        """The library's input: flat contexts, with a constant-1 column if ``intercept``."""
        x = self.flat_contexts(contexts)
        if self.intercept:
            x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        return x

    def observe(
        self, obs: Observation, action: int | np.ndarray, reward: float | np.ndarray
    ) -> None:
        batch = self.observations(obs)  # cached: super().observe reuses the conversion
        self.arm_set.check(batch.candidates, batch.masks)
        super().observe(obs, action, reward)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.arm_set = FixedArms(self.name)
        self.build()

    def build(self) -> None:
        """(Re)build the library's model at its prior."""
        raise NotImplementedError

    def choose_row(self, x: np.ndarray, offered: np.ndarray) -> int:
        """Choose one of the ``offered`` arm indices for features ``x`` (1, d)."""
        raise NotImplementedError

    def learn_row(self, x: np.ndarray, arm: int, reward: float) -> None:
        """Update arm ``arm``'s model with features ``x`` (1, d) and ``reward``."""
        raise NotImplementedError

    def _choose(self, batch: Observations) -> torch.Tensor:
        self.arm_set.check(batch.candidates, batch.masks)
        x = self.features(batch.contexts)
        masks = batch.masks.cpu().numpy()
        with self.blas_threads():
            actions = [
                self.choose_row(x[b : b + 1], np.flatnonzero(masks[b])) for b in range(len(x))
            ]
        return torch.as_tensor(actions, dtype=torch.int64, device=self.device)

    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        self.arm_set.check_chosen(chosen, indices)
        x = self.features(contexts)
        with self.blas_threads():
            for b, (arm, reward) in enumerate(zip(indices.tolist(), rewards.tolist(), strict=True)):
                self.learn_row(x[b : b + 1], arm, reward)
        self.rounds += len(x)
