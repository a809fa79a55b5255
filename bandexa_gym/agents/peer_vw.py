"""``peer:vw-squarecb``: Vowpal Wabbit's contextual bandit with SquareCB exploration.

`Vowpal Wabbit <https://vowpalwabbit.org>`_ runs as ``--cb_explore_adf --squarecb``: one
multi-line "action-dependent features" (ADF) example per round, a ``shared`` line with the
context and one line per offered candidate with its features::

    shared |s 0:0.4170 1:-1.2 ...          <- context x (namespace s)
    |a 0:0.03 1:0.97 ...                   <- candidate 0 (namespace a)
    0:-1:0.83 |a 0:-0.5 1:0.2 ...          <- the chosen candidate, labelled cost:probability

VW scores each line with one linear regressor over its features plus the shared ones
and, with ``--interactions sa`` (on by default), their products x_i a_j, so the score is
bilinear in (context, candidate): per-arm linear models for one-hot candidates,
a bilinear model otherwise. Candidates may change every round (it plays Retrieval).
SquareCB turns the scores into a probability per candidate (inverse-gap weighting with
``gamma = gamma_scale * t^gamma_exponent``); the adapter samples its action from that
distribution with its own generator, so propensities are exact.

Rewards and costs: VW minimizes cost, so the label is ``cost = -reward`` (no offset or
rescaling: regret is unchanged, but SquareCB's exploration width depends on the reward
scale, as in VW itself). Exact zero features are left out of the text (sparse, e.g. the
one-hot rows); values are written with 9 significant digits (exact for float32).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from bandexa_gym.agents.core import (
    Capabilities,
    Decision,
    Observation,
    Observations,
    register_agent,
)
from bandexa_gym.agents.peer_base import PeerAgent, import_peer_library

__all__ = ["VWSquareCB", "vw_features", "vw_lines"]


def vw_features(values: np.ndarray) -> str:
    """VW text features ``index:value`` of the nonzero entries of a 1-D array."""
    index = np.flatnonzero(values)
    pairs = zip(index.tolist(), values[index].tolist(), strict=True)
    return " ".join(f"{i}:{v:.9g}" for i, v in pairs)


def vw_lines(prefix: str, matrix: np.ndarray) -> list[str]:
    """``prefix`` + :func:`vw_features` of each row of ``matrix`` (K, d); rows without
    zeros (dense features, as on Retrieval) share one format string, which is several
    times faster than formatting feature by feature."""
    dense = (matrix != 0).all(axis=1)
    template = prefix + " ".join(f"{j}:%.9g" for j in range(matrix.shape[1]))
    rows = matrix.tolist()
    return [
        template % tuple(row) if is_dense else prefix + vw_features(matrix[k])
        for k, (row, is_dense) in enumerate(zip(rows, dense.tolist(), strict=True))
    ]


class _Stored(NamedTuple):
    """What a pending decision needs to be learned later: its candidate set and the
    probability with which its action was chosen."""

    candidates: torch.Tensor  # (K, d_a)
    mask: torch.Tensor  # (K,) bool
    propensity: float


class VWSquareCB(PeerAgent):
    """Vowpal Wabbit ``--cb_explore_adf --squarecb`` behind the agent protocol.

    Learning needs the whole candidate set of a round (VW learns from the multi-line
    example) and the probability of the played candidate: ``observe`` has the
    observation, and the probability is the agent's current one (exactly the decision's
    right after ``act``); ``decide`` keeps each decision's candidate set and propensity
    until its :meth:`feedback` (so pending decisions hold their candidate sets in memory).

    Args:
        context_shape: Shape of one context (flattened into the shared line).
        n_candidates: K, candidates per round.
        action_dim: d_a, features per candidate line.
        gamma_scale: SquareCB's ``--gamma_scale`` (VW default 10).
        gamma_exponent: SquareCB's ``--gamma_exponent`` (VW default 0.5).
        interactions: Add ``--interactions sa`` (context x candidate products); without
            them VW's score is additive and cannot make the best candidate depend on the
            context.
        vw_args: Further VW command-line arguments, appended as given (e.g. ``"-b 20"``).
        seed: Seeds VW (``--random_seed``) and the generator that samples actions.
        device: The CPU.
        max_pending: Decisions awaiting feedback that the agent keeps at most.
    """

    name = "peer:vw-squarecb"
    library = "vowpalwabbit"
    capabilities: ClassVar[Capabilities] = Capabilities(
        save=False,
        cuda=False,
        reasons={
            "save": "VW's model is a native binary blob outside bandexa's checkpoint format",
            "cuda": "Vowpal Wabbit computes on the CPU; it has no GPU path",
        },
    )

    def __init__(
        self,
        context_shape: tuple[int, ...],
        n_candidates: int,
        action_dim: int,
        *,
        gamma_scale: float = 10.0,
        gamma_exponent: float = 0.5,
        interactions: bool = True,
        vw_args: str = "",
        seed: int | None = None,
        device: str | torch.device = "cpu",
        max_pending: int = 10_000,
    ) -> None:
        self._vw_module = import_peer_library("vowpalwabbit", self.name)
        for key, value in (("gamma_scale", gamma_scale), ("gamma_exponent", gamma_exponent)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{key} must be a number, got {value!r}")
        if not (np.isfinite(gamma_scale) and gamma_scale > 0):
            raise ValueError(f"gamma_scale must be a finite number > 0, got {gamma_scale!r}")
        if not (np.isfinite(gamma_exponent) and gamma_exponent >= 0):
            raise ValueError(f"gamma_exponent must be a finite number >= 0, got {gamma_exponent!r}")
        if not isinstance(interactions, bool):
            raise TypeError(f"interactions must be True or False, got {interactions!r}")
        if not isinstance(vw_args, str):
            raise TypeError(f"vw_args must be a string of VW arguments, got {vw_args!r}")
        super().__init__(
            context_shape,
            n_candidates,
            action_dim,
            seed=seed,
            device=device,
            max_pending=max_pending,
        )
        self.gamma_scale = float(gamma_scale)
        self.gamma_exponent = float(gamma_exponent)
        self.interactions = interactions
        self.vw_args = vw_args
        self._stored: dict[int, _Stored] = {}
        self._observing: Observations | None = None
        self._feedback_rows: list[_Stored | None] | None = None
        self._line_cache: tuple[torch.Tensor, list[str]] | None = None
        self._pmf_cache: tuple[Observations, int, np.ndarray] | None = None
        self._updates = 0  # VW learn calls: the version of the model, for the pmf cache
        self.vw: Any = None
        self.build()

    # -- the VW workspace -----------------------------------------------------------
    def arguments(self, random_seed: int) -> str:
        """The VW command line of this agent."""
        args = [
            "--cb_explore_adf",
            "--squarecb",
            f"--gamma_scale {self.gamma_scale!r}",
            f"--gamma_exponent {self.gamma_exponent!r}",
        ]
        if self.interactions:
            args.append("--interactions sa")
        args += ["--quiet", f"--random_seed {random_seed}"]
        if self.vw_args:
            args.append(self.vw_args)
        return " ".join(args)

    def build(self) -> None:
        """(Re)start VW with an empty model."""
        if self.vw is not None:
            self.vw.finish()
        self.command_line = self.arguments(self.library_seed())
        try:
            self.vw = self._vw_module.Workspace(self.command_line)
        except Exception as err:  # VW raises its own exception types on bad arguments
            raise ValueError(f"Vowpal Wabbit rejected {self.command_line!r}: {err}") from err
        self._updates = 0
        self._pmf_cache = None

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._stored.clear()
        self.build()

    # -- examples -------------------------------------------------------------------
    def _action_lines(self, candidates: torch.Tensor) -> list[str]:
        """One ``|a`` line per row of ``candidates`` (K, d_a), reused while they repeat."""
        cached = self._line_cache
        if cached is not None and torch.equal(cached[0], candidates):
            return cached[1]
        lines = vw_lines("|a ", candidates.to(torch.float64).numpy())
        self._line_cache = (candidates.clone(), lines)
        return lines

    def _example(
        self,
        x: np.ndarray,
        candidates: torch.Tensor,
        lines_of: np.ndarray,
        label: tuple[int, float, float] | None = None,
    ) -> list[str]:
        """The multi-line example of context ``x`` and the candidates ``lines_of``;
        ``label`` = (candidate, cost, probability) marks the played one."""
        action_lines = self._action_lines(candidates)
        example = ["shared |s " + vw_features(x)]
        for k in lines_of.tolist():
            line = action_lines[k]
            if label is not None and k == label[0]:
                line = f"0:{label[1]:.9g}:{label[2]:.9g} {line}"
            example.append(line)
        return example

    def _row_pmf(self, batch: Observations, x: np.ndarray, b: int) -> np.ndarray:
        """VW's probabilities (K,) for row ``b``: 0 on masked candidates, summing to 1."""
        cached = self._pmf_cache
        if cached is not None and cached[0] is batch and cached[1] == self._updates:
            return cached[2][b]
        offered = np.flatnonzero(batch.masks[b].numpy())
        probs = np.asarray(self.vw.predict(self._example(x[b], batch.candidates[b], offered)))
        pmf = np.zeros(batch.candidates.shape[1])
        pmf[offered] = probs
        return pmf / pmf.sum()

    def _pmfs(self, batch: Observations) -> np.ndarray:
        """(B, K) probabilities of the frozen agent, cached for ``decide``/``observe``."""
        cached = self._pmf_cache
        if cached is not None and cached[0] is batch and cached[1] == self._updates:
            return cached[2]
        x = self.flat_contexts(batch.contexts)
        pmfs = np.stack([self._row_pmf(batch, x, b) for b in range(batch.size)])
        self._pmf_cache = (batch, self._updates, pmfs)
        return pmfs

    # -- agent hooks ----------------------------------------------------------------
    def _choose(self, batch: Observations) -> torch.Tensor:
        pmfs = torch.from_numpy(self._pmfs(batch))
        actions = [
            torch.multinomial(pmfs[b], 1, generator=self.generator) for b in range(batch.size)
        ]
        return torch.cat(actions).to(self.device)

    def _distribution(self, batch: Observations) -> torch.Tensor:
        return torch.from_numpy(self._pmfs(batch).copy())

    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        x = self.flat_contexts(contexts)
        examples = []
        if self._observing is not None:  # observe(): the candidate sets are at hand
            batch = self._observing
            for b, (k, reward) in enumerate(zip(indices.tolist(), rewards.tolist(), strict=True)):
                examples.append((b, batch.candidates[b], batch.masks[b], k, reward, None))
        else:  # feedback(): the candidate sets stored by decide()
            rows = self._feedback_rows or []
            if len(rows) != len(x) or any(row is None for row in rows):
                raise ValueError(
                    f"{self.name} learns from feedback() only for decisions made by its "
                    "decide() (it needs their candidate sets)"
                )
            for b, (row, k, reward) in enumerate(
                zip(rows, indices.tolist(), rewards.tolist(), strict=True)
            ):
                assert row is not None
                examples.append((b, row.candidates, row.mask, k, reward, row.propensity))
        for b, candidates, mask, k, reward, propensity in examples:
            offered = mask.clone()
            offered[k] = True  # a logged action on a masked row is learned all the same
            lines_of = np.flatnonzero(offered.numpy())
            if propensity is None:  # the agent's probability now (the decision's after act)
                if self._observing is not None and bool(mask[k]):
                    propensity = float(self._row_pmf(self._observing, x, b)[k])
                else:
                    probs = self.vw.predict(self._example(x[b], candidates, lines_of))
                    propensity = float(probs[int(np.searchsorted(lines_of, k))])
            self.vw.learn(self._example(x[b], candidates, lines_of, (k, -reward, propensity)))
            self._updates += 1
        self.rounds += len(x)

    # -- protocol overrides that keep what VW needs to learn --------------------------
    def observe(
        self, obs: Observation, action: int | np.ndarray, reward: float | np.ndarray
    ) -> None:
        self._observing = self.observations(obs)  # cached: super().observe reuses it
        try:
            super().observe(obs, action, reward)
        finally:
            self._observing = None

    def decide(self, obs: Observation, *, propensity: bool = True) -> Decision:
        decision = super().decide(obs, propensity=propensity)
        batch = self.observations(obs)  # the conversion decide() just made
        pmfs = self._pmfs(batch)  # cached by _choose: VW's probabilities of this decision
        ids = np.atleast_1d(decision.id).tolist()
        actions = np.atleast_1d(decision.action).tolist()
        for b, (i, a) in enumerate(zip(ids, actions, strict=True)):
            self._stored[i] = _Stored(batch.candidates[b], batch.masks[b], float(pmfs[b, a]))
        return decision

    def feedback(self, decision_id: int | np.ndarray, reward: float | np.ndarray) -> None:
        ids = np.asarray(decision_id).reshape(-1)
        keys = [int(i) for i in ids] if np.issubdtype(ids.dtype, np.integer) else []
        self._feedback_rows = [self._stored.get(k) for k in keys]
        try:
            super().feedback(decision_id, reward)  # validates ids before _learn
        finally:
            self._feedback_rows = None
        for k in keys:
            self._stored.pop(k, None)


@register_agent("peer:vw-squarecb")
def _make_vw_squarecb(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> VWSquareCB:
    """Vowpal Wabbit's ``--cb_explore_adf --squarecb`` on shared context and candidate
    features (any candidate sets)."""
    n_candidates, action_dim = space["candidates"].shape
    return VWSquareCB(
        space["context"].shape, n_candidates, action_dim, seed=seed, device=device, **overrides
    )
