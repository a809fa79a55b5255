"""Re-export of :mod:`bandexa_gym.bench.check`, kept for old import paths."""

from bandexa_gym.bench.check import *  # noqa: F403
from bandexa_gym.bench.check import __all__  # noqa: F401
