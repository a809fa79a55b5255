"""Logistic Thompson sampling: the Laplace logistic head on fixed features, for {0, 1} rewards.

``logistic_ts`` (Chapelle & Li 2011) is :class:`LogisticTS`, the :class:`LinearTS`
structure (one head over ``[x; a]``, or one head per arm of a fixed arm set) with a
:class:`~bandexa_gym.posterior.LaplaceLogisticRegression` head (with an intercept) in place
of the Gaussian one.

Learning has two speeds:

* every round, the chosen candidate's head absorbs the reward by the online Laplace step
  (O(d²), see :mod:`bandexa_gym.posterior_logistic`), and the round is appended to a
  *feature store* (a ring of the newest ``store_capacity`` rounds: the flat context in
  float64, the chosen candidate's features and the reward);
* on a schedule, every head is *refit*: Newton's method finds the MAP of the stored
  rounds and the head becomes the Laplace posterior there. The first refit follows round
  ``refit_every``; after a refit at round t the next follows round
  ``t + max(refit_every, ceil((refit_growth − 1) · t))`` — every ``refit_every`` rounds
  for ``refit_growth = 1``, geometrically spaced otherwise.

Cost: a refit over N stored rounds takes a few Newton steps, each O(N d² + d³) per head
(per arm: its own rows and ``d = d_x + 1``, the intercept included). With geometric
spacing the refits of a run of T rounds cost O(T d² · steps · g / (g − 1)) in all
(``g = refit_growth``), so amortized O(d²) per round like the online step; once the store
is full a refit costs a fixed O(store_capacity · d²) and they grow rarer. The store takes
``store_capacity · (d_x · 8 + d_a · 4 + 4)`` bytes when full (the pages are touched only
as it fills).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from gymnasium import spaces

from bandexa_gym.agents._growth import context_growth
from bandexa_gym.agents.core import Capabilities, register_agent
from bandexa_gym.agents.limits import check_count, check_rows_fit
from bandexa_gym.agents.linear_ts import LinearTS
from bandexa_gym.buffers import MemoryReplayBuffer
from bandexa_gym.features.arms import SwitchedToShared
from bandexa_gym.features.fixed import FeatureMap, concat_rows, flat_contexts
from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig
from bandexa_gym.persist.state import Commit, Part, check_counter

__all__ = ["LogisticTS"]

_F64 = torch.float64
_GAUSSIAN_ONLY = ("noise", "a0", "b0")
DEFAULT_SAMPLE_SCALE = 0.5
"""``sample_scale`` of ``logistic_ts`` unless given: draws from ``N(μ, Σ / 4)``. Against
draws from the Laplace posterior itself (``sample_scale=1``) it cut the regret by 7 to 42 %
on MNIST and the UCI classification problems, with no problem worse (see
``docs/performance.md``)."""


class LogisticTS(LinearTS):
    """Thompson sampling on a Bayesian logistic head over fixed features, rewards in {0, 1}.

    ``P(r = 1 | x, a) = σ(φ(x, a)ᵀ w)`` with the feature maps of :class:`LinearTS`
    (``"concat"``: φ = [x; a], one head; ``"disjoint"``: φ = x, one head per one-hot arm;
    ``"per_arm"``: φ = x, one head per distinct candidate row of a fixed arm set;
    ``"auto"`` picks by the first candidate set). Every head has an intercept by default.
    Rewards other than 0 and 1 are a ``ValueError`` at ``observe``. The exploration rules
    read the head's *logit* (its
    :meth:`~bandexa_gym.posterior.LaplaceLogisticRegression.predict` mean and variance),
    which ranks candidates as the probability does; ``predict`` reports logits too.

    See the module docstring for the online step, the feature store and the refit
    schedule, and their costs. When the candidates turn out not to be a fixed arm set and
    the agent switches to one ``concat`` head, that head is refit from the store at once.

    Args:
        context_shape: Shape of one context; it is flattened to d_x features.
        action_dim: Width d_a of a candidate row.
        feature_map: ``"auto"``, ``"concat"``, ``"disjoint"`` or ``"per_arm"``.
        head: The head's settings (:class:`~bandexa_gym.posterior.LogisticHeadConfig`), or
            give them one by one: ``prior_var`` (default 1), ``sample_scale`` (default
            :data:`DEFAULT_SAMPLE_SCALE`; 1 samples the Laplace posterior itself),
            ``intercept`` (default True) and ``forgetting`` (default 1; with γ < 1 every
            head is discounted by γ each round and a refit weights a stored round of age k
            by ``γᵏ``, the prior kept).
        exploration: Exploration rule (see :class:`~bandexa_gym.agents.HeadAgent`),
            default Thompson sampling.
        refit_every: Rounds between refits, at least (0: never refit, online steps only).
        refit_growth: Factor ``g >= 1`` by which the spacing of refits grows with the
            rounds played (1: a refit every ``refit_every`` rounds; the default 2 refits
            after rounds 100, 200, 400, 800, ...).
        store_capacity: Rounds the feature store keeps (the newest); refits see these.
        refit_chunk: Stored rounds per chunk in a refit's passes.
        standardize_rewards: Must be False (the head models the {0, 1} rewards themselves;
            accepted for the :class:`LinearTS` signature).
        seed: Seed of the agent's generators.
        device: Torch device.
        **kwargs: The head's settings one by one (above) and the :class:`HeadAgent`
            options (``propensity_draws``, ``max_pending``, ``outliers``,
            ``outlier_factor``: an outlier row is skipped with a warning by default, see
            :class:`~bandexa_gym.agents.core.protocol.Agent`).

    Raises:
        TypeError: A Gaussian-head setting (``noise``, ``a0``, ``b0``) or a setting of the
            wrong type.
        ValueError: A setting out of range.
    """

    name = "logistic_ts"
    capabilities: ClassVar[Capabilities] = Capabilities(binary_rewards=True)
    head_config_type: ClassVar[type] = LogisticHeadConfig
    default_head: ClassVar[dict[str, Any]] = {
        "intercept": True,
        "sample_scale": DEFAULT_SAMPLE_SCALE,
    }

    def __init__(
        self,
        context_shape: tuple[int, ...],
        action_dim: int,
        *,
        feature_map: FeatureMap = "auto",
        head: LogisticHeadConfig | None = None,
        exploration: Any = "thompson",
        refit_every: int = 100,
        refit_growth: float = 2.0,
        store_capacity: int = 50_000,
        refit_chunk: int = 4096,
        standardize_rewards: bool = False,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> None:
        gaussian = sorted(k for k in _GAUSSIAN_ONLY if k in kwargs)
        if gaussian:
            raise TypeError(
                f"{gaussian} apply to the Gaussian head of linear_ts; logistic_ts models "
                "{0, 1} rewards and takes prior_var, sample_scale, intercept and forgetting"
            )
        if standardize_rewards is not False:
            raise ValueError(
                "logistic_ts models the raw {0, 1} rewards: standardize_rewards must be False, "
                f"got {standardize_rewards!r}"
            )
        self.refit_every = check_count("refit_every", refit_every, low=0)
        self.store_capacity = check_count("store_capacity", store_capacity)
        self.refit_chunk = check_count("refit_chunk", refit_chunk)
        check_rows_fit("store_capacity", self.store_capacity, tuple(context_shape), action_dim)
        if (
            isinstance(refit_growth, bool)
            or not isinstance(refit_growth, numbers.Real)
            or not 1.0 <= refit_growth < math.inf
        ):
            raise ValueError(f"refit_growth must be a finite number >= 1, got {refit_growth!r}")
        self.refit_growth = float(refit_growth)
        self._start_store()
        super().__init__(
            context_shape,
            action_dim,
            feature_map=feature_map,
            head=head,
            exploration=exploration,
            standardize_rewards=False,
            seed=seed,
            device=device,
            **kwargs,
        )

    def _start_store(self) -> None:
        self.store = MemoryReplayBuffer(self.store_capacity)
        self.next_refit: int | None = self.refit_every or None
        self.refits = 0

    def new_head(self, dim: int) -> LaplaceLogisticRegression:  # type: ignore[override]
        """A head at this agent's settings, ``dim`` features, on its device."""
        return LaplaceLogisticRegression(dim, self.head_config, device=self.device)

    def build_heads(self, feature_map: FeatureMap) -> None:
        """Start prior heads for ``feature_map``; with rounds already stored (a switch to
        ``concat`` when the arm set keeps changing), refit them from the store at once."""
        super().build_heads(feature_map)
        if len(self.store):
            self._refit_heads()

    def reset(self, seed: int | None = None) -> None:
        self._start_store()  # first: the heads that reset builds must not see old rounds
        super().reset(seed)

    # -- learning ---------------------------------------------------------------------
    def _learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
        rewards: torch.Tensor,
    ) -> None:
        """Absorb the rows in order; a refit that falls due inside a batch runs there."""
        self._resolve(chosen[:, None])
        x = flat_contexts(contexts, self.context_shape)  # checked before anything is stored
        if self.feature_map == "per_arm":  # name every row's arm first (all or nothing)
            try:
                self._arms(chosen[:, None])
            except SwitchedToShared:
                pass  # now one concat head, refit from the store
        n, start = x.shape[0], 0
        while start < n:
            end = n
            if self.next_refit is not None:
                end = min(n, start + max(1, self.next_refit - self.rounds))
            rows = slice(start, end)
            # The heads first: only they can fail (overflow), and each is all-or-nothing;
            # the store's rows (float64 (d_x,), float32 (d_a,), {0, 1}) always fit it.
            super()._learn(contexts[rows], chosen[rows], indices[rows], rewards[rows])
            self.store.add_batch(x[rows].cpu(), chosen[rows].cpu(), rewards[rows].cpu())
            if self.next_refit is not None and self.rounds >= self.next_refit:
                self.refit()
            start = end

    def refit(self) -> None:
        """Refit every head to the Laplace posterior at the MAP of the stored rounds, and
        schedule the next refit (see the module docstring)."""
        self._refit_heads()
        self.refits += 1
        if self.refit_every:
            t = self.rounds
            self.next_refit = t + max(self.refit_every, math.ceil((self.refit_growth - 1.0) * t))

    def _refit_heads(self) -> None:
        if self.feature_map == "concat":
            self.heads[0].rebuild(_ConcatChunks(self))
        elif self.feature_map in ("disjoint", "per_arm"):
            arms = [self._stored_arms(chunk[1]) for chunk in self.stored_chunks()]
            for arm, head in enumerate(self.heads):
                head.rebuild(self._arm_chunks(arm, arms))

    def _stored_arms(self, chosen: torch.Tensor) -> torch.Tensor:
        """Arm of every stored chosen row (n, d_a): (n,)."""
        if self.feature_map == "disjoint":
            return chosen.argmax(dim=-1)
        return self.registry.arms(chosen).to(chosen.device)  # every stored row is known

    def _arm_chunks(self, arm: int, arms: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
        """The stored rounds of one arm, as a list that the refit streams at every pass."""
        chunks = []
        for (X, _, R, *weights), chunk_arms in zip(self.stored_chunks(), arms, strict=True):
            rows = chunk_arms == arm
            if bool(rows.any()):
                chunks.append((X[rows], R[rows], *(w[rows] for w in weights)))
        return chunks

    def stored_chunks(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The store's rounds, oldest first, on the device: ``(X (n, d_x) float64,
        A (n, d_a) float32, r (n,) float64)``, plus the weights ``γ^age`` (n,) with
        forgetting (age in rounds from the newest stored round)."""
        gamma = self.head_config.forgetting
        last = self.store.last_step
        for chunk in self.store.iter_chunks(self.refit_chunk, with_steps=gamma != 1.0):
            X, A, R = (t.to(self.device) for t in chunk[:3])
            if gamma == 1.0:
                yield X, A, R.to(_F64)
            else:
                age = (last - chunk[3]).to(self.device, _F64)
                yield X, A, R.to(_F64), torch.pow(gamma, age)

    # -- persistence ------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            **super().spec(),
            "refit_every": self.refit_every,
            "refit_growth": self.refit_growth,
            "store_capacity": self.store_capacity,
        }

    def pinned_spec(self) -> dict[str, Any]:
        spec = super().pinned_spec()
        for key in ("refit_every", "refit_growth", "store_capacity"):  # the schedule may differ
            del spec[key]
        head = spec["head"]  # how it samples and forgets may differ; the model may not
        spec["head"] = {"prior_var": head["prior_var"], "intercept": head["intercept"]}
        return spec

    def parts(self) -> list[Part]:
        return [*super().parts(), _Store(self)]

    def _load_store(self, tensors: Mapping[str, torch.Tensor]) -> MemoryReplayBuffer:
        """A new store holding the checkpoint's rounds (validated; the newest are kept
        when they exceed ``store_capacity``)."""
        names = ("store.contexts", "store.chosen", "store.rewards")
        missing = [k for k in names if k not in tensors]
        if missing:
            raise ValueError(f"checkpoint lacks tensors {missing}")
        X, A, R = (tensors[k] for k in names)
        n, d_x = (X.shape[0] if X.ndim else -1), self.context_dim
        if X.shape != (n, d_x) or A.shape != (n, self.action_dim) or R.shape != (n,):
            raise ValueError(
                f"store tensors must be ({n}, {d_x}), ({n}, {self.action_dim}) "
                f"and ({n},), got {tuple(X.shape)}, {tuple(A.shape)} and {tuple(R.shape)}"
            )
        if not bool(torch.isfinite(X).all() & torch.isfinite(A).all()):
            raise ValueError("store tensors hold non-finite values")
        if not bool(((R == 0) | (R == 1)).all()):
            raise ValueError("store.rewards must all be 0 or 1")
        store = MemoryReplayBuffer(self.store_capacity)
        if n:
            store.add_batch(X.to(_F64), A.to(torch.float32), R.to(torch.float32))
        return store

    @classmethod
    def expected_shapes(
        cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]
    ) -> dict[str, tuple]:
        d_x, d_a = math.prod(spec["context_shape"]), int(spec["action_dim"])
        stored = shapes.get("store.contexts", ())
        n = stored[0] if stored else -1
        store = {"store.contexts": (n, d_x), "store.chosen": (n, d_a), "store.rewards": (n,)}
        return {**super().expected_shapes(spec, shapes), **store}

    spec_overrides = ("refit_every", "refit_growth", "store_capacity")

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        schedule = {k: spec[k] for k in ("refit_every", "refit_growth", "store_capacity")}
        return {**super().spec_arguments(spec, seed), **schedule}

    def evolve_from(self, trained: LinearTS, **options: Any) -> str:  # type: ignore[override]
        """Fill this cold-start agent with what ``trained`` learned (see
        :func:`bandexa_gym.transfer.evolve`); returns a one-line summary.

        The trained agent's feature store is copied, zero-padded to the new context and
        action widths (rows of dropped ``disjoint`` arms left out), and every head is
        refit on it under this agent's settings: the exact Laplace posterior of the same
        rounds, so with an unchanged configuration the heads equal the trained agent's
        at its last refit (its online steps since then are replaced by the refit).
        ``per_arm`` arms are named by their candidate rows, so their width must stay.
        """
        assert isinstance(trained, LogisticTS)
        dx_old, dx_new = context_growth(trained.context_shape, self.context_shape, "agent")
        da_old, da_new = trained.action_dim, self.action_dim
        fmap = trained.feature_map
        if fmap == "auto":
            return "the trained agent has no head yet (feature_map 'auto'): nothing to transfer"
        if self.feature_map not in ("auto", fmap):
            raise ValueError(
                f"feature_map differs: the trained agent uses {fmap!r}, the template "
                f"{self.feature_map!r}"
            )
        if (
            fmap in ("concat", "per_arm")
            and da_new != da_old
            and (fmap == "per_arm" or da_new < da_old)
        ):
            raise ValueError(
                f"action_dim changes from {da_old} to {da_new}: a {fmap!r} agent keeps its "
                "action features (only 'disjoint' heads can drop arms; 'concat' can add "
                "features, 'per_arm' names arms by their rows)"
            )
        X, A, R = _stored(trained.store, dx_old, da_old)
        if fmap == "disjoint":
            keep = A.argmax(dim=-1) < da_new
            X, A, R = X[keep], A[keep], R[keep]
        X = torch.nn.functional.pad(X, (0, dx_new - dx_old))
        A = torch.nn.functional.pad(A, (0, max(da_new - da_old, 0)))[:, :da_new]
        if self.feature_map == "auto":
            self.build_heads(fmap)
        if fmap == "per_arm":  # the same arms, named as the trained agent named them
            self.registry.load(*trained.registry.state())
            self._grow_heads()
        self.store = MemoryReplayBuffer(self.store_capacity)
        if X.shape[0]:
            self.store.add_batch(X, A, R)
        self.rounds = trained.rounds
        self.refit()
        return (
            f"{fmap} logistic heads refit on the trained agent's {len(self.store)} stored "
            f"rounds (context {dx_old} -> {dx_new}, action {da_old} -> {da_new} features, "
            f"new inputs zero), under this agent's settings; next refit after round "
            f"{self.next_refit}"
        )


class _ConcatChunks:
    """The stored rounds as ``([x; a] (n, d) float64, r (n,)[, weights (n,)])`` chunks,
    re-iterable: a refit streams them at every pass in O(chunk · d) memory."""

    def __init__(self, agent: LogisticTS) -> None:
        self.agent = agent

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for X, A, R, *weights in self.agent.stored_chunks():
            yield (concat_rows(X, A), R, *weights)


def _stored(
    store: MemoryReplayBuffer, d_x: int, d_a: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every stored round, oldest first: (N, d_x) float64, (N, d_a) and (N,) float32."""
    if len(store) == 0:
        return torch.zeros(0, d_x, dtype=_F64), torch.zeros(0, d_a), torch.zeros(0)
    X, A, R = next(store.iter_chunks(len(store)))
    return X.clone(), A.clone(), R.clone()


