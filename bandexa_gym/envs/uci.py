"""The UCI catalogue datasets as their own ids: Adult, Letter, Satimage, Pendigits.

Each class is :class:`~bandexa_gym.envs.classification.ClassificationBanditEnv` fixed to one
named dataset of :mod:`bandexa_gym.envs.catalogue` (UCI Machine Learning Repository, CC BY
4.0; cite UCI and the donors named below).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from bandexa_gym.envs.classification import ClassificationBanditEnv, Noise

__all__ = ["AdultBanditEnv", "LetterBanditEnv", "PendigitsBanditEnv", "SatimageBanditEnv"]


class _CatalogueBanditEnv(ClassificationBanditEnv):
    """A :class:`ClassificationBanditEnv` fixed to one named dataset."""

    dataset_name: str = ""

    def __init__(
        self,
        *,
        split: Literal["train", "test"] = "train",
        root: str | os.PathLike[str] | None = None,
        download: bool = False,
        standardize: bool | None = None,
        reward_matrix: Any = None,
        noise: Noise | None = None,
        noise_level: float | None = None,
    ) -> None:
        super().__init__(
            dataset=self.dataset_name,
            split=split,
            root=root,
            download=download,
            standardize=standardize,
            reward_matrix=reward_matrix,
            noise=noise,
            noise_level=noise_level,
        )


_CATALOGUE_DOC = """{title}

    ## Description

    ``Bandexa/Classification-v0`` with ``dataset="{name}"``: {description} Source: the UCI
    Machine Learning Repository (CC BY 4.0), {url}; donors: {donors}. Files in
    ``<BANDEXA_DATA>/{name}/`` (see :mod:`bandexa_gym.envs.catalogue`); ``download=True``
    (or ``bandexa-data fetch {name}``) fetches them into the per-user cache.

    ## Observation Space

    ``Dict`` with ``context``: ``Box(-inf, inf, ({d},), float32)``, the standardized
    row; ``candidates``: the ``({k}, {k})`` identity; ``action_mask``: all ones.

    ## Action Space

    ``Discrete({k})``: action ``j`` names class ``class_names[j]`` ({classes}).

    ## Rewards

    1 for the right class, else 0 (or ``reward_matrix``, with optional noise), as in
    :class:`ClassificationBanditEnv`.

    ## Arguments

    ```python
    gym.make("Bandexa/{id}-v0", split="train", root=None, download=False,
             standardize=None, reward_matrix=None, noise=None, noise_level=None)
    ```

    As for :class:`ClassificationBanditEnv`; ``split`` is ``"train"`` ({train} rows) or
    ``"test"`` ({test} rows).

    ## Version History

    - v0: Initial version.
    """


class AdultBanditEnv(_CatalogueBanditEnv):
    __doc__ = _CATALOGUE_DOC.format(
        title="Does a census respondent earn more than $50K a year? (UCI Adult)",
        name="adult",
        id="Adult",
        description=(
            "the 1994 US Census extract; 6 numeric columns (standardized by default) and 8 "
            "categorical ones, one-hot encoded, ``?`` its own category."
        ),
        url="https://archive.ics.uci.edu/dataset/2/adult",
        donors="Barry Becker and Ronny Kohavi (Kohavi, KDD 1996)",
        d=108,
        k=2,
        classes='``"<=50K"``, ``">50K"``',
        train="32,561",
        test="16,281",
    )
    dataset_name = "adult"


class LetterBanditEnv(_CatalogueBanditEnv):
    __doc__ = _CATALOGUE_DOC.format(
        title="Which capital letter is this? (UCI Letter Recognition)",
        name="letter",
        id="Letter",
        description="16 integer statistics of a distorted letter image in one of 20 fonts.",
        url="https://archive.ics.uci.edu/dataset/59/letter+recognition",
        donors="David J. Slate (Frey and Slate, Machine Learning 6(2), 1991)",
        d=16,
        k=26,
        classes='``"A"`` to ``"Z"``',
        train="the first 16,000",
        test="the last 4,000",
    )
    dataset_name = "letter"


class SatimageBanditEnv(_CatalogueBanditEnv):
    __doc__ = _CATALOGUE_DOC.format(
        title="Which soil or crop is under this pixel? (UCI Statlog Landsat Satellite)",
        name="satimage",
        id="Satimage",
        description=(
            "4 Landsat spectral bands of each pixel of a 3x3 neighbourhood; the class is "
            "the central pixel's (red soil, cotton crop, grey soil, damp grey soil, soil "
            "with vegetation stubble, very damp grey soil)."
        ),
        url="https://archive.ics.uci.edu/dataset/146/statlog+landsat+satellite",
        donors="Ashwin Srinivasan, University of Strathclyde",
        d=36,
        k=6,
        classes="1, 2, 3, 4, 5, 7: there is no class 6",
        train="4,435",
        test="2,000",
    )
    dataset_name = "satimage"


class PendigitsBanditEnv(_CatalogueBanditEnv):
    __doc__ = _CATALOGUE_DOC.format(
        title="Which digit did the pen write? (UCI Pen-Based Recognition of Handwritten Digits)",
        name="pendigits",
        id="Pendigits",
        description="8 resampled (x, y) pen positions of a handwritten digit, scaled to 0..100.",
        url="https://archive.ics.uci.edu/dataset/81/pen+based+recognition+of+handwritten+digits",
        donors="E. Alpaydin and Fevzi Alimoglu, Bogazici University",
        d=16,
        k=10,
        classes="0 to 9",
        train="7,494",
        test="3,498",
    )
    dataset_name = "pendigits"
