"""The grid machinery under the bench CLI: jobs, run files, resume, suites, tables."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.agents import make_agent
from bandexa_gym.bench.grid import (
    ConfigConflictError,
    ExistingRunsError,
    InProcessBackend,
    Job,
    OutputBusyError,
    RunFileError,
    RunRecord,
    RunStore,
    execute_job,
    output_lock,
    plan_grid,
    reaper,
    run_grid,
    run_job,
    run_jobs,
)
from bandexa_gym.bench.grid.base import GridEvents
from bandexa_gym.bench.grid.store import RUN_FORMAT_VERSION
from bandexa_gym.bench.grid.suite_table import format_suite_table, suite_cells
from bandexa_gym.bench.grid.suites import CLASSIC, QUICK, SUITES, default_agents
from bandexa_gym.bench.runner import RunResult

JOB = Job("Bandexa/Synthetic-v0", "uniform", 3, horizon=25, env_kwargs={"n_arms": 4})


# -- jobs -------------------------------------------------------------------------------------
def test_job_config_and_hash_cover_everything_that_shapes_the_numbers() -> None:
    config = JOB.config()
    assert config["problem"] == "Bandexa/Synthetic-v0"  # the env id when unnamed
    assert "progress" not in config
    assert JOB.config_hash() == Job(**{**JOB.__dict__, "progress": True}).config_hash()
    changes = {
        "env_id": "Bandexa/Retrieval-v0",
        "agent": "linear_ts",
        "seed": 4,
        "horizon": 26,
        "env_kwargs": {"n_arms": 5},
        "agent_kwargs": {"prior_var": 2.0},
        "device": "cuda",
        "threads": 2,
        "problem": "synthetic-small",
        "delay": "fixed:3",
        "feedback_batch": 8,
        "log_dir": "/tmp/logs",
    }
    hashes = {JOB.config_hash()}
    for key, value in changes.items():
        hashes.add(Job(**{**JOB.__dict__, key: value}).config_hash())
    assert len(hashes) == len(changes) + 1
    assert JOB.run_name == "Bandexa-Synthetic-v0__uniform__seed3"
    assert Job("m:My/Env-v0", "sb3:PPO", 0, 1, problem="a b").run_name == "a-b__sb3-PPO__seed0"


def test_runner_options_are_passed_only_when_set() -> None:
    assert JOB.runner_options() == {}
    job = Job(**{**JOB.__dict__, "delay": "fixed:2", "feedback_batch": 4, "log_dir": "/x"})
    assert job.runner_options() == {
        "delay": "fixed:2",
        "feedback_batch": 4,
        "log": Path("/x") / f".{job.run_name}.partial",  # moved to log_path when it ends
    }
    assert job.log_path == Path("/x") / job.run_name


def test_progress_ticks_do_not_change_a_run() -> None:
    ticks: list[int] = []
    with_ticks = run_job(JOB, ticks.append)
    plain = run_job(JOB)
    np.testing.assert_array_equal(with_ticks.rewards, plain.rewards)
    np.testing.assert_array_equal(with_ticks.regrets, plain.regrets)
    assert ticks[0] == 0 and ticks == sorted(ticks) and ticks[-1] <= JOB.horizon
    assert with_ticks.info == {
        "seed": 3,
        "agent": "uniform",
        "env": "Bandexa/Synthetic-v0",
        "env_id": "Bandexa/Synthetic-v0",
    }


def test_execute_job_turns_an_exception_into_a_failed_record() -> None:
    bad = Job("Bandexa/Synthetic-v0", "uniform", 0, 10, env_kwargs={"n_arms": -1})
    record = execute_job(bad)
    assert record.status == "failed" and record.result is None
    assert record.error.startswith("ValueError:") and "n_arms" in record.error
    assert "Traceback" in record.traceback
    with pytest.raises(RuntimeError, match="uniform | Bandexa/Synthetic-v0 | seed 0: ValueError"):
        run_jobs([JOB, bad])
    (result,) = run_jobs([JOB])
    assert result.horizon == 25


# -- run files --------------------------------------------------------------------------------
def test_run_files_round_trip_without_pickle(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = execute_job(JOB)
    path = store.write(record)
    assert path == tmp_path / "runs" / f"{JOB.run_name}.npz"
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["meta", "regrets", "rewards"]
        assert data["rewards"].dtype == np.float64
    meta = store.read_meta(path)
    assert meta["version"] == RUN_FORMAT_VERSION and meta["status"] == "ok"
    assert meta["config"] == JOB.config() and meta["config_hash"] == JOB.config_hash()
    assert meta["summary"]["cumulative_regret"] == pytest.approx(record.result.regrets.sum())
    back = store.read(path)
    assert back.job.config() == JOB.config() and back.ok
    np.testing.assert_array_equal(back.result.rewards, record.result.rewards)
    np.testing.assert_array_equal(back.result.regrets, record.result.regrets)
    assert back.result.seconds == pytest.approx(record.result.seconds)
    assert back.result.info["env"] == "Bandexa/Synthetic-v0"

    failed = RunRecord.failure(JOB, ValueError("nope"))
    store.write(failed)  # replaces the finished run's file
    back = store.read(path)
    assert back.status == "failed" and back.error == "ValueError: nope" and back.result is None
    assert not list(store.folder.glob(".*"))  # no temporary file left


def test_unreadable_run_files_are_named(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.folder.mkdir()
    path = store.path(JOB)
    path.write_bytes(b"not a zip")
    with pytest.raises(RunFileError, match="is not a readable run file"):
        store.read(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta.npy", b"\x93NUMPY garbage")
    with pytest.raises(RunFileError):
        store.read(path)
    record = execute_job(JOB)
    store.write(record)
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]))
        arrays = {k: data[k] for k in data.files}
    meta["version"] = RUN_FORMAT_VERSION + 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(RunFileError, match=f"format version {RUN_FORMAT_VERSION + 1}"):
        store.read(path)
    plan = store.plan_resume([JOB])
    assert plan.todo == [0] and plan.unreadable and not plan.done


def test_plan_grid(tmp_path: Path) -> None:
    jobs = [JOB, Job(**{**JOB.__dict__, "seed": 4})]
    assert plan_grid(jobs).todo == [0, 1]
    store = RunStore(tmp_path)
    store.write(execute_job(jobs[0]))
    store.write(RunRecord.failure(jobs[1], "RuntimeError: x"))
    with pytest.raises(ExistingRunsError, match="already holds 2 run file"):
        plan_grid(jobs, tmp_path)
    plan = plan_grid(jobs, tmp_path, resume=True)
    assert list(plan.done) == [0] and plan.todo == [1] and plan.failed_before == [1]
    changed = [Job(**{**JOB.__dict__, "horizon": 30})]
    with pytest.raises(ConfigConflictError, match="horizon: 25 -> 30"):
        plan_grid(changed, tmp_path, resume=True)
    plan = plan_grid(jobs, tmp_path, overwrite=True)
    assert plan.removed == 2 and plan.todo == [0, 1] and not store.existing(jobs)
    with pytest.raises(ValueError, match="would share the file name"):
        plan_grid([JOB, Job(**{**JOB.__dict__, "horizon": 9})])


def test_output_lock_excludes_a_second_grid(tmp_path: Path) -> None:
    with output_lock(tmp_path), pytest.raises(OutputBusyError, match="another bandexa-bench"):
        with output_lock(tmp_path):
            pass
    with output_lock(tmp_path):  # released
        pass


def test_run_grid_writes_each_run_and_stops_when_asked(tmp_path: Path) -> None:
    jobs = [Job(**{**JOB.__dict__, "seed": s}) for s in range(3)]

    class StopAfterOne(InProcessBackend):
        def run(self, jobs: list, events: GridEvents) -> None:
            finished = events.finished

            def finish_then_stop(index: int, record: RunRecord) -> None:
                finished(index, record)
                events.stopping = True

            events.finished = finish_then_stop
            super().run(jobs, events)

    outcome = run_grid(plan_grid(jobs, tmp_path), StopAfterOne(), out=tmp_path)
    assert outcome.ran == 1 and len(outcome.records) == 1
    assert [p.name for p in RunStore(tmp_path).existing(jobs)] == [f"{jobs[0].run_name}.npz"]
    outcome = run_grid(plan_grid(jobs, tmp_path, resume=True), InProcessBackend(), out=tmp_path)
    assert (outcome.resumed, outcome.ran, outcome.interrupted) == (1, 2, None)
    assert [r.job.seed for r in outcome.records] == [0, 1, 2]


# -- suites ------------------------------------------------------------------------------------
def test_classic_suite_is_the_issue_table() -> None:
    table = {p.name: (p.env_id, p.rounds, dict(p.env_kwargs)) for p in CLASSIC.problems}
    assert table == {
        "adult": ("Bandexa/Adult-v0", 2000, {}),
        "letter": ("Bandexa/Letter-v0", 2000, {}),
        "satimage": ("Bandexa/Satimage-v0", 2000, {}),
        "pendigits": ("Bandexa/Pendigits-v0", 2000, {}),
        "synthetic-0.5": ("Bandexa/Synthetic-v0", 4000, {"interaction_scale": 0.5}),
        "synthetic-1.5": ("Bandexa/Synthetic-v0", 4000, {"interaction_scale": 1.5}),
        "retrieval": ("Bandexa/Retrieval-v0", 5000, {"n_actions": 10_000, "candidate_size": 512}),
        "mnist": ("Bandexa/MNIST-v0", 4096, {}),
    }
    assert CLASSIC.num_seeds == 5 and QUICK.num_seeds == 2
    assert set(SUITES) == {"classic", "quick"}
    from bandexa_gym.agents import AGENTS

    costly = {"neural_ts", "neural_ucb", "bootstrapped_nn"}  # registered names, left out
    assert costly <= set(AGENTS)  # where the suite's time budget cannot take them
    assert {p.name: set(p.skip) for p in CLASSIC.problems if p.skip} == {
        "retrieval": costly,
        "mnist": costly,
    }
    for suite in SUITES.values():
        names = [p.name for p in suite.problems]
        assert len(set(names)) == len(names)


def test_default_agents_come_from_the_registry() -> None:
    registered = ["neural_ts", "linear_ts", "peer:vw-squarecb", "uniform", "linear_ucb",
                  "neural_linear_ts", "peer:bayesianbandits"]  # fmt: skip
    assert default_agents(registered) == [
        "uniform",
        "linear_ts",
        "neural_linear_ts",
        "peer:bayesianbandits",
        "peer:vw-squarecb",
        "linear_ucb",
        "neural_ts",
    ]
    assert default_agents(["linear_ts"]) == ["uniform", "linear_ts"]  # the normalizer always
    from bandexa_gym.agents import AGENTS

    assert set(default_agents()) == set(AGENTS) | {"uniform"}


def _result(env: str, agent: str, seed: int, regret: float) -> RunResult:
    info = {"env": env, "agent": agent, "seed": seed}
    return RunResult(np.zeros(4), np.full(4, regret / 4), seconds=1.0, info=info)


def test_suite_cells_normalize_per_seed_and_rank() -> None:
    results = [
        _result("p", "uniform", 0, 100.0),
        _result("p", "uniform", 1, 200.0),
        _result("p", "a", 0, 50.0),
        _result("p", "a", 1, 60.0),
        _result("p", "b", 0, 50.0),
        _result("p", "b", 1, 60.0),
        _result("p", "c", 0, 10.0),  # seed 1 failed: one seed
        _result("q", "a", 0, 5.0),  # no uniform on q: no cells there
    ]
    cells = suite_cells(results)
    assert set(cells) == {("p", "uniform"), ("p", "a"), ("p", "b"), ("p", "c")}
    assert cells["p", "uniform"].mean == 1.0 and cells["p", "uniform"].std == 0.0
    a = cells["p", "a"]
    assert a.seeds == 2 and a.mean == pytest.approx((0.5 + 0.3) / 2)
    assert a.std == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert cells["p", "c"].std is None and cells["p", "c"].rank == 1
    assert cells["p", "a"].rank == cells["p", "b"].rank == 2.5  # tied: ranks 2 and 3
    assert cells["p", "uniform"].rank == 4

    table = format_suite_table(
        cells,
        ["p", "q"],
        ["uniform", "a", "b", "c"],
        not_applicable={("q", "c"): "per-arm model"},
        failures={("p", "c"): "seed 1 failed: RuntimeError: x"},
    )
    lines = table.splitlines()
    assert lines[1].split() == ["agent", "p", "q", "mean", "rank"]
    assert [line.split()[0] for line in lines[3:7]] == ["c", "a", "b", "uniform"]
    c_row = lines[3]
    assert "0.10 (1) [1]" in c_row and "n/a [2]" in c_row and c_row.endswith("1.00")
    assert lines[4].split()[1:3] == ["0.40±0.14", "(2.5)"]
    assert lines[7] == "[1] c on p: seed 1 failed: RuntimeError: x"
    assert lines[8] == "[2] c on q: per-arm model"
    assert math.isclose(float(lines[6].split()[-1]), 4.0)


def test_progress_bars_follow_runs_and_drop_late_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from bandexa_gym.bench.grid.progress import GridProgress

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    jobs = [Job(**{**JOB.__dict__, "seed": s}) for s in range(3)]
    bars = GridProgress(jobs, done=1, enabled=True)
    bars.open()
    bars.rounds(1, 0)
    bars.rounds(1, 10)
    assert bars._bars[1].n == 10
    bars.finished(1, RunRecord(jobs[1], "ok"))
    bars.rounds(1, 20)  # a report that arrives after the run ended (Ray's actor)
    assert not bars._bars
    bars.finished(2, RunRecord.failure(jobs[2], "RuntimeError: x"))
    bars.close()
    text = err.getvalue()
    assert "3/3" in text and "uniform | Bandexa/Synthetic-v0 | seed 1" in text
    assert "failed: uniform | Bandexa/Synthetic-v0 | seed 2: RuntimeError: x" in text


def test_preflight_reports_a_binary_reward_model_on_real_rewards_as_not_applicable() -> None:
    import gymnasium as gym

    from bandexa_gym.bench.grid.preflight import non_binary_reward, preflight
    from bandexa_gym.bench.grid.suites import Problem

    assert non_binary_reward(gym.make("Bandexa/Synthetic-v0")) is not None
    assert non_binary_reward(gym.make("Bandexa/Pendigits-v0")) is None
    problems = [
        Problem("synthetic", "Bandexa/Synthetic-v0", 10, {"n_arms": 3}),
        Problem("pendigits", "Bandexa/Pendigits-v0", 10),
    ]
    found = preflight(problems, ["uniform", "linear_ts", "logistic_ts"], {})
    (pair,) = found.not_applicable
    assert pair == ("synthetic", "logistic_ts")
    assert "models {0, 1} rewards" in found.not_applicable[pair]


def test_preflight_reports_an_agent_a_problem_skips_with_its_reason() -> None:
    from bandexa_gym.bench.grid.preflight import preflight
    from bandexa_gym.bench.grid.suites import Problem

    problems = [Problem("small", "Bandexa/Synthetic-v0", 10, {"n_arms": 3}, {"linear_ts": "why"})]
    found = preflight(problems, ["uniform", "linear_ts"], {})
    assert found.not_applicable == {("small", "linear_ts"): "why"}


# -- damaged, edited and old run files (--resume runs them again) ------------------------------
def _rewrite(path: Path, meta: dict, arrays: dict[str, np.ndarray], digest: bool) -> None:
    """Write a run file by hand, with a matching digest when ``digest`` (a careful forger)."""
    from bandexa_gym.bench.grid.store import run_digest

    meta = dict(meta)
    meta.pop("digest", None)
    if digest:
        meta["digest"] = run_digest(meta, arrays)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def test_damaged_or_edited_run_files_are_run_again_and_never_tabled(tmp_path: Path) -> None:
    job = Job(**{**JOB.__dict__, "horizon": 200})
    store = RunStore(tmp_path)
    path = store.write(execute_job(job))
    good = path.read_bytes()
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]))
        curves = {name: data[name] for name in ("rewards", "regrets")}
    assert meta["digest"] and store.read(path).ok

    def unreadable(match: str) -> None:
        with pytest.raises(RunFileError, match=match):
            store.read(path)
        plan = store.plan_resume([job])
        assert plan.todo == [0] and not plan.done and plan.unreadable[0][0] == path

    path.write_bytes(good[:2000])  # truncate -s 2000: was a zipfile.BadZipFile traceback
    unreadable("is not a readable run file")
    path.write_bytes(good[: len(good) // 2])
    unreadable("is not a readable run file")
    short = {name: curve[:3] for name, curve in curves.items()}  # horizon 3, config says 200
    _rewrite(path, meta, short, digest=False)
    unreadable("does not match its digest")
    _rewrite(path, meta, short, digest=True)
    unreadable("the config asks for 200 float64 rounds")
    nan = {**curves, "regrets": np.full(200, np.nan)}
    _rewrite(path, meta, nan, digest=False)
    unreadable("does not match its digest")
    _rewrite(path, meta, nan, digest=True)
    unreadable("regrets holds values that are not finite")
    edited = {**meta, "summary": {**meta["summary"], "cumulative_regret": 0.0}}
    _rewrite(path, edited, curves, digest=False)
    unreadable("does not match its digest")
    # Files of format 1 (no digest; agents seeded with the env's seed) are run again too.
    _rewrite(path, {**meta, "version": 1}, curves, digest=False)
    unreadable("older bandexa-gym")
    path.write_bytes(good)
    assert store.plan_resume([job]).done[0].ok


# -- logged runs: a run's log restarts with it and is published when it ends ------------------
def test_a_killed_runs_log_restarts_with_the_run_and_appears_only_when_it_ends(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pyarrow")
    from bandexa_gym.bench.runner import run
    from bandexa_gym.logs import read_log

    job = Job(**{**JOB.__dict__, "horizon": 40, "log_dir": str(tmp_path)})
    assert job.log_path == tmp_path / job.run_name
    # What a SIGKILL half-way leaves: a partial log of 15 rounds in the run's partial folder
    # (with a half-written temporary part) and, as older versions wrote it, in its log folder.
    env = gym.make(job.env_id, **job.env_kwargs)
    run(make_agent("uniform", env, seed=0), env, 15, seed=job.seed, log=job.partial_log_path)
    (job.partial_log_path / ".part-000001-abcd.parquet.0123.tmp").write_bytes(b"PAR1 half")
    shutil.copytree(job.partial_log_path, job.log_path)
    assert len(read_log(job.log_path)) == 15

    result = run_job(job)  # was: FileExistsError: ... already holds a log
    log = read_log(job.log_path)
    assert len(log) == 40 and not job.partial_log_path.exists()
    np.testing.assert_array_equal(log.reward, result.rewards)
    assert sorted(p.name for p in tmp_path.iterdir()) == [job.run_name]

    # A run that fails leaves the previous log as it was and no partial folder.
    before = {p.name: p.read_bytes() for p in job.log_path.iterdir()}
    failing = Job(**{**job.__dict__, "agent_kwargs": {"no_such_option": 1}})
    assert not execute_job(failing).ok
    assert {p.name: p.read_bytes() for p in job.log_path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [job.run_name]


def test_plan_grid_runs_over_a_log_only_with_resume_or_overwrite(tmp_path: Path) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    jobs = [Job(**{**JOB.__dict__, "seed": s, "log_dir": str(logs)}) for s in (0, 1)]
    (logs / jobs[1].run_name).mkdir(parents=True)
    assert plan_grid(jobs, out).replaced_logs == []  # an empty folder is in no one's way
    (logs / jobs[1].run_name / "part-000000-abcd.parquet").write_bytes(b"x")
    for where in (out, None):
        with pytest.raises(ExistingRunsError, match="already holds 1 log"):
            plan_grid(jobs, where)
    RunStore(out).write(execute_job(jobs[0]))
    plan = plan_grid(jobs, out, resume=True)
    assert list(plan.done) == [0] and plan.todo == [1]
    assert plan.replaced_logs == [logs / jobs[1].run_name]
    plan = plan_grid(jobs, out, overwrite=True)  # seed 0's run wrote its log too
    assert plan.todo == [0, 1] and plan.replaced_logs == [logs / j.run_name for j in jobs]


# -- the Ray backend's watchdog -----------------------------------------------------------------
def _gone(pid: int, start: int, timeout: float = 15.0) -> bool:
    """Wait (polling) until process ``pid`` of start time ``start`` has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reaper.process_start(pid) != start:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not reaper.supported(), reason="needs Linux's /proc")
