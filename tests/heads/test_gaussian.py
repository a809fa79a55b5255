"""Tests of the Bayesian linear regression head against closed-form batch solutions."""

from __future__ import annotations

import math

import pytest
import torch

from bandexa_gym.heads.gaussian import BayesianLinearRegression
from bandexa_gym.heads.protocol import score

F64 = torch.float64
NOISES = ["nig", 0.25]


def _data(n: int, d: int, seed: int = 0, noise_sd: float = 0.5) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=gen, dtype=F64)
    Z = torch.randn(n, d, generator=gen, dtype=F64)
    r = Z @ w + noise_sd * torch.randn(n, generator=gen, dtype=F64)
    return Z, r


def _closed_form(Z: torch.Tensor, r: torch.Tensor, prior_var: float, noise: str | float):
    """Batch posterior: Λ = I/prior_var + ZᵀZ/σ², μ = Λ⁻¹Zᵀr/σ², b = b0 + ½(rᵀr/σ² − μᵀΛμ)."""
    var = 1.0 if noise == "nig" else float(noise)
    prec = torch.eye(Z.shape[1], dtype=F64) / prior_var + Z.T @ Z / var
    cov = torch.linalg.inv(prec)
    mean = cov @ (Z.T @ r) / var
    b = 1.0 + 0.5 * float(r @ r / var - mean @ prec @ mean)
    return mean, cov, prec, b


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


def _assert_same_posterior(h1, h2, tol: float = 1e-9) -> None:
    assert h1.n_obs == h2.n_obs
    assert _rel(h1.mean, h2.mean) <= tol
    assert _rel(h1.scaled_covariance(), h2.scaled_covariance()) <= tol
    assert h1.b == pytest.approx(h2.b, rel=tol)
    assert h1.log_marginal_likelihood() == pytest.approx(h2.log_marginal_likelihood(), rel=tol)


def _states_equal(s1: dict, s2: dict) -> bool:
    for key, value in s1.items():
        other = s2[key]
        if isinstance(value, torch.Tensor):
            if not torch.equal(value, other):
                return False
        elif value != other:
            return False
    return True


# -- exactness ------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", NOISES)
def test_sequential_updates_match_closed_form(noise: str | float) -> None:
    d, n, prior_var = 24, 3000, 2.0
    Z, r = _data(n, d)
    head = BayesianLinearRegression(d, prior_var=prior_var, noise=noise)
    for i in range(n):
        head.update(Z[i], r[i])
    mean, cov, prec, b = _closed_form(Z, r, prior_var, noise)
    assert head.n_obs == n
    assert _rel(head.mean, mean) <= 1e-8
    assert _rel(head.scaled_covariance(), cov) <= 1e-8
    assert _rel(head.precision(), prec) <= 1e-8
    assert head.a == 1.0 + n / 2
    assert head.b == pytest.approx(b, rel=1e-8)
    if noise == "nig":
        assert _rel(head.covariance(), b / (head.a - 1.0) * cov) <= 1e-8
    else:
        assert _rel(head.covariance(), cov) <= 1e-8


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("chunk", [1, 5, 24, 100, 400])  # n < d, n = d and n > d paths
def test_update_batch_equals_sequential(noise: str | float, chunk: int) -> None:
    d, n = 24, 400
    Z, r = _data(n, d, seed=1)
    seq = BayesianLinearRegression(d, prior_var=0.5, noise=noise)
    bat = BayesianLinearRegression(d, prior_var=0.5, noise=noise)
    for i in range(n):
        seq.update(Z[i], r[i])
    for s in range(0, n, chunk):
        bat.update_batch(Z[s : s + chunk], r[s : s + chunk])
    _assert_same_posterior(bat, seq)


