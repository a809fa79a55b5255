"""Neural-Linear bandits: a learned encoder z = φ(x, a) under a Bayesian linear head.

``neural_linear_ts`` (Thompson sampling, Riquelme et al. 2018), ``neural_linear_ucb``,
``neural_greedy`` and ``neural_epsilon_greedy`` are one class, :class:`NeuralLinearTS`,
with different exploration rules on the same representation and head: its settings in
:mod:`~.config`, the agent in :mod:`~.agent`, its checkpoint parts in :mod:`~.parts` and the
registered factories in :mod:`~.factory`.
"""

from bandexa_gym.agents.neural_linear.agent import NeuralLinearTS
from bandexa_gym.agents.neural_linear.config import NeuralLinearTSConfig, default_head
from bandexa_gym.agents.neural_linear.factory import make_neural_linear

__all__ = ["NeuralLinearTS", "NeuralLinearTSConfig", "default_head", "make_neural_linear"]
