"""Re-export of :mod:`bandexa_gym.offline.cli` (``bandexa-ope``), kept for old import paths."""

import sys

from bandexa_gym.offline.cli import PROG as PROG
from bandexa_gym.offline.cli import build_parser as build_parser
from bandexa_gym.offline.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
