"""Tests of the Laplace logistic head against independently computed MAP and Laplace solutions."""

from __future__ import annotations

import math

import pytest
import torch

from bandexa_gym.heads.logistic import LaplaceLogisticRegression, LogisticHeadConfig
from bandexa_gym.heads.protocol import Head

F64 = torch.float64


def _data(n: int, d: int, seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(d, generator=gen, dtype=F64)
    Z = torch.randn(n, d, generator=gen, dtype=F64)
    r = (torch.rand(n, generator=gen, dtype=F64) < torch.sigmoid(Z @ w)).to(F64)
    return Z, r, w


def _reference_map(Z: torch.Tensor, r: torch.Tensor, prior_var: float) -> tuple[torch.Tensor, ...]:
    """Plain float64 Newton for the MAP of logistic regression with a N(0, prior_var I) prior,
    written independently of the head; returns (w_MAP, Hessian at w_MAP)."""
    d = Z.shape[1]
    eye = torch.eye(d, dtype=F64)
    w = torch.zeros(d, dtype=F64)
    for _ in range(100):
        p = torch.sigmoid(Z @ w)
        grad = Z.T @ (p - r) + w / prior_var
        hess = Z.T @ (Z * (p * (1 - p)).unsqueeze(1)) + eye / prior_var
        step = torch.linalg.solve(hess, grad)
        w = w - step
        if float(step.abs().max()) < 1e-14:
            break
    p = torch.sigmoid(Z @ w)
    return w, Z.T @ (Z * (p * (1 - p)).unsqueeze(1)) + eye / prior_var


def _snapshot(head: LaplaceLogisticRegression) -> dict:
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in head.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return all(torch.equal(v, b[k]) if torch.is_tensor(v) else v == b[k] for k, v in a.items())


@pytest.mark.parametrize("prior_var", [0.5, 4.0])
@pytest.mark.parametrize("stream", ["list", "generator"])
def test_refit_mean_is_the_newton_map_and_covariance_the_inverse_hessian(
    prior_var: float, stream: str
) -> None:
    Z, r, _ = _data(200, 5, seed=1)
    w_map, hess = _reference_map(Z, r, prior_var)
    chunks = [(Z[i : i + 64], r[i : i + 64]) for i in range(0, 200, 64)]
    head = LaplaceLogisticRegression(5, prior_var=prior_var)
    head.rebuild(chunks if stream == "list" else iter(chunks))
    torch.testing.assert_close(head.mean, w_map, rtol=0, atol=1e-6)
    torch.testing.assert_close(head.covariance(), torch.linalg.inv(hess), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(head.precision(), hess, rtol=1e-6, atol=1e-6)
    assert head.n_obs == 200
    assert head.refit_info is not None and head.refit_info.converged and head.refit_info.n == 200


def test_refit_does_not_depend_on_the_state_before_it() -> None:
    Z, r, _ = _data(150, 4, seed=2)
    cold = LaplaceLogisticRegression(4)
    cold.rebuild([(Z, r)])
    warm = LaplaceLogisticRegression(4)
    warm.update_batch(Z[:100], r[:100])  # an online state near the MAP: a warm start
    warm.rebuild([(Z, r)])
    far = LaplaceLogisticRegression(4)
    far.load_state_dict({**far.state_dict(), "mean": torch.full((4,), 50.0, dtype=F64)})
    far.rebuild([(Z, r)])  # a start far worse than 0: the fit starts from 0
    for head in (warm, far):
        torch.testing.assert_close(head.mean, cold.mean, rtol=0, atol=1e-8)
        torch.testing.assert_close(head.covariance(), cold.covariance(), rtol=1e-7, atol=1e-10)
    assert warm.refit_info.steps < cold.refit_info.steps


def test_refit_of_separable_data_stays_finite() -> None:
    Z = torch.tensor([[1.0, 2.0], [2.0, 1.0], [-1.0, -2.0], [-3.0, -1.0]], dtype=F64) * 50
    r = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)
    head = LaplaceLogisticRegression(2, prior_var=100.0)
    head.rebuild([(Z, r)])
    w_map, hess = _reference_map(Z, r, 100.0)
    assert torch.isfinite(head.mean).all() and torch.isfinite(head.sqrt_covariance).all()
    torch.testing.assert_close(head.mean, w_map, rtol=1e-6, atol=1e-6)
    mean, var = head.predict(Z)
    assert torch.isfinite(mean).all() and torch.isfinite(var).all() and (var > 0).all()


def test_rebuild_without_data_is_the_prior() -> None:
    head = LaplaceLogisticRegression(3, prior_var=2.0)
    head.update(torch.ones(3), 1)
    head.rebuild([])
    torch.testing.assert_close(head.mean, torch.zeros(3, dtype=F64))
    torch.testing.assert_close(head.covariance(), 2.0 * torch.eye(3, dtype=F64))
    assert head.n_obs == 0


def _mode_by_bisection(m: float, v: float, r: int) -> float:
    """argmax_s log σ(±s) − (s − m)² / (2v), by plain bisection on the derivative."""
    y = 2 * r - 1
    lo, hi = m - abs(v) - 1, m + abs(v) + 1
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        derivative = y * (1 - 1 / (1 + math.exp(-y * mid))) - (mid - m) / v
        lo, hi = (mid, hi) if derivative > 0 else (lo, mid)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("r", [0, 1])
def test_online_step_is_the_one_dimensional_laplace_update(r: int) -> None:
    head = LaplaceLogisticRegression(3, prior_var=1.5)
    Z, rs, _ = _data(10, 3, seed=3)
    head.update_batch(Z, rs)  # some correlated prior N(μ, Σ)
    mu, cov = head.mean, head.covariance()
    z = torch.tensor([0.3, -1.2, 0.8], dtype=F64)
    m, v = float(z @ mu), float(z @ cov @ z)
    s = _mode_by_bisection(m, v, r)
    c = 1 / (1 + math.exp(-s)) / (1 + math.exp(s))
    expected_mu = mu + cov @ z * (s - m) / v
    expected_cov = cov - torch.outer(cov @ z, cov @ z) * c / (1 + c * v)
    head.update(z, r)
    torch.testing.assert_close(head.mean, expected_mu, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head.covariance(), expected_cov, rtol=1e-10, atol=1e-12)
    assert head.n_obs == 11


def test_online_updates_move_toward_the_data() -> None:
    head = LaplaceLogisticRegression(2)
    z = torch.tensor([1.0, 0.5], dtype=F64)
    m0, v0 = (t.item() for t in head.predict(z[None]))
    head.update(z, 1)
    m1, v1 = (t.item() for t in head.predict(z[None]))
    assert m1 > m0 and v1 < v0  # a success raises the logit and sharpens it
    head.update(z, 0)
    head.update(z, 0)
    m2, v2 = (t.item() for t in head.predict(z[None]))
    assert m2 < m1 and v2 < v1

    # Streamed online over a problem, the mean lands near the refit's MAP.
    Z, r, w_true = _data(2000, 4, seed=4, scale=1.5)
    online = LaplaceLogisticRegression(4)
    for i in range(Z.shape[0]):
        online.update(Z[i], r[i])
    w_map, _ = _reference_map(Z, r, 1.0)
    assert float((online.mean - w_map).norm() / w_map.norm()) < 0.1
    assert float(torch.nn.functional.cosine_similarity(online.mean, w_true, dim=0)) > 0.98


def test_update_batch_equals_sequential_updates() -> None:
    Z, r, _ = _data(40, 5, seed=5)
    Z = Z.to(torch.float32)  # any real dtype is taken
    one, batch = LaplaceLogisticRegression(5), LaplaceLogisticRegression(5)
    for i in range(40):
        one.update(Z[i], int(r[i]))
    batch.update_batch(Z, r)
    assert _same_state(one.state_dict(), batch.state_dict())


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan"), float("inf")])
def test_rewards_outside_zero_one_are_rejected_and_change_nothing(bad: float) -> None:
    Z, r, _ = _data(20, 3, seed=6)
    head = LaplaceLogisticRegression(3)
    head.update_batch(Z[:10], r[:10])
    before = _snapshot(head)
    with pytest.raises(ValueError, match="0 or 1"):
        head.update(Z[10], bad)
    r_bad = r[10:].clone()
    r_bad[5] = bad
    with pytest.raises(ValueError, match="0 or 1"):
        head.update_batch(Z[10:], r_bad)
    with pytest.raises(ValueError, match="0 or 1"):
        head.rebuild([(Z[:10], r[:10]), (Z[10:], r_bad)])
    with pytest.raises(ValueError, match="0 or 1"):
        head.rebuild(iter([(Z[10:], r_bad)]))
    with pytest.raises(ValueError, match="0 or 1"):
        head.update(Z[10], "one")
    assert _same_state(before, head.state_dict())


def test_bad_features_and_shapes_are_rejected_and_change_nothing() -> None:
    head = LaplaceLogisticRegression(3)
    head.update(torch.ones(3), 1)
    before = _snapshot(head)
    for z in (torch.tensor([1.0, float("nan"), 0.0]), torch.tensor([float("inf"), 0.0, 0.0])):
        with pytest.raises(ValueError, match="finite"):
            head.update(z, 1)
        with pytest.raises(ValueError, match="finite"):
            head.update_batch(torch.stack([torch.ones(3), z]), torch.ones(2))
        with pytest.raises(ValueError, match="finite"):
            head.rebuild([(z[None], torch.ones(1))])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        head.update(torch.ones(4), 1)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        head.update_batch(torch.ones(2, 4), torch.ones(2))
    with pytest.raises(ValueError, match=r"r of shape \(2,\)"):
        head.update_batch(torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="chunks of Z"):
        head.rebuild([(torch.ones(2, 4), torch.ones(2))])
    assert _same_state(before, head.state_dict())


def test_extreme_features_never_give_nan() -> None:
    head = LaplaceLogisticRegression(3, prior_var=10.0)
    gen = torch.Generator().manual_seed(7)
    for i in range(50):
        z = torch.randn(3, generator=gen, dtype=F64) * 10.0 ** (i % 8)
        head.update(z, i % 2)
    state = head.state_dict()
    assert torch.isfinite(state["mean"]).all() and torch.isfinite(state["sqrt_covariance"]).all()
    scores = head.thompson_scores(torch.randn(5, 3, dtype=F64) * 1e6, generator=gen)
    assert torch.isfinite(scores).all()


def test_predict_is_the_logit_mean_and_variance_of_the_closed_form() -> None:
    head = LaplaceLogisticRegression(4)
    Z, r, _ = _data(30, 4, seed=8)
    head.rebuild([(Z, r)])
    head.update(Z[0], 1)  # a non-triangular factor
    C = torch.randn(2, 6, 4, dtype=F64)
    mean, var = head.predict(C)
    cov = head.covariance()
    torch.testing.assert_close(mean, C @ head.mean)
    torch.testing.assert_close(var, torch.einsum("bkd,de,bke->bk", C, cov, C))
    probs = head.probability(C)
    torch.testing.assert_close(probs, torch.sigmoid(mean / torch.sqrt(1 + math.pi * var / 8)))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_sample_moments_follow_the_scaled_posterior(scale: float) -> None:
    head = LaplaceLogisticRegression(3, sample_scale=scale)
    Z, r, _ = _data(50, 3, seed=9)
    head.rebuild([(Z, r)])
    draws = head.sample(40_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws.mean(0), head.mean, rtol=0, atol=0.02)
    torch.testing.assert_close(
        torch.cov(draws.T), scale**2 * head.covariance(), rtol=0.05, atol=2e-3
    )


def test_batched_draws_consume_the_generator_like_single_draws() -> None:
    head = LaplaceLogisticRegression(5, sample_scale=0.7)
    Z, r, _ = _data(30, 5, seed=10)
    head.rebuild([(Z, r)])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    single = torch.stack([head.sample(generator=g1) for _ in range(4)])
    torch.testing.assert_close(head.sample(4, generator=g2), single, rtol=0, atol=1e-12)
    torch.testing.assert_close(head.sample(generator=g1), head.sample(1, generator=g2)[0])
    cands = torch.randn(3, 6, 5, dtype=F64)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    looped = torch.stack([head.thompson_scores(c, generator=g1) for c in cands])
    torch.testing.assert_close(head.thompson_scores(cands, generator=g2), looped)
    assert head.thompson_scores(cands, generator=g2, draws=7).shape == (7, 3, 6)


def test_state_dict_round_trip_and_validation() -> None:
    head = LaplaceLogisticRegression(3, prior_var=2.0)
    Z, r, _ = _data(20, 3, seed=11)
    head.update_batch(Z, r)
    other = LaplaceLogisticRegression(3, prior_var=2.0)
    other.load_state_dict(head.state_dict())
    assert _same_state(head.state_dict(), other.state_dict())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    torch.testing.assert_close(head.sample(generator=g1), other.sample(generator=g2))

    fresh = LaplaceLogisticRegression(3, prior_var=2.0)
    before = _snapshot(fresh)
    state = head.state_dict()
    bad_states = {
        "prior_var": {**state, "prior_var": 1.0},
        "dim": {**state, "dim": 4},
        "shape": {**state, "mean": torch.zeros(4)},
        "non-finite": {**state, "mean": torch.tensor([0.0, float("nan"), 0.0])},
        "missing": {k: v for k, v in state.items() if k != "n_obs"},
        "n_obs": {**state, "n_obs": -1},
    }
    for what, bad in bad_states.items():
        with pytest.raises(ValueError):
            fresh.load_state_dict(bad)
        assert _same_state(before, fresh.state_dict()), what


def test_config_and_constructor_validation() -> None:
    assert LogisticHeadConfig.from_dict({"prior_var": 2}).prior_var == 2.0
    for bad in (0.0, -1.0, float("inf"), True, "1"):
        with pytest.raises(ValueError, match="prior_var"):
            LogisticHeadConfig(prior_var=bad)
        with pytest.raises(ValueError, match="sample_scale"):
            LogisticHeadConfig(sample_scale=bad)
    with pytest.raises(ValueError, match="unknown logistic head settings"):
        LogisticHeadConfig.from_dict({"noise": 1.0})
    with pytest.raises(ValueError, match="dim"):
        LaplaceLogisticRegression(0)
    with pytest.raises(ValueError, match="not both"):
        LaplaceLogisticRegression(2, LogisticHeadConfig(), prior_var=1.0)
    with pytest.raises(TypeError, match="LogisticHeadConfig"):
        LaplaceLogisticRegression(2, {"prior_var": 1.0})  # type: ignore[arg-type]


def test_implements_the_head_protocol_and_resets() -> None:
    head = LaplaceLogisticRegression(2, prior_var=3.0)
    assert isinstance(head, Head)
    head.update(torch.ones(2), 0)
    head.reset()
    torch.testing.assert_close(head.covariance(), 3.0 * torch.eye(2, dtype=F64))
    assert head.n_obs == 0 and not head.mean.any()


def test_weighted_refit_is_the_weighted_newton_map() -> None:
    Z, r, _ = _data(120, 4, seed=12)
    weights = torch.linspace(0.1, 1.0, 120, dtype=F64)
    head = LaplaceLogisticRegression(4)
    head.rebuild([(Z[:50], r[:50], weights[:50]), (Z[50:], r[50:], weights[50:])])
    # An independent weighted Newton solve.
    w, eye = torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64)
    for _ in range(60):
        p = torch.sigmoid(Z @ w)
        hess = Z.T @ (Z * (weights * p * (1 - p)).unsqueeze(1)) + eye
        w = w - torch.linalg.solve(hess, Z.T @ (weights * (p - r)) + w)
    p = torch.sigmoid(Z @ w)
    hess = Z.T @ (Z * (weights * p * (1 - p)).unsqueeze(1)) + eye
    torch.testing.assert_close(head.mean, w, rtol=0, atol=1e-6)
    torch.testing.assert_close(head.precision(), hess, rtol=1e-6, atol=1e-6)
    assert head.n_obs == pytest.approx(float(weights.sum()))
    # Zero weights leave rows out; integer weights count rows that many times.
    window = LaplaceLogisticRegression(4)
    window.rebuild(iter([(Z, r, (torch.arange(120) >= 70).to(F64))]))
    recent = LaplaceLogisticRegression(4)
    recent.rebuild([(Z[70:], r[70:])])
    torch.testing.assert_close(window.mean, recent.mean, rtol=0, atol=1e-8)
    twice = LaplaceLogisticRegression(4)
    twice.rebuild([(Z[:30], r[:30], torch.full((30,), 2.0, dtype=F64))])
    doubled = LaplaceLogisticRegression(4)
    doubled.rebuild([(torch.cat([Z[:30], Z[:30]]), torch.cat([r[:30], r[:30]]))])
    torch.testing.assert_close(twice.mean, doubled.mean, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="weights"):
        head.rebuild([(Z, r, -weights)])


