"""Re-export of :mod:`bandexa_gym.heads.numerics`, kept for old import paths."""

from bandexa_gym.heads.numerics import *  # noqa: F403
from bandexa_gym.heads.numerics import __all__  # noqa: F401
