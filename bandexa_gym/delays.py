"""Re-export of :mod:`bandexa_gym.bench.delays`, kept for old import paths."""

from bandexa_gym.bench.delays import *  # noqa: F403
from bandexa_gym.bench.delays import __all__  # noqa: F401
