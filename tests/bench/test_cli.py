"""The benchmark runner and the ``bandexa-bench`` command line."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym import bench
from bandexa_gym.bench import (
    Job,
    RunResult,
    cli,
    cli_checks,
    format_table,
    main,
    parse_value,
    run_job,
    summarize,
)
from bandexa_gym.bench.grid import jobs as grid_jobs
from bandexa_gym.bench.grid.store import RunStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RETRIEVAL_KWARGS = ["Bandexa/Retrieval-v0:n_actions=500", "Bandexa/Retrieval-v0:candidate_size=32"]


def _skip_if_fashion_missing() -> None:
    from bandexa_gym.envs.mnist import load_image_split

    try:
        load_image_split("FashionMNIST", "test")
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST data absent (apt-get install dataset-fashion-mnist): {err}")


def _load(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def _curves(out: Path) -> dict[tuple[str, str, int], tuple[list, list]]:
    """(env, agent, seed) -> (rewards, regrets) of every finished run file in ``out``."""
    store = RunStore(out)
    curves = {}
    for path in sorted(store.folder.glob("*.npz")):
        record = store.read(path)
        if record.ok:
            key = (record.job.problem_name, record.job.agent, record.job.seed)
            curves[key] = (record.result.rewards.tolist(), record.result.regrets.tolist())
    return curves


# -- end to end -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "agents", "extra"),
    [
        ("Bandexa/Synthetic-v0", ["uniform", "neural_linear_ts", "sb3:PPO"], []),
        ("Bandexa/MNIST-v0", ["uniform", "linear_ts", "sb3:DQN"], []),
        ("Bandexa/FashionMNIST-v0", ["uniform", "sb3:A2C"], []),
        ("Bandexa/Retrieval-v0", ["linear_ts", "sb3:PPO"], ["--env-kwargs", *RETRIEVAL_KWARGS]),
    ],
)
def test_cli_end_to_end_writes_table_and_files(
    env_id: str,
    agents: list[str],
    extra: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "FashionMNIST" in env_id:
        _skip_if_fashion_missing()
    out = tmp_path / "nested" / "out"
    argv = ["--env", env_id, "--agents", *agents, "--horizon", "60", "--seeds", "0", "1"]
    code = main([*argv, *extra, "--out", str(out), "--plot", "--window", "20", "--quiet"])
    assert code == 0

    stdout = capsys.readouterr().out
    table_rows = [line for line in stdout.splitlines() if line.startswith(env_id)]
    assert [line.split()[1] for line in table_rows] == agents
    assert all(" ± " in line for line in table_rows)  # two seeds -> mean ± std

    document = _load(out)
    assert document["config"]["horizon"] == 60
    assert document["config"]["seeds"] == [0, 1]
    assert list(document["config"]["agents"]) == agents
    for package in ("python", "torch", "gymnasium", "stable-baselines3", "numpy", "bandexa-gym"):
        assert document["versions"][package], package
    assert len(document["runs"]) == 2 * len(agents)
    assert document["status"] == {
        "state": "complete",
        "runs": 2 * len(agents),
        "finished": 2 * len(agents),
        "failed": 0,
        "not_applicable": 0,
    }
    curves = _curves(out)
    assert len(curves) == 2 * len(agents)
    for run in document["runs"]:
        assert run["status"] == "ok" and (out / run["file"]).is_file()
        rewards, regrets = curves[run["env"], run["agent"], run["seed"]]
        assert len(rewards) == len(regrets) == 60
        assert min(regrets) >= 0
        assert run["cumulative_regret"] == pytest.approx(sum(regrets))
        assert run["final_reward"] == pytest.approx(np.mean(rewards[-20:]))

    with (out / "runs.csv").open() as handle:
        per_seed = list(csv.DictReader(handle))
    assert [(r["agent"], int(r["seed"])) for r in per_seed] == [
        (agent, seed) for agent in agents for seed in (0, 1)
    ]
    for row in per_seed:
        assert row["env"] == env_id and row["status"] == "ok" and row["error"] == ""
        rewards, regrets = curves[env_id, row["agent"], int(row["seed"])]
        assert float(row["cumulative_regret"]) == pytest.approx(sum(regrets))
        assert float(row["final_reward"]) == pytest.approx(np.mean(rewards[-20:]))
        assert float(row["decisions_per_second"]) > 0 and float(row["wall_seconds"]) > 0

    with (out / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert [row["agent"] for row in summary] == agents
    for row in summary:
        runs = [r for r in document["runs"] if r["agent"] == row["agent"]]
        regrets = [r["cumulative_regret"] for r in runs]
        assert float(row["cumulative_regret_mean"]) == pytest.approx(np.mean(regrets))
        assert float(row["cumulative_regret_std"]) == pytest.approx(np.std(regrets, ddof=1))

    png = out / "regret.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_python_dash_m_and_console_script_entry_point() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bandexa_gym.bench", "--agents", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("bandexa-bench: error: unknown agent 'nope'")
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "bandexa-bench"]
    assert script.load() is main


# -- the same round stream for every agent ----------------------------------------------
class _ContextRecorder(gym.Wrapper):
    """Records the seeds given to reset and every context the env emits."""

    def __init__(self, env: gym.Env, log: dict[str, list]) -> None:
        super().__init__(env)
        self.log = log

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.log["seeds"].append(kwargs.get("seed"))
        obs, info = self.env.reset(**kwargs)
        self.log["contexts"].append(np.array(obs["context"], copy=True))
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log["contexts"].append(np.array(obs["context"], copy=True))
        self.log["candidates"].append(np.array(obs["candidates"], copy=True))
        return obs, reward, terminated, truncated, info


def _recording_make(logs: list[dict[str, list]]) -> Callable[..., gym.Env]:
    real_make = gym.make

    def make(env_id: str, **kwargs: Any) -> gym.Env:
        log: dict[str, list] = {"seeds": [], "contexts": [], "candidates": []}
        logs.append(log)
        return _ContextRecorder(real_make(env_id, **kwargs), log)

    return make


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "agents"),
    [
        (
            "Bandexa/Synthetic-v0",
            {"resample_actions": True},  # candidates change every round too
            ["uniform", "linear_ts", "neural_linear_ts", "sb3:PPO", "sb3:DQN", "sb3:A2C"],
        ),
        (
            "Bandexa/Retrieval-v0",
            {"n_actions": 300, "candidate_size": 16},
            ["uniform", "linear_ts", "sb3:PPO", "sb3:DQN"],
        ),
        ("Bandexa/MNIST-v0", {}, ["uniform", "linear_ts", "sb3:DQN"]),
    ],
)
def test_every_agent_sees_the_same_round_stream(
    env_id: str, env_kwargs: dict[str, Any], agents: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs: list[dict[str, list]] = []
    monkeypatch.setattr(cli_checks.gym, "make", _recording_make(logs))
    for seed in (3, 4):
        for agent in agents:
            job = Job(env_id, agent, seed, horizon=80, env_kwargs=env_kwargs)
            assert run_job(job).horizon == 80
    assert len(logs) == 2 * len(agents)
    for log in logs:
        assert log["seeds"][0] in (3, 4)  # the first reset carries the run's seed
        assert log["seeds"][1:] == []  # and nothing resets it again
        assert len(log["contexts"]) == 81
    by_seed = {3: logs[: len(agents)], 4: logs[len(agents) :]}
    for seed, seed_logs in by_seed.items():
        reference = seed_logs[0]
        assert reference["seeds"][0] == seed
        for log in seed_logs[1:]:
            np.testing.assert_array_equal(
                np.stack(log["contexts"]), np.stack(reference["contexts"])
            )
            np.testing.assert_array_equal(
                np.stack(log["candidates"]), np.stack(reference["candidates"])
            )
    assert not np.array_equal(by_seed[3][0]["contexts"][0], by_seed[4][0]["contexts"][0])


class _NumpyUniform:
    """A uniform agent drawing from ``numpy.random.default_rng(seed)``, as a user's might."""

    name = "numpy_uniform"

    def __init__(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, Any]) -> int:
        return int(self.rng.choice(np.flatnonzero(np.asarray(obs["action_mask"]))))

    def observe(self, obs: Any, action: Any, reward: Any) -> None:
        return None


