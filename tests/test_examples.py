"""The example scripts: ``--help`` and tiny end-to-end runs, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPTS = (
    "01_synthetic_regret.py",
    "02_mnist_bandit.py",
    "03_two_tower_synthetic.py",
    "04_evolve_model.py",
    "05_open_bandit_ope.py",
)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)  # BANDEXA_DATA / BANDEXA_CACHE come from tests/conftest.py
    # The scripts import the package of this checkout, as the tests do (pytest's pythonpath).
    path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update({"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path, **extra})
    return env


def _run(script: str, *args: str, timeout: float = 120, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_help_of_every_example() -> None:
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--help"],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in SCRIPTS
    }
    expected = {
        "01_synthetic_regret.py": ["--blr-noise-var", "--interaction-scale", "--save-path"],
        "02_mnist_bandit.py": ["--encoder", "--buffer-backend", "--disk-shard-size"],
        "03_two_tower_synthetic.py": ["--candidate-size", "--tower-dim", "--obs-noise-var"],
        "04_evolve_model.py": ["--mnist-agent", "--synthetic-rounds-after"],
        "05_open_bandit_ope.py": ["--campaigns", "--n-bootstrap", "--prior-strength"],
    }
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        common = {"04": ["--seed"], "05": ["--seed", "--out"]}.get(
            script[:2], ["--horizon", "--seed", "--plot"]
        )
        for flag in [*common, *expected[script]]:
            assert flag in out, f"{script} --help does not mention {flag}"


def _assert_round_trip(out: str, n_agents: int = 2) -> None:
    assert out.count("Thompson draws identical: True") == n_agents, out
    assert "max |score diff| = 0.0e+00" in out


def test_synthetic_example_runs(tmp_path: Path) -> None:
    plot = tmp_path / "01.png"
    out = _run(
        "01_synthetic_regret.py",
        *("--horizon", "120", "--train-every", "30", "--optimizer-steps", "5"),
        *("--print-every", "60", "--window", "50", "--plot", "--plot-path", str(plot)),
        *("--sanity-check-save-load", "--save-path", str(tmp_path / "ckpt")),
    )
    assert "Summary after 120 rounds" in out and "wall time" in out
    assert out.count("t=    60 |") == 1 and "cumulative expected regret" in out
    assert plot.stat().st_size > 0 and f"plot saved to {plot}" in out
    _assert_round_trip(out)
    assert "linear_ts_concat " in out  # the straw man is named for what it is
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {
        "linear_ts_concat.safetensors",
        "neural_linear_ts.safetensors",
    }


def test_mnist_example_runs_with_the_convnet(tmp_path: Path) -> None:
    plot = tmp_path / "02.png"
    out = _run(
        "02_mnist_bandit.py",
        *("--horizon", "60", "--warmup-random", "20", "--train-every", "20"),
        *("--optimizer-steps", "3", "--batch-size", "16", "--print-every", "30"),
        *("--plot", "--plot-path", str(plot)),
        *("--sanity-check-save-load", "--save-path", str(tmp_path / "ckpt")),
    )
    assert "MemoryReplayBuffer" in out  # auto: memory for the convnet
    assert "Summary after 60 rounds" in out and "accuracy last" in out
    assert plot.stat().st_size > 0
    _assert_round_trip(out)


def test_mnist_example_runs_resnet_on_a_disk_buffer(tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    out = _run(
        "02_mnist_bandit.py",
        *("--encoder", "resnet18", "--no-pretrained", "--resnet-image-size", "32"),
        *("--horizon", "24", "--warmup-random", "8", "--train-every", "8"),
        *("--optimizer-steps", "2", "--batch-size", "4", "--print-every", "12"),
        *("--buffer-dir", str(replay), "--disk-shard-size", "8", "--flush-every", "5"),
        *("--sanity-check-save-load", "--save-path", str(tmp_path / "ckpt")),
    )
    assert "layer4" in out and "DiskReplayBuffer" in out  # auto: disk for a ResNet
    assert "Summary after 24 rounds" in out
    assert (replay / "index.json").is_file()
    assert len(list(replay.glob("*.safetensors"))) >= 3  # 24 transitions, 8 per shard
    _assert_round_trip(out)


def test_mnist_example_refuses_missing_pretrained_weights(tmp_path: Path) -> None:
    # An empty torch cache and an unreachable proxy: no weights, and no download either.
    proxy = "http://127.0.0.1:9"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "02_mnist_bandit.py"), "--encoder", "resnet18"],
        cwd=REPO,
        env=_env(TORCH_HOME=str(tmp_path), HTTPS_PROXY=proxy, https_proxy=proxy, NO_PROXY=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "not in the torch cache" in proc.stderr and "--no-pretrained" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("candidate_size", ["64", "0"], ids=["retrieval", "whole-pool"])
def test_two_tower_example_runs(tmp_path: Path, candidate_size: str) -> None:
    plot = tmp_path / "03.png"
    out = _run(
        "03_two_tower_synthetic.py",
        *("--horizon", "80", "--n-actions", "300", "--candidate-size", candidate_size),
        *("--warmup-random", "20", "--train-every", "20", "--optimizer-steps", "5"),
        *("--print-every", "40", "--window", "40", "--plot", "--plot-path", str(plot)),
        *("--sanity-check-save-load", "--save-path", str(tmp_path / "ckpt")),
    )
    k = "300" if candidate_size == "0" else candidate_size
    assert f"{k} candidates per round" in out
    for key in ("ma_best_p=", "ma_p_lin=", "ma_p_neu=", "cum_regret=", "ma_reward="):
        assert out.count(key) >= 2, key
    assert "Summary after 80 rounds" in out
    assert plot.stat().st_size > 0
    _assert_round_trip(out)


def test_evolve_example_keeps_old_labels_at_the_switch() -> None:
    out = _run(
        "04_evolve_model.py",
        *("--mnist-rounds-before", "100", "--mnist-rounds-after", "100"),
        *("--synthetic-rounds-before", "100", "--synthetic-rounds-after", "100"),
        *("--eval-images", "200", "--print-every", "50"),
    )
    switch = next(line for line in out.splitlines() if line.startswith("switch:"))
    before = float(switch.split("just before ")[1].split()[0])
    after = float(switch.split("just after ")[1].split()[0])
    assert before == after  # evolving to new labels leaves the old heads untouched
    assert "evolved, old rounds padded" in out and "cold start on 10 features" in out


def test_open_bandit_example_estimates_bts_from_random_logs(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    if not (shared_data_dir / "open_bandit_dataset" / "random" / "men").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the Open Bandit sample is missing from {shared_data_dir} on CI")
        pytest.skip("the Open Bandit sample is not in BANDEXA_DATA")
    import csv

    import numpy as np

    from bandexa_gym.datasets import open_bandit

    out = _run(
        "05_open_bandit_ope.py",
        *("--campaigns", "men", "--n-bootstrap", "200", "--out", str(tmp_path)),
        timeout=60,
    )
    assert "truth (BTS on-policy click rate): 0.00690" in out  # 69 clicks in 10,000
    assert (tmp_path / "05_open_bandit_ope.png").stat().st_size > 0
    with open(tmp_path / "05_open_bandit_ope.csv") as f:
        rows = {r["estimator"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["ips", "snips", "dm", "dr", "switch-dr", "dr-os", "replay"]
    # IPS recomputed here: BTS's item frequencies at each position over 1 / n_items
    rnd, bts = open_bandit("men", "random"), open_bandit("men", "bts")
    target = bts.empirical_policy()[rnd.positions, rnd.actions]
    expected_ips = np.mean(target / rnd.propensities * rnd.rewards)
    assert float(rows["ips"]["estimate"]) == pytest.approx(expected_ips)
    for r in rows.values():
        value, truth = float(r["estimate"]), float(r["truth"])
        assert truth == pytest.approx(0.0069)
        assert float(r["relative_error"]) == pytest.approx(value / truth - 1)
        assert float(r["rel_ci_low"]) <= float(r["relative_error"]) <= float(r["rel_ci_high"])
        assert float(r["ci_low"]) <= value <= float(r["ci_high"])
    # with ~46 clicks, IPS's interval is wide but the truth lies within the sampling noise
    assert float(rows["ips"]["rel_ci_low"]) < 0 < float(rows["ips"]["rel_ci_high"])


@pytest.mark.parametrize("campaigns", [["men"], ["all", "men", "women"]])
def test_open_bandit_figure_keeps_its_text_inside(campaigns: list[str]) -> None:
    import importlib.util

    from matplotlib.text import Text

    spec = importlib.util.spec_from_file_location("example_05", EXAMPLES / "05_open_bandit_ope.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    interval = {"relative_error": 0.1, "rel_ci_low": -0.5, "rel_ci_high": 0.9}
    rows = [
        {"campaign": c, "estimator": e, **interval} for c in campaigns for e in example.ESTIMATORS
    ]
    fig = example.figure(rows, campaigns, 0.95)
    assert fig.get_suptitle().startswith("Open Bandit Dataset")
    fig.canvas.draw()  # places the axis labels where the saved image has them
    renderer = fig.canvas.get_renderer()
    title = fig.findobj(lambda a: isinstance(a, Text) and a.get_text() == fig.get_suptitle())
    texts = [*title, *(ax.title for ax in fig.axes), *(ax.xaxis.label for ax in fig.axes)]
    assert len(texts) == 1 + 2 * len(campaigns)
    for text in texts:  # the title (cut off on one campaign's panel once) and the labels
        box = text.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, text.get_text()
        assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, text.get_text()
