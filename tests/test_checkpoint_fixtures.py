"""Checkpoints written by an earlier release still load, predict and decide as they did.

The fixtures (``tests/fixtures/checkpoints``, base64 text: the repository tracks no binary
checkpoints) hold one small checkpoint per agent family and what the saving agent predicted
and chose right after the save; ``make_fixtures.py`` beside them wrote them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from bandexa_gym.agents import load_agent
from tests.fixtures.checkpoints.make_fixtures import FAMILIES, HERE


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_checkpoint_of_an_earlier_release_loads_and_decides_as_saved(
    name: str, tmp_path: Path
) -> None:
    expected = json.loads((HERE / f"{name}.json").read_text())
    path = tmp_path / "agent.safetensors"
    path.write_bytes(base64.decodebytes((HERE / f"{name}.safetensors.b64").read_bytes()))
    agent = load_agent(path, map_location="cpu")
    assert agent.name == expected["agent"] and agent.rounds == expected["rounds"]
    probes = [
        {
            k: np.asarray(v, dtype=np.int8 if k == "action_mask" else np.float32)
            for k, v in p["obs"].items()
        }
        for p in expected["probes"]
    ]
    for obs, want in zip(probes, expected["probes"], strict=True):
        if "mean" in want:
            # Recorded on another CPU: float32 encoders round differently by BLAS kernel.
            mean, variance = agent.predict(obs)
            np.testing.assert_allclose(mean, want["mean"], rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(variance, want["variance"], rtol=1e-5, atol=1e-8)
    assert [agent.act(obs) for obs in probes * 2] == expected["actions"]