def test_agents_draw_from_a_stream_of_their_own_not_the_envs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bandexa_gym.agents import base
    from bandexa_gym.bench.runner import agent_seed

    seeds: list[int | None] = []

    def factory(space: Any, *, seed: int | None = None, **kwargs: Any) -> _NumpyUniform:
        seeds.append(seed)
        return _NumpyUniform(seed)

    monkeypatch.setitem(base.AGENTS, "numpy_uniform", factory)
    # A two-row, two-class table: the env draws one integer per round to pick the row.
    table = {"X": [[0.0], [1.0]], "y": [0, 1]}
    job = Job("Bandexa/Classification-v0", "numpy_uniform", 0, 400, env_kwargs=table)
    result = run_job(job)
    assert seeds == [agent_seed(0)] and agent_seed(0) != 0

    def env_draws() -> np.ndarray:  # the generator env.reset(seed=job.seed) plays from
        return gym.utils.seeding.np_random(job.seed)[0].random(16)

    # Seeded with the run seed itself, the agent's generator would be the env's stream ...
    np.testing.assert_array_equal(np.random.default_rng(job.seed).random(16), env_draws())
    # ... and it guessed every row right (mean reward 1.0); on a stream of its own it is
    # the uniform agent it is.
    assert not np.array_equal(np.random.default_rng(seeds[0]).random(16), env_draws())
    assert 0.35 < result.rewards.mean() < 0.65


