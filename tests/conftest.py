"""Suite-wide set-up: every test sees the shared data and a throw-away cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests run tiny models: per-op overhead dominates, and one thread avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bandexa_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throw-away cache folder for the session (decompressed .gz files land here)."""
    return tmp_path_factory.mktemp("bandexa_cache")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$BANDEXA_DATA`` made absolute, or ``<repo>/../shared/data`` when unset."""
    return Path(os.environ.get("BANDEXA_DATA") or DEFAULT_DATA).expanduser().resolve()


@pytest.fixture(autouse=True)
def _bandexa_env_vars(
    monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path, bandexa_cache_dir: Path
) -> None:
    """Point BANDEXA_DATA at the shared data (absolute) and BANDEXA_CACHE at a temp dir.

    BANDEXA_DATA_URL points at the shared data too, so that a fetch (``download=True``,
    ``bandexa-data fetch``, the bench's fetch on first use) copies from there and never
    downloads; where the folder is absent such a fetch fails at once.
    """
    monkeypatch.setenv("BANDEXA_DATA", str(shared_data_dir))
    monkeypatch.setenv("BANDEXA_CACHE", str(bandexa_cache_dir))
    monkeypatch.setenv("BANDEXA_DATA_URL", shared_data_dir.as_uri())
