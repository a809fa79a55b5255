"""Real logged bandit data: the Open Bandit Dataset (ZOZOTOWN fashion recommendations).

Saito, Aihara, Matsutani and Narita, "Open Bandit Dataset and Pipeline: Towards Realistic
and Reproducible Off-Policy Evaluation", arXiv:2008.07146 (cite it when you use the data).

Each impression shows one item (the action) at one of three positions of a recommendation
widget; the reward is a click. Two logging policies ran at the same time, a uniform-random
one (``random``) and Bernoulli Thompson sampling (``bts``), on three campaigns (``all``:
80 items, ``men``: 34, ``women``: 46), and every row carries the probability with which the
logging policy showed that item at that position. The small sample (10,000 rows per
policy and campaign, as in the ``obp`` package and st-tech/zr-obp's ``obd/`` folder) is read
from::

    <root>/open_bandit_dataset/<behavior_policy>/<campaign>/<campaign>.csv[.gz]
    <root>/open_bandit_dataset/<behavior_policy>/<campaign>/item_context.csv[.gz]

with ``root`` = the ``root`` argument, else ``$BANDEXA_DATA``, else the per-user cache
(``$BANDEXA_CACHE``, default ``~/.cache/bandexa_gym``). ``download=True`` fetches the two files
a campaign needs from st-tech/zr-obp into the cache, checking their pinned sha256
(:mod:`bandexa_gym.envs.downloads`); ``bandexa-data fetch open_bandit`` fetches the whole
sample. A missing file raises a
:class:`~bandexa_gym.envs.datafiles.MissingDataError` (a ``FileNotFoundError``) naming that
command. A ``.gz`` file
is decompressed in memory, stopping past
:data:`bandexa_gym.envs.datafiles.MAX_DECOMPRESSED_BYTES` (64 MiB; the sample's largest file
is 5 MB). A damaged file (gzip stream, text encoding, a value that is not a finite number)
raises a :class:`~bandexa_gym.envs.datafiles.CorruptDataError` (a ``ValueError``) naming it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from bandexa_gym.envs.core import check_bool
from bandexa_gym.envs.datafiles import CorruptDataError, read_bytes
from bandexa_gym.envs.downloads import find_or_fetch

__all__ = ["OpenBanditData", "open_bandit"]

Campaign = Literal["all", "men", "women"]
BehaviorPolicy = Literal["random", "bts"]

CAMPAIGNS = ("all", "men", "women")
BEHAVIOR_POLICIES = ("random", "bts")
N_POSITIONS = 3
FOLDER = "open_bandit_dataset"

#: MD5 of the uncompressed files, where the shared data README publishes one.
KNOWN_MD5: dict[tuple[str, str], str] = {
    ("random", "all"): "9429b38982c5f978c876c478d049476e",
    ("bts", "all"): "10d5566f31d22e251c4088904121bcfc",
}

_HOW_TO_GET = (
    "run `bandexa-data fetch open_bandit` (or pass download=True), or copy the Open Bandit "
    "Dataset sample (the obd/ folder of github.com/st-tech/zr-obp, or the one inside the obp "
    "package; the full data is at https://research.zozo.com/data.html) to "
    "<root>/open_bandit_dataset/<behavior_policy>/<campaign>/ (.csv or .csv.gz), and pass "
    "root= or set BANDEXA_DATA to <root>"
)


@dataclass(frozen=True)
class OpenBanditData:
    """One logged campaign of the Open Bandit Dataset, as numpy arrays.

    Attributes:
        campaign: ``"all"``, ``"men"`` or ``"women"``.
        behavior_policy: The logging policy, ``"random"`` or ``"bts"``.
        actions: Item shown per impression (the action), int64 (n,), in [0, n_actions).
        positions: Where it was shown, int64 (n,), 0-based: 0 left, 1 centre, 2 right
            (the CSV's 1, 2, 3).
        rewards: Click indicator, float64 (n,), 0 or 1.
        propensities: Probability that the logging policy showed that item at that
            position, float64 (n,).
        timestamps: Impression times, ``datetime64[us]`` (n,), UTC.
        user_features: The four hashed user features as integer codes, int64 (n, 4): code j
            of column c stands for ``user_feature_categories[c][j]``.
        user_feature_categories: Per column, the distinct hashes of this file, sorted
            (codes are per file: map through the hashes to compare files).
        user_item_affinity: Per impression, the user's affinity to every item (from past
            clicks), float64 (n, n_actions).
        item_context: Item features, float64 (n_actions, 1 + Σ cardinalities):
            ``item_feature_0`` (numeric), then one-hot columns of the hashed
            ``item_feature_1..3``, in the order of ``item_feature_names``.
        item_feature_names: Names of the ``item_context`` columns (``"item_feature_1=<hash>"``
            for one-hot columns).
        n_actions: Number of items in the campaign.
        n_positions: Number of positions (3).
    """

    campaign: str
    behavior_policy: str
    actions: np.ndarray
    positions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    timestamps: np.ndarray
    user_features: np.ndarray
    user_feature_categories: tuple[tuple[str, ...], ...]
    user_item_affinity: np.ndarray
    item_context: np.ndarray
    item_feature_names: tuple[str, ...]
    n_actions: int
    n_positions: int = N_POSITIONS

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def click_rate(self) -> float:
        """Mean click per impression: the logging policy's on-policy value."""
        return float(self.rewards.mean())

    def context(self, form: str = "full") -> np.ndarray:
        """A context matrix per impression, built from the user features.

        ``form="full"`` (the default) concatenates the one-hot encoding of every level of
        the four user features (``Σ cardinalities`` columns: 24 on the ``all`` sample) and
        the user-item affinities (``n_actions`` columns): 104 columns on ``all``.
        ``form="obp"`` is the Open Bandit Pipeline's own user context
        (``pd.get_dummies(user_features, drop_first=True)``): the one-hot user features
        with each feature's first level (its smallest hash) dropped and no affinities,
        ``Σ (cardinality − 1)`` columns (20 on ``all``).

        Args:
            form: ``"full"`` or ``"obp"``.

        Returns:
            float64 (n, Σ cardinalities + n_actions) for ``"full"``, (n, Σ (cardinality − 1))
            for ``"obp"``.
        """
        if form not in ("full", "obp"):
            raise ValueError(f"form: expected 'full' or 'obp', got {form!r}")
        drop = 1 if form == "obp" else 0
        blocks = [
            np.eye(len(cats))[self.user_features[:, c], drop:]
            for c, cats in enumerate(self.user_feature_categories)
        ]
        if form == "full":
            blocks.append(self.user_item_affinity)
        return np.concatenate(blocks, axis=1)

    def empirical_policy(self) -> np.ndarray:
        """The logging policy's empirical action frequencies given the position.

        Returns:
            float64 (n_positions, n_actions): row k is the share of the impressions at
            position k that showed each item (a row of zeros for an unused position).
        """
        counts = np.zeros((self.n_positions, self.n_actions))
        np.add.at(counts, (self.positions, self.actions), 1.0)
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _find(
    root: str | os.PathLike[str] | None, policy: str, campaign: str, name: str, download: bool
) -> Path:
    return find_or_fetch(
        "open_bandit",
        f"{FOLDER}/{policy}/{campaign}/{name}",
        root,
        download=download,
        how="The sample is the obd/ folder of github.com/st-tech/zr-obp (and of the obp "
        "package); the full data is at https://research.zozo.com/data.html.",
    )


