"""The named datasets: parsing, splits, classes, md5 checks, missing and damaged files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from bandexa_gym.envs import ClassificationBanditEnv, CorruptDataError, MissingDataError
from bandexa_gym.envs import catalogue as catalogue_module
from bandexa_gym.envs.catalogue import load_classification_data
from tests.envs.env_ids import skip_missing_data_outside_ci

CATALOGUE_IDS = {
    "Bandexa/Adult-v0": ("adult", 2, 108),
    "Bandexa/Letter-v0": ("letter", 26, 16),
    "Bandexa/Satimage-v0": ("satimage", 6, 36),
    "Bandexa/Pendigits-v0": ("pendigits", 10, 16),
}
ROWS = {
    ("adult", "train"): 32_561,
    ("adult", "test"): 16_281,
    ("letter", "train"): 16_000,
    ("letter", "test"): 4_000,
    ("satimage", "train"): 4_435,
    ("satimage", "test"): 2_000,
    ("pendigits", "train"): 7_494,
    ("pendigits", "test"): 3_498,
}


@pytest.fixture
def catalogue(shared_data_dir: Path) -> Callable[[str], Path]:
    """The shared folder of a dataset; skips outside CI when it is absent."""

    def folder(name: str) -> Path:
        path = shared_data_dir / name
        if not path.is_dir():
            skip_missing_data_outside_ci(FileNotFoundError(path))
        return path

    return folder


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


@pytest.mark.parametrize("env_id", list(CATALOGUE_IDS))
def test_each_catalogue_id_builds_and_steps(env_id: str, catalogue: Callable[[str], Path]) -> None:
    name, k, d = CATALOGUE_IDS[env_id]
    catalogue(name)
    for split in ("train", "test"):
        env = gym.make(env_id, split=split)
        base = env.unwrapped
        assert base.num_rows == ROWS[(name, split)] and base.dataset == name
        assert env.action_space.n == k and env.observation_space["context"].shape == (d,)
        obs, _ = env.reset(seed=0)
        for _ in range(20):
            true = base._round.payload["label"]
            obs, reward, terminated, truncated, info = env.step(true)
            assert reward == 1.0 and info["regret"] == 0.0 and not terminated
            assert obs["context"].shape == (d,) and np.isfinite(obs["context"]).all()
    with pytest.raises(TypeError, match="dataset"):
        gym.make(env_id, dataset="letter")  # the id fixes its dataset


def test_adult_encoding(catalogue: Callable[[str], Path]) -> None:
    folder = catalogue("adult")
    data = load_classification_data("adult", "train")
    rows = [line.split(", ") for line in _lines(folder / "adult.data.gz")]
    assert data.X.shape == (len(rows), 108) and not data.X.flags.writeable
    names = data.feature_names
    assert names[:6] == (
        "age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week",
    )  # fmt: skip
    np.testing.assert_array_equal(data.X[:, 0], [float(r[0]) for r in rows])
    one_hot = data.X[:, 6:]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(axis=1), 8)  # one category per column
    # "?" is its own category, in the columns that have missing values.
    unknown_work = sum(r[1] == "?" for r in rows)
    assert unknown_work > 1000
    assert data.X[:, names.index("workclass=?")].sum() == unknown_work
    assert data.X[:, names.index("native-country=Holand-Netherlands")].sum() == sum(
        r[13] == "Holand-Netherlands" for r in rows
    )
    assert list(data.numeric) == [True] * 6 + [False] * 102
    # In the env: numeric columns standardized on the rows in use, one-hot columns kept.
    env = ClassificationBanditEnv(dataset="adult")
    assert env.class_names == ("<=50K", ">50K")
    np.testing.assert_allclose(env.feature_offset[:6], data.X[:, :6].astype(np.float64).mean(0))
    np.testing.assert_allclose(env.feature_scale[:6], data.X[:, :6].astype(np.float64).std(0))
    assert (env.feature_offset[6:] == 0).all() and (env.feature_scale[6:] == 1).all()
    obs, _ = env.reset(seed=0)
    assert set(np.unique(obs["context"][6:])) <= {0.0, 1.0}


def test_adult_test_split_header_and_trailing_dot(catalogue: Callable[[str], Path]) -> None:
    folder = catalogue("adult")
    lines = _lines(folder / "adult.test.gz")
    assert lines[0].startswith("|")  # the header line that must be skipped
    data = load_classification_data("adult", "test")
    assert len(data.y) == len(lines) - 1 == 16_281
    assert set(data.y.tolist()) == {"<=50K", ">50K"}
    assert (data.y == ">50K").sum() == sum(line.endswith(">50K.") for line in lines)
    env = ClassificationBanditEnv(dataset="adult", split="test")
    assert env.class_names == ("<=50K", ">50K")


def test_letter_splits_follow_its_documentation(catalogue: Callable[[str], Path]) -> None:
    lines = _lines(catalogue("letter") / "letter-recognition.data.gz")
    train = load_classification_data("letter", "train")
    test = load_classification_data("letter", "test")
    assert [line[0] for line in lines[:16_000]] == train.y.tolist()
    assert [line[0] for line in lines[16_000:]] == test.y.tolist()
    np.testing.assert_array_equal(test.X[-1], [float(v) for v in lines[-1].split(",")[1:]])
    env = ClassificationBanditEnv(dataset="letter")
    assert env.class_names == tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_satimage_and_pendigits_classes(catalogue: Callable[[str], Path]) -> None:
    catalogue("satimage")
    catalogue("pendigits")
    sat = ClassificationBanditEnv(dataset="satimage")
    assert sat.class_names == (1, 2, 3, 4, 5, 7) and sat.action_space.n == 6
    pen = ClassificationBanditEnv(dataset="pendigits", split="test")
    assert pen.class_names == tuple(range(10))


def test_images_as_flat_vectors(shared_data_dir: Path) -> None:
    env = ClassificationBanditEnv(dataset="mnist", split="test")
    assert env.observation_space["context"].shape == (784,)
    assert env.observation_space["context"].high.max() == 1.0 and not env.standardize
    from bandexa_gym.envs.mnist import load_image_split

    images, labels = load_image_split("MNIST", "test")
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        index = env._round.payload["index"]
        np.testing.assert_allclose(obs["context"], images[index].ravel() / 255.0, rtol=1e-6)
        obs, reward, *_ = env.step(int(labels[index]))
        assert reward == 1.0
    # MNIST's train images are not in the shared folder, and train is the default split.
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        ClassificationBanditEnv(dataset="mnist")


def test_fashion_mnist_as_flat_vectors(make_env: Callable[..., gym.Env]) -> None:
    make_env("Bandexa/FashionMNIST-v0")  # skips when absent
    env = ClassificationBanditEnv(dataset="fashion_mnist", split="test", standardize=True)
    obs, _ = env.reset(seed=0)
    assert obs["context"].shape == (784,) and env.num_rows == 10_000
    assert obs["context"].min() < 0  # standardized on request


# -- missing and damaged files --------------------------------------------------------------


@pytest.fixture
def own_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A data root of the test's own, and nothing else to fall back on."""
    monkeypatch.delenv("BANDEXA_DATA", raising=False)
    monkeypatch.setenv("BANDEXA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_missing_file_names_it_and_the_fix(own_root: Path) -> None:
    (own_root / "satimage").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        gym.make("Bandexa/Satimage-v0", root=own_root)
    message = str(err.value)
    assert "sat.trn[.gz]" in message and str(own_root / "satimage") in message
    assert "BANDEXA_DATA" in message and "archive.ics.uci.edu" in message
    assert "`bandexa-data fetch satimage`" in message and "download=True" in message
    assert isinstance(err.value, MissingDataError) and err.value.dataset == "satimage"


def test_md5_mismatch_is_reported(own_root: Path, catalogue: Callable[[str], Path]) -> None:
    lines = _lines(catalogue("letter") / "letter-recognition.data.gz")
    lines[5] = "Z" + lines[5][1:]  # one changed label
    (own_root / "letter").mkdir(parents=True)
    path = own_root / "letter" / "letter-recognition.data.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(CorruptDataError) as err:
        gym.make("Bandexa/Letter-v0", root=own_root)
    assert str(path) in str(err.value) and "6a2d740def5d13ea6096272546f6d41e" in str(err.value)


def test_truncated_gzip_is_reported(own_root: Path, catalogue: Callable[[str], Path]) -> None:
    source = catalogue("pendigits") / "pendigits.tes.gz"
    (own_root / "pendigits").mkdir(parents=True)
    path = own_root / "pendigits" / "pendigits.tes.gz"
    path.write_bytes(source.read_bytes()[:5000])
    with pytest.raises(CorruptDataError, match="not a complete gzip file.*To fix: delete"):
        gym.make("Bandexa/Pendigits-v0", split="test", root=own_root)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("1 2 3\n", "line 1: expected 37 fields, got 3"),
        (" ".join(["7"] * 36) + " x\n", "line 1: not a number"),
    ],
)
def test_malformed_rows_are_reported_with_their_line(
    own_root: Path, content: str, match: str
) -> None:
    (own_root / "satimage").mkdir(parents=True)
    (own_root / "satimage" / "sat.tst").write_text(" ".join(["1"] * 37) + "\n" + content)
    with pytest.raises(CorruptDataError, match=match.replace("line 1", "line 2")):
        gym.make("Bandexa/Satimage-v0", split="test", root=own_root)


def test_unknown_adult_category_is_reported(tmp_path: Path) -> None:
    # (A changed file fails its md5 first; the parser guards copies without a published one.)
    fields = ["39", "Pirate", "77516", "Bachelors", "13", "Never-married", "Adm-clerical"]
    fields += ["Not-in-family", "White", "Male", "0", "0", "40", "United-States", "<=50K."]
    text = "|1x3 Cross validator\n" + ", ".join(fields) + "\n"
    with pytest.raises(CorruptDataError, match="line 2: unknown workclass 'Pirate'"):
        catalogue_module._parse_adult(text, tmp_path / "adult.test")
    X, y, _ = catalogue_module._parse_adult(text.replace("Pirate", "Private"), tmp_path)
    assert y.tolist() == ["<=50K"] and X[0, 0] == 39.0


def test_bad_split() -> None:
    with pytest.raises(ValueError, match='split must be "train" or "test"'):
        ClassificationBanditEnv(dataset="letter", split="validation")
