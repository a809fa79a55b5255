"""MNIST / Fashion-MNIST bandits: oracle, label subsets, data lookup and errors."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torchvision.datasets.utils as tv_utils
from torchvision.datasets.mnist import read_image_file, read_label_file

from bandexa_gym.envs import MNISTBanditEnv
from bandexa_gym.envs import mnist as mnist_module

MakeEnv = Callable[..., gym.Env]


@pytest.fixture(scope="module")
def shared_raw(shared_data_dir: Path) -> Path:
    return shared_data_dir / "MNIST" / "raw"


@pytest.fixture(scope="module")
def truth(shared_raw: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split read directly with torchvision, as the reference."""
    images = read_image_file(str(shared_raw / "t10k-images-idx3-ubyte")).numpy()
    labels = read_label_file(str(shared_raw / "t10k-labels-idx1-ubyte")).numpy()
    return images, labels


def test_context_is_the_image_and_regret_is_one_minus_correct(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    images, labels = truth
    env = gym.make("Bandexa/MNIST-v0").unwrapped
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["candidates"], np.eye(10, dtype=np.float32))
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(300):
        index = env._round.payload["index"]
        assert obs["context"].dtype == np.float32 and obs["context"].shape == (1, 28, 28)
        np.testing.assert_allclose(obs["context"][0] * 255, images[index], atol=1e-4)
        true_label = int(labels[index])
        action = int(rng.integers(10))
        obs, reward, _, _, info = env.step(action)
        correct = float(action == true_label)
        assert reward == correct == info["expected_reward"]
        assert info["regret"] == 1.0 - correct
        assert info["optimal_action"] == true_label and info["best_expected_reward"] == 1.0
        rewards.append(reward)
    assert 0.03 < np.mean(rewards) < 0.2  # random guessing


def test_labels_subset_restricts_arms_and_images() -> None:
    env = gym.make("Bandexa/MNIST-v0", labels=range(8)).unwrapped
    assert env.action_space.n == 8
    assert env.observation_space["candidates"].shape == (8, 10)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs["candidates"], np.eye(10, dtype=np.float32)[:8])
    seen = set()
    for _ in range(400):
        seen.add(env._round.payload["label"])
        obs, reward, _, _, info = env.step(0)
        assert info["best_expected_reward"] == 1.0  # the right label is always on offer
        assert 0 <= info["optimal_action"] < 8
    assert seen == set(range(8))


def test_labels_order_defines_arm_order() -> None:
    env = gym.make("Bandexa/MNIST-v0", labels=[7, 3]).unwrapped
    obs, _ = env.reset(seed=0)
    assert obs["candidates"][0].argmax() == 7 and obs["candidates"][1].argmax() == 3
    for _ in range(50):
        label = env._round.payload["label"]
        assert label in (7, 3)
        _, reward, _, _, info = env.step(0)
        assert reward == float(label == 7)
        assert info["optimal_action"] == (0 if label == 7 else 1)


def test_each_pass_visits_every_image_once(truth: tuple[np.ndarray, np.ndarray]) -> None:
    env = gym.make("Bandexa/MNIST-v0", labels=[1]).unwrapped
    env.reset(seed=0)
    n = env.num_images
    first_pass = []
    for _ in range(n):
        first_pass.append(env._round.payload["index"])
        env.step(0)
    second = [env._round.payload["index"]]
    for _ in range(20):
        env.step(0)
        second.append(env._round.payload["index"])
    assert len(set(first_pass)) == n == len(first_pass)
    assert set(first_pass) == set(np.flatnonzero(truth[1] == 1).tolist())
    assert first_pass[:21] != second  # a fresh permutation per pass


def test_split_is_loaded_once_per_process() -> None:
    a = gym.make("Bandexa/MNIST-v0").unwrapped
    b = gym.make("Bandexa/MNIST-v0", labels=[0, 1]).unwrapped
    assert a._images is b._images
    assert not a._images.flags.writeable


def test_fashion_mnist(make_env: MakeEnv) -> None:
    env = make_env("Bandexa/FashionMNIST-v0").unwrapped
    obs, _ = env.reset(seed=0)
    assert env.class_names[9] == "Ankle boot" and env.dataset_name == "FashionMNIST"
    label = env._round.payload["label"]
    _, reward, _, _, info = env.step(label)
    assert reward == 1.0 and info["regret"] == 0.0
    assert obs["context"].max() <= 1.0 and obs["context"].min() >= 0.0