@pytest.mark.parametrize("noise", NOISES)
def test_rebuild_equals_sequential(noise: str | float) -> None:
    d, n = 16, 500
    Z, r = _data(n, d, seed=2)
    seq = BayesianLinearRegression(d, noise=noise)
    for i in range(n):
        seq.update(Z[i], r[i])
    head = BayesianLinearRegression(d, noise=noise)
    head.update_batch(*_data(50, d, seed=3))  # rebuild must forget this
    head.rebuild((Z[s : s + 128].float().double(), r[s : s + 128]) for s in range(0, n, 128))
    _assert_same_posterior(head, seq, tol=1e-8)
    head.rebuild([])
    _assert_same_posterior(head, BayesianLinearRegression(d, noise=noise))


def test_rebuild_accepts_float32_chunks() -> None:
    Z, r = _data(300, 8, seed=4)
    Z32, r32 = Z.float(), r.float()
    head = BayesianLinearRegression(8)
    head.rebuild([(Z32[:100], r32[:100]), (Z32[100:], r32[100:])])
    ref = BayesianLinearRegression(8)
    ref.update_batch(Z32.double(), r32.double())
    _assert_same_posterior(head, ref, tol=1e-8)


def test_log_marginal_likelihood_matches_direct_density() -> None:
    d, n, prior_var = 6, 40, 1.5
    Z, r = _data(n, d, seed=5)
    gram = Z @ Z.T
    # Fixed noise: r ~ N(0, σ² I + prior_var Z Zᵀ).
    head = BayesianLinearRegression(d, prior_var=prior_var, noise=0.25)
    head.update_batch(Z[:7], r[:7])
    for i in range(7, n):
        head.update(Z[i], r[i])
    cov = 0.25 * torch.eye(n, dtype=F64) + prior_var * gram
    ref = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), cov).log_prob(r)
    assert head.log_marginal_likelihood() == pytest.approx(float(ref), rel=1e-10)
    # NIG: r ~ multivariate t, 2·a0 dof, scale (b0/a0)(I + prior_var Z Zᵀ).
    a0, b0 = 2.5, 0.7
    head = BayesianLinearRegression(d, prior_var=prior_var, a0=a0, b0=b0)
    for i in range(n):
        head.update(Z[i], r[i])
    nu = 2 * a0
    chol = torch.linalg.cholesky(b0 / a0 * (torch.eye(n, dtype=F64) + prior_var * gram))
    maha = float(torch.linalg.solve_triangular(chol, r[:, None], upper=False).pow(2).sum())
    ref = (
        math.lgamma((nu + n) / 2)
        - math.lgamma(nu / 2)
        - n / 2 * math.log(nu * math.pi)
        - float(chol.diagonal().log().sum())
        - (nu + n) / 2 * math.log1p(maha / nu)
    )
    assert head.log_marginal_likelihood() == pytest.approx(ref, rel=1e-10)
    assert BayesianLinearRegression(d).log_marginal_likelihood() == 0.0


# -- sampling -------------------------------------------------------------------------------
def _check_moments(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, inflate: float):
    """Sample mean/covariance within 5 Monte-Carlo standard errors, entry by entry.

    SE(mean_j) = sqrt(C_jj / N); for Gaussian draws SE(Ĉ_ij) = sqrt((C_ii C_jj + C_ij²) / N),
    multiplied by ``inflate`` for heavier tails. With d = 4 there are 4 + 10 checked entries;
    P(|N(0,1)| > 5) ≈ 5.7e-7 each, so a correct sampler fails with probability < 1e-5 (and the
    generator is seeded, so the test is deterministic).
    """
    n = draws.shape[0]
    diag = cov.diagonal()
    se_mean = (diag / n).sqrt()
    assert ((draws.mean(0) - mean).abs() <= 5 * se_mean).all()
    emp = torch.cov(draws.T)
    se_cov = inflate * ((diag[:, None] * diag[None, :] + cov**2) / n).sqrt()
    assert ((emp - cov).abs() <= 5 * se_cov).all()


