"""Any supervised classification dataset as a contextual bandit, one arm per class."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from bandexa_gym.envs.catalogue import CATALOGUE, ClassificationData, load_classification_data
from bandexa_gym.envs.core import (
    CandidateSetEnv,
    Round,
    check_array_size,
    check_bool,
    check_nonnegative,
    check_unit_interval,
)

__all__ = ["ClassificationBanditEnv", "Noise"]

Noise = Literal["bernoulli", "gaussian"]
_DEFAULT_NOISE_LEVEL = 0.1


def _check_features(X: Any) -> np.ndarray:
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as err:
        raise ValueError(f"X must be a 2-D array of real numbers (N, d): {err}") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or array.dtype == np.bool_
    ):
        raise ValueError(
            f"X must be a 2-D array of real numbers (N, d), got dtype {array.dtype}; "
            "encode categorical columns as numbers (e.g. one-hot) first"
        )
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"X must be a 2-D array (N, d) with N, d >= 1, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"X must be finite; X[{row}, {column}] is {array[row, column]} "
            f"({int(bad.sum())} non-finite entries in all)"
        )
    return array


def _check_labels(y: Any, n_rows: int) -> np.ndarray:
    try:
        array = np.asarray(y)
    except (TypeError, ValueError) as err:
        raise ValueError(f"y must be a 1-D array of class labels (N,): {err}") from None
    if array.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class labels (N,), got shape {array.shape}")
    if array.shape[0] != n_rows:
        raise ValueError(f"X and y must have the same length: X has {n_rows} rows, y {len(array)}")
    kind = array.dtype.kind
    if kind == "O":
        if not all(isinstance(v, str) for v in array):
            raise ValueError(
                "y must hold integer or string class labels; an object array may hold only str"
            )
        array = array.astype(str)
    elif kind not in "iubUS":
        raise ValueError(
            f"y must hold integer, bool or string class labels, got dtype {array.dtype}"
            + (
                "; cast whole-number float labels with y.astype(int)"
                if kind == "f" and np.isfinite(array).all()
                else ("; y holds NaN or inf" if kind == "f" else "")
            )
        )
    return array


class ClassificationBanditEnv(CandidateSetEnv):
    """Guess the class of a row of a supervised dataset: one arm per class.

    ## Description

    The classification bandit of the deep contextual-bandit literature (Riquelme, Tucker
    and Snoek, "Deep Bayesian Bandits Showdown", ICLR 2018): each round draws a row of the
    dataset uniformly at random with replacement (from ``np_random``); its features are
    the context and its class is hidden. There is one arm per class; the agent is paid
    for naming the right class.

    The data is either given as arrays (``X``, ``y``) or named (``dataset=``, see
    :mod:`bandexa_gym.envs.catalogue`): ``"adult"``, ``"letter"``, ``"satimage"``,
    ``"pendigits"`` (UCI Machine Learning Repository; cite UCI and the donors listed
    there) and ``"mnist"``, ``"fashion_mnist"`` (flat 784-vectors). Named datasets are
    read from ``root`` > ``BANDEXA_DATA`` > the per-user cache, in ``<dir>/<name>/``;
    ``download=True`` fetches missing files into the cache (pinned sha256; MNIST with
    torchvision), as ``bandexa-data fetch <name>`` does. Missing files raise
    ``MissingDataError`` (a ``FileNotFoundError``) naming the file and that command, damaged
    ones (including an md5 mismatch where one is published) ``CorruptDataError``.

    Classes are encoded compactly in sorted order: arm ``k`` is the ``k``-th smallest
    distinct label, :attr:`class_names` ``[k]`` (satimage's labels {1, 2, 3, 4, 5, 7} are
    6 arms). Adult's categorical columns are one-hot encoded with ``?`` (missing) as a
    category of its own, after its 6 numeric columns (:attr:`feature_names`).

    Context standardization (``standardize``, on by default for tabular data, off for
    images): every numeric column is shifted and scaled to mean 0 and standard deviation
    1 over the rows in use (this split, or the given ``X``; a constant column is only
    shifted); one-hot columns are left as 0/1. The context is ``(x - feature_offset) /
    feature_scale``. Images without standardization are scaled to [0, 1].

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, (d,), float32)`` (images without
    standardization: ``Box(0, 1, (784,), float32)``); ``candidates``: the identity,
    ``Box(0, 1, (K, K), float32)``, row ``k`` the one-hot of class ``k``;
    ``action_mask``: all ones, ``Box(0, 1, (K,), int8)``.

    ## Action Space

    ``Discrete(K)``, ``K`` the number of classes: action ``k`` names class
    ``class_names[k]``.

    ## Rewards

    With true class ``c`` and action ``a``, the base reward is ``R[c, a]``: by default 1
    if ``a == c`` else 0, or ``reward_matrix[c, a]`` (classes in the compact order).

    - ``noise=None``: the reward is ``R[c, a]``.
    - ``noise="gaussian"``: ``R[c, a] + N(0, noise_level^2)``; expected ``R[c, a]``.
    - ``noise="bernoulli"``: a 0/1 reward, 1 with probability
      ``q = (1 - p) R[c, a] + p (1 - R[c, a])`` with ``p = noise_level`` (``R`` in [0, 1]
      is a success probability, and each outcome is flipped with probability ``p``);
      expected ``q``.

    ``info`` holds the oracle from the expected rewards of the true class:
    ``expected_reward``, ``best_expected_reward``, ``regret``, ``optimal_action``,
    ``expected_rewards``.

    ## Starting State and Episode End

    ``reset(seed=s)`` restarts the row stream from ``s``; ``reset()`` continues it.
    Rounds never terminate; the ids are registered without ``max_episode_steps``.

    ## Arguments

    ```python
    gym.make("Bandexa/Classification-v0", X=None, y=None, dataset=None, split=None,
             root=None, download=False, standardize=None, reward_matrix=None, noise=None,
             noise_level=None)
    ```

    - ``X``: features, (N, d) real numbers, finite; with ``y``.
    - ``y``: class labels, (N,) integers, bools or strings, at least 2 distinct.
    - ``dataset``: a catalogue name instead of ``X``/``y``.
    - ``split``: ``"train"`` (default) or ``"test"``, for ``dataset`` only.
    - ``root``: data folder searched first, for ``dataset`` only.
    - ``download``: fetch the dataset's files into the per-user cache when they are under
      neither ``root`` nor ``BANDEXA_DATA``, for ``dataset`` only.
    - ``standardize``: standardize numeric columns (``None``: yes for tabular data, no for
      images).
    - ``reward_matrix``: (K, K) finite rewards per (true class, action); in [0, 1] with
      Bernoulli noise.
    - ``noise``: ``None``, ``"gaussian"`` or ``"bernoulli"``.
    - ``noise_level``: Gaussian standard deviation (>= 0) or Bernoulli flip probability (in
      [0, 0.5]); default 0.1 when ``noise`` is set.

    ## Vector Environments

    The dataset is the problem, so the sub-envs of any vector env share it; sub-env ``i``
    (seed ``s + i``) draws its own rows.

    ## Version History

    - v0: Initial version.
    """

    def __init__(
        self,
        X: Any = None,
        y: Any = None,
        *,
        dataset: str | None = None,
        split: Literal["train", "test"] | None = None,
        root: str | os.PathLike[str] | None = None,
        download: bool = False,
        standardize: bool | None = None,
        reward_matrix: Any = None,
        noise: Noise | None = None,
        noise_level: float | None = None,
    ) -> None:
        data = self._load(X, y, dataset, split, root, download)
        self.dataset = dataset
        self.split = split if split is not None else ("train" if dataset is not None else None)
        self.feature_names = data.feature_names
        self._X = data.X
        classes, codes = np.unique(data.y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"y must hold at least 2 distinct classes, got {classes.size} "
                f"({classes.tolist()!r})"
            )
        self.class_names: tuple[Any, ...] = tuple(classes.tolist())
        self._codes = codes.astype(np.int64).reshape(-1)
        k = len(self.class_names)
        arguments = f"y with {k} distinct classes (one arm each)"
        check_array_size("the reward matrix", (k, k), np.float64, arguments)

        self.standardize = (
            not data.image if standardize is None else check_bool("standardize", standardize)
        )
        self.feature_offset, self.feature_scale = self._fit_scaling(data)
        self._noise: Noise | None = noise
        self._reward_base, self._expected, self._level = self._reward_model(
            reward_matrix, noise, noise_level, k
        )
        bounded = data.image and not self.standardize
        super().__init__(
            context_space=spaces.Box(
                0.0 if bounded else -np.inf,
                1.0 if bounded else np.inf,
                (data.X.shape[1],),
                np.float32,
            ),
            n_candidates=k,
            action_dim=k,
            candidate_low=0.0,
            candidate_high=1.0,
        )
        self._candidates = np.eye(k, dtype=np.float32)
        self._mask = np.ones(k, dtype=np.int8)

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def _load(
        X: Any,
        y: Any,
        dataset: str | None,
        split: str | None,
        root: str | os.PathLike[str] | None,
        download: bool = False,
    ) -> ClassificationData:
        if dataset is not None:
            if X is not None or y is not None:
                raise ValueError("pass either X and y, or dataset=, not both")
            if not isinstance(dataset, str) or dataset not in CATALOGUE:
                raise ValueError(f"dataset must be one of {list(CATALOGUE)}, got {dataset!r}")
            return load_classification_data(dataset, split or "train", root, download)  # type: ignore[arg-type]
        if split is not None or root is not None or download is not False:
            raise ValueError("split=, root= and download= apply to dataset=, not to X and y")
        if X is None or y is None:
            missing = "X" if X is None else "y"
            raise ValueError(
                f"{missing} is missing: pass features X (N, d) and labels y (N,), or "
                f"dataset= one of {list(CATALOGUE)}"
            )
        features = _check_features(X)
        labels = _check_labels(y, features.shape[0])
        features = np.array(features, copy=True)
        labels = np.array(labels, copy=True)
        features.setflags(write=False)
        labels.setflags(write=False)
        return ClassificationData(
            X=features,
            y=labels,
            numeric=np.ones(features.shape[1], dtype=bool),
            feature_names=None,
            image=False,
            files=(),
        )

    def _fit_scaling(self, data: ClassificationData) -> tuple[np.ndarray, np.ndarray]:
        d = data.X.shape[1]
        offset = np.zeros(d, dtype=np.float64)
        scale = np.ones(d, dtype=np.float64)
        if self.standardize:
            columns = np.flatnonzero(data.numeric)
            values = data.X[:, columns].astype(np.float64)
            std = values.std(axis=0)
            offset[columns] = values.mean(axis=0)
            scale[columns] = np.where(std > 0, std, 1.0)
        elif data.image:
            scale[:] = 255.0
        offset.setflags(write=False)
        scale.setflags(write=False)
        return offset, scale

    @staticmethod
    def _reward_model(
        reward_matrix: Any, noise: Noise | None, noise_level: float | None, k: int
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """(R, expected rewards, noise level) after validation; R and expected are (K, K)."""
        if noise not in (None, "gaussian", "bernoulli"):
            raise ValueError(f'noise must be None, "gaussian" or "bernoulli", got {noise!r}')
        if reward_matrix is None:
            base = np.eye(k, dtype=np.float64)
        else:
            try:
                base = np.array(reward_matrix, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"reward_matrix must be a ({k}, {k}) array of real numbers: {err}"
                ) from None
            if base.shape != (k, k) or not np.isfinite(base).all():
                raise ValueError(
                    f"reward_matrix must be a finite ({k}, {k}) array (true class x action, "
                    f"classes in sorted order), got shape {base.shape}"
                )
        if noise is None:
            if noise_level is not None:
                raise ValueError('noise_level applies with noise="gaussian" or "bernoulli"')
            expected, level = base, 0.0
        elif noise == "gaussian":
            level = _DEFAULT_NOISE_LEVEL if noise_level is None else noise_level
            level = check_nonnegative("noise_level (a standard deviation)", level)
            expected = base
        else:
            level = _DEFAULT_NOISE_LEVEL if noise_level is None else noise_level
            level = check_unit_interval("noise_level (a flip probability)", level, high=0.5)
            if ((base < 0) | (base > 1)).any():
                raise ValueError(
                    'reward_matrix entries must be in [0, 1] (probabilities) with noise="bernoulli"'
                )
            expected = (1.0 - level) * base + level * (1.0 - base)
        base = np.array(base)
        expected = np.array(expected)
        base.setflags(write=False)
        expected.setflags(write=False)
        return base, expected, level

    # -- properties -----------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """Number of classes (= arms)."""
        return len(self.class_names)

    @property
    def num_rows(self) -> int:
        """Number of rows the rounds are drawn from."""
        return int(self._X.shape[0])

    @property
    def expected_reward_matrix(self) -> np.ndarray:
        """Expected reward per (true class, action), shape (K, K), read-only."""
        return self._expected

    @property
    def noise(self) -> Noise | None:
        """The reward noise: ``None``, ``"gaussian"`` or ``"bernoulli"``."""
        return self._noise

    # -- hooks ----------------------------------------------------------------------------
    def _draw_round(self) -> Round:
        index = int(self.np_random.integers(self._X.shape[0]))
        label = int(self._codes[index])
        row = (self._X[index].astype(np.float64) - self.feature_offset) / self.feature_scale
        return Round(
            context=row.astype(np.float32),
            candidates=self._candidates,
            expected_rewards=self._expected[label],
            action_mask=self._mask,
            payload={"index": index, "label": label},
        )

    def _draw_reward(self, round_: Round, action: int) -> float:
        label = round_.payload["label"]
        if self._noise == "gaussian":
            return float(self._reward_base[label, action] + self.np_random.normal(0.0, self._level))
        if self._noise == "bernoulli":
            return float(self.np_random.random() < self._expected[label, action])
        return float(self._reward_base[label, action])
