"""The Open Bandit Dataset reader: a 50-row excerpt written here, and the shared sample."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from bandexa_gym.envs import datafiles
from bandexa_gym.envs.datafiles import CorruptDataError, MissingDataError
from bandexa_gym.offline.datasets import KNOWN_MD5, open_bandit

N_ROWS, N_ITEMS = 50, 5


def _hash(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _write_excerpt(
    root: Path, policy: str = "random", campaign: str = "men", gz: bool = True
) -> dict[str, np.ndarray]:
    """Write a 50-row log in the dataset's CSV format; return what was written."""
    rng = np.random.default_rng(0)
    folder = root / "open_bandit_dataset" / policy / campaign
    folder.mkdir(parents=True)
    items = rng.integers(0, N_ITEMS, N_ROWS)
    positions = rng.integers(1, 4, N_ROWS)
    clicks = (rng.random(N_ROWS) < 0.2).astype(int)
    user = rng.integers(0, 3, (N_ROWS, 4))
    affinity = rng.integers(0, 3, (N_ROWS, N_ITEMS)).astype(float)
    header = ["", "timestamp", "item_id", "position", "click", "propensity_score"]
    header += [f"user_feature_{c}" for c in range(4)]
    header += [f"user-item_affinity_{i}" for i in range(N_ITEMS)]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for i in range(N_ROWS):
        stamp = f"2019-11-24 00:{i // 60:02d}:{i % 60:02d}.000123+00:00"
        user_hashes = [_hash(f"u{c}-{user[i, c]}") for c in range(4)]
        w.writerow(
            [i, stamp, items[i], positions[i], clicks[i], 1 / N_ITEMS, *user_hashes, *affinity[i]]
        )
    items_out = io.StringIO()
    w = csv.writer(items_out, lineterminator="\n")
    w.writerow(["", "item_id", *[f"item_feature_{c}" for c in range(4)]])
    for i in reversed(range(N_ITEMS)):  # any row order
        w.writerow([i, i, 0.5 * i, _hash(f"a{i % 2}"), _hash("b"), _hash(f"c{i % 3}")])
    for name, text in ((f"{campaign}.csv", out.getvalue()), ("item_context.csv", items_out)):
        data = (text if isinstance(text, str) else text.getvalue()).encode()
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return {"items": items, "positions": positions, "clicks": clicks, "user": user, "aff": affinity}


@pytest.mark.parametrize("gz", [True, False], ids=["csv.gz", "csv"])
def test_reads_an_excerpt_in_the_dataset_format(tmp_path: Path, gz: bool) -> None:
    written = _write_excerpt(tmp_path, gz=gz)
    d = open_bandit(campaign="men", behavior_policy="random", root=tmp_path)
    assert len(d) == N_ROWS and d.n_actions == N_ITEMS and d.n_positions == 3
    np.testing.assert_array_equal(d.actions, written["items"])
    np.testing.assert_array_equal(d.positions, written["positions"] - 1)  # 0-based
    np.testing.assert_array_equal(d.rewards, written["clicks"])
    np.testing.assert_allclose(d.propensities, 1 / N_ITEMS)
    np.testing.assert_array_equal(d.user_item_affinity, written["aff"])
    assert d.click_rate == pytest.approx(written["clicks"].mean())
    assert d.timestamps[61 % N_ROWS] == np.datetime64("2019-11-24T00:00:11.000123")
    # user features: codes that map back to the hashes that were written
    for c in range(4):
        back = [d.user_feature_categories[c][k] for k in d.user_features[:, c]]
        assert back == [_hash(f"u{c}-{v}") for v in written["user"][:, c]]
    assert d.context().shape == (N_ROWS, sum(map(len, d.user_feature_categories)) + N_ITEMS)
    assert d.context().sum() == pytest.approx(4 * N_ROWS + written["aff"].sum())
    # item context sorted by item id: numeric feature, then one-hot blocks (2 + 1 + 3 columns)
    assert d.item_context.shape == (N_ITEMS, 1 + 2 + 1 + 3)
    np.testing.assert_allclose(d.item_context[:, 0], 0.5 * np.arange(N_ITEMS))
    assert d.item_context[:, 1:].sum(axis=1).tolist() == [3.0] * N_ITEMS
    col = d.item_feature_names.index(f"item_feature_3={_hash('c1')}")
    assert d.item_context[:, col].tolist() == [0, 1, 0, 0, 1]
    # the empirical policy given the position: the share of each item per position
    freq = d.empirical_policy()
    k, item = written["positions"][0] - 1, written["items"][0]
    at_k = written["positions"] - 1 == k
    assert freq[k, item] == pytest.approx(np.mean(written["items"][at_k] == item))
    np.testing.assert_allclose(freq.sum(axis=1), 1.0)


def test_root_comes_from_bandexa_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_excerpt(tmp_path, policy="bts", campaign="women")
    monkeypatch.setenv("BANDEXA_DATA", str(tmp_path))
    assert len(open_bandit(campaign="women", behavior_policy="bts")) == N_ROWS


