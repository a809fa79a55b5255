"""Tests for bandexa_gym.encoders (kept small: ResNet runs on 32x32 images)."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable

import pytest
import torch
from torch import nn

from bandexa_gym.encoders import (
    ConvEncoder,
    Encoder,
    MLPEncoder,
    ResNetEncoder,
    TwoTowerEncoder,
    freeze_backbone,
    grow_input,
    preprocess_mnist_for_resnet,
)

FACTORIES: dict[str, Callable[[], Encoder]] = {
    "mlp": lambda: MLPEncoder(6, 4, feature_dim=16, hidden=(32, 32)),
    "two_tower": lambda: TwoTowerEncoder(6, 4, tower_dim=8, hidden=(16,)),
    "conv": lambda: ConvEncoder(10),
    "resnet18": lambda: ResNetEncoder(5, arch="resnet18", image_size=32, feature_dim=16),
}
TIGHT = {"rtol": 0.0, "atol": 1e-6}


@pytest.fixture(params=list(FACTORIES))
def encoder(request: pytest.FixtureRequest) -> Encoder:
    torch.manual_seed(0)
    return FACTORIES[request.param]().eval()


def _inputs(enc: Encoder, k: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(enc.context_shape, generator=g), torch.randn(k, enc.action_dim, generator=g)


@torch.no_grad()
def test_encode_batch_matches_forward_and_encode(encoder: Encoder) -> None:
    x, cand = _inputs(encoder, 7)
    z = encoder.encode_batch(x, cand)
    assert z.shape == (7, encoder.feature_dim)
    z_fwd = encoder(x.expand(7, *x.shape), cand)
    assert z_fwd.shape == (7, encoder.feature_dim)
    torch.testing.assert_close(z, z_fwd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(encoder.encode(x, cand[3]), z[3], rtol=1e-5, atol=1e-5)
    assert encoder.encode(x, cand[3]).shape == (encoder.feature_dim,)
    torch.testing.assert_close(encoder.encode_batch(x.unsqueeze(0), cand), z)  # (1, *shape) ok


@torch.no_grad()
def test_chunked_encode_batch_is_identical(encoder: Encoder) -> None:
    x, cand = _inputs(encoder, 11)
    full = encoder.encode_batch(x, cand)
    torch.testing.assert_close(encoder.encode_batch(x, cand, action_chunk=3), full, **TIGHT)
    torch.testing.assert_close(encoder.encode_batch(x, cand, action_chunk=1), full, **TIGHT)
    encoder.action_chunk = 4
    torch.testing.assert_close(encoder.encode_batch(x, cand), full, **TIGHT)


@torch.no_grad()
def test_integer_inputs_are_cast(encoder: Encoder) -> None:
    x = torch.randint(0, 2, encoder.context_shape, dtype=torch.uint8)
    cand = torch.eye(encoder.action_dim, dtype=torch.int64)
    z = encoder.encode_batch(x, cand)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, encoder.encode_batch(x.float(), cand.float()), **TIGHT)


def test_bad_shapes_raise_value_error(encoder: Encoder) -> None:
    x, cand = _inputs(encoder, 3)
    with pytest.raises(ValueError, match="expected shape"):
        encoder.encode_batch(x, cand[:, :-1])
    with pytest.raises(ValueError, match=r"x: expected shape"):
        encoder.encode_batch(x.flatten()[:-1], cand)
    with pytest.raises(ValueError, match="expected shape"):
        encoder.encode(x, cand)
    with pytest.raises(ValueError, match="batch sizes differ"):
        encoder(x.expand(3, *x.shape), cand[:2])


def test_training_step_updates_trainable_params_only(encoder: Encoder) -> None:
    encoder.train()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, *encoder.context_shape, generator=g)
    a = torch.randn(8, encoder.action_dim, generator=g)
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1)
    loss = encoder(x, a).pow(2).mean()
    loss.backward()
    opt.step()
    for name, p in encoder.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert not changed, f"frozen parameter {name} changed"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in encoder.named_parameters())


def test_resnet_default_freeze_policy() -> None:
    enc = ResNetEncoder(5, image_size=32)
    names = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert names, "nothing trainable"
    for n in names:
        assert n.startswith(("backbone.layer4.", "fusion.")), n
    assert any(n.startswith("backbone.layer4.") for n in names)
    assert any(n.startswith("fusion.action_dense.") for n in names)
    assert any(n.startswith("fusion.fuse.") for n in names)
    assert not enc.backbone.conv1.weight.requires_grad
    enc.train()  # frozen batch norms keep their running statistics
    assert not enc.backbone.bn1.training and enc.backbone.layer4[0].bn1.training


def test_freeze_backbone_policies() -> None:
    net = nn.Sequential()
    net.add_module("stem", nn.Linear(2, 2))
    net.add_module("layer4", nn.Linear(2, 2))
    assert freeze_backbone(net, "all") == [
        "stem.weight",
        "stem.bias",
        "layer4.weight",
        "layer4.bias",
    ]
    assert freeze_backbone(net, "none") == []
    assert not any(p.requires_grad for p in net.parameters())
    assert freeze_backbone(net, ["layer4"]) == ["layer4.weight", "layer4.bias"]
    with pytest.raises(ValueError, match="layer9"):
        freeze_backbone(net, "layer9")


@torch.no_grad()
def test_grow_input_preserves_z(encoder: Encoder) -> None:
    x, cand = _inputs(encoder, 5)
    z_old = encoder.encode_batch(x, cand)
    new_ctx = encoder.context_shape[0] + 3 if len(encoder.context_shape) == 1 else None
    grown = grow_input(encoder, context_dim=new_ctx, action_dim=encoder.action_dim + 2)
    assert grown is encoder and encoder.action_dim == cand.shape[1] + 2
    cand_pad = torch.cat([cand, torch.zeros(5, 2)], dim=1)
    x_pad = x if new_ctx is None else torch.cat([x, torch.zeros(3)])
    assert encoder.context_shape == tuple(x_pad.shape)
    torch.testing.assert_close(encoder.encode_batch(x_pad, cand_pad), z_old, **TIGHT)
    batch = encoder(x_pad.expand(5, *x_pad.shape), cand_pad)
    torch.testing.assert_close(batch, z_old, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="only grow"):
        encoder.grow_input(action_dim=1)


@pytest.mark.parametrize("name", ["conv", "resnet18"])
def test_image_encoders_refuse_context_growth(name: str) -> None:
    enc = FACTORIES[name]()
    with pytest.raises(ValueError, match="image"):
        grow_input(enc, context_dim=100)


@pytest.mark.parametrize("hidden", [(32, 32), ()])
def test_mlp_split_first_layer_equals_concat_form(hidden: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    enc = MLPEncoder(6, 4, feature_dim=16, hidden=hidden).eval()
    x, a = torch.randn(9, 6), torch.randn(9, 4)
    torch.testing.assert_close(enc(x, a), enc.net(torch.cat([x, a], 1)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(enc.encode_batch(x[0], a), enc(x[:1].expand(9, 6), a))


def test_two_tower_structure() -> None:
    torch.manual_seed(0)
    enc = TwoTowerEncoder(6, 4, tower_dim=8)
    assert enc.feature_dim == 24
    x, a = torch.randn(3, 6), torch.randn(3, 4)
    z = enc(x, a)
    u, v = enc.ctx_tower(x), enc.act_tower(a)
    torch.testing.assert_close(z, torch.cat([u, v, u * v], 1))


def test_construction_is_deterministic_and_generator_keeps_global_rng() -> None:
    torch.manual_seed(123)
    a = ConvEncoder(10)
    torch.manual_seed(123)
    b = ConvEncoder(10)
    state = torch.get_rng_state()
    c = ConvEncoder(10, generator=torch.Generator().manual_seed(5))
    d = ConvEncoder(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb, pc, pd in zip(
        a.parameters(), b.parameters(), c.parameters(), d.parameters(), strict=True
    ):
        assert torch.equal(pa, pb) and torch.equal(pc, pd)
    assert not torch.equal(a.fusion.fuse[0].weight, c.fusion.fuse[0].weight)


def test_pretrained_without_cache_fails_fast(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models._api as tv_api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_network)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="not in the torch cache") as info:
        ResNetEncoder(5, pretrained=True)
    assert str(tmp_path) in str(info.value) and "pretrained=False" in str(info.value)

    def must_not_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted with download=False")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", must_not_download)
    with pytest.raises(RuntimeError, match="download=False"):
        ResNetEncoder(5, pretrained=True, download=False)
    assert time.perf_counter() - start < 10


def test_pretrained_loads_from_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = tvm.ResNet18_Weights.DEFAULT.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(7)
    reference = tvm.resnet18()
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[-1])
    enc = ResNetEncoder(5, pretrained=True, download=False, in_channels=1, image_size=32)
    torch.testing.assert_close(
        enc.backbone.layer2[0].conv1.weight, reference.layer2[0].conv1.weight
    )
    mean_w = reference.conv1.weight.mean(dim=1, keepdim=True)
    torch.testing.assert_close(enc.backbone.conv1.weight, mean_w)
    assert enc.eval().encode_batch(torch.rand(1, 32, 32), torch.eye(5)).shape == (5, 16 * 4)


def test_preprocess_mnist_for_resnet() -> None:
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = preprocess_mnist_for_resnet(x)
    assert out.shape == (2, 3, 224, 224)
    torch.testing.assert_close(
        out[0, :, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    )
    assert preprocess_mnist_for_resnet(x[0], size=64).shape == (3, 64, 64)
    u8 = preprocess_mnist_for_resnet((x * 255).to(torch.uint8), size=32)
    torch.testing.assert_close(u8, preprocess_mnist_for_resnet(x, size=32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        preprocess_mnist_for_resnet(torch.zeros(2, 3, 28, 28))


def test_a_plain_module_is_refused_with_what_it_lacks() -> None:
    from bandexa_gym.agents import NeuralLinearTS

    with pytest.raises(TypeError, match="lacks feature_dim, context_shape, action_dim"):
        NeuralLinearTS(torch.nn.Linear(3, 3))


def test_the_documented_encoder_recipe_trains_and_saves(tmp_path) -> None:
    import re
    from pathlib import Path

    import numpy as np

    from bandexa_gym.agents import NeuralLinearTS, load_agent

    doc = (Path(__file__).resolve().parents[1] / "docs" / "development.md").read_text()
    recipe = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)[-1]
    namespace: dict = {}
    exec(recipe, namespace)
    agent = NeuralLinearTS(namespace["BilinearEncoder"](4, 3), seed=0)
    obs = {"context": np.ones(4, np.float32), "candidates": np.eye(5, 3, dtype=np.float32)}
    agent.observe(obs, agent.act(obs), 1.0)
    loaded = load_agent(agent.save(tmp_path / "custom.safetensors"))
    assert np.array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
