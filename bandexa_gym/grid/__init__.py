"""Re-export of :mod:`bandexa_gym.bench.grid` and its modules, kept for old import paths."""

import sys

from bandexa_gym.bench.grid import *  # noqa: F403
from bandexa_gym.bench.grid import (
    __all__,  # noqa: F401
    aggregates,
    base,
    driver,
    jobs,
    local,
    preflight,
    progress,
    ray_backend,
    reaper,
    report,
    results,
    store,
    suite_table,
    suites,
    summaries,
)

# bandexa_gym.grid.<module> is the very module bandexa_gym.bench.grid.<module>.
for _module in (
    aggregates,
    base,
    driver,
    jobs,
    local,
    preflight,
    progress,
    ray_backend,
    reaper,
    report,
    results,
    store,
    suite_table,
    suites,
    summaries,
):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module
del _module
