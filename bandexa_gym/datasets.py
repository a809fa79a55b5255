"""Re-export of :mod:`bandexa_gym.offline.datasets`, kept for old import paths."""

from bandexa_gym.offline.datasets import BEHAVIOR_POLICIES as BEHAVIOR_POLICIES
from bandexa_gym.offline.datasets import CAMPAIGNS as CAMPAIGNS
from bandexa_gym.offline.datasets import FOLDER as FOLDER
from bandexa_gym.offline.datasets import KNOWN_MD5 as KNOWN_MD5
from bandexa_gym.offline.datasets import N_POSITIONS as N_POSITIONS
from bandexa_gym.offline.datasets import BehaviorPolicy as BehaviorPolicy
from bandexa_gym.offline.datasets import Campaign as Campaign
from bandexa_gym.offline.datasets import OpenBanditData, open_bandit

__all__ = ["OpenBanditData", "open_bandit"]