def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No BANDEXA_DATA, an empty cache, no system folders."""
    monkeypatch.delenv("BANDEXA_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BANDEXA_CACHE", str(cache))
    monkeypatch.setattr(mnist_module, "SYSTEM_DATA_DIRS", {"MNIST": (), "FashionMNIST": ()})
    return cache


@pytest.mark.parametrize("env_id", ["Bandexa/MNIST-v0", "Bandexa/FashionMNIST-v0"])
def test_missing_data_error_names_paths_and_fixes(
    env_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = _isolate(monkeypatch, tmp_path)
    root = tmp_path / "empty"
    root.mkdir()
    name = env_id.split("/")[1][: -len("-v0")]
    with pytest.raises(FileNotFoundError) as err:
        gym.make(env_id, root=root)
    message = str(err.value)
    assert str(root / name / "raw") in message and str(cache / name / "raw") in message
    assert "t10k-images-idx3-ubyte" in message
    assert "download=True" in message and "BANDEXA_DATA" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "FashionMNIST")


def test_train_split_missing_images_is_reported() -> None:
    # The shared folder holds the train labels but not the train images.
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        gym.make("Bandexa/MNIST-v0", split="train")


def test_gz_only_root_is_decompressed_into_cache(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    shared_raw: Path,
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    cache = _isolate(monkeypatch, tmp_path)
    raw = tmp_path / "gzroot" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_raw / name, raw / name)
    raw.chmod(0o555)  # read-only source: nothing may be written next to it
    try:
        env = gym.make("Bandexa/MNIST-v0", root=tmp_path / "gzroot").unwrapped
    finally:
        raw.chmod(0o755)
    assert sorted(p.name for p in raw.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    copies = sorted(p.name for p in (cache / "decompressed" / "MNIST").iterdir())
    assert [name.rsplit("-", 1)[0] for name in copies] == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    np.testing.assert_array_equal(env._images, truth[0])
    np.testing.assert_array_equal(env._image_labels, truth[1])


def test_system_folder_for_fashion_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    system = Path("/usr/share/datasets/fashion-mnist")
    if not (system / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            "dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
        )
    monkeypatch.delenv("BANDEXA_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BANDEXA_CACHE", str(cache))
    env = gym.make("Bandexa/FashionMNIST-v0").unwrapped
    assert env.num_images == 10_000
    assert list((cache / "decompressed" / "FashionMNIST").glob("t10k-images-idx3-ubyte-*"))


def test_download_uses_torchvision_for_the_requested_split_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_raw: Path
) -> None:
    _isolate(monkeypatch, tmp_path)
    calls = []

    def fake_download(url: str, download_root: Path, filename: str, md5: str) -> None:
        calls.append((url, Path(download_root), filename, md5))
        with gzip.open(shared_raw / filename, "rb") as src:
            (Path(download_root) / filename[: -len(".gz")]).write_bytes(src.read())

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    root = tmp_path / "dl"
    env = gym.make("Bandexa/MNIST-v0", root=root, download=True).unwrapped
    assert [c[2] for c in calls] == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(c[1] == root / "MNIST" / "raw" for c in calls)
    assert calls[0][0].endswith("/t10k-images-idx3-ubyte.gz")
    assert calls[0][3] == "9fb629c4189551a2d022fa330f9573f3"  # torchvision's MD5
    assert env.num_images == 10_000
    calls.clear()
    gym.make("Bandexa/MNIST-v0", root=root, download=True)  # found now: no download
    assert calls == []


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ([0, 10], "distinct integers in 0..9"),
        ([-1], "distinct integers in 0..9"),
        ([1, 1], "duplicates"),
        ([], "non-empty"),
        ("12", "non-empty collection"),
        ([0.5], "distinct integers"),
        (3, "distinct integers"),
    ],
)
def test_bad_labels(labels: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make("Bandexa/MNIST-v0", labels=labels)


def test_download_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="download must be True or False"):
        gym.make("Bandexa/MNIST-v0", download="no")


def test_bad_split_and_action() -> None:
    with pytest.raises(ValueError, match='"train" or "test"'):
        gym.make("Bandexa/MNIST-v0", split="val")
    env = MNISTBanditEnv(labels=range(8))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        env.step(8)
