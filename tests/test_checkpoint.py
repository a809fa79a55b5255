"""Checkpoints: save -> load round trips, integrity checks, mismatches, atomic writes."""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import bandexa_gym  # noqa: F401  (registers the envs)
from bandexa_gym.agents import (
    Agent,
    HeadAgent,
    LinearTS,
    NeuralLinearTS,
    NeuralLinearTSConfig,
    load_agent,
    load_state,
    make_agent,
)
from bandexa_gym.buffers import DiskReplayBuffer
from bandexa_gym.checkpoint import FORMAT_VERSION, CheckpointError, read_metadata
from bandexa_gym.encoders import (
    ConvEncoder,
    Encoder,
    MLPEncoder,
    ResNetEncoder,
    TwoTowerEncoder,
    register_encoder,
)
from bandexa_gym.persist import format as checkpoint


def probe_scores(agent: HeadAgent, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Posterior-mean score of every candidate (deterministic)."""
    return agent.predict(obs)[0]


FAST = {"warmup_random": 5, "train_every": 10, "optimizer_steps": 3, "batch_size": 8}
SHARED = {"arm_heads": "shared"}  # random candidate rows: one head for all of them


def _observations(
    context_shape: tuple[int, ...], n_arms: int, action_dim: int, one_hot: bool, n: int, seed: int
) -> list[dict[str, np.ndarray]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if one_hot:
            candidates = torch.eye(action_dim)[:n_arms]
        else:
            candidates = torch.randn(n_arms, action_dim, generator=gen)
        out.append(
            {
                "context": torch.rand(context_shape, generator=gen).numpy(),
                "candidates": candidates.numpy(),
                "action_mask": np.ones(n_arms, dtype=np.int8),
            }
        )
    return out


def _train(agent: Agent, observations: list[dict[str, np.ndarray]]) -> None:
    """Play the observations with a 0/1 reward that depends on context and action."""
    for obs in observations:
        action = agent.act(obs)
        even = int(np.argmax(obs["candidates"][action])) % 2 == 0
        agent.observe(obs, action, float((obs["context"].flat[0] > 0.5) == even))


def _neural(encoder: Encoder, **config) -> NeuralLinearTS:
    return NeuralLinearTS(
        encoder, config=NeuralLinearTSConfig.from_settings(**{**FAST, **SHARED, **config}), seed=3
    )


AgentCase = tuple[Callable[[], Agent], tuple[int, ...], int, int, bool]

CASES: dict[str, AgentCase] = {
    # name: (factory, context_shape, n_arms, action_dim, one_hot candidates)
    "linear_ts_concat": (
        lambda: LinearTS((6,), 4, feature_map="concat", noise=0.05, seed=1),
        (6,), 5, 4, False,
    ),
    "linear_ts_disjoint": (
        lambda: LinearTS((2, 3), 4, feature_map="auto", prior_var=2.0, seed=1),
        (2, 3), 4, 4, True,
    ),
    "mlp": (
        lambda: _neural(MLPEncoder(6, 4, feature_dim=8, hidden=(16,), activation=nn.Tanh)),
        (6,), 5, 4, False,
    ),
    "two_tower": (
        lambda: _neural(TwoTowerEncoder(6, 4, tower_dim=4, hidden=(8,)), noise=0.1),
        (6,), 12, 4, False,
    ),
    "convnet": (
        lambda: _neural(
            ConvEncoder(3, image_size=12, channels=(4,), image_hidden=16, feature_dim=8),
            loss="bce",
        ),
        (1, 12, 12), 3, 3, True,
    ),
    "resnet18": (
        lambda: _neural(
            ResNetEncoder(3, image_size=32, feature_dim=8, trainable=("layer3", "layer4"))
        ),
        (3, 32, 32), 3, 3, True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_gives_identical_scores_and_actions(name: str, tmp_path: Path) -> None:
    factory, shape, n_arms, action_dim, one_hot = CASES[name]
    torch.manual_seed(0)
    agent = factory()
    _train(agent, _observations(shape, n_arms, action_dim, one_hot, 30, seed=0))
    path = agent.save(tmp_path / f"{name}.safetensors")

    loaded = load_agent(path, map_location="cpu", expected=agent)
    assert type(loaded) is type(agent)
    probes = _observations(shape, n_arms, action_dim, one_hot, 4, seed=1)
    for obs in probes:
        np.testing.assert_array_equal(probe_scores(loaded, obs), probe_scores(agent, obs))
    # The generator state travels in the checkpoint ...
    assert [loaded.act(o) for o in probes * 5] == [agent.act(o) for o in probes * 5]
    # ... and the same generator state gives the same draws from then on.
    loaded.generator.manual_seed(123)
    agent.generator.manual_seed(123)
    assert [loaded.act(o) for o in probes * 5] == [agent.act(o) for o in probes * 5]
    if isinstance(agent, NeuralLinearTS):
        assert isinstance(loaded, NeuralLinearTS)
        assert loaded.rounds == agent.rounds == 30 and not loaded.exploring
        assert loaded.trainings == agent.trainings > 0
        assert len(loaded.buffer) == 0  # the replay buffer is not part of the checkpoint
        assert type(loaded.encoder) is type(agent.encoder)
        flags = [p.requires_grad for p in loaded.encoder.parameters()]
        assert flags == [p.requires_grad for p in agent.encoder.parameters()]


def test_linear_ts_keeps_learning_identically_after_a_reload(tmp_path: Path) -> None:
    env = gym.make("Bandexa/Synthetic-v0", n_arms=5, context_dim=4, action_dim=3)
    agent = make_agent("linear_ts", env, seed=0, feature_map="concat")
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        action = agent.act(obs)
        next_obs, reward, *_ = env.step(action)
        agent.observe(obs, action, reward)
        obs = next_obs
    loaded = load_agent(agent.save(tmp_path / "lin.safetensors"))
    for _ in range(50):  # both see the same rounds: identical choices and posteriors
        a, b = agent.act(obs), loaded.act(obs)
        assert a == b
        next_obs, reward, *_ = env.step(a)
        agent.observe(obs, a, reward)
        loaded.observe(obs, b, reward)
        obs = next_obs
    assert torch.equal(loaded.heads[0].mean, agent.heads[0].mean)


def test_unresolved_auto_linear_ts_round_trips(tmp_path: Path) -> None:
    agent = LinearTS((3,), 3, seed=0)  # feature_map="auto", no heads until the first act
    loaded = load_agent(agent.save(tmp_path / "auto.safetensors"))
    assert isinstance(loaded, LinearTS) and loaded.heads == [] and loaded.feature_map == "auto"
    obs = _observations((3,), 3, 3, True, 1, seed=0)[0]
    loaded.act(obs)
    assert loaded.feature_map == "disjoint"


def test_load_state_into_a_matching_agent_keeps_its_schedule(tmp_path: Path) -> None:
    torch.manual_seed(0)
    agent = _neural(MLPEncoder(6, 4, feature_dim=8, hidden=(16,), activation=nn.Tanh))
    _train(agent, _observations((6,), 5, 4, False, 30, seed=0))
    path = agent.save(tmp_path / "mlp.safetensors")
    torch.manual_seed(1)
    target = _neural(
        MLPEncoder(6, 4, feature_dim=8, hidden=(16,), activation=nn.Tanh), train_every=7
    )
    load_state(target, path)
    assert target.config.train_every == 7
    obs = _observations((6,), 5, 4, False, 1, seed=5)[0]
    np.testing.assert_array_equal(probe_scores(target, obs), probe_scores(agent, obs))


def test_a_reopened_disk_buffer_can_be_handed_to_the_loaded_agent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    buffer = DiskReplayBuffer(tmp_path / "replay", shard_size=8)
    agent = NeuralLinearTS(
        MLPEncoder(6, 4, feature_dim=8, hidden=(16,)),
        buffer=buffer,
        config=NeuralLinearTSConfig(**FAST, **SHARED),
        seed=np.int64(3),  # numpy scalars are stored as plain JSON numbers
    )
    _train(agent, _observations((6,), 5, 4, False, 20, seed=0))
    path = agent.save(tmp_path / "mlp.safetensors")
    buffer.close()
    loaded = load_agent(path, buffer=DiskReplayBuffer(tmp_path / "replay"))
    assert isinstance(loaded, NeuralLinearTS) and len(loaded.buffer) == 20
    assert loaded.seed == 3
    loaded.rebuild_posterior()  # same buffer, same encoder: the same head again
    torch.testing.assert_close(loaded.posterior.mean, agent.posterior.mean)
    loaded.buffer.close()


def test_no_pickle_is_involved_in_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = _neural(TwoTowerEncoder(6, 4, tower_dim=4, hidden=(8,)))
    path = agent.save(tmp_path / "tt.safetensors")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    loaded = load_agent(path)
    assert isinstance(loaded, NeuralLinearTS)
    # A plain safetensors file: JSON metadata in the header, tensors by name.
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["bandexa_gym"])
        assert "heads.0.mean" in f.keys()
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["spec"]["encoder"] == {
        "class": "TwoTowerEncoder",
        "kwargs": {
            "context_dim": 6,
            "action_dim": 4,
            "tower_dim": 4,
            "hidden": [8],
            "activation": "ReLU",
            "action_chunk": None,
        },
    }
    assert read_metadata(path)["agent"] == "neural_linear_ts"


# ---- corrupted files ------------------------------------------------------------------


@pytest.fixture
def saved_mlp(tmp_path: Path) -> tuple[NeuralLinearTS, Path]:
    torch.manual_seed(0)
    agent = _neural(MLPEncoder(6, 4, feature_dim=8, hidden=(16,)))
    _train(agent, _observations((6,), 5, 4, False, 20, seed=0))
    return agent, agent.save(tmp_path / "mlp.safetensors")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "corrupted or truncated"),
        (lambda b: b[:5], "corrupted or truncated"),
        (lambda b: b"", "corrupted or truncated"),
        (lambda b: b[:-60] + bytes(x ^ 0xFF for x in b[-60:-50]) + b[-50:], "SHA-256"),
        (lambda b: b"\x00" * len(b), "corrupted or truncated"),
    ],
    ids=["half", "5-bytes", "empty", "flipped-data", "zeros"],
)
def test_corrupted_or_truncated_files_are_rejected(
    saved_mlp: tuple[NeuralLinearTS, Path], damage: Callable[[bytes], bytes], message: str
) -> None:
    _, path = saved_mlp
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)


def test_missing_file_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_agent(tmp_path / "nope.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a bandexa-gym checkpoint"):
        load_agent(foreign)


def test_unsupported_format_version(saved_mlp: tuple[NeuralLinearTS, Path]) -> None:
    _, path = saved_mlp
    meta = read_metadata(path)
    meta["format_version"] = FORMAT_VERSION + 1
    save_file(load_file(str(path)), str(path), metadata={"bandexa_gym": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load_agent(path)


# ---- mismatches -----------------------------------------------------------------------


def test_expected_mismatches_name_the_fields(saved_mlp: tuple[NeuralLinearTS, Path]) -> None:
    agent, path = saved_mlp
    other = _neural(MLPEncoder(6, 4, feature_dim=16, hidden=(16,)))
    with pytest.raises(CheckpointError, match=r"feature_dim: expected 16, checkpoint has 8"):
        load_agent(path, expected=other)
    wider = gym.make("Bandexa/Synthetic-v0", context_dim=6, action_dim=5)
    with pytest.raises(CheckpointError, match=r"action_dim: expected 5, checkpoint has 4"):
        load_agent(path, expected=wider)
    with pytest.raises(CheckpointError, match=r"config.train_every: expected 99"):
        load_agent(path, expected={"config": {"train_every": 99}})
    with pytest.raises(CheckpointError, match=r"agent: expected 'linear_ts'"):
        load_agent(path, expected={"agent": "linear_ts"})
    assert isinstance(load_agent(path, expected=agent), NeuralLinearTS)  # itself matches


def test_load_state_mismatch_is_rejected_and_changes_nothing(
    saved_mlp: tuple[NeuralLinearTS, Path],
) -> None:
    _, path = saved_mlp
    for target, message in [
        (_neural(MLPEncoder(6, 4, feature_dim=16, hidden=(16,))), "feature_dim: agent has 16"),
        (
            _neural(MLPEncoder(6, 4, feature_dim=8, hidden=(32,))),
            r"kwargs.hidden: agent has \[32\]",
        ),
        (_neural(MLPEncoder(6, 4, feature_dim=8, hidden=(16,)), prior_var=3.0), "prior_var"),
        (LinearTS((6,), 4, feature_map="concat"), "holds a NeuralLinearTS"),
    ]:
        before = {k: v.clone() for k, v in _state_of(target).items()}
        with pytest.raises(CheckpointError, match=message):
            load_state(target, path)
        after = _state_of(target)
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_linear_ts_dimension_mismatch(tmp_path: Path) -> None:
    path = LinearTS((6,), 4, feature_map="concat").save(tmp_path / "lin.safetensors")
    with pytest.raises(CheckpointError, match=r"context_shape: agent has \[7\]"):
        load_state(LinearTS((7,), 4, feature_map="concat"), path)
    with pytest.raises(CheckpointError, match="feature_map: agent has 'disjoint'"):
        load_state(LinearTS((6,), 4, feature_map="disjoint"), path)
    with pytest.raises(CheckpointError, match="head.noise: agent has 0.5"):
        load_state(LinearTS((6,), 4, feature_map="concat", noise=0.5), path)


def _state_of(agent: Agent) -> dict[str, torch.Tensor]:
    if isinstance(agent, NeuralLinearTS):
        state = {f"enc.{k}": v for k, v in agent.encoder.state_dict().items()}
        return {**state, "mean": agent.posterior.mean, "S": agent.posterior.sqrt_covariance}
    assert isinstance(agent, LinearTS)
    return {f"head{i}": h.mean for i, h in enumerate(agent.heads)}


def test_unregistered_encoder_cannot_be_saved(tmp_path: Path) -> None:
    class MyEncoder(MLPEncoder):
        pass

    agent = _neural(MyEncoder(3, 2, feature_dim=4, hidden=()))
    with pytest.raises(CheckpointError, match="register_encoder"):
        agent.save(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_registered_encoder_with_init_kwargs_round_trips(tmp_path: Path) -> None:
    class ScaledMLP(MLPEncoder):
        def __init__(self, context_dim: int, action_dim: int, scale: float = 1.0) -> None:
            super().__init__(context_dim, action_dim, feature_dim=4, hidden=(8,))
            self.init_kwargs = {
                "context_dim": context_dim,
                "action_dim": action_dim,
                "scale": scale,
            }

    register_encoder(ScaledMLP)
    agent = _neural(ScaledMLP(3, 2, scale=2.0))
    loaded = load_agent(agent.save(tmp_path / "scaled.safetensors"))
    assert isinstance(loaded, NeuralLinearTS) and isinstance(loaded.encoder, ScaledMLP)
    assert loaded.encoder.init_kwargs["scale"] == 2.0


# ---- atomic writes --------------------------------------------------------------------


def test_a_failed_save_leaves_the_previous_checkpoint_intact(
    saved_mlp: tuple[NeuralLinearTS, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, path = saved_mlp
    good = path.read_bytes()

    def crash(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a checkpoint")  # the crash hits mid-write
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    _train(agent, _observations((6,), 5, 4, False, 5, seed=9))
    with pytest.raises(OSError, match="disk full"):
        agent.save(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind
    assert isinstance(load_agent(path), NeuralLinearTS)


def test_a_head_state_that_fails_to_load_leaves_the_agent_untouched(tmp_path: Path) -> None:
    saved = LinearTS((3,), 2, feature_map="disjoint", prior_var=1.0, seed=0)
    for arm in (0, 1):
        saved.heads[arm].update(torch.ones(3), float(arm))
    path = saved.save(tmp_path / "agent.safetensors")
    other = LinearTS((3,), 2, feature_map="disjoint", prior_var=2.0, seed=0)  # other prior
    other.heads[0].update(torch.ones(3), 5.0)
    before = [h.state_dict() for h in other.heads]
    with pytest.raises(CheckpointError):
        load_state(other, path)
    for head, state in zip(other.heads, before, strict=True):
        after = head.state_dict()
        assert all(
            torch.equal(v, after[k]) if torch.is_tensor(v) else v == after[k]
            for k, v in state.items()
        )


# ---- edited metadata, oversized specs, format versions --------------------------------


def _rewrite(path: Path, edit: Callable[[dict], None], *, redigest: bool) -> None:
    """Edit a checkpoint's metadata in place (recomputing the digest when asked)."""
    meta = read_metadata(path)
    tensors = load_file(str(path))
    edit(meta)
    if redigest:
        meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})


