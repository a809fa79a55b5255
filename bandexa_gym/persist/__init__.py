"""Checkpoints: :mod:`~bandexa_gym.persist.format` (the file: safetensors, JSON metadata and a
digest) and :mod:`~bandexa_gym.persist.load` (``load_agent`` / ``load_state``).

``format`` sits below the agents (``Agent.save`` writes through it); ``load`` above them (it
finds an agent's class and rebuilds it), so this package imports neither on its own.
"""