def test_peers_hand_their_libraries_a_stream_of_their_own() -> None:
    pytest.importorskip("bayesianbandits")
    from bandexa_gym.agents import make_agent
    from bandexa_gym.agents.base import derived_seed
    from bandexa_gym.agents.peer_base import LIBRARY_STREAM

    env = gym.make("Bandexa/Synthetic-v0", n_arms=3, context_dim=2, action_dim=2)
    agent = make_agent("peer:bayesianbandits", env, seed=5)
    assert agent.library_seed() == derived_seed(5, LIBRARY_STREAM) % 2**31 != 5


# -- reproducibility and workers ----------------------------------------------------------
def test_same_command_twice_gives_identical_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--agents", "neural_linear_ts", "linear_ts", "uniform", "sb3:PPO", "--quiet"]
    argv += ["--horizon", "150", "--seeds", "0", "1"]
    tables = []
    for name in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
        stdout = capsys.readouterr().out
        # Drop the timing columns (decisions/s, wall s) and compare the rest verbatim.
        tables.append([line.rsplit(maxsplit=2)[0] for line in stdout.splitlines()[3:]])
    assert tables[0] == tables[1]
    first, second = _curves(tmp_path / "a"), _curves(tmp_path / "b")
    assert first == second
    assert (
        first[("Bandexa/Synthetic-v0", "uniform", 0)]
        != first[("Bandexa/Synthetic-v0", "uniform", 1)]
    )


