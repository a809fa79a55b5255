"""Bandit agents: the ``act``/``observe`` protocol, the registry and the implementations."""

from bandexa_gym.agents import neural_linear_ots  # noqa: F401  (registers neural_linear_ots)
from bandexa_gym.agents.baselines import UniformAgent
from bandexa_gym.agents.bootstrapped import BootstrappedConfig, BootstrappedNN
from bandexa_gym.agents.core import (
    AGENTS,
    Agent,
    Capabilities,
    Decision,
    NotApplicableError,
    OutlierWarning,
    PerformanceHint,
    make_agent,
    observation_space,
    register_agent,
)
from bandexa_gym.agents.head_agent import HeadAgent
from bandexa_gym.agents.linear_ts import LinearTS
from bandexa_gym.agents.logistic_ts import LogisticTS
from bandexa_gym.agents.neural_linear import (
    NeuralLinearTS,
    NeuralLinearTSConfig,
    make_neural_linear,
)
from bandexa_gym.agents.neural_ts import NeuralTS, NeuralTSConfig
from bandexa_gym.agents.peers import PEERS, PEERS_EXTRA
from bandexa_gym.features.encoders.defaults import default_encoder
from bandexa_gym.persist.load import load_agent, load_state

__all__ = [
    "AGENTS",
    "Agent",
    "BootstrappedConfig",
    "BootstrappedNN",
    "Capabilities",
    "Decision",
    "HeadAgent",
    "LinearTS",
    "LogisticTS",
    "NeuralLinearTS",
    "NeuralLinearTSConfig",
    "NeuralTS",
    "NeuralTSConfig",
    "NotApplicableError",
    "OutlierWarning",
    "PEERS",
    "PEERS_EXTRA",
    "PerformanceHint",
    "UniformAgent",
    "default_encoder",
    "load_agent",
    "load_state",
    "make_agent",
    "make_neural_linear",
    "observation_space",
    "register_agent",
]
