"""Re-export of :mod:`bandexa_gym.persist.format`, kept for old import paths."""

from bandexa_gym.persist.format import *  # noqa: F403
from bandexa_gym.persist.format import __all__  # noqa: F401
