"""Image-classification bandits: MNIST and Fashion-MNIST, one arm per label.

Data lookup (first match wins, for each split the images and labels must sit in the same
folder, uncompressed or ``.gz``):

1. ``root`` argument, then 2. the ``BANDEXA_DATA`` environment variable, then 3. the
per-user cache (``BANDEXA_CACHE``, else ``$XDG_CACHE_HOME/bandexa_gym``, else
``~/.cache/bandexa_gym``), each in torchvision's layout ``<dir>/MNIST/raw/`` or
``<dir>/FashionMNIST/raw/``; then system folders (Fashion-MNIST: Debian's
``/usr/share/datasets/fashion-mnist/``).

Files are read with torchvision's IDX readers. A ``.gz``-only folder is decompressed
into the cache (never next to the source, which may be read-only). Each split is read
once per process and shared by all environments.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round

__all__ = [
    "FashionMNISTBanditEnv",
    "MNISTBanditEnv",
    "data_cache_dir",
    "load_image_split",
]

DATA_ENV_VAR = "BANDEXA_DATA"
CACHE_ENV_VAR = "BANDEXA_CACHE"

#: Extra read-only folders searched after the data roots, per dataset (flat .gz layout).
SYSTEM_DATA_DIRS: dict[str, tuple[Path, ...]] = {
    "MNIST": (),
    "FashionMNIST": (Path("/usr/share/datasets/fashion-mnist"),),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

Split = Literal["train", "test"]


def data_cache_dir() -> Path:
    """The per-user folder for downloaded and decompressed data.

    Returns:
        ``$BANDEXA_CACHE`` if set, else ``$XDG_CACHE_HOME/bandexa_gym``, else
        ``~/.cache/bandexa_gym``.
    """
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bandexa_gym"


def _data_roots(root: str | os.PathLike[str] | None) -> list[Path]:
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env_root = os.environ.get(DATA_ENV_VAR)
    if env_root:
        roots.append(Path(env_root).expanduser())
    roots.append(data_cache_dir())
    return roots


def _split_files(split: Split) -> tuple[str, str]:
    prefix = _SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _search_dirs(dataset: str, root: str | os.PathLike[str] | None) -> list[Path]:
    dirs = [r / dataset / "raw" for r in _data_roots(root)]
    dirs += SYSTEM_DATA_DIRS.get(dataset, ())
    return list(dict.fromkeys(dirs))  # drop repeats (root == BANDEXA_DATA), keep order


def _uncompressed(path: Path, dataset: str) -> Path:
    """Return an uncompressed copy of ``path``, decompressing ``.gz`` into the cache."""
    if path.suffix != ".gz":
        return path
    from torchvision.datasets.utils import _decompress

    target_dir = data_cache_dir() / dataset / "raw"
    target = target_dir / path.stem
    if not target.is_file():
        target_dir.mkdir(parents=True, exist_ok=True)
        # Decompress to a temporary name and rename, so a crash never leaves a torn file.
        fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{path.stem}.", suffix=".part")
        os.close(fd)
        try:
            _decompress(path, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return target


def _download_split(dataset: str, split: Split, raw_dir: Path) -> None:
    """Fetch one split with torchvision's downloader (mirrors and MD5s from torchvision)."""
    from urllib.error import URLError

    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(datasets, dataset)
    raw_dir.mkdir(parents=True, exist_ok=True)
    prefix = _SPLIT_PREFIX[split]
    for filename, md5 in cls.resources:
        if not filename.startswith(prefix):
            continue
        errors = []
        for mirror in cls.mirrors:
            try:
                download_and_extract_archive(
                    f"{mirror}{filename}", download_root=raw_dir, filename=filename, md5=md5
                )
                break
            except (RuntimeError, URLError, OSError) as err:
                errors.append(f"{mirror}: {err}")
        else:
            raise RuntimeError(f"Could not download {filename}:\n" + "\n".join(errors))


