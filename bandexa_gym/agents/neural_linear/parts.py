"""What a Neural-Linear agent saves: its spec, and the parts of its learned state (encoder
and readouts, the learned features' standardization, the heads with the arm registry, the
training count and the reward scaler)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from bandexa_gym.agents.learning import ReplayAgent, neural_spec, neural_spec_arguments
from bandexa_gym.agents.neural_linear.config import NeuralLinearTSConfig
from bandexa_gym.features.arms import (
    MAX_FIXED_ARMS,
    ArmRegistry,
)
from bandexa_gym.features.encoders import build_encoder
from bandexa_gym.features.scaling import RewardScaler
from bandexa_gym.heads.protocol import HeadConfig
from bandexa_gym.persist.state import (
    Commit,
    Counter,
    Part,
    Scaler,
    Weights,
    heads_state,
    load_heads,
    take,
)


class _FeatureScaling(Part):
    """The standardization of the learned features: ``feature_shift`` and ``feature_gain``."""

    def __init__(self, agent: ReplayAgent) -> None:
        self.agent = agent

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {}, {
            "feature_shift": self.agent.feature_shift,
            "feature_gain": self.agent.feature_gain,
        }

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        agent = self.agent
        shift, gain = (
            take(tensors, key).to(agent.device, agent.feature_shift.dtype)
            for key in ("feature_shift", "feature_gain")
        )
        if not (bool(torch.isfinite(shift).all()) and bool(torch.isfinite(gain).all())):
            raise ValueError("feature_shift and feature_gain must be finite")
        if bool((gain < 0).any()):
            raise ValueError("feature_gain must be >= 0")

        def commit() -> None:
            agent.feature_shift, agent.feature_gain = shift, gain

        return commit


class _HeadsPerArm(Part):
    """The heads (one shared, or one per arm), the arm mode and the arm registry."""

    def __init__(self, agent: ReplayAgent) -> None:
        self.agent = agent

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        heads, tensors = heads_state(self.agent.heads)
        registry, tensors["arm_rows"] = self.agent.registry.state()
        return {"heads": heads, "arm_mode": self.agent.arm_mode, "registry": registry}, tensors

    def prepare(self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Commit:
        agent = self.agent
        arm_mode = scalars["arm_mode"]
        if arm_mode not in (None, "shared", "per_arm"):
            raise ValueError(f"arm_mode must be null, 'shared' or 'per_arm', got {arm_mode!r}")
        registry = ArmRegistry(agent.encoder.action_dim, MAX_FIXED_ARMS)
        registry.load(scalars["registry"], take(tensors, "arm_rows"))
        heads = load_heads(agent.new_head, agent.config.head.to_dict(), scalars["heads"], tensors)
        if arm_mode == "per_arm" and len(heads) != registry.n_arms:
            raise ValueError(f"{len(heads)} heads for {registry.n_arms} arms")
        if arm_mode != "per_arm" and len(heads) != 1:
            raise ValueError(f"a shared-head checkpoint holds {len(heads)} heads")

        def commit() -> None:
            agent.heads, agent.arm_mode, agent.registry = heads, arm_mode, registry

        return commit


class NeuralLinearPersistence:
    """Mixin of :class:`~bandexa_gym.agents.neural_linear.agent.NeuralLinearTS`: what
    describes it (its spec) and the parts of its learned state, for
    :mod:`bandexa_gym.persist`."""

    def spec(self) -> dict[str, Any]:
        return neural_spec(self)

    def pinned_spec(self) -> dict[str, Any]:
        spec = self.spec()
        del spec["exploration"]
        config = spec["config"]  # the schedule may differ, the head may not
        spec["config"] = {"head": config["head"], "head_kind": config["head_kind"]}
        return spec

    def parts(self) -> list[Part]:
        return [
            Weights("encoder", self.encoder),
            Weights("readout", self.readout),
            Weights("arm_readout", self.arm_readout),
            _FeatureScaling(self),
            _HeadsPerArm(self),
            Counter(self, "trainings"),
            Scaler(self, lambda: RewardScaler(self.config.standardize_rewards)),
        ]

    def after_load(self) -> None:
        self.encoder.eval()
        self.clear_feature_cache()

    @classmethod
    def expected_shapes(
        cls, spec: Mapping[str, Any], shapes: Mapping[str, tuple]
    ) -> dict[str, tuple]:
        encoder = build_encoder(spec["encoder"], device="meta")  # allocates nothing
        for key in ("context_shape", "action_dim", "feature_dim"):
            mine = getattr(encoder, key)
            mine = list(mine) if isinstance(mine, tuple) else mine
            if mine != spec[key]:
                raise ValueError(
                    f"the encoder spec gives {key}={mine}, the checkpoint says {spec[key]}"
                )
        want = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
        d, d_a = int(spec["feature_dim"]), int(spec["action_dim"])
        want.update({"readout.weight": (1, d), "readout.bias": (1,)})
        want.update({"arm_readout.weight": (d_a, d), "arm_readout.bias": (d_a,)})
        want.update({"feature_shift": (d,), "feature_gain": (d,)})
        h = d + int(HeadConfig.from_dict(spec["config"]["head"]).intercept)
        n_heads = sum(1 for k in shapes if k.startswith("heads.") and k.endswith(".mean"))
        for i in range(n_heads):
            want.update({f"heads.{i}.mean": (h,), f"heads.{i}.sqrt_covariance": (h, h)})
        want["arm_rows"] = (shapes.get("arm_rows", (0,))[0], d_a)
        return want

    @classmethod
    def spec_arguments(cls, spec: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
        return neural_spec_arguments(spec, seed, NeuralLinearTSConfig)
