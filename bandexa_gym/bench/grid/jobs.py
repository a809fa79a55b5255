"""One run of a benchmark grid: the :class:`Job`, running it, and the :class:`RunRecord`.

A :class:`Job` is one (problem, agent, seed) run with everything that shapes its numbers.
:func:`run_job` plays it and returns a :class:`~bandexa_gym.bench.runner.RunResult`;
:func:`execute_job` does the same but never raises for a failing run: it returns a
:class:`RunRecord` that says ``"failed"`` and carries the error, so one bad run does not
take a grid down. Both are plain functions of picklable arguments, so worker processes and
Ray tasks run exactly what an in-process loop runs.

A job with a ``log_dir`` writes its decision log to a hidden partial folder beside its log
folder (``.<run name>.partial``) and moves it into place (``<run name>``) only when the run
finishes; a partial folder left by a killed run is removed when the run starts again. So
``<log_dir>/<run name>`` always holds the whole log of a finished run (or nothing), and a
run that is run again (``--resume``, ``--overwrite``) restarts its log with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from bandexa_gym.agents.core import PerformanceHint, make_agent
from bandexa_gym.atomic import fsync_dir
from bandexa_gym.bench.runner import RunResult, agent_seed, run

__all__ = [
    "JOB_CONFIG_KEYS",
    "Job",
    "ProgressCallback",
    "RoundTicker",
    "RunRecord",
    "execute_job",
    "run_job",
    "seed_everything",
]

ProgressCallback = Callable[[int], None]
"""Called with the number of rounds a run has played so far (throttled by the caller)."""

JOB_CONFIG_KEYS: tuple[str, ...] = (
    "problem",
    "env_id",
    "env_kwargs",
    "agent",
    "agent_kwargs",
    "seed",
    "horizon",
    "device",
    "threads",
    "delay",
    "feedback_batch",
    "log_dir",
)
"""The :class:`Job` fields that make up its config and hash (everything but ``progress``)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Job:
    """One (problem, agent, seed) run of the benchmark; picklable for workers and Ray.

    Attributes:
        env_id: Gymnasium id of a ``Bandexa/*`` env (``module:Id`` imports ``module``).
        agent: A registered agent name, ``sb3:PPO`` / ``sb3:A2C`` / ``sb3:DQN`` or
            ``sb3c:MaskablePPO``.
        seed: The run seed: seeds the env's round stream and Python/NumPy/torch; the agent
            gets a seed of its own derived from it (:func:`~bandexa_gym.bench.runner.agent_seed`).
        horizon: Rounds to play.
        env_kwargs: Keyword arguments of ``gym.make``.
        agent_kwargs: Agent overrides (``make_agent``) or SB3 constructor arguments.
        device: Torch device of the agent.
        progress: Show the runner's own progress bar for this run (not part of the config).
        threads: Torch intra-op CPU threads for this run (restored afterwards).
        problem: Name of the problem in tables and file names (default: ``env_id``); two
            problems can share an env id with different ``env_kwargs``.
        delay: Delay model of the rewards (``"fixed:N"``, ``"geometric:MEAN"``,
            ``"uniform:LO:HI"``), passed to the runner as ``delay=``; None for none.
        feedback_batch: Rewards delivered in batches of this many, passed to the runner as
            ``feedback_batch=``; None for immediate feedback.
        log_dir: Write this run's decision log to ``log_dir/<run name>`` (:attr:`log_path`;
            see the module docstring); None for no log.
    """

    env_id: str
    agent: str
    seed: int
    horizon: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    progress: bool = False
    threads: int = 1
    problem: str | None = None
    delay: str | None = None
    feedback_batch: int | None = None
    log_dir: str | None = None

    @property
    def problem_name(self) -> str:
        """The problem's name: ``problem``, or the env id when it has none."""
        return self.problem or self.env_id

    @property
    def label(self) -> str:
        """Short human-readable name of the run."""
        return f"{self.agent} | {self.problem_name} | seed {self.seed}"

    @property
    def run_name(self) -> str:
        """File-safe unique name of the run: ``<problem>__<agent>__seed<seed>``."""
        problem = _UNSAFE.sub("-", self.problem_name).strip("-")
        agent = _UNSAFE.sub("-", self.agent).strip("-")
        return f"{problem}__{agent}__seed{self.seed}"

    @property
    def log_path(self) -> Path | None:
        """The folder of this run's finished decision log, ``log_dir/<run name>``; None
        without ``log_dir``."""
        return None if self.log_dir is None else Path(self.log_dir) / self.run_name

    @property
    def partial_log_path(self) -> Path | None:
        """Where the log is written while the run plays, ``log_dir/.<run name>.partial``."""
        return None if self.log_dir is None else Path(self.log_dir) / f".{self.run_name}.partial"

    @property
    def is_sb3(self) -> bool:
        """Whether the agent is a stable-baselines3 or sb3-contrib baseline (``sb3:*``,
        ``sb3c:*``)."""
        return self.agent.startswith(("sb3:", "sb3c:"))

    def config(self) -> dict[str, Any]:
        """Everything that shapes this run's numbers, as plain JSON values.

        ``problem`` is the resolved name (:attr:`problem_name`); ``progress`` is left out.
        """
        values = {key: getattr(self, key) for key in JOB_CONFIG_KEYS}
        values["problem"] = self.problem_name
        return json.loads(json.dumps(values, sort_keys=True, default=_json_value))

    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`config`."""
        text = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def runner_options(self) -> dict[str, Any]:
        """The keyword arguments for ``runner.run`` that are set: ``delay``,
        ``feedback_batch`` and ``log`` (so that a runner without them keeps working).

        ``log`` is :attr:`partial_log_path`: :func:`run_job` moves it to :attr:`log_path`
        when the run finishes.
        """
        options: dict[str, Any] = {}
        if self.delay is not None:
            options["delay"] = self.delay
        if self.feedback_batch is not None:
            options["feedback_batch"] = self.feedback_batch
        if self.partial_log_path is not None:
            options["log"] = self.partial_log_path
        return options


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


@dataclass
class RunRecord:
    """What became of one job: its result, or the error that stopped it.

    Attributes:
        job: The job.
        status: ``"ok"`` or ``"failed"``.
        result: The measurements (``"ok"`` only).
        error: ``"ExceptionType: message"`` of a failed run.
        traceback: The formatted traceback of a failed run.
        started: UTC time the run started (ISO 8601).
        finished: UTC time the run ended (ISO 8601).
    """

    job: Job
    status: Literal["ok", "failed"]
    result: RunResult | None = None
    error: str | None = None
    traceback: str | None = None
    started: str | None = None
    finished: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run finished."""
        return self.status == "ok"

    @classmethod
    def failure(cls, job: Job, error: BaseException | str, started: str | None = None) -> RunRecord:
        """A failed record for ``job`` from an exception (with its traceback) or a message."""
        if isinstance(error, BaseException):
            message = f"{type(error).__name__}: {error}"
            trace = "".join(traceback.format_exception(error))
        else:
            message, trace = error, None
        return cls(job, "failed", None, message, trace, started, _now())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (for code that uses them)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may draw from it
    torch.manual_seed(seed)