def test_forgetting_discounts_the_posterior_before_each_step() -> None:
    Z, r, _ = _data(20, 3, seed=13)
    forgetful = LaplaceLogisticRegression(3, forgetting=0.9)
    manual = LaplaceLogisticRegression(3)
    for i in range(20):
        forgetful.update(Z[i], r[i])
        manual.discount(0.9)
        manual.update(Z[i], r[i])
    torch.testing.assert_close(forgetful.mean, manual.mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(forgetful.covariance(), manual.covariance(), rtol=1e-12, atol=1e-14)
    assert forgetful.n_obs == pytest.approx(manual.n_obs) and forgetful.n_obs < 10
    batch = LaplaceLogisticRegression(3, forgetting=0.9)
    batch.update_batch(Z, r)
    torch.testing.assert_close(batch.mean, forgetful.mean, rtol=0, atol=1e-14)
    assert batch.n_obs == pytest.approx(forgetful.n_obs)
    # A discount widens the posterior (precision × γ) and keeps the mean.
    mean, cov = forgetful.mean, forgetful.covariance()
    forgetful.discount(0.5)
    torch.testing.assert_close(forgetful.mean, mean)
    torch.testing.assert_close(forgetful.covariance(), cov / 0.5)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="discount"):
            forgetful.discount(bad)
    with pytest.raises(ValueError, match="forgetting"):
        LogisticHeadConfig(forgetting=1.5)
