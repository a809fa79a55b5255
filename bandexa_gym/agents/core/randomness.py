"""An agent's random generators: seeding, saving and restoring them, and the draws every
agent makes (tie-break keys, a uniform choice, the best unmasked score)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bandexa_gym.exploration import select

__all__ = ["Randomness", "derived_seed"]


class Randomness:
    """Mixin of :class:`~bandexa_gym.agents.core.protocol.Agent`: three generators seeded
    from the agent's seed (``generator``, ``tie_generator``, ``propensity_generator``);
    agents with more add theirs to :meth:`_generators`."""

    device: torch.device
    generator: torch.Generator
    tie_generator: torch.Generator
    propensity_generator: torch.Generator

    def _generators(self) -> dict[str, torch.Generator]:
        return {
            "generator": self.generator,
            "tie_generator": self.tie_generator,
            "propensity_generator": self.propensity_generator,
        }

    def _reseed(self, seed: int | None) -> None:
        for offset, gen in enumerate(self._generators().values()):
            if seed is None:
                gen.seed()
            else:
                gen.manual_seed(derived_seed(seed, offset))

    def generator_states(
        self, scalars: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The checkpoint's generator states, validated, for :meth:`set_generator_states`.

        Only states saved on this agent's device type are used (a CPU checkpoint loaded
        on a GPU keeps the generators seeded from the saved seed).

        Raises:
            ValueError: An invalid generator state.
        """
        if scalars.get("generator_device") != self.device.type:
            return {}
        states = {}
        for gen_name, gen in self._generators().items():
            state = tensors.get(f"rng.{gen_name}")
            if state is None:
                continue
            try:  # validate on a scratch generator
                torch.Generator(device=gen.device).set_state(state.to(torch.uint8))
            except RuntimeError as err:
                raise ValueError(f"invalid random-generator state {gen_name!r}: {err}") from err
            states[gen_name] = state.to(torch.uint8)
        return states

    def set_generator_states(self, states: Mapping[str, torch.Tensor]) -> None:
        """Set generators from :meth:`generator_states` output."""
        generators = self._generators()
        for gen_name, state in states.items():
            generators[gen_name].set_state(state)

    def tie_keys(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Uniform tie-break keys from ``tie_generator`` (B rows consume it as B calls)."""
        return torch.rand(shape, generator=self.tie_generator, device=self.device)

    def uniform_choice(self, masks: torch.Tensor) -> torch.Tensor:
        """A uniformly random unmasked index per row of ``masks`` (B, K), from ``generator``.

        The draw ``torch.multinomial(masks, 1)`` makes, without its input checks (the masks
        are validated already): one exponential key per candidate, the largest weight / key
        wins, so the stream and the choices are exactly those of ``multinomial``.
        """
        keys = torch.empty(masks.shape, device=masks.device).exponential_(
            1, generator=self.generator
        )
        return (masks / keys).argmax(-1)  # bool / float32: the float32 weights 0 and 1

    def select(self, scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Best unmasked score per row (B, K) -> (B,), exact ties broken at random."""
        return select(scores, masks, self.tie_keys(scores.shape))


def derived_seed(seed: int, stream: int) -> int:
    """Seed of the agent's ``stream``-th generator: the seed itself for stream 0, else a
    mix that keeps the streams of nearby seeds apart."""
    if stream == 0:
        return int(seed)
    return (int(seed) * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) % (2**63)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    return int(seed)
