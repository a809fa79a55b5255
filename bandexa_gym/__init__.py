"""bandexa-gym: contextual bandits as Gymnasium environments, with Thompson-sampling agents.

Importing the package registers the ``Bandexa/*`` environment ids (idempotently)::

    import gymnasium as gym
    import bandexa_gym

    gym.register_envs(bandexa_gym)
    env = gym.make("Bandexa/MNIST-v0")
"""

from bandexa_gym.envs import register_envs

register_envs()

__version__ = "0.1.0"

__all__ = ["__version__", "register_envs"]
