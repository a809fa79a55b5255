"""Public helpers: :func:`check_agent`, the contract every agent is held to.

In the spirit of Gymnasium's ``check_env``: build agents from a factory, drive them on
observations from a ``Bandexa/*`` env, and raise :class:`AgentCheckError` naming the first
broken property. Agents opt out of a check through their ``capabilities`` (e.g. a peer
library adapter that cannot save pickle-free), or by not implementing it (see
:func:`~bandexa_gym.agents.core.duck.infer_capabilities`: any object with ``act`` and
``observe`` is checked on what it offers); the checker reports every skipped check
with the agent's reason.

Example:
    >>> import gymnasium as gym
    >>> from bandexa_gym.agents import make_agent
    >>> env = gym.make("Bandexa/Synthetic-v0")
    >>> skipped = check_agent(lambda seed: make_agent("linear_ts", env, seed=seed), env)
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bandexa_gym.agents.core import Agent, agent_name, infer_capabilities, make_agent

__all__ = ["AgentCheckError", "check_agent"]

AgentFactory = Callable[[int], Agent]
Obs = dict[str, np.ndarray]


class AgentCheckError(AssertionError):
    """An agent breaks the contract; the message names the property."""


def check_agent(
    agent_factory: AgentFactory | str,
    env: gym.Env,
    *,
    rounds: int = 48,
    batch: int = 6,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-8,
    verbose: bool = False,
) -> list[str]:
    """Check that agents built by ``agent_factory`` keep the agent contract on ``env``.

    Checked, in order:

    1. *determinism*: two agents with the same seed make the same choices on the same
       observations and rewards;
    2. *masks*: no masked candidate is ever chosen;
    3. *decide*: ``decide(obs).action`` equals ``act(obs)`` for the same state, and
       ``feedback(decision.id, r)`` learns exactly what ``observe(obs, action, r)`` does;
    4. *probabilities* (capability ``propensities``): ``action_distribution`` sums to 1,
       is 0 on masked candidates, and the reported propensity is in (0, 1];
    5. *batched* (capability ``batched``): ``act``/``observe`` on B stacked observations
       (a vector env's form) give the same actions and state as the single-observation
       calls in a loop (training bursts inside a batch included), the state to within
       the round-off tolerance below;
    6. *rejected input*: a NaN reward, an out-of-range or non-integer action, a
       wrongly shaped observation raise and leave the agent's state unchanged;
    7. *save/load* (capability ``save``): a reloaded agent has the same state, scores
       and subsequent actions.

    A capability counts only where the agent implements it
    (:func:`~bandexa_gym.agents.core.duck.infer_capabilities`); an object that is not an
    :class:`Agent` (any object with ``act`` and ``observe``) also skips *decide* when it has
    no ``decide``/``feedback``, and *rejected input*.

    Args:
        agent_factory: ``factory(seed) -> Agent`` building a fresh agent, or an agent name
            :func:`~bandexa_gym.agents.make_agent` takes (registered, ``module:NAME``, an
            entry point), built on ``env``.
        env: A ``Bandexa/*`` env (it is reset and stepped to draw observations).
        rounds: Rounds of the drive (keep training schedules short enough that a
            training burst falls inside it).
        batch: Rows B of the batched check.
        seed: Seeds the env and the agents.
        rtol: Norm-wise relative tolerance of the batched-vs-looped state comparison:
            a float tensor passes when ``max|x - y| <= atol + rtol * max(|x|, |y|)``.
            The two paths run the encoder on different numbers of rows (one per call in
            the loop, B at once in the batch) and BLAS picks its kernels by shape (one
            row goes through a matrix-vector kernel), so float32 features round
            differently, by about ``sqrt(n) * u`` for a layer of fan-in n (``u = 2**-24``;
            5e-7 at n = 64), and which CPU runs them decides where. The head turns
            features into its state through solves (the Newton refit of a logistic head,
            the square-root updates of a Gaussian one) that amplify a relative input error
            by at most their condition number, which over the check's short drive stays
            below about 100 (measured 9-68 with 64 standardized features): 1e-4 covers
            ``100 * 5e-7`` twice over. A real batching defect (a row learned twice or
            skipped, rewards paired with the wrong rows, a training burst on the wrong
            side of a row) moves the state by O(1/rows), 1e-2 here. Pass 0 (with
            ``atol=0``) to demand bitwise equality where the arithmetic is identical
            by construction (float64 heads on fixed features).
        atol: Absolute floor of the same comparison (a tensor that is zero in both).
        verbose: Print every skipped check.

    Returns:
        The checks skipped, each with the agent's reason.

    Raises:
        AgentCheckError: A broken property (named in the message).
    """
    factory = _factory(agent_factory, env)
    stream = _stream(env, rounds, seed)
    skipped: list[str] = []
    probe = factory(seed)
    caps = infer_capabilities(probe)
    name = agent_name(probe)
    plain = not isinstance(probe, Agent)

    def skip(check: str, capability: str, reason: str | None = None) -> None:
        note = f"{check}: skipped ({name}: {reason or caps.reason(capability)})"
        skipped.append(note)
        if verbose:
            print(note)

    _check_determinism_and_masks(factory, stream, seed)
    if plain and not all(callable(getattr(probe, m, None)) for m in ("decide", "feedback")):
        skip("decide", "", f"{type(probe).__name__} has no decide/feedback")
    else:
        _check_decide(factory, stream, seed, caps.propensities)
    if not caps.propensities:
        skip("probabilities", "propensities")
    if caps.batched:
        _check_batched(factory, stream, seed, batch, rtol, atol)
    else:
        skip("batched", "batched")
    if plain:
        skip("rejected input", "", f"{type(probe).__name__} is not an Agent subclass")
    else:
        _check_rejected_input(factory, stream, seed)
    if caps.save:
        _check_save_load(factory, stream, seed)
    else:
        skip("save/load", "save")
    return skipped


# -- the drive ------------------------------------------------------------------------------
def _factory(agent_factory: AgentFactory | str, env: gym.Env) -> AgentFactory:
    if isinstance(agent_factory, str):
        name = agent_factory
        return lambda seed: make_agent(name, env, seed=seed)
    return agent_factory


def _stream(env: gym.Env, rounds: int, seed: int) -> list[Obs]:
    """``rounds`` observations of ``env``, with some candidates masked at random."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(rounds):
        mask = np.asarray(obs["action_mask"]).copy()
        k = mask.shape[0]
        if k > 1:
            mask[rng.random(k) < 0.3] = 0
            if not mask.any():
                mask[rng.integers(k)] = 1
        out.append(
            {"context": obs["context"], "candidates": obs["candidates"], "action_mask": mask}
        )
        obs, *_ = env.step(int(np.flatnonzero(mask)[0]))
    return out


def _reward(t: int, obs: Obs, action: int) -> float:
    """A deterministic {0, 1} reward that depends on the round, the context and the action."""
    lead = float(np.asarray(obs["context"]).reshape(-1)[0])
    return float((action + t + (lead > 0)) % 3 == 0)


def _play(agent: Agent, stream: list[Obs], start: int = 0) -> list[int]:
    actions = []
    for t, obs in enumerate(stream, start):
        action = agent.act(obs)
        if not isinstance(action, int):
            raise AgentCheckError(f"act returned {type(action).__name__}, expected int")
        if not obs["action_mask"][action]:
            raise AgentCheckError(f"masks: round {t} chose candidate {action}, which is masked")
        agent.observe(obs, action, _reward(t, obs, action))
        actions.append(action)
    return actions


def _stack(rows: list[Obs]) -> Obs:
    return {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}


def _state(agent: Agent) -> dict[str, Any]:
    """What the agent has learned: its checkpoint state (or its round count) and a probe."""
    try:
        scalars, tensors = agent.state_tensors() if isinstance(agent, Agent) else ({}, {})
    except (NotImplementedError, ValueError):
        scalars, tensors = {}, {}
    state: dict[str, Any] = {"rounds": getattr(agent, "rounds", None), **_flatten(scalars)}
    state.update({f"tensor:{k}": v.detach().cpu() for k, v in tensors.items()})
    return state


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


def _compare(
    a: dict[str, Any], b: dict[str, Any], what: str, rtol: float = 0.0, atol: float = 0.0
) -> None:
    """Raise unless ``a`` and ``b`` hold the same state: equal, or float values within
    ``atol + rtol * scale`` in the max norm (``scale``: the larger max-abs of the two)."""
    if set(a) != set(b):
        raise AgentCheckError(f"{what}: state keys differ: {sorted(set(a) ^ set(b))[:5]}")
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            same = x.shape == y.shape and (
                torch.equal(x, y)
                or (x.is_floating_point() and _within(x.double(), y.double(), rtol, atol))
            )
        elif isinstance(x, float) and isinstance(y, float):
            pair = torch.tensor([[x], [y]], dtype=torch.float64)
            same = x == y or _within(pair[0], pair[1], rtol, atol)
        else:
            same = x == y
        if not same:
            raise AgentCheckError(f"{what}: state {key!r} differs")


def _within(x: torch.Tensor, y: torch.Tensor, rtol: float, atol: float) -> bool:
    """Norm-wise closeness: ``max|x - y| <= atol + rtol * max(max|x|, max|y|)``."""
    if x.numel() == 0 or not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return False
    scale = torch.maximum(x.abs().max(), y.abs().max())
    return bool((x - y).abs().max() <= atol + rtol * scale)


# -- the checks -----------------------------------------------------------------------------
def _check_determinism_and_masks(factory: AgentFactory, stream: list[Obs], seed: int) -> None:
    first, second = _play(factory(seed), stream), _play(factory(seed), stream)
    if first != second:
        t = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
        raise AgentCheckError(
            f"determinism: two agents with seed {seed} chose {first[t]} and {second[t]} in "
            f"round {t} on the same observations and rewards"
        )


def _check_decide(factory: AgentFactory, stream: list[Obs], seed: int, probabilities: bool) -> None:
    """Lockstep: ``decide`` + ``feedback`` equal ``act`` + ``observe``; then, with rewards
    held back (delayed), the same choices and every decision fed back once, out of order."""
    acting, deciding = factory(seed), factory(seed)
    half = len(stream) // 2
    late: list[tuple[Obs, int, Any, float, int]] = []
    for t, obs in enumerate(stream):
        action = acting.act(obs)
        decision = deciding.decide(obs)
        if decision.action != action:
            raise AgentCheckError(
                f"decide: round {t}: decide(obs).action is {decision.action}, act(obs) is {action}"
            )
        if probabilities:
            _check_probabilities(deciding, obs, decision.action, decision.propensity, t)
        reward = _reward(t, obs, action)
        if t < half:
            acting.observe(obs, action, reward)
            deciding.feedback(decision.id, reward)
            if t == half - 1:
                _compare(_state(acting), _state(deciding), "decide: feedback vs observe")
        else:  # delayed: nothing is learned until the end
            late.append((obs, action, decision.id, reward, t))
    for obs, action, _, reward, _ in late:
        acting.observe(obs, action, reward)
    for _, _, decision_id, reward, _ in reversed(late):  # rewards come back out of order
        deciding.feedback(decision_id, reward)
    if deciding.pending:
        raise AgentCheckError(f"decide: {deciding.pending} decisions still pending after feedback")
    if deciding.rounds != acting.rounds:
        raise AgentCheckError(
            f"decide: {deciding.rounds} rounds learned through feedback, {acting.rounds} observed"
        )
    if late:
        try:
            deciding.feedback(late[0][2], 1.0)
        except ValueError:
            pass
        else:
            raise AgentCheckError("decide: feedback for an already used decision id was accepted")


def _check_probabilities(agent: Agent, obs: Obs, action: int, propensity: float, t: int) -> None:
    probs = agent.action_distribution(obs)
    mask = np.asarray(obs["action_mask"]).astype(bool)
    if probs.shape != mask.shape or not np.all(np.isfinite(probs)):
        raise AgentCheckError(f"probabilities: round {t}: shape {probs.shape} or values not finite")
    if abs(float(probs.sum()) - 1.0) > 1e-9 or (probs < 0).any():
        raise AgentCheckError(f"probabilities: round {t}: they sum to {probs.sum()}, not 1")
    if (probs[~mask] != 0).any():
        raise AgentCheckError(f"probabilities: round {t}: a masked candidate has probability > 0")
    if not 0.0 < float(propensity) <= 1.0:
        raise AgentCheckError(f"probabilities: round {t}: propensity {propensity} not in (0, 1]")


def _check_batched(
    factory: AgentFactory, stream: list[Obs], seed: int, batch: int, rtol: float, atol: float
) -> None:
    looped, batched = factory(seed), factory(seed)
    for start in range(0, len(stream) - batch + 1, batch):
        rows = stream[start : start + batch]
        single = [looped.act(obs) for obs in rows]
        together = batched.act(_stack(rows))
        if not isinstance(together, np.ndarray) or together.shape != (batch,):
            raise AgentCheckError(f"batched: act on {batch} rows returned {together!r}")
        if list(together) != single:
            raise AgentCheckError(
                f"batched: rows {start}..{start + batch - 1}: batched act chose "
                f"{together.tolist()}, the looped act {single}"
            )
        rewards = [
            _reward(start + i, obs, a) for i, (obs, a) in enumerate(zip(rows, single, strict=True))
        ]
        for obs, action, reward in zip(rows, single, rewards, strict=True):
            looped.observe(obs, action, reward)
        batched.observe(_stack(rows), together, np.asarray(rewards))
        _compare(
            _state(looped),
            _state(batched),
            f"batched: after rows ..{start + batch - 1}",
            rtol,
            atol,
        )


def _check_rejected_input(factory: AgentFactory, stream: list[Obs], seed: int) -> None:
    agent = factory(seed)
    half = len(stream) // 2
    _play(agent, stream[:half])
    obs = stream[half]
    action = agent.act(obs)
    k = np.asarray(obs["candidates"]).shape[0]
    bad_calls = {
        "a NaN reward": lambda: agent.observe(obs, action, float("nan")),
        "an infinite reward": lambda: agent.observe(obs, action, float("inf")),
        "a string reward": lambda: agent.observe(obs, action, "0.5"),
        "an action out of range": lambda: agent.observe(obs, k, 0.0),
        "a negative action": lambda: agent.observe(obs, -1, 0.0),
        "a float action": lambda: agent.observe(obs, 0.5, 0.0),
        "candidates of the wrong width": lambda: agent.observe(
            {**obs, "candidates": np.zeros((k, np.asarray(obs["candidates"]).shape[1] + 1))},
            action,
            0.0,
        ),
        "a NaN context": lambda: agent.observe(
            {**obs, "context": np.full_like(np.asarray(obs["context"], dtype=np.float32), np.nan)},
            action,
            0.0,
        ),
        "a batch with one bad reward": lambda: agent.observe(
            _stack([obs, obs, obs]), np.array([action] * 3), np.array([0.0, np.nan, 1.0])
        ),
    }
    for what, call in bad_calls.items():
        before = _state(agent)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
        except (ValueError, TypeError):
            pass
        else:
            raise AgentCheckError(f"rejected input: {what} was accepted")
        try:
            _compare(before, _state(agent), "rejected input")
        except AgentCheckError as err:
            raise AgentCheckError(
                f"rejected input: {what} changed the agent's state ({err})"
            ) from None


def _check_save_load(factory: AgentFactory, stream: list[Obs], seed: int) -> None:
    from bandexa_gym.persist.load import load_agent

    agent = factory(seed)
    half = len(stream) // 2
    _play(agent, stream[:half])
    with tempfile.TemporaryDirectory() as folder:
        path = agent.save(Path(folder) / "agent.safetensors")
        loaded = load_agent(path, map_location=agent.device)
    _compare(_state(agent), _state(loaded), "save/load")
    predict = getattr(agent, "predict", None)
    if predict is not None:
        for obs in stream[half : half + 4]:
            if not np.array_equal(predict(obs)[0], loaded.predict(obs)[0]):
                raise AgentCheckError("save/load: posterior-mean scores differ after loading")
    # Checkpoints hold what decides (not the replay buffer or optimizer moments that later
    # training uses): the reloaded agent must decide exactly as the saved one does.
    if [agent.act(obs) for obs in stream[half:]] != [loaded.act(obs) for obs in stream[half:]]:
        raise AgentCheckError("save/load: the reloaded agent chose differently")