@functools.lru_cache(maxsize=8)
def _read_split(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = read_image_file(images_path).numpy()
    labels = read_label_file(labels_path).numpy().astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_path} and {labels_path} do not form a 28x28 image split: "
            f"images {images.shape}, labels {labels.shape}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_image_split(
    dataset: Literal["MNIST", "FashionMNIST"],
    split: Split = "test",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Find, decompress if needed, and read one split of MNIST or Fashion-MNIST.

    Args:
        dataset: ``"MNIST"`` or ``"FashionMNIST"`` (torchvision's folder names).
        split: ``"train"`` or ``"test"``.
        root: Data root searched first (torchvision layout ``<root>/<dataset>/raw``).
        download: Download the split with torchvision into the first data root when it is
            found nowhere.

    Returns:
        ``(images, labels)``: read-only arrays of shape (N, 28, 28) uint8 and (N,) int64,
        shared by every caller in the process.

    Raises:
        FileNotFoundError: The split is not found and ``download`` is False.
    """
    if dataset not in SYSTEM_DATA_DIRS:
        raise ValueError(f'dataset must be "MNIST" or "FashionMNIST", got {dataset!r}')
    if split not in _SPLIT_PREFIX:
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    names = _split_files(split)
    searched = _search_dirs(dataset, root)
    for folder in searched:
        found = [_find_in(folder, name) for name in names]
        if all(p is not None for p in found):
            images, labels = (_uncompressed(p, dataset) for p in found if p is not None)
            return _read_split(str(images), str(labels))
    if download:
        raw_dir = _data_roots(root)[0] / dataset / "raw"
        _download_split(dataset, split, raw_dir)
        images, labels = (raw_dir / name for name in names)
        return _read_split(str(images), str(labels))
    hints = [
        "pass download=True to fetch it with torchvision",
        f"set {DATA_ENV_VAR} (or root=) to a folder holding {dataset}/raw/ in torchvision's layout",
    ]
    if dataset == "FashionMNIST":
        hints.append("on Debian/Ubuntu: apt-get install dataset-fashion-mnist")
    raise FileNotFoundError(
        f"{dataset} {split} split not found: looked for {names[0]}[.gz] and {names[1]}[.gz] in\n"
        + "\n".join(f"  {folder}" for folder in searched)
        + "\nTo fix: "
        + "; or ".join(hints)
        + "."
    )


def _check_labels(labels: Iterable[int] | None, n_classes: int) -> tuple[int, ...]:
    if labels is None:
        return tuple(range(n_classes))
    expected = f"distinct integers in 0..{n_classes - 1}, e.g. labels=range(8)"
    try:
        values = list(labels)
    except TypeError:
        raise ValueError(f"labels must be {expected}, got {labels!r}") from None
    if not values or isinstance(labels, (str, bytes)):
        raise ValueError(f"labels must be a non-empty collection of {expected}, got {labels!r}")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not 0 <= value < n_classes
        ):
            raise ValueError(f"labels must be {expected}; {value!r} is not")
    if len(set(values)) != len(values):
        raise ValueError(f"labels must be {expected}; got duplicates in {values}")
    return tuple(int(v) for v in values)


class MNISTBanditEnv(CandidateSetEnv):
    """Guess the label of an image: one arm per class, reward 1 when the guess is right.

    ## Description

    Each round shows one image of the chosen split; the arms are the labels on offer,
    each given as a one-hot row over the dataset's 10 classes. Only images whose true
    label is on offer are drawn, so the right answer is always available and the oracle's
    regret is 0. Images are walked in a fresh random permutation of the (filtered) split
    on every pass, drawn from ``np_random``.

    Data lookup: ``root`` > ``BANDEXA_DATA`` > per-user cache (``BANDEXA_CACHE``, default
    ``~/.cache/bandexa_gym``), torchvision's layout under each (``<dir>/MNIST/raw/``);
    ``download=True`` fetches a missing split with torchvision. A missing split raises a
    ``FileNotFoundError`` listing the folders searched and how to get the data.

    ## Observation Space

    ``Dict`` with ``context``: the image, ``Box(0, 1, (1, 28, 28), float32)``;
    ``candidates``: ``Box(0, 1, (K, 10), float32)``, row ``i`` the one-hot of
    ``labels[i]``; ``action_mask``: all ones, ``Box(0, 1, (K,), int8)``.

    ## Action Space

    ``Discrete(K)`` with ``K = len(labels)``: action ``i`` guesses label ``labels[i]``.

    ## Rewards

    1 if ``labels[action]`` is the image's true label, else 0. The reward is
    deterministic, so the expected reward equals it and the regret is
    ``1 - reward``.

    ## Starting State and Episode End

    ``reset(seed=s)`` restarts the walk with a permutation drawn from ``s``; ``reset()``
    without a seed continues the current walk. Rounds never terminate; the id is
    registered without ``max_episode_steps``.

    ## Arguments

    ```python
    gym.make("Bandexa/MNIST-v0", root=None, split="test", download=False, labels=None)
    ```

    - ``root``: data folder searched first.
    - ``split``: ``"test"`` (10,000 images, the default: it is what the shared data folder
      holds) or ``"train"`` (60,000 images).
    - ``download``: download the split with torchvision when it is found nowhere.
    - ``labels``: the labels on offer, distinct integers in 0..9 in arm order
      (``None``: all 10). ``labels=range(8)`` gives 8 arms and never shows an 8 or a 9.

    ## Version History

    - v0: Initial version.
    """

    #: torchvision's folder name for the dataset.
    dataset_name: str = "MNIST"
    #: Names of the 10 classes, indexed by label.
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: Split = "test",
        download: bool = False,
        labels: Iterable[int] | None = None,
    ) -> None:
        n_classes = len(self.class_names)
        self.labels = _check_labels(labels, n_classes)
        if split not in _SPLIT_PREFIX:
            raise ValueError(f'split must be "train" or "test", got {split!r}')
        self.split: Split = split
        images, all_labels = load_image_split(self.dataset_name, split, root, download)
        self._images = images
        self._image_labels = all_labels
        self._pool = np.flatnonzero(np.isin(all_labels, self.labels))
        if self._pool.size == 0:
            raise ValueError(f"the {split} split has no image with a label in {self.labels}")
        self.label_names = tuple(self.class_names[label] for label in self.labels)
        k = len(self.labels)
        super().__init__(
            context_space=spaces.Box(0.0, 1.0, (1, 28, 28), np.float32),
            n_candidates=k,
            action_dim=n_classes,
            candidate_low=0.0,
            candidate_high=1.0,
        )
        self._candidates = np.eye(n_classes, dtype=np.float32)[list(self.labels)]
        self._arm_labels = np.asarray(self.labels, dtype=np.int64)
        self._mask = np.ones(k, dtype=np.int8)
        self._order: np.ndarray | None = None
        self._position = 0

    @property
    def num_images(self) -> int:
        """Number of images the rounds are drawn from (those with a label on offer)."""
        return int(self._pool.size)

    def _on_reset(self, seeded: bool) -> None:
        if seeded or self._order is None:
            self._order = None
            self._position = 0

    def _draw_round(self) -> Round:
        if self._order is None or self._position >= self._order.size:
            self._order = self.np_random.permutation(self._pool)
            self._position = 0
        index = int(self._order[self._position])
        self._position += 1
        label = int(self._image_labels[index])
        image = self._images[index].astype(np.float32)[None] / np.float32(255.0)
        return Round(
            context=image,
            candidates=self._candidates,
            expected_rewards=(self._arm_labels == label).astype(np.float64),
            action_mask=self._mask,
            payload={"label": label, "index": index},
        )

    def _draw_reward(self, round_: Round, action: int) -> float:
        return float(round_.expected_rewards[action])


class FashionMNISTBanditEnv(MNISTBanditEnv):
    """Guess the class of a Fashion-MNIST image: the MNIST bandit on Zalando's articles.

    ## Description

    Identical to :class:`MNISTBanditEnv` (same arguments, spaces, rewards and walk) on
    Fashion-MNIST. Besides ``root``, ``BANDEXA_DATA`` and the cache
    (``<dir>/FashionMNIST/raw/``), the data is looked up in
    ``/usr/share/datasets/fashion-mnist/``, where Debian's ``dataset-fashion-mnist``
    package installs it.

    ## Observation Space

    ``Dict`` with ``context`` ``Box(0, 1, (1, 28, 28), float32)``, ``candidates``
    ``Box(0, 1, (K, 10), float32)`` (one-hot rows of ``labels``) and ``action_mask``.

    ## Action Space

    ``Discrete(K)``, ``K = len(labels)``.

    ## Rewards

    1 if the chosen class is the article's class, else 0 (deterministic).

    ## Arguments

    ```python
    gym.make("Bandexa/FashionMNIST-v0", root=None, split="test", download=False, labels=None)
    ```

    Class names by label: ``FashionMNISTBanditEnv.class_names``.

    ## Version History

    - v0: Initial version.
    """

    dataset_name = "FashionMNIST"
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