def _trained(noise: str | float, n: int = 30, d: int = 4) -> BayesianLinearRegression:
    head = BayesianLinearRegression(d, prior_var=2.0, noise=noise)
    head.update_batch(*_data(n, d, seed=6, noise_sd=0.8))
    return head


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("noise", NOISES)
def test_sample_moments(noise: str | float, batched: bool) -> None:
    head = _trained(noise)
    gen = torch.Generator().manual_seed(123)
    n = 40_000 if batched else 6_000
    if batched:
        draws = head.sample(n, generator=gen)
    else:
        draws = torch.stack([head.sample(generator=gen) for _ in range(n)])
    assert draws.shape == (n, 4) and draws.dtype == F64
    if noise == "nig":
        # Multivariate t with ν = 2a = 32 dof: covariance b/(a−1)·Σ. Its fourth moments exceed
        # the Gaussian ones by the factor (ν−2)/(ν−4) ≈ 1.07; use sqrt(1.5) ≥ that, generously.
        nu = 2 * head.a
        assert nu == 32
        _check_moments(draws, head.mean, head.covariance(), inflate=math.sqrt(1.5))
    else:
        _check_moments(draws, head.mean, head.covariance(), inflate=1.0)


@pytest.mark.parametrize("noise", NOISES)
def test_same_seed_same_samples(noise: str | float) -> None:
    head = _trained(noise)

    def draw(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return head.sample(generator=gen), head.sample(5, generator=gen)

    one, many = draw(11)
    one2, many2 = draw(11)
    assert torch.equal(one, one2) and torch.equal(many, many2)
    assert not torch.equal(one, draw(12)[0])


def test_score_shapes() -> None:
    head = _trained("nig", d=4)
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(7, 4)  # float32 candidates
    w = head.sample(generator=gen)
    assert score(Z, w).dtype == torch.float32  # float32 features are scored in float32
    assert torch.allclose(score(Z, w).double(), Z.double() @ w, atol=1e-5)
    assert torch.equal(score(Z.double(), w), Z.double() @ w)
    W = head.sample(3, generator=gen)
    Zb = torch.randn(3, 7, 4)
    s = score(Zb, W)
    assert s.shape == (3, 7)
    assert torch.allclose(s[1].double(), Zb[1].double() @ W[1], atol=1e-5)
    assert head.thompson_scores(Z, generator=gen).shape == (7,)
    assert head.thompson_scores(Zb, generator=gen).shape == (3, 7)
    assert head.sample(0, generator=gen).shape == (0, 4)


def test_non_finite_sample_raises() -> None:
    head = BayesianLinearRegression(3, noise=1.0)
    state = head.state_dict()
    state["mean"] = torch.full((3,), 1e308, dtype=F64)
    state["sqrt_covariance"] = torch.full((3, 3), 1e308, dtype=F64)
    head.load_state_dict(state)  # finite, but every draw overflows
    with pytest.raises(FloatingPointError, match="not finite"):
        head.sample(generator=torch.Generator().manual_seed(0))


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_rejected_and_state_unchanged(bad: float) -> None:
    z = torch.randn(5, dtype=F64)
    # Every position, at the prior (diagonal factor: zeros everywhere else) and trained.
    for head in (BayesianLinearRegression(5), _trained("nig", d=5)):
        before = head.state_dict()
        for pos in range(5):
            z_bad = z.clone()
            z_bad[pos] = bad
            with pytest.raises(ValueError, match="finite"):
                head.update(z_bad, 1.0)
        assert _states_equal(before, head.state_dict())
    before = head.state_dict()
    with pytest.raises(ValueError, match="finite"):
        head.update(z, bad)
    with pytest.raises(ValueError, match="finite"):
        head.update(z, torch.tensor(bad))
    with pytest.raises(ValueError):
        head.update(z, 1e300)  # finite but overflows b
    Z = torch.randn(8, 5, dtype=F64)
    r = torch.randn(8, dtype=F64)
    Z_bad, r_bad = Z.clone(), r.clone()
    Z_bad[3, 2], r_bad[6] = bad, bad
    for args in ((Z_bad, r), (Z, r_bad)):
        with pytest.raises(ValueError, match="finite"):
            head.update_batch(*args)
        with pytest.raises(ValueError, match="finite"):
            head.rebuild([(Z, r), args])
    assert _states_equal(before, head.state_dict())


def test_wrong_shapes_rejected() -> None:
    head = BayesianLinearRegression(128)
    with pytest.raises(ValueError, match=r"expected z of shape \(128,\), got \(64,\)"):
        head.update(torch.randn(64), 1.0)
    with pytest.raises(ValueError, match=r"expected z of shape \(128,\), got \(1, 128\)"):
        head.update(torch.randn(1, 128), 1.0)
    with pytest.raises(ValueError, match=r"expected Z of shape \(n, 128\)"):
        head.update_batch(torch.randn(4, 64), torch.randn(4))
    with pytest.raises(ValueError, match=r"expected r of shape \(4,\)"):
        head.update_batch(torch.randn(4, 128), torch.randn(5))
    with pytest.raises(ValueError, match="scalar"):
        head.update(torch.randn(128), torch.randn(2))
    assert head.n_obs == 0


def test_integer_inputs_accepted() -> None:
    head = BayesianLinearRegression(3, noise=1.0)
    ref = BayesianLinearRegression(3, noise=1.0)
    head.update(torch.tensor([1, 0, 2]), 3)
    head.update([0, 1, 1], torch.tensor(2))
    head.update_batch(torch.tensor([[1, 1, 1]]), torch.tensor([1]))
    ref.update_batch(
        torch.tensor([[1.0, 0, 2], [0, 1, 1], [1, 1, 1]], dtype=F64),
        torch.tensor([3.0, 2, 1], dtype=F64),
    )
    _assert_same_posterior(head, ref)


def test_bad_constructor_arguments() -> None:
    for kwargs in ({"prior_var": 0.0}, {"noise": "gaussian"}, {"noise": -1.0}, {"a0": math.nan}):
        with pytest.raises(ValueError):
            BayesianLinearRegression(3, **kwargs)
    with pytest.raises(ValueError):
        BayesianLinearRegression(0)


# -- covariance accessors, expand, persistence ----------------------------------------------
def test_prior_and_covariance_accessors() -> None:
    head = BayesianLinearRegression(3, prior_var=2.0)
    torch.testing.assert_close(head.scaled_covariance(), 2.0 * torch.eye(3, dtype=F64))
    assert torch.equal(head.mean, torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="undefined"):
        head.covariance()  # a = a0 = 1: the prior t has no covariance
    fixed = BayesianLinearRegression(3, prior_var=2.0, noise=0.1)
    assert torch.equal(fixed.covariance(), fixed.scaled_covariance())


@pytest.mark.parametrize("noise", NOISES)
def test_expand_keeps_predictions_and_adds_prior_block(noise: str | float) -> None:
    d, extra, prior_var = 6, 3, 0.7
    Z, r = _data(50, d, seed=8)
    head = BayesianLinearRegression(d, prior_var=prior_var, noise=noise)
    head.update_batch(Z, r)
    mean, cov, lml, a, b = (
        head.mean,
        head.scaled_covariance(),
        head.log_marginal_likelihood(),
        head.a,
        head.b,
    )
    head.expand(d + extra)
    assert head.dim == d + extra and head.n_obs == 50
    x = torch.randn(4, d, dtype=F64)
    x_pad = torch.cat([x, torch.zeros(4, extra, dtype=F64)], dim=1)
    assert torch.allclose(x_pad @ head.mean, x @ mean, rtol=1e-12, atol=1e-12)
    new_cov = head.scaled_covariance()
    assert torch.allclose(new_cov[:d, :d], cov, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(new_cov[d:, d:], prior_var * torch.eye(extra, dtype=F64))
    assert torch.equal(new_cov[:d, d:], torch.zeros(d, extra, dtype=F64))
    assert torch.equal(head.mean[d:], torch.zeros(extra, dtype=F64))
    assert (head.a, head.b) == (a, b)
    assert head.log_marginal_likelihood() == pytest.approx(lml, rel=1e-12)
    # Equals a head of the new size fed the zero-padded data; and keeps learning.
    Z_pad = torch.cat([Z, torch.zeros(50, extra, dtype=F64)], dim=1)
    ref = BayesianLinearRegression(d + extra, prior_var=prior_var, noise=noise)
    ref.update_batch(Z_pad, r)
    _assert_same_posterior(head, ref)
    z_new = torch.randn(d + extra, dtype=F64)
    head.update(z_new, 0.3)
    ref.update(z_new, 0.3)
    _assert_same_posterior(head, ref)
    with pytest.raises(ValueError):
        head.expand(d)


@pytest.mark.parametrize("noise", NOISES)
def test_state_dict_round_trip(noise: str | float) -> None:
    head = _trained(noise, d=5)
    state = head.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, float, str)) for v in state.values())
    other = BayesianLinearRegression(5, prior_var=2.0, noise=noise)
    other.load_state_dict(state)
    assert _states_equal(state, other.state_dict())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(head.sample(4, generator=g1), other.sample(4, generator=g2))
    head.update(torch.ones(5), 1.0)  # the state_dict holds copies
    assert _states_equal(state, other.state_dict())
    head.reset()
    _assert_same_posterior(head, BayesianLinearRegression(5, prior_var=2.0, noise=noise))


