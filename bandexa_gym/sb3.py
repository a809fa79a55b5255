"""Re-export of :mod:`bandexa_gym.bench.sb3`, kept for old import paths."""

from bandexa_gym.bench.sb3 import *  # noqa: F403
from bandexa_gym.bench.sb3 import __all__  # noqa: F401