@register_agent("logistic_ts")
def _make_logistic_ts(
    space: spaces.Dict,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> LogisticTS:
    """Logistic Thompson sampling (Chapelle & Li 2011) for {0, 1} rewards: a Laplace
    logistic head on ``[x; a]`` (or per-arm heads for one-hot arms)."""
    return LogisticTS(
        space["context"].shape, space["candidates"].shape[-1], seed=seed, device=device, **overrides
    )


class _Store(Part):
    """The rounds a logistic head refits from, and the refit schedule's counters."""

    def __init__(self, agent: LogisticTS) -> None:
        self.agent = agent

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        agent = self.agent
        X, A, R = _stored(agent.store, agent.context_dim, agent.action_dim)
        tensors = {"store.contexts": X, "store.chosen": A, "store.rewards": R}
        return {"next_refit": agent.next_refit, "refits": agent.refits}, tensors

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        agent = self.agent
        store = agent._load_store(tensors)
        next_refit, refits = scalars.get("next_refit"), scalars.get("refits", 0)
        if next_refit is not None:
            check_counter("next_refit", next_refit)
        check_counter("refits", refits)

        def commit() -> None:
            agent.store, agent.refits = store, refits
            # This agent's own schedule: a loaded refit point stands unless refits are off.
            agent.next_refit = next_refit if agent.refit_every else None

        return commit