def test_missing_files_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDEXA_DATA", str(tmp_path / "nothing"))
    with pytest.raises(
        MissingDataError,
        match=r"(?s)random/men/men.csv\[.gz\] not found.*`bandexa-data fetch open_bandit`"
        r".*download=True.*st-tech/zr-obp",
    ):
        open_bandit("men", "random", root=tmp_path)
    _write_excerpt(tmp_path)
    (tmp_path / "open_bandit_dataset/random/men/item_context.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"random/men/item_context.csv\[.gz\] not found"):
        open_bandit("men", "random", root=tmp_path)


def test_checksums_are_verified_where_published(tmp_path: Path) -> None:
    assert ("random", "all") in KNOWN_MD5
    _write_excerpt(tmp_path, campaign="all")  # not the published file
    with pytest.raises(ValueError, match=r"md5 of the uncompressed file is .* expected 9429b"):
        open_bandit("all", "random", root=tmp_path)
    assert len(open_bandit("all", "random", root=tmp_path, verify=False)) == N_ROWS


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"campaign: expected one of \('all', 'men', 'women'\)"):
        open_bandit("kids")
    with pytest.raises(ValueError, match=r"behavior_policy: expected one of"):
        open_bandit("men", "epsilon")
    _write_excerpt(tmp_path)
    path = tmp_path / "open_bandit_dataset/random/men/men.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode().replace("propensity_score", "pscore")
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(ValueError, match=r"men.csv.gz: columns \['propensity_score'\] missing"):
        open_bandit("men", "random", root=tmp_path)
    path.write_bytes(b"not gzip")
    with pytest.raises(CorruptDataError, match=r"men.csv.gz: not a complete gzip file"):
        open_bandit("men", "random", root=tmp_path)


# -- issue 23 item 8: damaged, hostile and unchecked files ---------------------------------


def _folder(root: Path) -> Path:
    return root / "open_bandit_dataset" / "random" / "men"


def test_a_damaged_deflate_block_names_the_file(tmp_path: Path) -> None:
    _write_excerpt(tmp_path)
    path = _folder(tmp_path) / "men.csv.gz"
    data = bytearray(path.read_bytes())
    data[10] |= 0b110  # the first deflate block's type: 3, reserved (zlib.error)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=r"men\.csv\.gz: not a complete gzip file") as err:
        open_bandit("men", "random", root=tmp_path)
    assert err.value.path == path and "invalid block type" in str(err.value)


def test_text_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    _write_excerpt(tmp_path, gz=False)
    path = _folder(tmp_path) / "item_context.csv"
    path.write_bytes(path.read_bytes() + "é".encode("latin-1"))
    with pytest.raises(CorruptDataError, match=r"item_context\.csv: not UTF-8 text"):
        open_bandit("men", "random", root=tmp_path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "data row 1 holds NaN or inf"),
        ("inf", "data row 1 holds NaN or inf"),
        ("abc", "expected numbers"),
    ],
)
def test_item_context_values_are_checked(tmp_path: Path, value: str, message: str) -> None:
    _write_excerpt(tmp_path, gz=False)
    path = _folder(tmp_path) / "item_context.csv"
    lines = path.read_text().splitlines()
    fields = lines[1].split(",")
    fields[2] = value  # item_feature_0 of the first data row
    path.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    with pytest.raises(CorruptDataError, match=rf"item_context\.csv: item_feature_0: {message}"):
        open_bandit("men", "random", root=tmp_path)


def test_a_nan_in_the_log_is_named(tmp_path: Path) -> None:
    _write_excerpt(tmp_path, gz=False)
    path = _folder(tmp_path) / "men.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",nan"  # the last affinity of data row 3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptDataError, match=r"men\.csv: user-item_affinity: data row 3 holds"):
        open_bandit("men", "random", root=tmp_path)


def test_a_decompression_bomb_is_refused_before_memory_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracemalloc
    import zlib

    _write_excerpt(tmp_path)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()  # 64 MiB
    path = _folder(tmp_path) / "men.csv.gz"
    path.write_bytes(bomb)
    assert len(bomb) < 100_000
    monkeypatch.setattr(datafiles, "MAX_DECOMPRESSED_BYTES", 4 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match=r"men\.csv\.gz: decompresses to more than 4,"):
            open_bandit("men", "random", root=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20  # the bound and a chunk, never the 64 MiB


def _shared_sample(shared_data_dir: Path) -> Path:
    root = shared_data_dir / "open_bandit_dataset"
    if not (root / "random" / "all" / "all.csv.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the Open Bandit sample is missing from {root} on CI")
        pytest.skip(f"the Open Bandit sample is not in {root}")
    return shared_data_dir


@pytest.mark.parametrize("campaign,n_items", [("all", 80), ("men", 34), ("women", 46)])
def test_the_shared_sample(shared_data_dir: Path, campaign: str, n_items: int) -> None:
    root = _shared_sample(shared_data_dir)
    rnd = open_bandit(campaign=campaign, behavior_policy="random", root=root)
    bts = open_bandit(campaign=campaign, behavior_policy="bts", root=root)
    for d in (rnd, bts):
        assert len(d) == 10_000 and d.n_actions == n_items
        assert d.user_item_affinity.shape == (10_000, n_items)
        assert d.user_features.shape == (10_000, 4) and d.item_context.shape[0] == n_items
        assert set(np.unique(d.positions)) == {0, 1, 2}
        assert 20 <= d.rewards.sum() <= 100  # ~40-70 clicks per file
        assert np.all(np.diff(d.timestamps.astype(np.int64)) >= 0)  # in time order
    np.testing.assert_allclose(rnd.propensities, 1 / n_items)  # uniform over the items
    assert set(np.unique(rnd.actions)) == set(range(n_items))
    assert bts.propensities.min() < 1e-3 < 0.5 < bts.propensities.max()  # TS concentrates
    assert bts.empirical_policy().max() > 5 * rnd.empirical_policy().max()