def test_two_workers_match_one_worker(tmp_path: Path) -> None:
    argv = ["--agents", "uniform", "neural_linear_ts", "sb3:PPO", "--horizon", "80"]
    argv += ["--num-seeds", "2", "--quiet"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = _load(tmp_path / "one"), _load(tmp_path / "two")
    assert _curves(tmp_path / "one") == _curves(tmp_path / "two")
    assert [(r["agent"], r["seed"]) for r in one["runs"]] == [
        (r["agent"], r["seed"]) for r in two["runs"]
    ]
    assert two["config"]["workers"] == 2


# -- errors ---------------------------------------------------------------------------------
def _blocked_out(tmp_path: Path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return str(blocker / "out")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--agents", "uniform", "no_such_agent"], "unknown agent 'no_such_agent'"),
        (["--agents", "sb3:SAC"], "unknown agent 'sb3:SAC'"),
        (["--env", "Bandexa/NoSuch-v0"], "unknown environment 'Bandexa/NoSuch-v0'"),
        (["--env", "CartPole-v1"], "expected a Bandexa env"),
        (["--horizon", "0"], "--horizon: must be a positive integer"),
        (["--horizon", "-5"], "--horizon: must be a positive integer"),
        (["--out", "BLOCKED"], "is not a writable directory"),
        (["--plot"], "--plot needs --out"),
        (["--seeds", "1", "1"], "lists a seed twice"),
        (["--agent-kwargs", "uniform.bogus=1", "--agents", "uniform"], "bogus"),
        (["--agent-kwargs", "sb3:PPO.bogus=1"], "sb3:PPO does not accept bogus"),
        (["--agent-kwargs", "linear_ts.prior_var=2", "--agents", "uniform"], "not one of"),
        (["--env-kwargs", "no_such_kwarg=1"], "cannot make Bandexa/Synthetic-v0"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [_blocked_out(tmp_path) if a == "BLOCKED" else a for a in argv]
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("bandexa-bench: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err


def test_errors_are_found_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[Job] = []
    monkeypatch.setattr(grid_jobs, "run_job", lambda job, on_rounds=None: ran.append(job))
    with pytest.raises(SystemExit):
        main(["--agents", "uniform", "nope", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        main(["--agents", "uniform", "--out", _blocked_out(tmp_path)])
    assert ran == []


# -- options, quiet and progress -------------------------------------------------------------
def test_kwargs_reach_envs_and_agents_and_quiet_means_no_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--env", "Bandexa/Synthetic-v0", "Bandexa/Retrieval-v0", "--env-kwargs"]
    argv += ["Bandexa/Synthetic-v0:n_arms=4", *RETRIEVAL_KWARGS, "noise_std=0.0"]
    argv += ["--agents", "linear_ts", "sb3:PPO", "--agent-kwargs", "sb3:PPO.n_steps=64"]
    argv += ["linear_ts.feature_map=concat", "--horizon", "40", "--quiet"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
    config = _load(tmp_path)["config"]
    assert config["envs"] == {
        "Bandexa/Synthetic-v0": {"n_arms": 4, "noise_std": 0.0},
        "Bandexa/Retrieval-v0": {"n_actions": 500, "candidate_size": 32, "noise_std": 0.0},
    }
    assert config["agents"] == {"linear_ts": {"feature_map": "concat"}, "sb3:PPO": {"n_steps": 64}}
    assert config["sb3_hyperparameters"]["sb3:PPO"]["n_steps"] == 64
    assert config["sb3_hyperparameters"]["sb3:PPO"]["gamma"] == 0.0


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--agents", "uniform", "--horizon", "30"]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "%|" not in err
    assert "1 runs in" in err  # not quiet: the closing note is there


def test_progress_bar_shows_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["--agents", "uniform", "sb3:PPO", "--horizon", "30"]) == 0
    err = capsys.readouterr().err
    assert "uniform | Bandexa/Synthetic-v0 | seed 0" in err
    assert "sb3:PPO | Bandexa/Synthetic-v0 | seed 0" in err
    assert main(["--agents", "uniform", "--horizon", "30", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# -- pieces -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("0.25", 0.25),
        ("-1e-3", -1e-3),
        ("True", True),
        ("false", False),
        ("none", None),
        ("[1, 2]", [1, 2]),
        ("{'hidden': 64}", {"hidden": 64}),
        ("concat", "concat"),
        ("tanh", "tanh"),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def _result(agent: str, seed: int, regrets: list[float], rewards: list[float]) -> RunResult:
    info = {"env": "E", "agent": agent, "seed": seed}
    return RunResult(np.array(rewards), np.array(regrets), seconds=2.0, info=info)


def test_summarize_and_format_table() -> None:
    results = [
        _result("a", 0, [1.0, 2.0, 3.0], [0.0, 1.0, 1.0]),
        _result("a", 1, [0.0, 1.0, 2.0], [1.0, 0.0, 0.0]),
        _result("b", 0, [0.5, 0.5, 0.5], [2.0, 2.0, 4.0]),
    ]
    rows = summarize(results, window=2)
    assert [(r["agent"], r["seeds"]) for r in rows] == [("a", 2), ("b", 1)]
    a, b = rows
    assert a["cumulative_regret_mean"] == pytest.approx(4.5)
    assert a["cumulative_regret_std"] == pytest.approx(math.sqrt(4.5))
    assert a["final_reward_mean"] == pytest.approx(0.5)
    assert a["decisions_per_second_mean"] == pytest.approx(1.5)
    assert b["cumulative_regret_std"] is None
    assert b["final_reward_mean"] == pytest.approx(3.0)
    lines = format_table(rows).splitlines()
    assert "reward (last 2)" in lines[0]
    assert lines[2].split()[:6] == ["E", "a", "2", "4.5", "±", "2.1"]
    assert lines[3].split()[:4] == ["E", "b", "1", "1.5"]
    assert "±" not in lines[3]


# -- module-qualified ids, failing runs --------------------------------------------------------
TEST_ENV_MODULE = '''
"""Registers test envs: My/Env-v0 (a small Synthetic) and My/Flaky-v0 (fails on some seeds)."""
import os

import gymnasium as gym

from bandexa_gym.envs.synthetic import SyntheticBanditEnv


class FlakyEnv(SyntheticBanditEnv):
    def __init__(self, fail_seed=-1, die_seed=-1, **kwargs):
        super().__init__(**kwargs)
        self.fail_seed, self.die_seed = fail_seed, die_seed

    def reset(self, *, seed=None, options=None):
        if seed is not None and seed == self.fail_seed:
            raise RuntimeError(f"boom on seed {seed}")
        if seed is not None and seed == self.die_seed:
            os._exit(3)  # a crash that takes the whole process down
        return super().reset(seed=seed, options=options)


gym.register("My/Env-v0", entry_point=SyntheticBanditEnv, kwargs={"n_arms": 3})
gym.register("My/Flaky-v0", entry_point=FlakyEnv, kwargs={"n_arms": 3})
'''


def _env_module(folder: Path) -> str:
    """Write a module registering the test envs into ``folder``; return its (unique) name."""
    name = f"bench_test_envs_{folder.name.replace('-', '_')}"
    (folder / f"{name}.py").write_text(TEST_ENV_MODULE)
    return name


def test_module_qualified_env_id_imports_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _env_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = f"{module}:My/Env-v0"
    argv = ["--env", env_id, "--agents", "uniform", "--horizon", "30", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines()[3].startswith(env_id)
    ((key, (rewards, _)),) = _curves(tmp_path / "out").items()
    assert key == (env_id, "uniform", 0) and len(rewards) == 30
    with pytest.raises(SystemExit) as excinfo:
        main(["--env", "no_such_module_xyz:My/Env-v0", "--agents", "uniform"])
    assert excinfo.value.code == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    """Seed 1 raises, seed 2 kills its worker process; seeds 0 and 3 finish regardless."""
    module = _env_module(tmp_path)
    out = tmp_path / "out"
    argv = ["--env", f"{module}:My/Flaky-v0", "--env-kwargs", "fail_seed=1", "die_seed=2"]
    argv += ["--agents", "uniform", "--seeds", "0", "1", "2", "3", "--horizon", "40"]
    proc = _bench([*argv, "--workers", "2", "--out", str(out)], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "seed 1 failed: RuntimeError: boom on seed 1" in proc.stdout
    assert "seed 2 failed: WorkerDied" in proc.stdout
    store = RunStore(out)
    records = {r.job.seed: r for r in map(store.read, store.folder.glob("*.npz"))}
    assert {s: r.status for s, r in records.items()} == {
        0: "ok",
        1: "failed",
        2: "failed",
        3: "ok",
    }
    assert records[1].error == "RuntimeError: boom on seed 1"
    assert "Traceback" in records[1].traceback and "boom" in records[1].traceback
    assert records[2].error.startswith("WorkerDied: the worker process exited with code 3")
    document = _load(out)
    assert document["status"]["finished"] == 2 and document["status"]["failed"] == 2
    assert [(f["seed"], f["error"].split(":")[0]) for f in document["failures"]] == [
        (1, "RuntimeError"),
        (2, "WorkerDied"),
    ]
    assert document["summary"][0]["seeds"] == 2
    with (out / "runs.csv").open() as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["ok", "failed", "failed", "ok"]


# -- durable results: interruption, resume, failed writes --------------------------------------
KILL_GRID = ["--agents", "uniform", "linear_ts", "--num-seeds", "3", "--horizon", "800"]


def _python(args: list[str], path_entry: Path | None = None, **kwargs: Any) -> Any:
    """Run ``python ARGS`` with this checkout (and ``path_entry``) on PYTHONPATH.

    With ``popen=True`` returns the ``Popen``; otherwise waits and returns the completed
    process with its text output captured.
    """
    import subprocess
    import sys

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    paths = [str(Path(bench.__file__).resolve().parents[2])]
    if path_entry is not None:
        paths.insert(0, str(path_entry))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    command = [sys.executable, *args]
    if kwargs.pop("popen", False):
        return subprocess.Popen(command, env=env, text=True, **kwargs)
    return subprocess.run(command, env=env, text=True, capture_output=True, timeout=300, **kwargs)


def _bench(argv: list[str], path_entry: Path | None = None, **kwargs: Any) -> Any:
    """Run ``python -m bandexa_gym.bench ARGV`` in a child process (see :func:`_python`)."""
    return _python(["-m", "bandexa_gym.bench", *argv], path_entry, **kwargs)


def _group_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("signum", "workers"), [(signal.SIGINT, "2"), (signal.SIGTERM, "1")])
def test_killed_grid_keeps_finished_runs_and_resume_completes_it(
    signum: int, workers: str, tmp_path: Path
) -> None:
    import subprocess

    out = tmp_path / "out"
    argv = [*KILL_GRID, "--workers", workers, "--out", str(out)]
    proc = _bench(
        argv, popen=True, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    runs = out / "runs"
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*.npz")) if runs.exists() else []) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run finished in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signum)
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - killed < 15, "the grid did not stop promptly"
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert _group_gone(proc.pid), "a worker process is still running"
    assert "leaked" not in stderr

    kept = {p.name: p.read_bytes() for p in runs.glob("*.npz")}
    assert 2 <= len(kept) < 6
    store = RunStore(out)
    assert all(store.read(runs / name).ok for name in kept)  # every file parses
    document = _load(out)  # the summaries were written on the way out
    assert document["status"]["state"] == "interrupted"
    assert document["status"]["finished"] == len(kept) == len(document["runs"])
    with (out / "runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(kept)

    resumed = _bench([*KILL_GRID, "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: {len(kept)} of 6 runs already finished" in resumed.stderr
    assert f"{6 - len(kept)} runs in" in resumed.stderr
    for name, data in kept.items():  # the finished runs were not run again
        assert (runs / name).read_bytes() == data
    assert _load(out)["status"]["state"] == "complete"

    assert main([*KILL_GRID, "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert _curves(out) == _curves(tmp_path / "whole")


def test_a_write_that_fails_half_way_leaves_the_previous_summaries_intact(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    argv = ["--agents", "uniform", "--num-seeds", "2", "--horizon", "50", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    names = ("results.json", "summary.csv", "runs.csv")
    before = {name: (out / name).read_bytes() for name in names}
    assert all(len(data) > 200 for data in before.values())
    # Same runs (resumed) with another --window: every summary file changes. The child may
    # write at most 150 bytes to a file, so each new summary file fails part-way through.
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150, 150))\n"
        "from bandexa_gym.bench import main\n"
        f"sys.exit(main({[*argv, '--resume', '--window', '7']!r}))\n"
    )
    child = _python(["-c", script])
    assert child.returncode == 1, child.stderr
    assert "could not write summary files" in child.stderr
    assert "File too large" in child.stderr
    assert {name: (out / name).read_bytes() for name in names} == before
    assert not [p.name for p in out.rglob("*.tmp")]  # no temporary file left behind
    json.loads(before["results.json"])


def test_resume_refuses_a_changed_config_and_reruns_need_resume_or_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    argv = ["--agents", "uniform", "--num-seeds", "2", "--horizon", "30", "--quiet"]
    assert main([*argv, "--out", out]) == 0
    capsys.readouterr()
    cases = [
        (
            ["--out", out, "--resume", "--horizon", "40"],
            "--resume: run 'Bandexa-Synthetic-v0__uniform__seed0' in",
        ),
        (
            ["--out", out, "--resume", "--env-kwargs", "n_arms=4"],
            'env_kwargs: {} -> {"n_arms": 4}',
        ),
        (["--out", out, "--resume", "--threads", "2"], "threads: 1 -> 2"),
        (["--out", out], "already holds 2 run file(s) of this grid"),
        (["--resume"], "--resume needs --out DIR"),
        (["--out", out, "--resume", "--overwrite"], "--resume and --overwrite exclude"),
    ]
    for extra, expected in cases:
        with pytest.raises(SystemExit) as excinfo:
            main([*argv, *extra])
        assert excinfo.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and expected in err, (extra, err)
    before = _curves(tmp_path / "out")
    # A changed config is fine with --overwrite: the grid's runs are replaced.
    assert main([*argv, "--out", out, "--overwrite", "--horizon", "40"]) == 0
    after = _curves(tmp_path / "out")
    assert set(after) == set(before) and all(len(r) == 40 for r, _ in after.values())
    # Resuming a complete grid runs nothing.
    assert (
        main(
            ["--agents", "uniform", "--num-seeds", "2", "--horizon", "40", "--out", out]
            + ["--resume"]
        )
        == 0
    )
    assert "resume: 2 of 2 runs already finished" in capsys.readouterr().err


def test_ray_backend_gives_the_same_runs_as_the_local_one(tmp_path: Path) -> None:
    from bandexa_gym.bench.grid.ray_backend import ray_available

    if not ray_available():
        if os.environ.get("CI"):
            pytest.fail('Ray must be installed in CI (pip install "bandexa-gym[ray]")')
        pytest.skip('Ray is not installed (pip install "bandexa-gym[ray]")')
    argv = ["--agents", "uniform", "linear_ts", "--num-seeds", "2", "--horizon", "60", "--quiet"]
    proc = _bench([*argv, "--backend", "ray", "--workers", "2", "--out", str(tmp_path / "ray")])
    assert proc.returncode == 0, proc.stderr
    assert main([*argv, "--out", str(tmp_path / "local")]) == 0
    ray_curves = _curves(tmp_path / "ray")
    assert len(ray_curves) == 4 and ray_curves == _curves(tmp_path / "local")
    config = _load(tmp_path / "ray")["config"]
    assert config["backend"]["name"] == "ray" and config["workers"] == 2


def test_backend_option_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_checks, "ray_available", lambda: False)
    cases = [
        (["--backend", "ray"], 'error: --backend ray needs Ray: pip install "bandexa-gym[ray]"'),
        (["--address", "auto"], "--address needs --backend ray"),
        (["--num-gpus-per-run", "1"], "--num-gpus-per-run needs --backend ray"),
        (["--num-cpus-per-run", "0"], "--num-cpus-per-run: must be a number > 0"),
        (["--backend", "spark"], "invalid choice: 'spark'"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as excinfo:
            main(["--agents", "uniform", *argv])
        assert excinfo.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and expected in err, (argv, err)


# -- runner options: --delay, --feedback-batch, --log -------------------------------------------
def _runner_with_options(calls: list[dict[str, Any]]) -> Callable[..., RunResult]:
    """A ``runner.run`` that records the ``delay``, ``feedback_batch`` and ``log`` it is
    given, playing the rounds with the real runner without them."""
    from bandexa_gym.bench import runner

    real_run = runner.run

    def run(
        agent: Any,
        env: Any,
        horizon: int,
        *,
        delay: str | None = None,
        feedback_batch: int | None = None,
        log: Path | None = None,
        **kwargs: Any,
    ) -> RunResult:
        calls.append({"delay": delay, "feedback_batch": feedback_batch, "log": log})
        return real_run(agent, env, horizon, **kwargs)

    return run


def test_runner_options_travel_in_the_job_and_skip_sb3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(grid_jobs, "run", _runner_with_options(calls))
    out, logs = tmp_path / "out", tmp_path / "logs"
    argv = ["--agents", "uniform", "sb3:PPO", "--horizon", "30", "--out", str(out), "--quiet"]
    argv += ["--delay", "uniform:1:5", "--log", str(logs)]
    assert main(argv) == 0
    assert calls == [
        {
            "delay": "uniform:1:5",
            "feedback_batch": None,
            # written beside the run's log folder, moved into it when the run ends
            "log": logs.resolve() / ".Bandexa-Synthetic-v0__uniform__seed0.partial",
        }
    ]
    stdout = capsys.readouterr().out
    assert "n/a [1]" in stdout
    assert (
        "[1] sb3:PPO on Bandexa/Synthetic-v0: not run: SB3 baselines cannot take delayed "
        "or batched feedback" in stdout
    )
    (record,) = map(RunStore(out).read, RunStore(out).folder.glob("*.npz"))
    config = record.job.config()
    assert config["delay"] == "uniform:1:5" and config["feedback_batch"] is None
    assert config["log_dir"] == str(logs.resolve())
    document = _load(out)
    assert document["not_applicable"] == [
        {
            "env": "Bandexa/Synthetic-v0",
            "agent": "sb3:PPO",
            "reason": "SB3 baselines cannot take delayed or batched feedback",
        }
    ]
    calls.clear()
    assert main(["--agents", "uniform", "--horizon", "30", "--feedback-batch", "4", "--quiet"]) == 0
    assert calls == [{"delay": None, "feedback_batch": 4, "log": None}]
    # Without the options, runner.run gets none of the keywords (its defaults apply).
    calls.clear()
    assert main(["--agents", "uniform", "--horizon", "30", "--quiet"]) == 0
    assert calls == [{"delay": None, "feedback_batch": None, "log": None}]


def test_delayed_batched_and_logged_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    base = ["--agents", "uniform", "linear_ts", "--horizon", "40", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    argv = [*base, "--delay", "fixed:0", "--out", str(tmp_path / "fixed0")]
    assert main([*argv, "--log", str(tmp_path / "logs")]) == 0
    # A zero delay is the ordinary loop: the same rounds.
    assert _curves(tmp_path / "fixed0") == _curves(tmp_path / "plain")
    for agent in ("uniform", "linear_ts"):
        run_log = tmp_path / "logs" / f"Bandexa-Synthetic-v0__{agent}__seed0"
        assert run_log.is_dir() and any(run_log.rglob("*.parquet")), run_log
    assert main([*base, "--delay", "geometric:5", "--out", str(tmp_path / "geo")]) == 0
    assert main([*base, "--feedback-batch", "8", "--out", str(tmp_path / "batch")]) == 0
    for name in ("geo", "batch"):
        curves = _curves(tmp_path / name)
        assert len(curves) == 2 and all(len(r) == 40 for r, _ in curves.values())


def test_a_logged_grid_resumes_after_a_kill_and_overwrite_keeps_every_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    from bandexa_gym.logs import read_log

    out, logs = tmp_path / "out", tmp_path / "logs"
    grid = ["--agents", "uniform", "linear_ts", "--seeds", "0", "1", "--horizon", "30"]
    argv = [*grid, "--out", str(out), "--log", str(logs)]
    assert main(argv) == 0
    store = RunStore(out)
    whole = _curves(out)
    killed = Job("Bandexa/Synthetic-v0", "linear_ts", 1, 30, log_dir=str(logs.resolve()))
    complete_log = read_log(killed.log_path)
    # What a SIGKILL half-way through that run leaves: no run file, and a partial log (in the
    # run's log folder, as older versions wrote it, and in its hidden partial folder).
    store.path(killed).unlink()
    env = gym.make(killed.env_id)
    agent = bandexa_gym.agents.make_agent("uniform", env, seed=0)
    bench.run(agent, env, 12, seed=1, log=killed.partial_log_path)
    shutil.rmtree(killed.log_path)
    shutil.copytree(killed.partial_log_path, killed.log_path)
    kept = {p.name: p.read_bytes() for p in store.folder.glob("*.npz")}
    capsys.readouterr()

    assert main([*argv, "--resume"]) == 0  # was: exit 1, "FileExistsError: ... holds a log"
    assert "--log: 1 run(s) that run again restart their log" in capsys.readouterr().err
    assert _curves(out) == whole
    assert {name: (store.folder / name).read_bytes() for name in kept} == kept
    log = read_log(killed.log_path)
    assert len(log) == 30 and not killed.partial_log_path.exists()
    np.testing.assert_array_equal(log.reward, complete_log.reward)

    # --overwrite runs everything again: every run file stays a finished run (it turned the
    # good runs into failed records when their logs were in the way).
    assert main([*argv, "--overwrite"]) == 0
    assert all(store.read(p).ok for p in store.folder.glob("*.npz")) and _curves(out) == whole
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        f"Bandexa-Synthetic-v0__{a}__seed{s}" for a in ("uniform", "linear_ts") for s in (0, 1)
    )
    # A new grid writing into the same --log is refused before anything runs.
    with pytest.raises(SystemExit) as excinfo:
        main([*grid, "--out", str(tmp_path / "other"), "--log", str(logs)])
    assert excinfo.value.code == 2
    assert "already holds 4 log(s) of this grid" in capsys.readouterr().err


def test_resume_runs_truncated_and_edited_run_files_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--agents", "uniform", "--num-seeds", "3", "--horizon", "200"]
    assert main([*argv, "--out", str(out)]) == 0
    whole = _curves(out)
    runs = sorted((out / "runs").glob("*.npz"))
    os.truncate(runs[0], 2000)  # truncate -s 2000: was a zipfile.BadZipFile traceback
    with np.load(runs[1]) as data:  # three rounds where the config says 200
        arrays = {name: data[name][:3] if name != "meta" else data[name] for name in data.files}
    np.savez(runs[1], **arrays)
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resume: 1 of 3 runs already finished" in err
    assert f"resume: running {runs[0].name} again: " in err
    assert f"resume: running {runs[1].name} again: " in err and "digest" in err
    assert _curves(out) == whole


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--delay", "fixed:-1"], "--delay: bad delay 'fixed:-1': delays are >= 0 rounds"),
        (["--delay", "geometric:-1"], "bad delay 'geometric:-1'"),
        (["--delay", "uniform:5:2"], "bad delay 'uniform:5:2'"),
        (["--delay", "poisson:3"], "expected fixed:N, geometric:MEAN or uniform:LO:HI"),
        (["--delay", "fixed"], "bad delay 'fixed'"),
        (["--delay", "fixed:1", "--feedback-batch", "2"], "are alternatives: pass one"),
        (["--feedback-batch", "0"], "--feedback-batch: must be a positive integer"),
    ],
)
def test_runner_option_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--agents", "uniform", *argv])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("fixed:0", "fixed:0"),
        ("fixed:12", "fixed:12"),
        ("geometric:2.50", "geometric:2.5"),
        ("uniform:0:0", "uniform:0:0"),
        ("uniform:1:10", "uniform:1:10"),
    ],
)
def test_parse_delay(text: str, canonical: str) -> None:
    assert bench.parse_delay(text) == canonical


# -- suites ---------------------------------------------------------------------------------------
def test_quick_suite_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bandexa_gym.bench.grid.suites import QUICK, default_agents

    start = time.perf_counter()
    assert main(["--suite", "quick", "--out", str(tmp_path), "--quiet"]) == 0
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"--suite quick took {elapsed:.0f} s"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "suite quick | seeds 0, 1 | device cpu"
    header = lines[2].split()
    problems = [p.name for p in QUICK.problems]
    assert header == ["agent", *problems, "mean", "rank"]
    agents = default_agents()
    rows = {line.split()[0]: line for line in lines[4 : 4 + len(agents)]}
    assert set(rows) == set(agents)
    assert rows["uniform"].split()[1].startswith("1.00±0.00")  # the normalizer
    document = _load(tmp_path)
    assert document["config"]["suite"] == "quick"
    not_applicable = {(r["env"], r["agent"]) for r in document["not_applicable"]}
    for env, agent in not_applicable:  # e.g. per-arm peers on Retrieval: a note each
        assert f"{agent} on {env}: " in "\n".join(lines)
    pairs = len(problems) * len(agents) - len(not_applicable)
    assert document["status"]["runs"] == 2 * pairs
    assert document["status"]["finished"] == 2 * pairs
    assert document["status"]["state"] == "complete"
    with (tmp_path / "suite.csv").open() as handle:
        suite_rows = list(csv.DictReader(handle))
    assert len(suite_rows) == pairs
    for problem in problems:
        ranks = sorted(float(r["rank"]) for r in suite_rows if r["env"] == problem)
        assert sum(ranks) == pytest.approx(len(ranks) * (len(ranks) + 1) / 2)


def test_suite_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --agents and --num-seeds override the suite's; uniform (the normalizer) always joins.
    argv = ["--suite", "quick", "--agents", "linear_ts", "--num-seeds", "1", "--horizon", "20"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0] == "suite quick | seeds 0 | device cpu"
    config = _load(tmp_path)["config"]
    assert list(config["agents"]) == ["uniform", "linear_ts"]
    assert {p["rounds"] for p in config["problems"]} == {20}
    for extra, expected in (
        (["--env", "Bandexa/MNIST-v0"], "--env cannot be combined with --suite"),
        (["--env-kwargs", "n_arms=3"], "--env-kwargs cannot be combined with --suite"),
        (["--suite", "nope"], "invalid choice: 'nope'"),
    ):
        with pytest.raises(SystemExit):
            main(["--suite", "quick", *extra])
        assert expected in capsys.readouterr().err