def test_an_edited_metadata_field_fails_the_digest(saved_mlp: tuple[NeuralLinearTS, Path]) -> None:
    _, path = saved_mlp
    _rewrite(path, lambda m: m["spec"]["config"].update(lr=1.001), redigest=False)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_agent(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["state"].update(rounds=-5), "rounds"),
        (lambda m: m["spec"]["config"]["head"].update(prior_var=-1.0), "prior_var"),
        (lambda m: m["spec"]["config"].update(train_every="often"), "train_every"),
        (lambda m: m["state"]["heads"][0].update(n_obs=-1), "n_obs"),
        (lambda m: m.update({"class": "NoSuchAgent"}), "unknown agent class"),
    ],
    ids=["negative-rounds", "bad-prior", "bad-schedule", "bad-count", "unknown-class"],
)
def test_invalid_values_are_checkpoint_errors(
    saved_mlp: tuple[NeuralLinearTS, Path], edit: Callable[[dict], None], message: str
) -> None:
    _, path = saved_mlp
    _rewrite(path, edit, redigest=True)  # a consistent digest: the values themselves are bad
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)


def test_an_oversized_encoder_spec_is_refused_before_anything_is_built(
    saved_mlp: tuple[NeuralLinearTS, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = saved_mlp
    _rewrite(
        path, lambda m: m["spec"]["encoder"]["kwargs"].update(hidden=[60000, 60000]), redigest=True
    )
    from bandexa_gym import encoders

    devices = []
    real = encoders.build_encoder

    def spy(spec, *, device=None):
        devices.append(device)
        return real(spec, device=device)

    monkeypatch.setattr("bandexa_gym.agents.neural_linear.parts.build_encoder", spy)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_agent(path)
    assert devices == ["meta"]  # only the allocation-free shape check ran


def test_a_version_1_checkpoint_names_both_versions(saved_mlp: tuple[NeuralLinearTS, Path]) -> None:
    _, path = saved_mlp
    _rewrite(path, lambda m: m.update(format_version=1, library_version="0.1.0"), redigest=False)
    with pytest.raises(CheckpointError, match=r"version 1 .*reads version 2.*0\.1\.0"):
        load_agent(path)


def test_loader_kwargs_cannot_contradict_the_checkpoint(tmp_path: Path) -> None:
    env = gym.make("Bandexa/Synthetic-v0", n_arms=3, context_dim=3, action_dim=2)
    agent = make_agent("linear_ts", env, seed=0)
    path = agent.save(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="fixes"):
        load_agent(path, standardize_rewards=False)
    assert load_agent(path, max_pending=5).max_pending == 5  # not fixed by the spec


def test_a_failed_burst_leaves_the_network_in_eval_mode() -> None:
    env = gym.make("Bandexa/Synthetic-v0", n_arms=3, context_dim=3, action_dim=2)
    agent = make_agent("neural_ts", env, seed=0, warmup_random=0, train_every=0)
    obs, _ = env.reset(seed=0)
    agent.observe(obs, agent.act(obs), 1.0)

    def broken(*args):
        raise RuntimeError("a failing step")

    agent.training_loss = broken
    with pytest.raises(RuntimeError, match="failing step"):
        agent.train_network()
    assert not agent.network.training
    nl = make_agent("neural_linear_ts", env, seed=0, train_every=0)
    nl.observe(obs, nl.act(obs), 1.0)
    assert math.isfinite(nl.train_network())  # callable without train_encoder first
