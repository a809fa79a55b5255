"""The core every agent shares: the protocol, observations, pending feedback, randomness,
the outlier screen and the registry (one module each)."""

from bandexa_gym.agents.core.duck import (
    ENTRY_POINT_GROUP,
    agent_name,
    infer_capabilities,
    is_reference,
)
from bandexa_gym.agents.core.hints import PerformanceHint
from bandexa_gym.agents.core.observations import (
    MAX_ABS_INPUT,
    MAX_ABS_REWARD,
    Observation,
    Observations,
)
from bandexa_gym.agents.core.outliers import (
    DEFAULT_OUTLIER_FACTOR,
    OUTLIER_POLICIES,
    OutlierWarning,
)
from bandexa_gym.agents.core.pending import PENDING_TENSORS
from bandexa_gym.agents.core.protocol import (
    AGENT_CLASSES,
    Agent,
    Capabilities,
    Decision,
    NotApplicableError,
)
from bandexa_gym.agents.core.randomness import derived_seed
from bandexa_gym.agents.core.registry import (
    AGENTS,
    AgentFactory,
    make_agent,
    observation_space,
    register_agent,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "agent_name",
    "infer_capabilities",
    "is_reference",
    "AGENTS",
    "AGENT_CLASSES",
    "DEFAULT_OUTLIER_FACTOR",
    "MAX_ABS_INPUT",
    "MAX_ABS_REWARD",
    "OUTLIER_POLICIES",
    "PENDING_TENSORS",
    "Agent",
    "AgentFactory",
    "Capabilities",
    "Decision",
    "NotApplicableError",
    "Observation",
    "Observations",
    "OutlierWarning",
    "PerformanceHint",
    "derived_seed",
    "make_agent",
    "observation_space",
    "register_agent",
]
