"""The named datasets of ``Bandexa/Classification-v0``: readers, checksums and citations.

Tabular datasets come from the UCI Machine Learning Repository (CC BY 4.0) and are read
from ``<data root>/<name>/`` (lookup: ``root=`` > ``BANDEXA_DATA`` > the per-user cache;
uncompressed or ``.gz``). ``bandexa-data fetch <name>``, or ``download=True``, fetches them
from UCI into the per-user cache with pinned sha256 hashes
(:mod:`bandexa_gym.envs.downloads`). Where the project's data README lists the md5 of the
uncompressed file (Adult, Letter), it is verified once per process and file version.

=================  ==============================  ===============  =========================
name               files (train / test)            rows             classes
=================  ==============================  ===============  =========================
``adult``          ``adult.data`` / ``adult.test``  32,561 / 16,281  ``<=50K``, ``>50K``
``letter``         ``letter-recognition.data``     16,000 / 4,000   ``A`` ... ``Z``
``satimage``       ``sat.trn`` / ``sat.tst``       4,435 / 2,000    1, 2, 3, 4, 5, 7
``pendigits``      ``pendigits.tra`` / ``.tes``    7,494 / 3,498    0 ... 9
``mnist``          MNIST IDX files                 60,000 / 10,000  0 ... 9
``fashion_mnist``  Fashion-MNIST IDX files         60,000 / 10,000  0 ... 9
=================  ==============================  ===============  =========================

Letter has one file: its documentation trains on the first 16,000 rows and tests on the
last 4,000, and so do the splits here. MNIST and Fashion-MNIST are found as by
:func:`bandexa_gym.envs.mnist.load_image_split` and served as flat 784-vectors.

Citations (UCI Machine Learning Repository, https://archive.ics.uci.edu, and the donors):

- Adult: Barry Becker and Ronny Kohavi (1996), extracted from the 1994 US Census database;
  R. Kohavi, "Scaling Up the Accuracy of Naive-Bayes Classifiers: a Decision-Tree
  Hybrid", KDD 1996. https://archive.ics.uci.edu/dataset/2/adult
- Letter Recognition: David J. Slate (1991); P. W. Frey and D. J. Slate, "Letter
  Recognition Using Holland-style Adaptive Classifiers", Machine Learning 6(2), 1991.
  https://archive.ics.uci.edu/dataset/59/letter+recognition
- Statlog (Landsat Satellite): Ashwin Srinivasan, University of Strathclyde; Landsat MSS
  data from NASA via the Australian Centre for Remote Sensing.
  https://archive.ics.uci.edu/dataset/146/statlog+landsat+satellite
- Pen-Based Recognition of Handwritten Digits: E. Alpaydin and Fevzi Alimoglu, Bogazici
  University (1998).
  https://archive.ics.uci.edu/dataset/81/pen+based+recognition+of+handwritten+digits
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bandexa_gym.envs.core import check_bool
from bandexa_gym.envs.datafiles import CorruptDataError, file_key, read_bytes, verify_md5
from bandexa_gym.envs.downloads import find_or_fetch

__all__ = ["CATALOGUE", "ClassificationData", "load_classification_data"]

Split = Literal["train", "test"]

#: Named datasets, in the order of the table above.
CATALOGUE: tuple[str, ...] = ("adult", "letter", "satimage", "pendigits", "mnist", "fashion_mnist")


@dataclass(frozen=True)
class ClassificationData:
    """One split of a named dataset.

    Attributes:
        X: Features, shape (N, d), read-only: float32 for tabular data, uint8 pixels for
            images.
        y: Class labels as in the source, shape (N,), read-only (str or int64).
        numeric: Columns that context standardization applies to, shape (d,), bool
            (False for one-hot columns).
        feature_names: Name of each column (``None`` for images).
        image: Whether the rows are 28x28 images (pixels in 0..255).
        files: The files read.
    """

    X: np.ndarray
    y: np.ndarray
    numeric: np.ndarray
    feature_names: tuple[str, ...] | None
    image: bool
    files: tuple[Path, ...]


# -- Adult --------------------------------------------------------------------------------
_ADULT_NUMERIC = {
    0: "age",
    2: "fnlwgt",
    4: "education-num",
    10: "capital-gain",
    11: "capital-loss",
    12: "hours-per-week",
}
# Categories as listed in adult.names; "?" (a missing value) is a category of its own in
# the three columns where the data has it.
_ADULT_CATEGORIES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: (
        "workclass",
        (
            "Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov",
            "State-gov", "Without-pay", "Never-worked", "?",
        ),
    ),
    3: (
        "education",
        (
            "Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm",
            "Assoc-voc", "9th", "7th-8th", "12th", "Masters", "1st-4th", "10th", "Doctorate",
            "5th-6th", "Preschool",
        ),
    ),
    5: (
        "marital-status",
        (
            "Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
            "Married-spouse-absent", "Married-AF-spouse",
        ),
    ),
    6: (
        "occupation",
        (
            "Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial",
            "Prof-specialty", "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical",
            "Farming-fishing", "Transport-moving", "Priv-house-serv", "Protective-serv",
            "Armed-Forces", "?",
        ),
    ),
    7: (
        "relationship",
        ("Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried"),
    ),
    8: ("race", ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black")),
    9: ("sex", ("Female", "Male")),
    13: (
        "native-country",
        (
            "United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
            "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China", "Cuba",
            "Iran", "Honduras", "Philippines", "Italy", "Poland", "Jamaica", "Vietnam",
            "Mexico", "Portugal", "Ireland", "France", "Dominican-Republic", "Laos", "Ecuador",
            "Taiwan", "Haiti", "Columbia", "Hungary", "Guatemala", "Nicaragua", "Scotland",
            "Thailand", "Yugoslavia", "El-Salvador", "Trinadad&Tobago", "Peru", "Hong",
            "Holand-Netherlands", "?",
        ),
    ),
}  # fmt: skip
_ADULT_LABELS = ("<=50K", ">50K")

_LETTER_FEATURES = (
    "x-box", "y-box", "width", "high", "onpix", "x-bar", "y-bar", "x2bar", "y2bar", "xybar",
    "x2ybr", "xy2br", "x-ege", "xegvy", "y-ege", "yegvx",
)  # fmt: skip


def _rows(text: str) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based line numbers."""
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _bad_line(path: Path, number: int, problem: str) -> CorruptDataError:
    return CorruptDataError(
        path,
        f"line {number}: {problem}",
        f"replace {path} with the original file from the UCI Machine Learning Repository",
    )