def test_the_watchdog_ends_its_processes_when_its_pipe_closes() -> None:
    victim = subprocess.Popen(["sleep", "60"])
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (victim_entry,) = reaper.descendants([victim.pid])
        start = reaper.process_start(bystander.pid)
        assert start is not None
        watchdog = reaper.start_reaper()
        assert watchdog.stdin is not None
        # The bystander is named with another start time: a pid reused since is never hit.
        lines = f"{victim.pid} {victim_entry[1]}\n{bystander.pid} {start + 1}\n"
        watchdog.stdin.write(lines.encode())
        watchdog.stdin.close()  # what the driver's death (even a SIGKILL) does to the pipe
        assert victim.wait(timeout=15) == -signal.SIGTERM
        assert watchdog.wait(timeout=15) == 0
        assert bystander.poll() is None
    finally:
        for process in (victim, bystander):
            process.kill()
            process.wait()


FAKE_RAY = """
import subprocess
_processes = []
def is_initialized():
    return bool(_processes)
def init(**options):
    # An "agent" that, like Ray's, outlives the driver that started it.
    _processes.append(subprocess.Popen(["sleep", "120"], start_new_session=False))
def shutdown():
    pass
"""

DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import ray
from bandexa_gym.bench.grid.ray_backend import RayBackend
RayBackend().start()
print(ray._processes[0].pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not reaper.supported(), reason="needs Linux's /proc")
def test_what_a_local_ray_started_ends_after_a_sigkill_of_the_driver(tmp_path: Path) -> None:
    (tmp_path / "ray.py").write_text(FAKE_RAY)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    pid = None
    try:
        assert driver.stdout is not None
        pid = int(driver.stdout.readline())
        start = reaper.process_start(pid)
        assert start is not None
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert _gone(pid, start), "a process the Ray backend started outlived the driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if pid is not None and reaper.process_start(pid) is not None:
            os.kill(pid, signal.SIGKILL)
