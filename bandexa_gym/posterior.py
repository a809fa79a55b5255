"""Re-export of the Bayesian heads (:mod:`bandexa_gym.heads`), kept for old import paths."""

from bandexa_gym.heads.conjugate import (
    accumulate_statistics,
    grown_state,
    load_rebased,
    rebase_head_state,
)
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig
from bandexa_gym.heads.numerics import NumericalWarning, safe_cholesky
from bandexa_gym.heads.protocol import HEAD_FIELDS, Head, HeadConfig, score, score_dtype

__all__ = [
    "HEAD_FIELDS",
    "BayesianLinearRegression",
    "Head",
    "HeadConfig",
    "LaplaceLogisticRegression",
    "LogisticHeadConfig",
    "NumericalWarning",
    "accumulate_statistics",
    "grown_state",
    "load_rebased",
    "rebase_head_state",
    "safe_cholesky",
    "score",
    "score_dtype",
]
