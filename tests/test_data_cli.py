"""``bandexa-data list`` / ``fetch``, and ``bandexa-bench --suite quick`` with no data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandexa_gym import bench
from bandexa_gym.data_cli import main
from bandexa_gym.envs import downloads
from bandexa_gym.envs.datafiles import MissingDataError
from tests.envs.env_ids import skip_missing_data_outside_ci


@pytest.fixture
def empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache and an empty BANDEXA_DATA; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BANDEXA_CACHE", str(cache))
    monkeypatch.setenv("BANDEXA_DATA", str(tmp_path / "no-data"))
    return cache


def test_list_shows_where_each_dataset_is_or_that_it_is_missing(
    empty: Path, shared_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in downloads.DATASETS:
        assert f"`bandexa-data fetch {name}`" in out
    assert "adult        missing  all of 2 files (e.g. adult/adult.data)" in out
    if not (shared_data_dir / "letter").is_dir():
        skip_missing_data_outside_ci(FileNotFoundError(f"{shared_data_dir}/letter"))
    assert main(["list", "--root", str(shared_data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"letter       found    {shared_data_dir / 'letter'}" in out


def test_fetch_then_list_finds_it_in_the_cache(
    empty: Path, shared_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (shared_data_dir / "satimage").is_dir():
        skip_missing_data_outside_ci(FileNotFoundError(f"{shared_data_dir}/satimage"))
    assert main(["fetch", "satimage", "letter"]) == 0  # from BANDEXA_DATA_URL (conftest)
    out = capsys.readouterr().out
    assert f"satimage: 2 files, sha256 checked, in {empty / 'satimage'}" in out
    assert main(["list"]) == 0
    assert f"satimage     found    {empty / 'satimage'}" in capsys.readouterr().out


def test_fetch_failure_exits_1_naming_the_problem(
    empty: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "pendigits", "--url", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "bandexa-data: pendigits: pendigits: could not fetch pendigits/pendigits.tra" in err
    with pytest.raises(SystemExit) as info:
        main(["fetch", "iris"])
    assert info.value.code == 2
    assert "invalid choice: 'iris'" in capsys.readouterr().err


def test_quick_suite_runs_with_no_data_and_no_network(
    empty: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tries = []

    def offline(entry: downloads.RemoteFile, **kwargs: object) -> Path:
        tries.append(entry.path)
        raise MissingDataError("pendigits", "could not fetch (no network)")

    monkeypatch.setattr(downloads, "fetch_file", offline)
    argv = ["--suite", "quick", "--agents", "linear_ts", "--num-seeds", "1", "--horizon", "20"]
    assert bench.main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert tries == ["pendigits/pendigits.tra"]  # fetched on first use, once
    reason = "skipped: the pendigits data is not found here and was not fetched; run "
    reason += "`bandexa-data fetch pendigits`"
    assert (
        "bandexa-bench: pendigits: skipped: pendigits: could not fetch (no network). To fix: run "
        "`bandexa-data fetch pendigits`" in captured.err
    )
    assert f"linear_ts on pendigits: {reason}" in captured.out
    assert "pendigits: pendigits data not found; fetching it ..." in captured.err


def test_named_env_with_missing_data_stops_with_the_fetch_command(
    empty: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANDEXA_DATA_URL", str(empty.parent / "nowhere"))
    with pytest.raises(SystemExit):
        bench.main(["--env", "Bandexa/Letter-v0", "--agents", "uniform", "--horizon", "5"])
    err = capsys.readouterr().err
    assert "cannot make Bandexa/Letter-v0" in err and "`bandexa-data fetch letter`" in err


def test_the_command_and_pooch_are_declared() -> None:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'bandexa-data = "bandexa_gym.data_cli:main"' in text
    assert '"pooch>=1.8",' in text
