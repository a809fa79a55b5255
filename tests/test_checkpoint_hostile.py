"""Checkpoints from untrusted sources: typed errors, no network, bounded settings, pending
decisions that survive a save."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bandexa_gym.agents import (
    LinearTS,
    NeuralLinearTS,
    NeuralLinearTSConfig,
    load_agent,
    make_agent,
)
from bandexa_gym.checkpoint import CheckpointError, read_metadata
from bandexa_gym.encoders import MLPEncoder, ResNetEncoder
from bandexa_gym.persist import format as checkpoint

OBS = {"context": np.array([0.5, -1.0, 2.0], np.float32), "candidates": np.eye(2, dtype=np.float32)}


def _linear(tmp_path: Path, feature_map: str = "per_arm") -> Path:
    agent = LinearTS((3,), 2, feature_map=feature_map, seed=0)
    candidates = np.array([[0.3, -1.0], [1.5, 0.2]], np.float32)
    for i in range(6):
        obs = {"context": np.full(3, 0.1 * i, np.float32), "candidates": candidates}
        agent.observe(obs, i % 2, float(i % 3))
    return agent.save(tmp_path / "agent.safetensors")


def _rewrite_header(path: Path, text: str) -> None:
    save_file(load_file(str(path)), str(path), metadata={"bandexa_gym": text})


def _retensor(path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Edit a checkpoint's tensors and re-digest it: only the values themselves are wrong."""
    meta, tensors = read_metadata(path), load_file(str(path))
    edit(tensors)
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})


def _scale(tensor: torch.Tensor, largest: float) -> None:
    tensor.mul_(largest / tensor.abs().max())


def _extra_field(value: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        text = json.dumps(read_metadata(path))
        _rewrite_header(path, text[:-1] + f', "extra": {value}}}')

    return edit


# ---- item 10: typed errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: _rewrite_header(p, '{"a":' * 200_000 + "1" + "}" * 200_000), "nested deeper"),
        (lambda p: _rewrite_header(p, '{"a":' * 40 + "1" + "}" * 40), "nested deeper"),
        (_extra_field("9" * 5000), "5000 digits"),
        (_extra_field("1e400"), "1e400 overflows"),
        (_extra_field("NaN"), "NaN is not a finite number"),
        (_extra_field("-Infinity"), "Infinity is not a finite number"),
        (
            lambda p: _retensor(p, lambda t: t.update({"heads.0.mean": t["heads.0.mean"].float()})),
            r"heads\.0\.mean has dtype torch\.float32.*float64.*not cast",
        ),
        (
            lambda p: _retensor(p, lambda t: t.update({"arm_rows": t["arm_rows"] * np.nan})),
            "arm_rows holds NaN",
        ),
        (
            lambda p: _retensor(p, lambda t: _scale(t["heads.0.sqrt_covariance"], 1e300)),
            "square-root covariance must stay within",
        ),
        (
            lambda p: _retensor(p, lambda t: t.update({"rng.generator": t["rng.generator"].long()})),  # noqa: E501
            "rng.generator has dtype torch.int64",
        ),
    ],
    ids=["nested-200k", "nested-40", "5000-digit-int", "1e400", "NaN", "-Infinity",
         "float32-mean", "nan-arm-rows", "sqrt-covariance-1e300", "int64-rng"],
)  # fmt: skip
def test_hostile_values_are_checkpoint_errors_naming_the_file(
    tmp_path: Path, edit: Callable[[Path], None], message: str
) -> None:
    path = _linear(tmp_path, "per_arm")
    edit(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_agent(path)
    assert str(path) in str(info.value)


def test_saving_onto_a_folder_or_under_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    agent = LinearTS((3,), 2, seed=0)
    with pytest.raises(CheckpointError, match=f"{tmp_path}.*folder"):
        agent.save(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="file where a folder should be"):
        agent.save(tmp_path / "file" / "agent.safetensors")
    assert (tmp_path / "file").read_text() == "x"


def _saved_mlp(tmp_path: Path) -> Path:
    encoder = MLPEncoder(3, 2, feature_dim=4, hidden=(8,))
    agent = NeuralLinearTS(encoder, config=NeuralLinearTSConfig(train_every=0), seed=0)
    for i in range(4):
        agent.observe(OBS, i % 2, float(i))
    return agent.save(tmp_path / "mlp.safetensors")


@pytest.mark.parametrize("activation", ["Linear", "Module", "MultiheadAttention", "Dropout"])
def test_an_activation_naming_a_non_activation_module_is_refused_at_load(
    tmp_path: Path, activation: str
) -> None:
    path = _saved_mlp(tmp_path)
    meta = read_metadata(path)
    meta["spec"]["encoder"]["kwargs"]["activation"] = activation
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"{activation}.*not an activation"):
        load_agent(path)


