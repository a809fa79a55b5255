"""Re-export of :mod:`bandexa_gym.bench.grid` and its modules, kept for old import paths."""

import importlib
import pkgutil
import sys

from bandexa_gym.bench import grid
from bandexa_gym.bench.grid import *  # noqa: F403
from bandexa_gym.bench.grid import __all__  # noqa: F401

# bandexa_gym.grid.<module> is the very module bandexa_gym.bench.grid.<module>.
for _info in pkgutil.iter_modules(grid.__path__):
    _module = importlib.import_module(f"{grid.__name__}.{_info.name}")
    globals()[_info.name] = _module
    sys.modules[f"{__name__}.{_info.name}"] = _module
del grid, _info, _module
