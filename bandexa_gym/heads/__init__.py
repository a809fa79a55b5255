"""The Bayesian heads: beliefs about a reward model that the exploration rules read.

* :mod:`~bandexa_gym.heads.protocol` -- the :class:`Head` protocol, :class:`HeadConfig`,
  :func:`score` and :func:`tie_split`, what every head shares;
* :mod:`~bandexa_gym.heads.gaussian` -- :class:`BayesianLinearRegression`, the conjugate
  Gaussian head; :mod:`~bandexa_gym.heads.conjugate` its refits, growth and re-basing;
* :mod:`~bandexa_gym.heads.logistic` -- :class:`LaplaceLogisticRegression` for {0, 1}
  rewards; :mod:`~bandexa_gym.heads.logistic_fit` its Newton refit;
* :mod:`~bandexa_gym.heads.gradient` and :mod:`~bandexa_gym.heads.ensemble` -- the beliefs
  of neural agents over network outputs (:class:`DiagonalGradientHead`, :class:`EnsembleHead`);
* :mod:`~bandexa_gym.heads.square_root` and :mod:`~bandexa_gym.heads.numerics` -- the
  square-root Gaussian state, safe Cholesky and generator-driven draws the heads share.
"""

from bandexa_gym.heads.ensemble import EnsembleHead
from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.gradient import DiagonalGradientHead
from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig
from bandexa_gym.heads.protocol import HEAD_FIELDS, Head, HeadConfig, score, tie_split

__all__ = [
    "HEAD_FIELDS",
    "BayesianLinearRegression",
    "DiagonalGradientHead",
    "EnsembleHead",
    "Head",
    "HeadConfig",
    "LaplaceLogisticRegression",
    "LogisticHeadConfig",
    "score",
    "tie_split",
]
