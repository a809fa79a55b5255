"""What the generic env tests need to know about the registered ids."""

from __future__ import annotations

import os

import pytest

#: Arguments an id needs to build in the generic tests (the others build bare).
ENV_KWARGS: dict[str, dict[str, object]] = {
    "Bandexa/Classification-v0": {"dataset": "satimage"},
}

#: Ids that read the tabular catalogue from BANDEXA_DATA.
CATALOGUE_IDS = (
    "Bandexa/Adult-v0",
    "Bandexa/Letter-v0",
    "Bandexa/Satimage-v0",
    "Bandexa/Pendigits-v0",
    "Bandexa/Classification-v0",
)


def skip_missing_data_outside_ci(err: FileNotFoundError) -> None:
    """Skip for absent data on a developer machine; in CI (``$CI`` set) the data must be there.

    Args:
        err: The error that reported the missing file.

    Raises:
        FileNotFoundError: ``err`` again when ``$CI`` is set.
    """
    if os.environ.get("CI"):
        raise err
    pytest.skip(f"data absent (set BANDEXA_DATA; CI has it): {err}")
