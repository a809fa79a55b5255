"""Re-export of :mod:`bandexa_gym.offline.logs` and its writer, kept for old import paths."""

from bandexa_gym.offline.log_writer import LogBusyError, LogWriter
from bandexa_gym.offline.logs import FORMAT_VERSION, LogBatch, LogFormatError, LogReader, read_log
from bandexa_gym.offline.logs import ROUND_FIELDS as ROUND_FIELDS

__all__ = [
    "FORMAT_VERSION",
    "LogBatch",
    "LogBusyError",
    "LogFormatError",
    "LogReader",
    "LogWriter",
    "read_log",
]
