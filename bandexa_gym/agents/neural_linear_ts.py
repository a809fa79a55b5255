"""Re-export of :mod:`bandexa_gym.agents.neural_linear`, kept for old import paths."""

from bandexa_gym.agents.neural_linear import (
    NeuralLinearTS,
    NeuralLinearTSConfig,
    default_head,
    make_neural_linear,
)

__all__ = ["NeuralLinearTS", "NeuralLinearTSConfig", "default_head", "make_neural_linear"]
