"""Durable run files: one ``.npz`` per finished run, written atomically, and resuming.

Layout under a grid's output folder::

    runs/<problem>__<agent>__seed<seed>.npz

Each file is a NumPy ``.npz`` (zip, deflate-compressed) holding

* ``meta``: UTF-8 JSON as a ``uint8`` array: ``format``, ``version``, ``name``,
  ``status`` (``"ok"`` or ``"failed"``), ``config`` (the job's full config, see
  :meth:`~bandexa_gym.bench.grid.jobs.Job.config`), ``config_hash`` (SHA-256 of it),
  ``summary`` (``horizon``, ``cumulative_regret``, ``mean_reward``, ``seconds``,
  ``decisions_per_second``; finished runs), ``error`` and ``traceback`` (failed runs),
  ``started`` / ``finished`` (UTC), ``host`` and ``digest`` (:func:`run_digest`);
* ``rewards`` and ``regrets``: the per-round curves, float64, shape (T,) (finished runs).

Nothing in it needs pickle: ``np.load(path, allow_pickle=False)`` reads it. A file is
written under a temporary name and renamed into place (:mod:`bandexa_gym.atomic`), so it
is either absent or complete.

Reading checks what a file claims before anything uses it: the ``digest`` (SHA-256 over
the rest of ``meta`` and every array's dtype, shape and bytes) must match, and a finished
run's curves must hold exactly the config's ``horizon`` finite values. A file that fails
(truncated, damaged, edited by hand, or of format version 1, which had no digest and whose
agents were seeded with the env's seed) is a :class:`RunFileError`: ``--resume`` runs it
again and no table ever shows it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bandexa_gym.atomic import atomic_path
from bandexa_gym.bench.grid.jobs import JOB_CONFIG_KEYS, Job, RunRecord
from bandexa_gym.bench.runner import RunResult

__all__ = [
    "RUNS_FOLDER",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "ConfigConflictError",
    "ResumePlan",
    "RunFileError",
    "RunStore",
    "run_digest",
]

RUNS_FOLDER = "runs"
RUN_FORMAT = "bandexa-bench-run"
RUN_FORMAT_VERSION = 2
"""Version 2 added the ``digest`` and seeds each agent from its own stream of the run seed
(:func:`bandexa_gym.bench.runner.agent_seed`); version 1 files are run again."""

_CURVES = ("rewards", "regrets")
# What np.load and the zip and zlib layers under it raise for a damaged or foreign file.
_UNREADABLE = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    UnicodeDecodeError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


class RunFileError(ValueError):
    """A run file that cannot be read or trusted: not an ``.npz`` run file, damaged, a
    digest that does not match, curves that do not fit its config, or another format."""


class ConfigConflictError(ValueError):
    """A run file of the same name holds a run made with a different config.

    Attributes:
        path: The run file.
        differences: ``key: stored -> wanted`` for every differing config key.
    """

    def __init__(self, path: Path, differences: list[str]) -> None:
        self.path = path
        self.differences = differences
        super().__init__(f"{path} was made with a different config ({'; '.join(differences)})")


@dataclass
class ResumePlan:
    """What ``--resume`` keeps and what it runs.

    Attributes:
        done: Job index -> the finished run read back from its file (not run again).
        todo: Indices of the jobs to run: no file, a failed run, or an unreadable file.
        failed: Indices of jobs whose file records a failure (run again).
        unreadable: Run files that could not be read, with the reason (run again).
    """

    done: dict[int, RunRecord] = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


class RunStore:
    """The ``runs/`` folder of a grid's output folder: one file per run.

    Args:
        out: The grid's output folder (``runs/`` is created in it on the first write).
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.folder = self.out / RUNS_FOLDER

    def path(self, job: Job) -> Path:
        """The file of ``job``'s run."""
        return self.folder / f"{job.run_name}.npz"

    def relative(self, job: Job) -> str:
        """The file of ``job``'s run relative to the output folder (POSIX separators)."""
        return f"{RUNS_FOLDER}/{job.run_name}.npz"

    def write(self, record: RunRecord) -> Path:
        """Atomically write ``record`` to its file (replacing an older one) and return it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        if record.result is not None:
            arrays["rewards"] = np.ascontiguousarray(record.result.rewards, dtype=np.float64)
            arrays["regrets"] = np.ascontiguousarray(record.result.regrets, dtype=np.float64)
        meta = _meta(record)
        meta["digest"] = run_digest(meta, arrays)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = self.path(record.job)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path

    def read(self, path: Path) -> RunRecord:
        """Read a run file back into a :class:`RunRecord` (curves included), checked.

        Raises:
            RunFileError: Not a readable run file of this format version, a digest that
                does not match its content, or curves that do not fit its config.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                ok = isinstance(meta, dict) and meta.get("status") == "ok"
                arrays = {name: data[name] for name in _CURVES} if ok else {}
        except _UNREADABLE as err:
            raise RunFileError(f"{path} is not a readable run file: {err}") from err
        _check_header(path, meta)
        if meta.get("digest") != run_digest(meta, arrays):
            raise RunFileError(
                f"{path} does not match its digest: it was damaged or edited after it was written"
            )
        try:
            job = Job(**{key: meta["config"][key] for key in JOB_CONFIG_KEYS})
        except (KeyError, TypeError) as err:
            raise RunFileError(f"{path} has an incomplete config: {err}") from err
        result = None
        if ok:
            result = _result(path, job, meta, arrays)
        return RunRecord(
            job,
            "ok" if result is not None else "failed",
            result,
            meta.get("error"),
            meta.get("traceback"),
            meta.get("started"),
            meta.get("finished"),
        )

    def read_meta(self, path: Path) -> dict[str, Any]:
        """Only the JSON ``meta`` of a run file (the curves are not decompressed, so the
        digest is not checked: :meth:`read` checks it)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return json.loads(bytes(data["meta"]).decode())
        except _UNREADABLE as err:
            raise RunFileError(f"{path} is not a readable run file: {err}") from err

    def existing(self, jobs: Sequence[Job]) -> list[Path]:
        """The run files of ``jobs`` that exist."""
        return [path for path in map(self.path, jobs) if path.exists()]

    def remove(self, jobs: Sequence[Job]) -> int:
        """Delete the run files of ``jobs``; returns how many there were."""
        paths = self.existing(jobs)
        for path in paths:
            path.unlink(missing_ok=True)
        return len(paths)

    def plan_resume(self, jobs: Sequence[Job]) -> ResumePlan:
        """Which of ``jobs`` already finished (same config) and which to run.

        Raises:
            ConfigConflictError: A run file of one of the jobs holds a different config.
        """
        plan = ResumePlan()
        for index, job in enumerate(jobs):
            path = self.path(job)
            if not path.exists():
                plan.todo.append(index)
                continue
            try:
                record = self.read(path)
            except RunFileError as err:
                plan.unreadable.append((path, str(err)))
                plan.todo.append(index)
                continue
            wanted, stored = job.config(), record.job.config()
            if wanted != stored:
                raise ConfigConflictError(path, _differences(stored, wanted))
            if record.ok:
                plan.done[index] = record
            else:
                plan.failed.append(index)
                plan.todo.append(index)
        return plan


def run_digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) over a run file's ``meta`` (without its ``digest``) and its arrays.

    The meta is hashed as canonical JSON; each array by name, dtype, shape and bytes
    (C order), so any change to the figures, the curves or the config changes it.
    """
    digest = hashlib.sha256()
    content = {key: value for key, value in meta.items() if key != "digest"}
    digest.update(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\n{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_header(path: Path, meta: Any) -> None:
    """``RunFileError`` unless ``meta`` is a run file's meta of this format version."""
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise RunFileError(f"{path} is not a bandexa-bench run file")
    version = meta.get("version")
    if version == 1:
        raise RunFileError(
            f"{path} was written by an older bandexa-gym (run-file format 1: no digest, and "
            "its agent was seeded with the env's seed), so its numbers are not comparable"
        )
    if version != RUN_FORMAT_VERSION:
        raise RunFileError(
            f"{path} has run-file format version {version}; this bandexa-gym "
            f"reads version {RUN_FORMAT_VERSION}"
        )


def _result(path: Path, job: Job, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """The :class:`RunResult` of a finished run's file, its curves checked against the config.

    Raises:
        RunFileError: Curves of another dtype, shape or length than the config's horizon,
            values that are not finite, or no summary.
    """
    for name, curve in arrays.items():
        if curve.dtype != np.float64 or curve.shape != (job.horizon,):
            raise RunFileError(
                f"{path}: {name} has dtype {curve.dtype} and shape {curve.shape}; the config "
                f"asks for {job.horizon} float64 rounds"
            )
        if not np.isfinite(curve).all():
            raise RunFileError(f"{path}: {name} holds values that are not finite")
    try:
        seconds = float(meta["summary"]["seconds"])
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{path} has no valid summary: {err}") from err
    info = {"env": job.problem_name, "env_id": job.env_id, "agent": job.agent, "seed": job.seed}
    return RunResult(arrays["rewards"], arrays["regrets"], seconds, info)


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {json.dumps(stored.get(key))} -> {json.dumps(wanted.get(key))}"
        for key in sorted(set(stored) | set(wanted))
        if stored.get(key) != wanted.get(key)
    ]


def _meta(record: RunRecord) -> dict[str, Any]:
    job = record.job
    meta: dict[str, Any] = {
        "format": RUN_FORMAT,
        "version": RUN_FORMAT_VERSION,
        "name": job.run_name,
        "status": record.status,
        "config": job.config(),
        "config_hash": job.config_hash(),
        "started": record.started,
        "finished": record.finished,
        "host": platform.node(),
    }
    if record.result is not None:
        meta["summary"] = run_summary(record.result)
    else:
        meta["error"] = record.error
        meta["traceback"] = record.traceback
    return meta


def run_summary(result: RunResult) -> dict[str, Any]:
    """The summary figures of one run: horizon, cumulative regret, mean reward, timing."""
    return {
        "horizon": result.horizon,
        "cumulative_regret": float(np.sum(result.regrets)),
        "mean_reward": float(np.mean(result.rewards)) if result.horizon else None,
        "seconds": float(result.seconds),
        "decisions_per_second": (
            float(result.decisions_per_second) if result.seconds > 0 else None
        ),
    }