def test_load_state_dict_validates() -> None:
    head = _trained("nig", d=5)
    state = head.state_dict()
    with pytest.raises(ValueError, match="dim 5, this head has dim 4"):
        BayesianLinearRegression(4, prior_var=2.0).load_state_dict(state)
    with pytest.raises(ValueError, match="noise"):
        BayesianLinearRegression(5, prior_var=2.0, noise=1.0).load_state_dict(state)
    target = BayesianLinearRegression(5, prior_var=2.0)
    before = target.state_dict()
    for key, value in (
        ("mean", torch.zeros(4, dtype=F64)),
        ("sqrt_covariance", torch.eye(4, dtype=F64)),
        ("mean", torch.full((5,), math.nan, dtype=F64)),
    ):
        with pytest.raises(ValueError):
            target.load_state_dict({**state, key: value})
    with pytest.raises(ValueError, match="missing"):
        target.load_state_dict({k: v for k, v in state.items() if k != "quad"})
    assert _states_equal(before, target.state_dict())


def test_device_and_dtype_arguments() -> None:
    head = BayesianLinearRegression(4, device="cpu", dtype=torch.float32)
    head.update(torch.randn(4, dtype=F64), 0.5)
    assert head.sample(generator=torch.Generator().manual_seed(0)).dtype == torch.float32
    assert head.to("cpu") is head and head.device == torch.device("cpu")
    assert head.mean.device == torch.device("cpu")


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("dim", [3, 16, 40])
def test_batched_draws_consume_the_generator_like_single_draws(
    noise: str | float, dim: int
) -> None:
    head = BayesianLinearRegression(dim, noise=noise)
    gen = torch.Generator().manual_seed(0)
    head.update_batch(torch.randn(30, dim, generator=gen), torch.randn(30, generator=gen))
    batched_gen = torch.Generator().manual_seed(5)
    looped_gen = torch.Generator().manual_seed(5)
    batched = head.sample(6, generator=batched_gen)
    looped = torch.stack([head.sample(generator=looped_gen) for _ in range(6)])
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)
    assert torch.equal(batched_gen.get_state(), looped_gen.get_state())
    one_gen = torch.Generator().manual_seed(9)
    single_gen = torch.Generator().manual_seed(9)
    assert torch.equal(head.sample(1, generator=one_gen)[0], head.sample(generator=single_gen))


