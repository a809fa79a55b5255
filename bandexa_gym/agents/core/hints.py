"""The performance hint an agent gives once per process when torch uses several CPU threads."""

from __future__ import annotations

import inspect
import os
import warnings

import torch

__all__ = ["PerformanceHint"]


class PerformanceHint(UserWarning):
    """A setting that makes an agent much slower than it needs to be (said once)."""


_THREADS_HINTED = False
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PACKAGE_DIR += os.sep


def _hint_threads(device: torch.device) -> None:
    """Once per process: say that several torch CPU threads slow small models down.

    The hint names its category once and points at the caller's line (the first frame
    outside this package, e.g. the user's ``make_agent`` call), not at library internals.
    """
    global _THREADS_HINTED
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1 or _THREADS_HINTED:
        return
    _THREADS_HINTED = True
    level, frame = 1, inspect.currentframe()
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    warnings.warn(
        f"torch uses {threads} CPU threads; bandit agents run small models whose operations "
        "are too short to split, and on a busy machine several threads made neural_linear_ts "
        "10-40x slower. Call torch.set_num_threads(1) first (bandexa-bench, the examples and "
        "notebooks do). Said once per process; warnings.filterwarnings('ignore', "
        "message='torch uses') silences it",
        PerformanceHint,
        stacklevel=level,
    )