@pytest.mark.parametrize(
    ("saved_class", "claimed", "message"),
    [
        ("LinearTS", "NeuralLinearTS", r"NeuralLinearTS checkpoint lacks the field 'encoder'"),
        ("NeuralLinearTS", "LinearTS", r"LinearTS checkpoint lacks the field 'feature_map'"),
    ],
)
def test_a_swapped_class_says_what_was_expected(
    tmp_path: Path, saved_class: str, claimed: str, message: str
) -> None:
    path = _linear(tmp_path) if saved_class == "LinearTS" else _saved_mlp(tmp_path)
    meta = read_metadata(path)
    meta["class"] = claimed
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)


# ---- item 2: pending decisions and ids across save/load ----------------------------------


def test_decision_ids_never_repeat_after_a_load_and_late_feedback_reaches_its_decision(
    tmp_path: Path,
) -> None:
    a = LinearTS((3,), 2, feature_map="disjoint", seed=0)
    o = OBS
    d = [a.decide(o) for _ in range(3)]
    a.save(tmp_path / "a.safetensors")
    b = load_agent(tmp_path / "a.safetensors")
    n = b.decide(o)
    assert n.id not in {x.id for x in d}
    assert b.pending == 4
    b.feedback(d[0].id, 1.0)  # the late reward of a decision made before the save

    reference = LinearTS((3,), 2, feature_map="disjoint", seed=0)  # what it must equal
    reference.observe(o, int(d[0].action), 1.0)
    for mine, theirs in zip(b.heads, reference.heads, strict=True):
        torch.testing.assert_close(mine.mean, theirs.mean, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown or already used"):
        b.feedback(d[0].id, 1.0)


def test_reset_and_load_agree_ids_keep_counting(tmp_path: Path) -> None:
    a = make_agent("uniform", _space(), seed=0)
    first = a.decide(OBS).id
    a.reset()
    second = a.decide(OBS).id
    assert second > first
    with pytest.raises(ValueError, match="unknown or already used"):
        a.feedback(first, 0.0)  # dropped by reset
    b = load_agent(a.save(tmp_path / "u.safetensors"))
    assert b.decide(OBS).id > second
    b.feedback(second, 1.0)


def _space():
    from gymnasium import spaces

    return spaces.Dict(
        {
            "context": spaces.Box(-5, 5, (3,), np.float32),
            "candidates": spaces.Box(0, 1, (2, 2), np.float32),
            "action_mask": spaces.Box(0, 1, (2,), np.int8),
        }
    )


def test_more_pending_decisions_than_max_pending_are_refused(tmp_path: Path) -> None:
    a = LinearTS((3,), 2, feature_map="disjoint", seed=0, max_pending=8)
    for _ in range(5):
        a.decide(OBS)
    path = a.save(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="5 decisions await feedback but max_pending is 4"):
        load_agent(path, max_pending=4)
    assert load_agent(path, max_pending=5).pending == 5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.update({"pending.contexts": t["pending.contexts"][:, :2].clone()}),
            "pending.contexts",
        ),
        (lambda t: t.update({"pending.ids": t["pending.ids"] + 100}), "distinct, in"),
        (lambda t: t.update({"pending.chosen": t["pending.chosen"].double()}), "float32"),
        (lambda t: t["pending.contexts"].fill_(np.nan), "NaN"),
        (lambda t: t.pop("pending.indices"), "pending decisions need tensors"),
    ],
    ids=["shape", "ids-beyond-counter", "dtype", "nan", "missing"],
)
def test_crafted_pending_decisions_are_refused(
    tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    a = LinearTS((3,), 2, feature_map="disjoint", seed=0)
    a.decide(OBS)
    a.decide(OBS)
    path = a.save(tmp_path / "a.safetensors")
    _retensor(path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        load_agent(path)
    assert str(path) in str(info.value)


# ---- item 4: no network, no other file ------------------------------------------------------


def test_a_checkpoint_asking_for_pretrained_weights_never_fetches_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = ResNetEncoder(2, in_channels=1, image_size=32, feature_dim=4)
    agent = NeuralLinearTS(encoder, config=NeuralLinearTSConfig(train_every=0), seed=0)
    path = agent.save(tmp_path / "resnet.safetensors")
    meta = read_metadata(path)
    meta["spec"]["encoder"]["kwargs"].update(pretrained=True, download=True)
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the loader tried to fetch weights")

    import torchvision.models

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    loaded = load_agent(path)
    assert not (tmp_path / "torch_home").exists()
    assert loaded.encoder.init_kwargs["pretrained"] is False
    for (name, mine), theirs in zip(
        loaded.encoder.state_dict().items(), agent.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs), name


# ---- item 6: settings bounded by what the machine can hold ------------------------------


def _respec(path: Path, **config: object) -> None:
    meta = read_metadata(path)
    meta["spec"]["config"].update(config)
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optimizer_steps": 10**12, "train_every": 1}, r"optimizer_steps must be .*100_000"),
        ({"buffer_capacity": 10**12}, r"buffer_capacity=1_000_000_000_000 .*cannot fit"),
        ({"batch_size": 10**9}, r"batch_size must be an integer in \[1, 1_000_000\]"),
        ({"rebuild_chunk": 2**70}, r"rebuild_chunk must be"),
        ({"buffer_capacity": 1e12}, r"buffer_capacity must be an integer, got 1000000000000\.0"),
    ],
    ids=["optimizer-steps", "buffer-capacity", "batch-size", "rebuild-chunk", "float-capacity"],
)
def test_crafted_checkpoint_settings_are_bounded(
    tmp_path: Path, config: dict, message: str
) -> None:
    path = _saved_mlp(tmp_path)
    _respec(path, **config)
    with pytest.raises(CheckpointError, match=message):
        load_agent(path)


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("neural_linear_ts", {"optimizer_steps": 10**12}, "optimizer_steps must be"),
        ("neural_ts", {"optimizer_steps": 10**12}, "optimizer_steps must be"),
        ("bootstrapped_nn", {"n_members": 10**6}, "n_members must be"),
        ("neural_ts", {"buffer_capacity": 10**15}, "cannot fit"),
        ("logistic_ts", {"store_capacity": 10**15}, "cannot fit"),
        ("linear_ts", {"propensity_draws": 10**9}, "propensity_draws must be"),
        ("uniform", {"max_pending": 10**12}, "max_pending must be"),
    ],
)
def test_make_agent_settings_are_bounded(name: str, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_agent(name, _space(), seed=0, **settings)


def test_a_buffer_is_bounded_by_its_real_row_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from bandexa_gym.agents import limits

    monkeypatch.setattr(limits, "memory_bytes", lambda: 2**30)  # a 1 GiB machine
    encoder = MLPEncoder(3, 2, feature_dim=4, hidden=(8,))
    fits = NeuralLinearTSConfig(buffer_capacity=10**6)  # 44 MB of 44-byte rows
    NeuralLinearTS(encoder, config=fits, seed=0)
    big = MLPEncoder(10_000, 2, feature_dim=4, hidden=(8,))
    with pytest.raises(ValueError, match=r"buffer_capacity=1_000_000 transitions of 40_024 bytes"):
        NeuralLinearTS(big, config=fits, seed=0)


def test_a_crafted_context_shape_cannot_make_linear_ts_allocate_beyond_memory(
    tmp_path: Path,
) -> None:
    agent = LinearTS((3,), 2, seed=0)  # feature_map "auto": no head tensors to check against
    path = agent.save(tmp_path / "auto.safetensors")
    meta = read_metadata(path)
    meta["spec"]["context_shape"] = [10**7]  # a head of 10^14 float64 entries
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"head over 10000003 features .*GiB of memory"):
        load_agent(path)


def test_a_crafted_round_count_is_bounded(tmp_path: Path) -> None:
    path = _linear(tmp_path)
    meta = read_metadata(path)
    meta["state"]["rounds"] = 10**30
    tensors = load_file(str(path))
    meta["sha256"] = checkpoint._digest(meta, tensors)
    save_file(tensors, str(path), metadata={"bandexa_gym": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"rounds must be an integer in \[0, 2\*\*62\]"):
        load_agent(path)


def test_load_state_takes_the_pending_decisions_and_never_reuses_an_id(tmp_path: Path) -> None:
    from bandexa_gym.agents import load_state

    saved = LinearTS((3,), 2, feature_map="disjoint", seed=0)
    early = [saved.decide(OBS) for _ in range(2)]
    path = saved.save(tmp_path / "a.safetensors")
    other = LinearTS((3,), 2, feature_map="disjoint", seed=1)
    own = [other.decide(OBS).id for _ in range(5)]
    load_state(other, path)
    assert other.pending == 2
    assert other.decide(OBS).id > max(own)
    other.feedback(early[1].id, 1.0)
    with pytest.raises(ValueError, match="unknown or already used"):
        other.feedback(own[-1], 1.0)  # its own pending decisions were replaced