def _parse_adult(text: str, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Adult rows -> numeric columns then one-hot blocks; labels without a trailing '.'."""
    names = list(_ADULT_NUMERIC.values())
    offsets: dict[int, dict[str, int]] = {}
    width = len(_ADULT_NUMERIC)
    for column, (name, categories) in _ADULT_CATEGORIES.items():
        offsets[column] = {value: width + j for j, value in enumerate(categories)}
        names += [f"{name}={value}" for value in categories]
        width += len(categories)
    rows = [(i, line) for i, line in _rows(text) if not line.startswith("|")]
    X = np.zeros((len(rows), width), dtype=np.float32)
    y = []
    for r, (number, line) in enumerate(rows):
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 15:
            raise _bad_line(path, number, f"expected 15 comma-separated fields, got {len(fields)}")
        try:
            X[r, : len(_ADULT_NUMERIC)] = [float(fields[c]) for c in _ADULT_NUMERIC]
        except ValueError as err:
            raise _bad_line(path, number, f"a numeric field is not a number ({err})") from None
        for column, lookup in offsets.items():
            index = lookup.get(fields[column])
            if index is None:
                name = _ADULT_CATEGORIES[column][0]
                raise _bad_line(path, number, f"unknown {name} {fields[column]!r}")
            X[r, index] = 1.0
        label = fields[14].rstrip(".")  # the test file ends its labels with "."
        if label not in _ADULT_LABELS:
            raise _bad_line(path, number, f"label {fields[14]!r} is not one of {_ADULT_LABELS}")
        y.append(label)
    return X, np.array(y), tuple(names)


def _parse_table(
    text: str,
    path: Path,
    *,
    columns: int,
    label_first: bool,
    separator: str | None,
    int_labels: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``columns`` numbers (one of them the label), split by ``separator``."""
    rows = _rows(text)
    X = np.zeros((len(rows), columns - 1), dtype=np.float32)
    y: list[str | int] = []
    for r, (number, line) in enumerate(rows):
        fields = [field.strip() for field in line.split(separator)]
        if len(fields) != columns:
            raise _bad_line(path, number, f"expected {columns} fields, got {len(fields)}")
        label, values = (fields[0], fields[1:]) if label_first else (fields[-1], fields[:-1])
        try:
            X[r] = [float(value) for value in values]
            y.append(int(label) if int_labels else label)
        except ValueError as err:
            raise _bad_line(path, number, f"not a number ({err})") from None
    return X, np.array(y, dtype=np.int64 if int_labels else None)


@dataclass(frozen=True)
class _Spec:
    folder: str
    files: dict[str, str]  # split -> file name
    parse: Callable[[str, Path], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    md5: dict[str, str]  # file name -> md5 of the uncompressed file
    url: str
    rows: dict[str, slice] | None = None  # split -> rows of a single file


def _letter(text: str, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    X, y = _parse_table(text, path, columns=17, label_first=True, separator=",", int_labels=False)
    return X, y, _LETTER_FEATURES


def _satimage(text: str, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    X, y = _parse_table(text, path, columns=37, label_first=False, separator=None, int_labels=True)
    # Four spectral bands of each pixel of a 3x3 neighbourhood, pixel by pixel.
    names = tuple(f"pixel{p}_band{b}" for p in range(1, 10) for b in range(1, 5))
    return X, y, names


def _pendigits(text: str, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    X, y = _parse_table(text, path, columns=17, label_first=False, separator=",", int_labels=True)
    names = tuple(f"{axis}{i}" for i in range(1, 9) for axis in ("x", "y"))
    return X, y, names


_SPECS: dict[str, _Spec] = {
    "adult": _Spec(
        folder="adult",
        files={"train": "adult.data", "test": "adult.test"},
        parse=_parse_adult,
        md5={
            "adult.data": "5d7c39d7b8804f071cdd1f2a7c460872",
            "adult.test": "35238206dfdf7f1fe215bbb874adecdc",
        },
        url="https://archive.ics.uci.edu/dataset/2/adult",
    ),
    "letter": _Spec(
        folder="letter",
        files={"train": "letter-recognition.data", "test": "letter-recognition.data"},
        parse=_letter,
        md5={"letter-recognition.data": "6a2d740def5d13ea6096272546f6d41e"},
        url="https://archive.ics.uci.edu/dataset/59/letter+recognition",
        rows={"train": slice(0, 16_000), "test": slice(16_000, None)},
    ),
    "satimage": _Spec(
        folder="satimage",
        files={"train": "sat.trn", "test": "sat.tst"},
        parse=_satimage,
        md5={},
        url="https://archive.ics.uci.edu/dataset/146/statlog+landsat+satellite",
    ),
    "pendigits": _Spec(
        folder="pendigits",
        files={"train": "pendigits.tra", "test": "pendigits.tes"},
        parse=_pendigits,
        md5={},
        url="https://archive.ics.uci.edu/dataset/81/pen+based+recognition+of+handwritten+digits",
    ),
}


@functools.lru_cache(maxsize=16)
def _read_table(
    name: str, key: tuple[str, int, int], source: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    # Keyed on (path, size, mtime): a changed file is read (and verified) again.
    spec = _SPECS[name]
    path = Path(source)
    content = read_bytes(path)
    expected = spec.md5.get(path.name.removesuffix(".gz"))
    if expected is not None:
        verify_md5(path, content, expected)
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as err:
        raise CorruptDataError(
            path, f"not a text file ({err})", f"replace {path} with the original file"
        ) from None
    X, y, names = spec.parse(text, path)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, names


def _find(name: str, filename: str, root: str | os.PathLike[str] | None, download: bool) -> Path:
    spec = _SPECS[name]
    return find_or_fetch(
        name,
        f"{spec.folder}/{filename}",
        root,
        download=download,
        how=f"The dataset is published by the UCI Machine Learning Repository at {spec.url}.",
    )


def load_classification_data(
    name: str,
    split: Split = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> ClassificationData:
    """Read one split of a named dataset (once per process and file version).

    Args:
        name: One of :data:`CATALOGUE`.
        split: ``"train"`` or ``"test"``.
        root: A data folder searched before ``BANDEXA_DATA`` and the cache.
        download: Fetch a tabular dataset's file into the per-user cache (pinned sha256,
            :mod:`bandexa_gym.envs.downloads`) when it is under neither ``root`` nor
            ``BANDEXA_DATA``; MNIST and Fashion-MNIST download with torchvision.

    Returns:
        The split, with read-only arrays shared by every caller.

    Raises:
        ValueError: Unknown ``name`` or ``split``.
        MissingDataError: A file is missing (a ``FileNotFoundError`` naming it and
            ``bandexa-data fetch <name>``), or could not be fetched.
        CorruptDataError: A file is truncated, damaged or fails its md5 check, or a fetched
            file its sha256.
    """
    if split not in ("train", "test"):
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    download = check_bool("download", download)
    if name in ("mnist", "fashion_mnist"):
        from bandexa_gym.envs.mnist import load_image_split

        images, labels = load_image_split(
            "MNIST" if name == "mnist" else "FashionMNIST", split, root, download
        )
        return ClassificationData(
            X=images.reshape(len(images), -1),
            y=labels,
            numeric=np.ones(images.shape[1] * images.shape[2], dtype=bool),
            feature_names=None,
            image=True,
            files=(),
        )
    if name not in _SPECS:
        raise ValueError(f"dataset must be one of {list(CATALOGUE)}, got {name!r}")
    spec = _SPECS[name]
    path = _find(name, spec.files[split], root, download)
    X, y, names = _read_table(name, file_key(path), str(path))
    if spec.rows is not None:
        X, y = X[spec.rows[split]], y[spec.rows[split]]
    numeric = np.array(["=" not in n for n in names], dtype=bool)  # one-hot: "column=value"
    return ClassificationData(
        X=X, y=y, numeric=numeric, feature_names=names, image=False, files=(path,)
    )
