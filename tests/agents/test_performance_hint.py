"""The threads hint: said once per process, naming its category once, at the caller's line."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import bandexa_gym  # noqa: F401  (registers the ids)
from bandexa_gym.agents import NeuralLinearTS, PerformanceHint, make_agent
from bandexa_gym.agents.core import hints as hint_module
from bandexa_gym.encoders import MLPEncoder

REPO = Path(__file__).resolve().parents[2]


def test_the_hint_is_said_once_for_any_number_of_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hint_module, "_THREADS_HINTED", False)  # as in a fresh process
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # torch's default on 2 cores
    env = gym.make("Bandexa/Synthetic-v0")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for name in ("neural_linear_ts", "neural_linear_ts", "linear_ts", "bootstrapped_nn"):
            make_agent(name, env, seed=0)
        NeuralLinearTS(MLPEncoder(context_dim=10, action_dim=10))  # the lower-level API
    hints = [w for w in record if issubclass(w.category, PerformanceHint)]
    assert len(hints) == 1, [str(w.message) for w in hints]
    (hint,) = hints
    assert hint.filename == __file__  # the caller's make_agent line, not library internals
    shown = warnings.formatwarning(hint.message, hint.category, hint.filename, hint.lineno)
    assert shown.count("PerformanceHint") == 1, shown
    assert "torch.set_num_threads(1)" in shown
    with warnings.catch_warnings():  # the filter the hint names silences it
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", message="torch uses")
        warnings.warn(str(hint.message), PerformanceHint, stacklevel=1)


def test_a_fresh_process_prints_the_hint_once() -> None:
    script = (
        "import gymnasium as gym, torch, bandexa_gym\n"
        "from bandexa_gym.agents import make_agent\n"
        "torch.set_num_threads(2)\n"
        "env = gym.make('Bandexa/Synthetic-v0')\n"
        "agents = [make_agent('neural_linear_ts', env) for _ in range(2)]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("PerformanceHint") == 1, proc.stderr
    assert proc.stderr.startswith("<string>:5: PerformanceHint: torch uses 2 CPU threads")
