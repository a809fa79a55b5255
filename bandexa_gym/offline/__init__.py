"""Logged data: logs, datasets, off-policy estimators, and agents evaluated on or warm-started
from logs.

* :mod:`~bandexa_gym.offline.logs` -- the Parquet log format, :class:`LogBatch`, the reader;
* :mod:`~bandexa_gym.offline.log_writer` -- :class:`LogWriter` and the folder lock it holds;
* :mod:`~bandexa_gym.offline.datasets` -- the Open Bandit Dataset reader (``open_bandit``);
* :mod:`~bandexa_gym.offline.checks` -- argument checks, :class:`Estimate`, bootstrap intervals;
* :mod:`~bandexa_gym.offline.estimators` -- IPS, SNIPS, the direct method, doubly robust;
* :mod:`~bandexa_gym.offline.tuned` -- switch-DR and DR-OS (tuned weights);
* :mod:`~bandexa_gym.offline.evaluate` -- replay, the on-policy value, every estimator at once;
* :mod:`~bandexa_gym.offline.policy` -- agents meet logs: their probabilities and reward
  predictions on a log, :func:`evaluate_policy`, :func:`warm_start`;
* :mod:`~bandexa_gym.offline.cli` -- the ``bandexa-ope`` command.

``bandexa_gym.ope``, ``bandexa_gym.logs``, ``bandexa_gym.datasets`` and
``bandexa_gym.ope_cli`` re-export these under their old paths; importing this package, the
estimators, the logs or the datasets imports neither torch nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "evaluate_policy",
    "fit_reward_model",
    "log_space",
    "policy_probabilities",
    "reward_predictions",
    "subset_log",
    "warm_start",
]


def __getattr__(name: str) -> Any:
    """The agent-facing functions, imported on first use: the estimators need no torch."""
    if name in __all__:
        return getattr(importlib.import_module("bandexa_gym.offline.policy"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
