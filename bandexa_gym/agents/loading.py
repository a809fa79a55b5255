"""Re-export of :mod:`bandexa_gym.persist.load`, kept for old import paths."""

from bandexa_gym.persist.load import load_agent, load_state

__all__ = ["load_agent", "load_state"]
