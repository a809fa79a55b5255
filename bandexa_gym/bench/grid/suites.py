"""Benchmark suites as data: named problems, rounds and seeds, and the default agents.

``bandexa-bench --suite classic`` runs :data:`CLASSIC` (8 problems x the default agents x
5 seeds); ``--suite quick`` runs :data:`QUICK`, a CI-sized version. Tests and docs read
the problems from here, so this is the one place that defines them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLASSIC",
    "CORE_AGENTS",
    "NORMALIZER",
    "QUICK",
    "SUITES",
    "Problem",
    "Suite",
    "default_agents",
]

NORMALIZER = "uniform"
"""The agent every suite includes and whose regret normalizes the others'."""

CORE_AGENTS: tuple[str, ...] = (NORMALIZER, "linear_ts", "neural_linear_ts")
"""The agents a suite lists first; peers (``peer:*``) and the rest of the registry follow."""

PEER_PREFIX = "peer:"


@dataclass(frozen=True)
class Problem:
    """One problem of a suite: an env id with its arguments, played for ``rounds``.

    Attributes:
        name: Name in tables and run files (unique in its suite), e.g. ``synthetic-0.5``.
        env_id: Gymnasium id.
        rounds: Rounds per run.
        env_kwargs: ``gym.make`` keyword arguments.
        skip: Agent -> why it is not run on this problem (too slow there, say); shown as
            "n/a" with the reason in the suite's table.
    """

    name: str
    env_id: str
    rounds: int
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    skip: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A named set of problems with a number of seeds.

    Attributes:
        name: The ``--suite`` name.
        problems: The problems, in table order.
        num_seeds: Seeds per (problem, agent): seeds 0 ... num_seeds - 1.
        description: One line for ``--help`` and the docs.
        agents: Default agents; None for :func:`default_agents` (the whole registry).
    """

    name: str
    problems: tuple[Problem, ...]
    num_seeds: int
    description: str
    agents: tuple[str, ...] | None = None


_COSTLY_HERE = {
    "neural_ts": "a backward pass per candidate makes it about 7x neural_linear_ts here; run "
    "it with --env and --agents neural_ts",
    "neural_ucb": "a backward pass per candidate makes it about 7x neural_linear_ts here; "
    "run it with --env and --agents neural_ucb",
    "bootstrapped_nn": "five networks to train make it several times neural_linear_ts here; "
    "run it with --env and --agents bootstrapped_nn",
}
"""Agents the classic suite leaves out on its two costliest problems (512 candidates, images),
to stay within its time budget: they still run on the other six."""

CLASSIC = Suite(
    name="classic",
    description="UCI classification (Adult, Letter, Satimage, Pendigits), Synthetic at two "
    "interaction scales, Retrieval and MNIST; 5 seeds",
    num_seeds=5,
    problems=(
        Problem("adult", "Bandexa/Adult-v0", 2_000),
        Problem("letter", "Bandexa/Letter-v0", 2_000),
        Problem("satimage", "Bandexa/Satimage-v0", 2_000),
        Problem("pendigits", "Bandexa/Pendigits-v0", 2_000),
        Problem("synthetic-0.5", "Bandexa/Synthetic-v0", 4_000, {"interaction_scale": 0.5}),
        Problem("synthetic-1.5", "Bandexa/Synthetic-v0", 4_000, {"interaction_scale": 1.5}),
        Problem(
            "retrieval",
            "Bandexa/Retrieval-v0",
            5_000,
            {"n_actions": 10_000, "candidate_size": 512},
            skip=_COSTLY_HERE,
        ),
        # The per-arm peers refuse MNIST's 784 features themselves (too slow there).
        Problem("mnist", "Bandexa/MNIST-v0", 4_096, skip=_COSTLY_HERE),
    ),
)
"""The classic suite (issue 10): real tabular data, synthetic, retrieval and images."""

QUICK = Suite(
    name="quick",
    description="a CI-sized smoke version: three tiny problems, 100 rounds, 2 seeds",
    num_seeds=2,
    problems=(
        Problem("synthetic", "Bandexa/Synthetic-v0", 100, {"n_arms": 5}),
        Problem("pendigits", "Bandexa/Pendigits-v0", 100),
        Problem("retrieval", "Bandexa/Retrieval-v0", 100, {"n_actions": 300, "candidate_size": 16}),
    ),
)
"""The quick suite: the classic suite's machinery in well under a minute."""

SUITES: dict[str, Suite] = {suite.name: suite for suite in (CLASSIC, QUICK)}
"""Suites by ``--suite`` name."""


def default_agents(registered: Iterable[str] | None = None) -> list[str]:
    """The default agents of a suite, read from the agent registry.

    :data:`CORE_AGENTS` first (uniform, the normalizer, always), then the other
    libraries' agents (``peer:*``), then every other registered agent, each group sorted,
    so agents registered later join the suite by themselves.

    Args:
        registered: Agent names (default: :data:`bandexa_gym.agents.AGENTS`).
    """
    if registered is None:
        from bandexa_gym.agents.core import AGENTS

        registered = AGENTS
    names = set(registered)
    core = [name for name in CORE_AGENTS if name in names or name == NORMALIZER]
    peers = sorted(name for name in names if name.startswith(PEER_PREFIX))
    rest = sorted(names - set(core) - set(peers))
    return [*core, *peers, *rest]
