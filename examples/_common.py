"""Output helpers shared by the example scripts 01-03: plots and checkpoints.

Each example keeps its arguments, seeding, agents and online loop in its own file; only
what happens after the loop lives here, because it is the same for all of them:

* :func:`add_output_args` adds ``--plot``, ``--plot-path``, ``--save-path`` and
  ``--sanity-check-save-load`` to a script's argument parser;
* :func:`plot_curves` writes the cumulative-regret / moving-average figure (``--plot``);
* :func:`save_agents` saves the agents (``--save-path``) and, with
  ``--sanity-check-save-load``, reloads them and checks they score and act identically.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bandexa_gym.agents import Agent, load_agent


def add_output_args(p: argparse.ArgumentParser, script: str) -> None:
    """Add the output flags; defaults go under ``runs/examples/<script>``."""
    p.add_argument("--plot", action="store_true", help="save the regret/reward curves as a PNG")
    p.add_argument("--plot-path", default=f"runs/examples/{script}.png")
    p.add_argument(
        "--save-path",
        default=None,
        help="folder for the agents' checkpoints (default with --sanity-check-save-load: "
        f"runs/examples/{script})",
    )
    p.add_argument(
        "--sanity-check-save-load",
        action="store_true",
        help="save both agents, reload them and check they score and act identically",
    )


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Means of ``values`` over every full window: shape ``(len(values) - window + 1,)``."""
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curves(
    path: str | Path,
    regrets: Mapping[str, np.ndarray],
    averaged: Mapping[str, np.ndarray],
    *,
    window: int,
    regret_label: str = "cumulative expected regret",
    averaged_label: str = "reward",
    averaged_title: str = "Reward",
    reference: tuple[str, np.ndarray] | None = None,
) -> None:
    """Save a two-panel PNG: cumulative regret (left) and moving averages (right).

    Args:
        path: Where to write the PNG (its folder is created).
        regrets: Per-round regret of each agent, each of shape (T,).
        averaged: Per-round series (T,) drawn as moving averages over ``window`` rounds.
        window: Moving-average window, 1 <= window <= T.
        regret_label: Y label of the left panel.
        averaged_label: What the right panel averages (its Y label).
        averaged_title: Title of the right panel.
        reference: An optional (label, series) drawn dashed in black on the right panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, regret in regrets.items():
        ax1.plot(np.arange(1, len(regret) + 1), np.cumsum(regret), label=name)
    if reference is not None:
        label, series = reference
        ax2.plot(
            np.arange(window, len(series) + 1), moving_average(series, window), "k--", label=label
        )
    for name, series in averaged.items():
        ax2.plot(np.arange(window, len(series) + 1), moving_average(series, window), label=name)
    ax1.set(xlabel="round", ylabel=regret_label, title="Regret")
    ax2.set(
        xlabel="round", ylabel=f"{averaged_label}, moving average ({window})", title=averaged_title
    )
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot saved to {path}")


def sanity_check_save_load(
    name: str, agent: Agent, folder: Path, obs: dict, device: str, draws: int = 20
) -> bool:
    """Save ``agent``, reload it, and compare posterior-mean scores and Thompson draws.

    Args:
        name: File stem of the checkpoint, ``<folder>/<name>.safetensors``.
        agent: A LinearTS or NeuralLinearTS.
        folder: Where to write the checkpoint.
        obs: An observation as the agent sees it (the probe scores its candidates).
        device: ``map_location`` of the reloaded agent.
        draws: Thompson draws compared from the same generator state.

    Returns:
        True when the scores agree exactly and every draw picks the same candidate.
    """
    path = agent.save(folder / f"{name}.safetensors")
    loaded = load_agent(path, map_location=device, expected=agent)
    gap = float(abs(agent.predict(obs)[0] - loaded.predict(obs)[0]).max())
    loaded.generator.set_state(agent.generator.get_state())  # same generator state...
    same = [agent.act(obs) for _ in range(draws)] == [loaded.act(obs) for _ in range(draws)]
    size = path.stat().st_size
    size_text = f"{size / 1024:.0f} KiB" if size < 2**20 else f"{size / 2**20:.1f} MiB"
    print(
        f"[save/load] {name:<16} {path} ({size_text}): max |score diff| = {gap:.1e}, "
        f"{draws} Thompson draws identical: {same}"
    )
    return gap == 0.0 and same


def save_agents(
    agents: Mapping[str, Agent],
    obs: Mapping[str, dict],
    folder: str | Path,
    *,
    device: str,
    check: bool,
) -> None:
    """Save every agent to ``<folder>/<name>.safetensors``; with ``check``, reload and compare.

    Args:
        agents: The agents by name.
        obs: The last observation of each agent, as that agent sees it.
        folder: Where to write the checkpoints.
        device: ``map_location`` of the reloaded agents.
        check: Run :func:`sanity_check_save_load` and exit with an error if it fails.
    """
    folder = Path(folder)
    if check:
        ok = [sanity_check_save_load(n, a, folder, obs[n], device) for n, a in agents.items()]
        if not all(ok):
            raise SystemExit("save/load sanity check FAILED")
    else:
        for name, agent in agents.items():
            print(f"saved {name} to {agent.save(folder / f'{name}.safetensors')}")
