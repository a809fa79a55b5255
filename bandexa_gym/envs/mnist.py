"""Image-classification bandits: MNIST and Fashion-MNIST, one arm per label.

Data lookup (first match wins, for each split the images and labels must sit in the same
folder, uncompressed or ``.gz``):

1. ``root`` argument, then 2. the ``BANDEXA_DATA`` environment variable, then 3. the
per-user cache (``BANDEXA_CACHE``, else the platform's user cache folder, see
:func:`bandexa_gym.envs.datafiles.data_cache_dir`), each in torchvision's layout
``<dir>/MNIST/raw/`` or ``<dir>/FashionMNIST/raw/``; then system folders (Fashion-MNIST:
Debian's ``/usr/share/datasets/fashion-mnist/``).

Files are read with torchvision's IDX readers. A ``.gz`` file is decompressed with
:mod:`gzip` into the cache (never next to the source, which may be read-only), under a name
keyed on the source's path, size and modification time; the copy of an older version of the
same file is removed. Decompression stops past the size of the split's file (60,000 or
10,000 28x28 images and labels), so a damaged or hostile ``.gz`` never fills the cache, and
a copy that does not read as an IDX file is removed. Each split is read once per process per
file version and shared by all environments. A truncated or damaged file raises
:class:`~bandexa_gym.envs.datafiles.CorruptDataError` naming it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.core import CandidateSetEnv, Round, check_bool
from bandexa_gym.envs.datafiles import (
    CACHE_ENV_VAR,
    DATA_ENV_VAR,
    CorruptDataError,
    data_cache_dir,
    data_roots,
    decompressed_copy,
    file_key,
    find_file,
)

__all__ = [
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "FashionMNISTBanditEnv",
    "MNISTBanditEnv",
    "data_cache_dir",
    "load_image_split",
]

#: Extra read-only folders searched after the data roots, per dataset (flat .gz layout).
SYSTEM_DATA_DIRS: dict[str, tuple[Path, ...]] = {
    "MNIST": (),
    "FashionMNIST": (Path("/usr/share/datasets/fashion-mnist"),),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
#: Images per split in MNIST and Fashion-MNIST: they bound the decompressed files' sizes.
_SPLIT_ROWS = {"train": 60_000, "test": 10_000}

Split = Literal["train", "test"]


def _split_files(split: Split) -> tuple[str, str]:
    prefix = _SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _search_dirs(dataset: str, root: str | os.PathLike[str] | None) -> list[Path]:
    dirs = [r / dataset / "raw" for r in data_roots(root)]
    dirs += SYSTEM_DATA_DIRS.get(dataset, ())
    return list(dict.fromkeys(dirs))  # drop repeats (root == BANDEXA_DATA), keep order


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


def _read_idx(path: Path, source: Path, reader_name: str) -> np.ndarray:
    """One IDX file read with torchvision's reader; damage becomes a CorruptDataError."""
    from torchvision.datasets import mnist as tv_mnist

    reader = getattr(tv_mnist, reader_name)
    try:
        return reader(str(path)).numpy()
    except (AssertionError, RuntimeError, ValueError, KeyError, IndexError, TypeError) as err:
        where = "" if path == source else f" (decompressed to {path})"
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise CorruptDataError(
            source,
            f"not a valid IDX file{where} ({detail})",
            f"delete {source} and fetch it again (download=True fetches it with torchvision)",
        ) from err


@functools.lru_cache(maxsize=8)
def _read_split_cached(
    images_key: tuple[str, int, int],
    labels_key: tuple[str, int, int],
    images_source: str,
    labels_source: str,
) -> tuple[np.ndarray, np.ndarray]:
    # Keyed on (path, size, mtime) of the files read, so a changed file is read again.
    images = _read_idx(Path(images_key[0]), Path(images_source), "read_image_file")
    labels = _read_idx(Path(labels_key[0]), Path(labels_source), "read_label_file")
    labels = labels.astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CorruptDataError(
            images_source,
            f"holds images of shape {images.shape[1:]}, expected 28x28",
            f"replace {images_source} with the original file",
        )
    if images.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise CorruptDataError(
            images_source,
            f"{images.shape[0]} images but {labels_source} holds labels of shape "
            f"{labels.shape}: the two files do not form one split",
            "put the images and labels files of the same split side by side",
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _read_split(
    images: Path, labels: Path, dataset: str, split: Split
) -> tuple[np.ndarray, np.ndarray]:
    n = _SPLIT_ROWS[split]
    images_path = decompressed_copy(images, dataset, max_bytes=16 + n * 28 * 28)
    labels_path = decompressed_copy(labels, dataset, max_bytes=8 + n)
    try:
        return _read_split_cached(
            file_key(images_path), file_key(labels_path), str(images), str(labels)
        )
    except CorruptDataError:
        for copy, source in ((images_path, images), (labels_path, labels)):
            if copy != source:  # an invalid decompressed copy does not stay in the cache
                copy.unlink(missing_ok=True)
        raise


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
        CorruptDataError: A file of the split is truncated or damaged.
    """
    if dataset not in SYSTEM_DATA_DIRS:
        raise ValueError(f'dataset must be "MNIST" or "FashionMNIST", got {dataset!r}')
    if split not in _SPLIT_PREFIX:
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    download = check_bool("download", download)
    names = _split_files(split)
    searched = _search_dirs(dataset, root)
    for folder in searched:
        found = [find_file(folder, name) for name in names]
        if found[0] is not None and found[1] is not None:
            return _read_split(found[0], found[1], dataset, split)
    if download:
        raw_dir = data_roots(root)[0] / dataset / "raw"
        _download_split(dataset, split, raw_dir)
        return _read_split(raw_dir / names[0], raw_dir / names[1], dataset, split)
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

    Data lookup: ``root`` > ``BANDEXA_DATA`` > per-user cache (``BANDEXA_CACHE``, else
    the platform's user cache folder, ``~/.cache/bandexa_gym`` on Linux), torchvision's
    layout under each (``<dir>/MNIST/raw/``); ``download=True`` fetches a missing split with
    torchvision. A missing split raises a ``FileNotFoundError`` listing the folders searched
    and how to get the data; a truncated or damaged file raises a ``CorruptDataError`` (a
    ``ValueError``) naming it.

    ## Observation Space

    ``Dict`` with ``context``: the image, ``Box(0, 1, (1, 28, 28), float32)``;
    ``candidates``: ``Box(0, 1, (K, 10), float32)``, row ``i`` the one-hot of
    ``labels[i]``; ``action_mask``: all ones, ``Box(0, 1, (K,), int8)``.

    ## Action Space

    ``Discrete(K)`` with ``K = len(labels)``: action ``i`` guesses label ``labels[i]``.

    ## Rewards

    1 if ``labels[action]`` is the image's true label, else 0. The reward is
    deterministic, so the expected reward equals it and the regret is
    ``1 - reward``. ``info`` holds the oracle (``expected_reward``,
    ``best_expected_reward``, ``regret``, ``optimal_action``, ``expected_rewards``).

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

    ## Vector Environments

    The problem is the dataset, so the sub-envs of any vector env
    (``gym.make_vec(id, num_envs=N)``) already share it; sub-env ``i``, seeded ``s + i``,
    walks its own permutation of the images.

    ## Version History

    - v0: Initial version.
    - v0 (unreleased): ``info["expected_rewards"]``; the decompressed-data cache is keyed on
      the source file's path, size and modification time; damaged files raise
      ``CorruptDataError``; ``download`` must be a bool. The round stream is unchanged.
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
    - v0 (unreleased): as for ``Bandexa/MNIST-v0``.
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