class RoundTicker(gym.Wrapper):
    """Passes every call through and reports the rounds played to a callback.

    It changes nothing the env returns and draws no randomness, so a run plays the same
    rounds with or without it; ``callback`` is called at most every ``interval`` seconds
    (and once at the start).
    """

    def __init__(self, env: gym.Env, callback: ProgressCallback, interval: float = 0.25) -> None:
        super().__init__(env)
        self._callback = callback
        self._interval = interval
        self._rounds = 0
        self._last = time.monotonic()
        callback(0)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self._rounds += 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._callback(self._rounds)
        return out


def _remove_path(path: Path) -> None:
    """Remove a file, a symlink (not its target) or a folder tree; nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replaced_log_path(job: Job) -> Path:
    assert job.log_path is not None
    return job.log_path.parent / f".{job.run_name}.replaced"


def _clear_partial_log(job: Job) -> None:
    """Remove what a killed run of ``job`` left: its partial log, a half-replaced old one."""
    if job.partial_log_path is not None:
        _remove_path(job.partial_log_path)
        _remove_path(_replaced_log_path(job))


def _publish_log(job: Job) -> None:
    """Move the finished run's partial log to :attr:`Job.log_path`, replacing what is there
    (a log of an earlier run of the job)."""
    partial, final = job.partial_log_path, job.log_path
    if partial is None or final is None or not partial.exists():
        return
    old = _replaced_log_path(job)
    _remove_path(old)
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(partial, final)
    fsync_dir(final.parent)
    _remove_path(old)


def run_job(job: Job, on_rounds: ProgressCallback | None = None) -> RunResult:
    """Run one benchmark job in a fresh env and return its measurements.

    The global generators are seeded with ``job.seed`` first and torch uses
    ``job.threads`` CPU threads, so a job gives the same numbers whatever ran before it,
    in this process, in a worker or in a Ray task (CPU float results can depend on the
    thread count). The env plays the round stream of ``job.seed``; the agent is seeded
    with :func:`~bandexa_gym.bench.runner.agent_seed` of it, a stream of its own, so an agent
    never draws in lockstep with the env. A run with a log writes it to
    :attr:`Job.partial_log_path` and moves it to :attr:`Job.log_path` when it finishes.

    Args:
        job: What to run.
        on_rounds: Called with the rounds played so far, every quarter second or so.

    Returns:
        The :class:`RunResult`; ``info`` holds ``env`` (the problem name), ``env_id``,
        ``agent`` and ``seed``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    seed_everything(job.seed)
    _clear_partial_log(job)
    env = gym.make(job.env_id, **job.env_kwargs)
    if on_rounds is not None:
        env = RoundTicker(env, on_rounds)
    try:
        if job.is_sb3:
            from bandexa_gym.bench.sb3 import run_sb3  # imports stable-baselines3

            result = run_sb3(
                job.agent,
                env,
                job.horizon,
                seed=job.seed,
                model_seed=agent_seed(job.seed),
                device=job.device,
                progress=job.progress,
                desc=job.label,
                **job.agent_kwargs,
            )
        else:
            with warnings.catch_warnings():
                # job.threads is a deliberate setting: no hint to change the thread count
                warnings.simplefilter("ignore", PerformanceHint)
                seed = agent_seed(job.seed)
                agent = make_agent(job.agent, env, seed=seed, device=job.device, **job.agent_kwargs)
            result = run(
                agent,
                env,
                job.horizon,
                seed=job.seed,
                progress=job.progress,
                desc=job.label,
                **job.runner_options(),
            )
            _publish_log(job)
    except BaseException:
        with contextlib.suppress(OSError):  # the run's own error is the one to report
            _clear_partial_log(job)
        raise
    finally:
        env.close()
        torch.set_num_threads(threads)
    result.info.update(
        {"env": job.problem_name, "env_id": job.env_id, "agent": job.agent, "seed": job.seed}
    )
    return result


def execute_job(job: Job, on_rounds: ProgressCallback | None = None) -> RunRecord:
    """Run ``job`` and return its :class:`RunRecord`; an exception makes a failed record.

    ``KeyboardInterrupt`` and ``SystemExit`` are not caught: they stop the grid.
    """
    started = _now()
    try:
        result = run_job(job, on_rounds)
    except Exception as err:  # any failure of the run is the run's, not the grid's
        return RunRecord.failure(job, err, started)
    return RunRecord(job, "ok", result, started=started, finished=_now())
