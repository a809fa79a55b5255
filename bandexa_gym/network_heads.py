"""Re-export of heads.gradient and heads.ensemble (network beliefs), kept for old import paths."""

from bandexa_gym.heads.ensemble import EnsembleHead
from bandexa_gym.heads.gradient import DiagonalGradientHead

__all__ = ["DiagonalGradientHead", "EnsembleHead"]