# -- forgetting -------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", NOISES)
def test_forgetting_matches_the_discounted_closed_form(noise: str | float) -> None:
    gamma, d, n = 0.995, 4, 2000
    Z, r = _data(n, d, seed=3)
    head = BayesianLinearRegression(d, noise=noise, forgetting=gamma, prior_var=2.0)
    for z, reward in zip(Z, r.tolist(), strict=True):
        head.update(z, reward)
    v = 1.0 if noise == "nig" else noise
    weights = gamma ** torch.arange(n - 1, -1, -1, dtype=F64)  # γ^(T−s)
    precision = gamma**n * torch.eye(d, dtype=F64) / 2.0 + (Z.T * weights) @ Z / v
    eta = Z.T @ (weights * r) / v
    mean = torch.linalg.solve(precision, eta)
    torch.testing.assert_close(head.mean, mean, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(head.precision(), precision, rtol=1e-8, atol=1e-8)
    quad = (weights * r * r).sum() / v - mean @ precision @ mean
    assert head.n_obs == pytest.approx(float(weights.sum()), rel=1e-10)
    assert head.b == pytest.approx(1.0 + 0.5 * float(quad), rel=1e-8)


@pytest.mark.parametrize("noise", NOISES)
def test_a_weighted_rebuild_keeps_the_prior(noise: str | float) -> None:
    gamma, d, n = 0.99, 3, 500
    Z, r = _data(n, d, seed=4)
    weights = gamma ** torch.arange(n - 1, -1, -1, dtype=F64)
    head = BayesianLinearRegression(d, noise=noise, forgetting=gamma)
    head.rebuild([(Z[:200], r[:200], weights[:200]), (Z[200:], r[200:], weights[200:])])
    v = 1.0 if noise == "nig" else noise
    precision = torch.eye(d, dtype=F64) + (Z.T * weights) @ Z / v  # the prior, undiscounted
    torch.testing.assert_close(head.precision(), precision, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(head.mean, torch.linalg.solve(precision, Z.T @ (weights * r) / v))


def test_no_forgetting_is_the_plain_head_exactly() -> None:
    Z, r = _data(50, 5, seed=5)
    plain, unit = BayesianLinearRegression(5), BayesianLinearRegression(5, forgetting=1.0)
    for z, reward in zip(Z, r.tolist(), strict=True):
        plain.update(z, reward)
        unit.update(z, reward)
    assert torch.equal(plain.mean, unit.mean) and plain.b == unit.b
    assert torch.equal(plain.sqrt_covariance, unit.sqrt_covariance)
    with pytest.raises(ValueError, match="forgetting"):
        BayesianLinearRegression(5, forgetting=1.5)


# -- intercept ----------------------------------------------------------------------------
@pytest.mark.parametrize("noise", NOISES)
def test_an_intercept_head_regresses_on_z_and_one(noise: str | float) -> None:
    Z, r = _data(80, 3, seed=6)
    r = r + 5.0  # a mean the features cannot explain
    head = BayesianLinearRegression(3, noise=noise, intercept=True)
    head.update_batch(Z[:50], r[:50])
    for z, reward in zip(Z[50:], r[50:].tolist(), strict=True):
        head.update(z, reward)
    plain = BayesianLinearRegression(4, noise=noise)
    plain.update_batch(torch.cat([Z, torch.ones(80, 1, dtype=F64)], 1), r)
    torch.testing.assert_close(head.mean, plain.mean)
    assert head.dim == 3 and head.state_dim == 4 and head.b == pytest.approx(plain.b)
    probe = torch.randn(2, 5, 3, dtype=F64)
    mean, variance = head.predict(probe)
    ref_mean, ref_variance = plain.predict(torch.cat([probe, torch.ones(2, 5, 1, dtype=F64)], -1))
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(variance, ref_variance)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(
        head.thompson_scores(probe, generator=gen_a),
        plain.thompson_scores(
            torch.cat([probe, torch.ones(2, 5, 1, dtype=F64)], -1), generator=gen_b
        ),
    )
    rebuilt = BayesianLinearRegression(3, noise=noise, intercept=True)
    rebuilt.rebuild([(Z, r)])
    torch.testing.assert_close(rebuilt.mean, head.mean)


def test_growing_an_intercept_head_keeps_the_intercept_last() -> None:
    Z, r = _data(40, 2, seed=7)
    head = BayesianLinearRegression(2, intercept=True)
    head.update_batch(Z, r + 3.0)
    before = head.predict(Z[:5])[0]
    head.expand(4)
    grown = head.predict(torch.cat([Z[:5], torch.zeros(5, 2, dtype=F64)], 1))[0]
    torch.testing.assert_close(grown, before)  # new features at zero change nothing
    assert head.dim == 4 and head.state_dim == 5
