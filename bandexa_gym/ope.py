"""Re-export of the estimators of :mod:`bandexa_gym.offline`, kept for old import paths."""

from bandexa_gym.offline.checks import (
    DEFAULT_MIN_PROPENSITY,
    MAX_BOOTSTRAP,
    MAX_BOOTSTRAP_WORK,
    ClippedPropensityWarning,
    Estimate,
)
from bandexa_gym.offline.estimators import RewardModel, direct_method, doubly_robust, ips, snips
from bandexa_gym.offline.evaluate import (
    ESTIMATORS,
    OPT_IN_ESTIMATORS,
    evaluate,
    on_policy_value,
    replay,
)
from bandexa_gym.offline.tuned import dr_os, switch_dr

__all__ = [
    "DEFAULT_MIN_PROPENSITY",
    "ESTIMATORS",
    "MAX_BOOTSTRAP",
    "MAX_BOOTSTRAP_WORK",
    "OPT_IN_ESTIMATORS",
    "RewardModel",
    "ClippedPropensityWarning",
    "Estimate",
    "direct_method",
    "doubly_robust",
    "dr_os",
    "evaluate",
    "ips",
    "on_policy_value",
    "replay",
    "snips",
    "switch_dr",
]
