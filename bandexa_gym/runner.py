"""Re-export of :mod:`bandexa_gym.bench.runner`, kept for old import paths."""

from bandexa_gym.bench.runner import *  # noqa: F403
from bandexa_gym.bench.runner import __all__  # noqa: F401