def _read_text(path: Path, expected_md5: str | None) -> str:
    raw = read_bytes(path)  # bounded decompression; damage is a CorruptDataError
    if expected_md5 is not None:
        got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if got != expected_md5:
            raise CorruptDataError(
                path,
                f"md5 of the uncompressed file is {got}, expected {expected_md5}; the file is "
                "damaged or another version",
                f"{_HOW_TO_GET}, or pass verify=False",
            )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptDataError(path, f"not UTF-8 text ({err})", _HOW_TO_GET) from None


def _rows(path: Path, text: str, required: list[str]) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file; expected a CSV with a header row") from None
    except csv.Error as err:
        raise CorruptDataError(path, f"not a CSV file ({err})", _HOW_TO_GET) from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; the header is {header[:12]}...")
    try:
        rows = [row for row in reader if row]
    except csv.Error as err:
        raise CorruptDataError(
            path, f"not a CSV file at line {reader.line_num} ({err})", _HOW_TO_GET
        ) from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    bad = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if bad is not None:
        raise ValueError(
            f"{path}: row {bad + 1} has {len(rows[bad])} fields, the header {len(header)}"
        )
    return header, rows


def _column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    j = header.index(name)
    return [row[j] for row in rows]


def _numbers(path: Path, values: list[str] | list[list[str]], name: str, dtype: type) -> np.ndarray:
    """``values`` as finite numbers of ``dtype``; a bad value is a CorruptDataError naming it."""
    try:
        arr = np.asarray(values, dtype=dtype)
    except ValueError as err:
        raise CorruptDataError(
            path, f"{name}: expected numbers, got a value that is not one ({err})", _HOW_TO_GET
        ) from None
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.argmin(finite.reshape(len(arr), -1).all(axis=1)))
        problem = f"{name}: data row {row + 1} holds NaN or inf; expected finite numbers"
        raise CorruptDataError(path, problem, _HOW_TO_GET)
    return arr


def _codes(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    cats, codes = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64), tuple(str(c) for c in cats)


def _timestamp(text: str) -> np.datetime64:
    t = datetime.fromisoformat(text)
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(t, "us")


