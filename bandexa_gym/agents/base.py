"""Re-export of :mod:`bandexa_gym.agents.core`, kept for old import paths."""

from bandexa_gym.agents.core import *  # noqa: F403
from bandexa_gym.agents.core import __all__  # noqa: F401
