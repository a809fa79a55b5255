"""Re-export of :mod:`bandexa_gym.features.encoders`, kept for old import paths."""

from bandexa_gym.features.encoders import *  # noqa: F403
from bandexa_gym.features.encoders import __all__  # noqa: F401