def _item_context(path: Path, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
    names = ["item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3"]
    header, rows = _rows(path, text, names)
    ids = _numbers(path, _column(header, rows, "item_id"), "item_id", np.int64)
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise ValueError(f"{path}: item_id must be 0 .. n_items - 1, each once")
    order = np.argsort(ids)
    feature_0 = _column(header, rows, "item_feature_0")
    blocks = [_numbers(path, feature_0, "item_feature_0", np.float64)[:, None]]
    feature_names = ["item_feature_0"]
    for c in (1, 2, 3):
        codes, cats = _codes(_column(header, rows, f"item_feature_{c}"))
        blocks.append(np.eye(len(cats))[codes])
        feature_names += [f"item_feature_{c}={h}" for h in cats]
    return np.concatenate(blocks, axis=1)[order], tuple(feature_names)


def open_bandit(
    campaign: Campaign = "all",
    behavior_policy: BehaviorPolicy = "random",
    root: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    download: bool = False,
) -> OpenBanditData:
    """Read one campaign of the Open Bandit Dataset sample logged by one policy.

    Args:
        campaign: ``"all"`` (80 items), ``"men"`` (34) or ``"women"`` (46).
        behavior_policy: ``"random"`` (uniform) or ``"bts"`` (Bernoulli Thompson sampling).
        root: Folder holding ``open_bandit_dataset/``; default ``$BANDEXA_DATA``, then the
            per-user cache.
        verify: Check the MD5 of files whose checksum is published (``KNOWN_MD5``).
        download: Fetch the campaign's two files from st-tech/zr-obp into the per-user cache
            (pinned sha256) when they are under neither ``root`` nor ``$BANDEXA_DATA``.

    Returns:
        The :class:`OpenBanditData`.

    Raises:
        ValueError: An unknown campaign or policy, or a malformed file.
        CorruptDataError: A damaged file (gzip stream, size past the decompression bound,
            checksum, text encoding, a value that is not a finite number), named; a
            ``ValueError`` too.
        MissingDataError: A file is missing (a ``FileNotFoundError`` whose message names
            ``bandexa-data fetch open_bandit``), or could not be fetched.
    """
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign: expected one of {CAMPAIGNS}, got {campaign!r}")
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise ValueError(
            f"behavior_policy: expected one of {BEHAVIOR_POLICIES}, got {behavior_policy!r}"
        )
    download = check_bool("download", download)
    log_path = _find(root, behavior_policy, campaign, f"{campaign}.csv", download)
    item_path = _find(root, behavior_policy, campaign, "item_context.csv", download)
    md5 = KNOWN_MD5.get((behavior_policy, campaign)) if verify else None

    item_context, item_names = _item_context(item_path, _read_text(item_path, None))
    n_actions = item_context.shape[0]

    user_cols = [f"user_feature_{c}" for c in range(4)]
    required = ["timestamp", "item_id", "position", "click", "propensity_score", *user_cols]
    header, rows = _rows(log_path, _read_text(log_path, md5), required)
    affinity_cols = [f"user-item_affinity_{i}" for i in range(n_actions)]
    missing = [c for c in affinity_cols if c not in header]
    if missing:
        raise ValueError(
            f"{log_path}: {len(missing)} of the {n_actions} user-item_affinity_<item> columns "
            f"are missing (first {missing[0]}); item_context.csv lists {n_actions} items"
        )

    number = {c: np.float64 for c in ("click", "propensity_score")}
    actions, positions, rewards, propensities = (
        _numbers(log_path, _column(header, rows, c), c, number.get(c, np.int64))
        for c in ("item_id", "position", "click", "propensity_score")
    )
    positions = positions - 1
    if ((actions < 0) | (actions >= n_actions)).any():
        raise ValueError(f"{log_path}: item_id outside [0, {n_actions})")
    if ((positions < 0) | (positions >= N_POSITIONS)).any():
        raise ValueError(f"{log_path}: position outside 1..{N_POSITIONS}")
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise ValueError(f"{log_path}: click must be 0 or 1")
    if not ((propensities > 0) & (propensities <= 1)).all():
        raise ValueError(f"{log_path}: propensity_score outside (0, 1]")

    user = [_codes(_column(header, rows, c)) for c in user_cols]
    idx = [header.index(c) for c in affinity_cols]
    affinity = _numbers(
        log_path, [[row[j] for j in idx] for row in rows], "user-item_affinity", np.float64
    )
    return OpenBanditData(
        campaign=campaign,
        behavior_policy=behavior_policy,
        actions=actions,
        positions=positions,
        rewards=rewards,
        propensities=propensities,
        timestamps=np.asarray(
            [_timestamp(t) for t in _column(header, rows, "timestamp")], dtype="datetime64[us]"
        ),
        user_features=np.stack([codes for codes, _ in user], axis=1),
        user_feature_categories=tuple(cats for _, cats in user),
        user_item_affinity=affinity,
        item_context=item_context,
        item_feature_names=item_names,
        n_actions=n_actions,
    )
