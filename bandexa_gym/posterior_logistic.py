"""Re-export of :mod:`bandexa_gym.heads.logistic`, kept for old import paths."""

from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig, RefitInfo

__all__ = ["LaplaceLogisticRegression", "LogisticHeadConfig", "RefitInfo"]
