"""The benchmark runner and the ``bandexa-bench`` command line."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym import bench
from bandexa_gym.bench import Job, RunResult, format_table, main, parse_value, run_job, summarize

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


def _curves(document: dict[str, Any]) -> dict[tuple[str, str, int], tuple[list, list]]:
    return {
        (run["env"], run["agent"], run["seed"]): (run["rewards"], run["regrets"])
        for run in document["runs"]
    }


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
    for run in document["runs"]:
        assert len(run["rewards"]) == len(run["regrets"]) == 60
        assert min(run["regrets"]) >= 0
        assert run["cumulative_regret"] == pytest.approx(sum(run["regrets"]))
        assert run["final_reward"] == pytest.approx(np.mean(run["rewards"][-20:]))

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
    monkeypatch.setattr(bench.gym, "make", _recording_make(logs))
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
    first, second = _curves(_load(tmp_path / "a")), _curves(_load(tmp_path / "b"))
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
    assert _curves(one) == _curves(two)
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
    monkeypatch.setattr(bench, "run_job", ran.append)
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
    monkeypatch.setattr(bench.sys.stderr, "isatty", lambda: True, raising=False)
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
