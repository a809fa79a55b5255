"""Off-policy estimators: hand-computed values, identities between them, intervals, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from bandexa_gym import ope

# A log of 4 rounds over K = 2 candidates, small enough to compute every estimator by hand.
R = np.array([1.0, 0.0, 1.0, 0.0])
A = np.array([0, 1, 1, 0])
MU = np.array([0.5, 0.25, 0.5, 0.8])
PI = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8], [0.5, 0.5]])
Q = np.array([[0.5, 0.1], [0.2, 0.4], [0.3, 0.6], [0.0, 1.0]])
# w = pi(a_i) / mu_i = [2, 2, 1.6, 0.625]; residuals r - q(a_i) = [0.5, -0.4, 0.4, 0]
# DM terms: [0.5, 0.3, 0.54, 0.5]


def test_hand_computed_values() -> None:
    kw = {"n_bootstrap": 0}
    assert ope.ips(R, MU, PI, A, **kw).value == pytest.approx(3.6 / 4)
    assert ope.snips(R, MU, PI, A, **kw).value == pytest.approx(3.6 / 6.225)
    assert ope.direct_method(PI, Q, **kw).value == pytest.approx(1.84 / 4)
    # DM terms + w * residual = [1.5, -0.5, 1.18, 0.5]
    assert ope.doubly_robust(R, MU, PI, A, Q, **kw).value == pytest.approx(2.68 / 4)
    # tau = 1.8 drops the corrections of the two rounds with w = 2
    sw = ope.switch_dr(R, MU, PI, A, Q, tau=1.8, **kw)
    assert sw.value == pytest.approx(2.48 / 4) and sw.params["tau"] == 1.8
    # lambda = 4: shrunk weights 4w / (w^2 + 4) = [1, 1, 6.4 / 6.56, 2.5 / 4.390625]
    os_ = ope.dr_os(R, MU, PI, A, Q, lambda_=4.0, **kw)
    assert os_.value == pytest.approx((1.0 - 0.1 + (0.54 + 0.4 * 6.4 / 6.56) + 0.5) / 4)
    assert os_.params["lambda"] == 4.0
    # replay: target actions [0, 0, 1, 1] match the logged ones in rounds 0 and 2
    rp = ope.replay(R, A, np.array([0, 0, 1, 1]), **kw)
    assert rp.value == 1.0 and rp.n_matched == 2 and rp.ess == 2.0
    rp = ope.replay(R, A, np.array([0, 1, 0, 1]), **kw)
    assert rp.value == 0.5 and rp.n_matched == 2


def test_effective_sample_size_and_fields() -> None:
    est = ope.ips(R, MU, PI, A, n_bootstrap=50)
    assert est.ess == pytest.approx(6.225**2 / (4 + 4 + 2.56 + 0.390625))
    assert est.n == 4 and est.n_bootstrap == 50 and est.replicates.shape == (50,)
    assert est.estimator == "ips" and est.confidence == 0.95 and est.n_clipped == 0
    assert est.ci_low <= est.ci_high and est.ci == (est.ci_low, est.ci_high)
    assert ope.direct_method(PI, Q, n_bootstrap=0).ess == 4.0
    assert math.isnan(ope.ips(R, MU, PI, A, n_bootstrap=0).ci_low)
    d = est.to_dict()
    assert d["value"] == est.value and "replicates" not in d
    assert "ips: 0.9 [95% CI" in str(est)


def test_logged_action_probabilities_are_enough_for_ips_and_snips() -> None:
    pi_logged = PI[np.arange(4), A]
    assert ope.ips(R, MU, pi_logged, n_bootstrap=0).value == pytest.approx(0.9)
    assert ope.snips(R, MU, pi_logged, n_bootstrap=0).value == pytest.approx(3.6 / 6.225)


def test_snips_equals_ips_when_all_weights_are_one() -> None:
    rng = np.random.default_rng(0)
    n, k = 200, 5
    r = rng.random(n)
    a = rng.integers(0, k, n)
    pi = rng.dirichlet(np.full(k, 5.0), n)
    mu = pi[np.arange(n), a]  # the target is the logging policy: w = 1
    s, i = ope.snips(r, mu, pi, a, seed=3), ope.ips(r, mu, pi, a, seed=3)
    assert s.value == pytest.approx(i.value) and s.value == pytest.approx(r.mean())
    np.testing.assert_allclose(s.replicates, i.replicates)  # same resamples
    assert s.ess == pytest.approx(n)


def _random_log(n: int, k: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu_all = rng.dirichlet(np.ones(k) * 2, n)
    a = (rng.random(n)[:, None] > np.cumsum(mu_all, 1)).sum(1).clip(0, k - 1)
    return {
        "rewards": rng.random(n),
        "propensities": mu_all[np.arange(n), a],
        "target_probs": rng.dirichlet(np.ones(k), n),
        "actions": a,
        "q": rng.random((n, k)),
    }


def test_dr_equals_dm_with_an_exact_model_and_ips_with_a_zero_model() -> None:
    log = _random_log(300, 4, seed=1)
    r, mu, pi, a, q = (log[k] for k in ("rewards", "propensities", "target_probs", "actions", "q"))
    exact = q.copy()
    exact[np.arange(300), a] = r  # the model predicts every logged reward exactly
    dr = ope.doubly_robust(r, mu, pi, a, exact, seed=0)
    dm = ope.direct_method(pi, exact, seed=0)
    assert dr.value == pytest.approx(dm.value)
    np.testing.assert_allclose(dr.replicates, dm.replicates)
    zero = ope.doubly_robust(r, mu, pi, a, np.zeros_like(q), n_bootstrap=0)
    assert zero.value == pytest.approx(ope.ips(r, mu, pi, a, n_bootstrap=0).value)


def test_switch_and_shrinkage_span_dm_to_dr() -> None:
    log = _random_log(300, 4, seed=2)
    args = tuple(log[k] for k in ("rewards", "propensities", "target_probs", "actions", "q"))
    dr = ope.doubly_robust(*args, n_bootstrap=0).value
    dm = ope.direct_method(log["target_probs"], log["q"], n_bootstrap=0).value
    assert dr != pytest.approx(dm)
    assert ope.switch_dr(*args, tau=math.inf, n_bootstrap=0).value == pytest.approx(dr)
    assert ope.switch_dr(*args, tau=0.0, n_bootstrap=0).value == pytest.approx(dm)
    assert ope.dr_os(*args, lambda_=math.inf, n_bootstrap=0).value == pytest.approx(dr)
    assert ope.dr_os(*args, lambda_=0.0, n_bootstrap=0).value == pytest.approx(dm)
    # Tuning picks from the grid; a one-point grid is that point.
    assert ope.dr_os(*args, lambdas=[math.inf], n_bootstrap=0).value == pytest.approx(dr)
    tuned = ope.switch_dr(*args, n_bootstrap=0)
    assert tuned.params["tau"] >= 0 and math.isfinite(tuned.value)


def test_tuning_shrinks_when_the_model_is_exact() -> None:
    # With an exact model the residuals are 0: every lambda has no bias, and the variance is
    # the same, so the estimate equals DM = DR whatever the grid picks.
    log = _random_log(200, 3, seed=4)
    q = log["q"].copy()
    q[np.arange(200), log["actions"]] = log["rewards"]
    args = (log["rewards"], log["propensities"], log["target_probs"], log["actions"], q)
    dm = ope.direct_method(log["target_probs"], q, n_bootstrap=0).value
    assert ope.dr_os(*args, n_bootstrap=0).value == pytest.approx(dm)
    assert ope.switch_dr(*args, n_bootstrap=0).value == pytest.approx(dm)


def test_bootstrap_is_seeded_and_matches_the_standard_error() -> None:
    log = _random_log(2000, 4, seed=5)
    args = tuple(log[k] for k in ("rewards", "propensities", "target_probs", "actions"))
    a1, a2 = ope.ips(*args, seed=7), ope.ips(*args, seed=7)
    np.testing.assert_array_equal(a1.replicates, a2.replicates)
    assert not np.array_equal(a1.replicates, ope.ips(*args, seed=8).replicates)
    gen = ope.ips(*args, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(gen.replicates, a1.replicates)
    w = log["target_probs"][np.arange(2000), log["actions"]] / log["propensities"]
    se = (w * log["rewards"]).std() / math.sqrt(2000)
    big = ope.ips(*args, n_bootstrap=2000, seed=0)
    assert big.std_error == pytest.approx(se, rel=0.1)
    assert big.ci_low < big.value < big.ci_high
    assert big.ci_high - big.ci_low == pytest.approx(2 * 1.96 * se, rel=0.15)
    narrow = ope.ips(*args, n_bootstrap=2000, seed=0, confidence=0.5)
    assert narrow.ci_high - narrow.ci_low < 0.5 * (big.ci_high - big.ci_low)


def test_interval_coverage_on_synthetic_logs() -> None:
    # Uniform logging over K = 4, a fixed stochastic target, Bernoulli rewards with known
    # means: the true value is exact, and ~95 % of the intervals must cover it.
    k, n, reps = 4, 400, 120
    means = np.array([0.1, 0.3, 0.5, 0.7])
    target = np.array([0.1, 0.2, 0.3, 0.4])
    truth = float(target @ means)
    rng = np.random.default_rng(11)
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for rep in range(reps):
        a = rng.integers(0, k, n)
        r = (rng.random(n) < means[a]).astype(float)
        pi = np.tile(target, (n, 1))
        q = np.tile(means + 0.1, (n, 1))  # a biased model: DR must correct it
        est = ope.evaluate(
            r,
            np.full(n, 1 / k),
            pi,
            a,
            q,
            estimators=["ips", "snips", "dr"],
            n_bootstrap=200,
            seed=rep,
        )
        for name in covered:
            covered[name] += est[name].ci_low <= truth <= est[name].ci_high
    for name, hits in covered.items():
        assert 0.88 <= hits / reps <= 0.995, (name, hits)


def test_replay_with_a_stochastic_target_draws_actions() -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    a = rng.integers(0, k, n)
    r = (a == 2).astype(float)  # only candidate 2 pays
    target = np.tile([0.0, 0.0, 0.5, 0.5], (n, 1))
    est = ope.replay(r, a, target, propensities=np.full(n, 0.25), seed=1)
    assert est.n_matched == pytest.approx(n / k, rel=0.15)
    assert est.value == pytest.approx(0.5, abs=0.08)
    assert est.ci_low < 0.5 < est.ci_high
    # Paired with the other estimators: the bootstrap stream does not depend on the draws.
    plain = ope.on_policy_value(r, seed=1)
    idx = np.random.default_rng(1).integers(0, n, size=(1, n))
    assert plain.replicates[0] == pytest.approx(r[idx].mean())
    with pytest.warns(RuntimeWarning, match="no logged action matches"):
        none = ope.replay(r, a, np.full(n, 9), n_bootstrap=10)
    assert math.isnan(none.value) and none.n_matched == 0


def test_replay_refuses_non_uniform_logs() -> None:
    with pytest.raises(ValueError, match="uniformly at random"):
        ope.replay(R, A, np.array([0, 0, 1, 1]), propensities=MU)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([0.5, 0.0, 0.5, 0.8]), r"propensities: 1 are 0, first at index 1"),
        (np.array([0.5, np.nan, 0.5, 0.8]), r"propensities: 1 are missing \(NaN\)"),
        (np.array([0.5, 1.5, 0.5, 0.8]), r"outside \(0, 1\], first at index 1 \(value 1.5\)"),
        (np.array([0.5, -0.2, 0.5, 0.8]), r"outside \(0, 1\]"),
        (np.array([0.5, 0.5, 0.5]), r"propensities: expected shape \(4,\)"),
    ],
)
def test_bad_propensities_are_named(bad: np.ndarray, message: str) -> None:
    for fn in (ope.ips, ope.snips):
        with pytest.raises(ValueError, match=message):
            fn(R, bad, PI, A)
    with pytest.raises(ValueError, match=message):
        ope.doubly_robust(R, bad, PI, A, Q)


def test_other_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"target_probs: row 1 sums to 0.5"):
        ope.ips(R, MU, np.array([[1, 0], [0.25, 0.25], [0, 1], [1, 0]]), A)
    with pytest.raises(ValueError, match=r"target_probs: expected .* shape \(n, K\)"):
        ope.doubly_robust(R, MU, PI[:, 0], A, Q)
    with pytest.raises(ValueError, match=r"actions: index 2 at round 0 is outside \[0, 2\)"):
        ope.ips(R, MU, PI, np.array([2, 0, 1, 0]))
    with pytest.raises(ValueError, match=r"actions: required"):
        ope.ips(R, MU, PI)
    with pytest.raises(ValueError, match=r"reward_model: expected .* shape \(4, 2\)"):
        ope.doubly_robust(R, MU, PI, A, Q[:, :1])
    with pytest.raises(ValueError, match=r"rewards: 1 entries are NaN"):
        ope.ips(np.array([1.0, np.nan, 0, 0]), MU, PI, A)
    with pytest.raises(ValueError, match=r"rewards: the log is empty"):
        ope.ips([], [], np.empty((0, 2)), [])
    with pytest.raises(ValueError, match=r"confidence: expected a level in \(0, 1\)"):
        ope.ips(R, MU, PI, A, confidence=95)
    with pytest.raises(ValueError, match=r"n_bootstrap: expected an integer >= 0"):
        ope.ips(R, MU, PI, A, n_bootstrap=-1)
    with pytest.raises(ValueError, match=r"tau: expected a weight threshold >= 0"):
        ope.switch_dr(R, MU, PI, A, Q, tau=-1.0)
    with pytest.raises(ValueError, match=r"estimators: unknown \['ipw'\]"):
        ope.evaluate(R, MU, PI, A, Q, estimators=["ipw"])
    with pytest.raises(ValueError, match=r"reward_model: the 'dr' estimator needs one"):
        ope.evaluate(R, MU, PI, A, estimators=["dr"])


def test_tiny_propensities_are_clipped_with_a_warning() -> None:
    mu = np.array([0.5, 1e-6, 0.5, 0.8])
    with pytest.warns(ope.ClippedPropensityWarning, match=r"1 of 4 .* min_propensity=0.001"):
        est = ope.ips(R, mu, PI, A, min_propensity=1e-3, n_bootstrap=0)
    assert est.n_clipped == 1 and est.params["min_propensity"] == 1e-3
    # round 1 has reward 0, so clipping changes its weight only: SNIPS shows it
    with pytest.warns(ope.ClippedPropensityWarning):
        s = ope.snips(R, mu, PI, A, min_propensity=1e-3, n_bootstrap=0)
    assert s.value == pytest.approx(3.6 / (2 + 0.5 / 1e-3 + 1.6 + 0.625))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unclipped = ope.snips(R, mu, PI, A, min_propensity=0.0, n_bootstrap=0)
    assert unclipped.value == pytest.approx(3.6 / (2 + 0.5 / 1e-6 + 1.6 + 0.625))


def test_evaluate_runs_every_estimator_on_paired_resamples() -> None:
    out = ope.evaluate(R, MU, PI, A, Q, n_bootstrap=20, seed=3)
    assert list(out) == ["ips", "snips", "dm", "dr", "switch-dr", "dr-os"]
    assert out["ips"].value == pytest.approx(0.9) and out["dr"].value == pytest.approx(0.67)
    assert list(ope.evaluate(R, MU, PI, A, n_bootstrap=0)) == ["ips", "snips"]


def test_huge_bootstrap_counts_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match=r"n_bootstrap: 1000000000 resamples .* 1,000,000"):
        ope.ips(R, MU, PI, A, n_bootstrap=10**9)
    n = 1_000_000  # 10^5 resamples of 10^6 rounds: 10^11 resampled rounds, over the bound
    r, ones = np.zeros(n), np.ones(n)
    with pytest.raises(ValueError, match=r"1e\+11 resampled rounds, more than the 5e\+10"):
        ope.ips(r, ones, ones, n_bootstrap=100_000)
    with pytest.raises(ValueError, match=r"n_bootstrap: 10000000 resamples is more than"):
        ope.direct_method(PI, lambda rows: 1 / 0, refit=True, n_bootstrap=10**7)  # no fit


# Position-dependent target (OBP's (n, K, positions) action distribution): round i was logged
# at position POS[i], and slice POS[i] of round i is PI[i]; the other slices differ.
POS = np.array([2, 0, 1, 2])
OTHER = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1], [0.3, 0.7]])


def _by_position(selected: np.ndarray, other: np.ndarray) -> np.ndarray:
    out = np.repeat(other[:, :, None], 3, axis=2)
    out[np.arange(4), :, POS] = selected
    return out


def test_a_position_dependent_target_is_read_at_the_logged_position() -> None:
    pi3, q3 = _by_position(PI, OTHER), _by_position(Q, Q[::-1])
    assert pi3[0, :, 2].tolist() == [1.0, 0.0] and pi3[1, :, 0].tolist() == [0.5, 0.5]
    kw = {"n_bootstrap": 30, "seed": 4}
    # Same arithmetic as the 2-D call on the selected slices: equal exactly.
    assert ope.ips(R, MU, pi3, A, position=POS, **kw) == ope.ips(R, MU, PI, A, **kw)
    assert ope.ips(R, MU, pi3, A, position=POS, n_bootstrap=0).value == pytest.approx(0.9)
    both = ope.evaluate(R, MU, pi3, A, q3, position=POS, **kw)
    plain = ope.evaluate(R, MU, PI, A, Q, **kw)
    for name, est in plain.items():
        assert both[name] == est, name
    assert both["dr"].value == pytest.approx(0.67)
    # A 2-D model with a 3-D target, and a 3-D model with a 2-D target.
    assert ope.direct_method(pi3, Q, position=POS, **kw) == ope.direct_method(PI, Q, **kw)
    assert ope.doubly_robust(R, MU, PI, A, q3, position=POS, **kw) == plain["dr"]
    assert ope.evaluate(R, MU, PI, A, q3, position=POS, **kw) == plain
    rp = ope.replay(R, A, _by_position(np.eye(2)[[0, 0, 1, 1]], np.eye(2)[[1, 1, 0, 0]]),
                    position=POS, n_bootstrap=0)  # fmt: skip
    assert rp.value == 1.0 and rp.n_matched == 2  # as the 2-D call in the hand computation


def test_position_input_is_checked() -> None:
    pi3 = _by_position(PI, OTHER)
    with pytest.raises(ValueError, match=r"target_probs: shape \(4, 2, 3\) is position-dep"):
        ope.ips(R, MU, pi3, A)
    with pytest.raises(ValueError, match=r"position: given, but none of target_probs is"):
        ope.ips(R, MU, PI, A, position=POS)
    with pytest.raises(ValueError, match=r"position: 3 at round 1 is outside \[0, 3\)"):
        ope.snips(R, MU, pi3, A, position=[0, 3, 0, 0])
    with pytest.raises(ValueError, match=r"position: expected .* shape \(4,\)"):
        ope.ips(R, MU, pi3, A, position=POS[:3])
    with pytest.raises(ValueError, match=r"position: expected integer positions"):
        ope.ips(R, MU, pi3, A, position=[0.5, 0, 0, 0])


def _linear_log(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    """Uniform logging over 3 arms, rewards linear in a scalar context plus N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    theta = np.array([[0.5, 0.2], [0.0, -0.3], [0.2, 0.4]])  # (intercept, slope) per arm
    x = rng.uniform(-1.0, 1.0, n)
    a = rng.integers(0, 3, n)
    r = theta[a, 0] + theta[a, 1] * x + rng.normal(0.0, 1.0, n)
    return x, a, r, theta


def _least_squares(x: np.ndarray, a: np.ndarray, r: np.ndarray):
    """A reward-model fitter: per-arm least squares on the rounds asked, predicting them."""

    def fit(rows: np.ndarray) -> np.ndarray:
        feats = np.stack([np.ones(len(rows)), x[rows]], axis=1)
        q = np.empty((len(rows), 3))
        for arm in range(3):
            mine = a[rows] == arm
            coef = np.linalg.lstsq(feats[mine], r[rows][mine], rcond=None)[0]
            q[:, arm] = feats @ coef
        return q

    return fit


def test_the_refit_interval_covers_the_model_error_that_the_conditional_one_misses() -> None:
    # Target: always arm 0. Its true value is arm 0's intercept (E[x] = 0). The fitted model's
    # intercept is off by ~0.1 (noise 1, ~100 rounds per arm), far more than the spread of
    # the logged contexts that the conditional interval resamples.
    covered = {"conditional": 0, "refit": 0}
    for seed in range(5):
        x, a, r, theta = _linear_log(seed)
        truth = theta[0, 0]
        pi = np.tile([1.0, 0.0, 0.0], (len(r), 1))
        fit = _least_squares(x, a, r)
        kw = {"n_bootstrap": 200, "seed": seed}
        cond = ope.direct_method(pi, fit(np.arange(len(r))), **kw)
        refit = ope.direct_method(pi, fit, refit=True, **kw)
        assert cond.conditional and not refit.conditional
        assert refit.value == cond.value  # the same model on every round
        assert refit.ci_high - refit.ci_low > 3 * (cond.ci_high - cond.ci_low)
        covered["conditional"] += cond.ci_low <= truth <= cond.ci_high
        covered["refit"] += refit.ci_low <= truth <= refit.ci_high
    assert covered["refit"] >= 4 and covered["conditional"] <= 2, covered
    assert "conditional on the reward model" in str(cond) and "conditional" not in str(refit)


def test_evaluate_refits_once_per_resample_for_every_model_estimator() -> None:
    x, a, r, _ = _linear_log(0, n=120)
    pi = np.tile([0.2, 0.3, 0.5], (120, 1))
    mu = np.full(120, 1 / 3)
    fit = _least_squares(x, a, r)
    calls = []

    def counted(rows: np.ndarray) -> np.ndarray:
        calls.append(rows)
        return fit(rows)

    out = ope.evaluate(r, mu, pi, a, counted, refit=True, n_bootstrap=25, seed=2)
    assert len(calls) == 1 + 25  # all rounds once, then one fit per resample
    assert all(np.all(np.diff(rows) >= 0) for rows in calls)  # sorted: log order
    fixed = ope.evaluate(r, mu, pi, a, fit(np.arange(120)), n_bootstrap=25, seed=2)
    for name, est in out.items():
        assert est.value == pytest.approx(fixed[name].value), name
        assert not est.conditional
        assert fixed[name].conditional == (name not in ("ips", "snips"))
        assert est.n_bootstrap == 25 and est.replicates.shape == (25,)
    np.testing.assert_array_equal(out["ips"].replicates, fixed["ips"].replicates)
    # τ and λ are re-tuned per resample: the refit interval differs from the fixed one.
    assert out["switch-dr"].replicates.tolist() != fixed["switch-dr"].replicates.tolist()
    single = ope.dr_os(r, mu, pi, a, fit, refit=True, n_bootstrap=25, seed=2)
    np.testing.assert_allclose(single.replicates, out["dr-os"].replicates)
    with pytest.raises(ValueError, match=r"refit: True refits .* got fixed predictions"):
        ope.doubly_robust(r, mu, pi, a, fit(np.arange(120)), refit=True)
    with pytest.raises(ValueError, match=r"refit: .* none of them"):
        ope.evaluate(r, mu, pi, a, fit, estimators=["ips"], refit=True)


def test_evaluate_runs_replay_when_asked() -> None:
    out = ope.evaluate(R, np.full(4, 0.5), np.eye(2)[[0, 0, 1, 1]], A, estimators=["replay"],
                       n_bootstrap=0)  # fmt: skip
    assert out["replay"].value == 1.0 and out["replay"].n_matched == 2


def test_open_bandit_context_has_the_full_and_the_obp_form() -> None:
    from bandexa_gym.datasets import OpenBanditData

    n = 3
    data = OpenBanditData(
        campaign="men", behavior_policy="random", actions=np.zeros(n, np.int64),
        positions=np.zeros(n, np.int64), rewards=np.zeros(n), propensities=np.ones(n),
        timestamps=np.zeros(n, "datetime64[us]"),
        user_features=np.array([[0, 1], [2, 0], [1, 1]]),
        user_feature_categories=(("a", "b", "c"), ("x", "y")),
        user_item_affinity=np.array([[5.0, 6.0], [7.0, 8.0], [9.0, 0.0]]),
        item_context=np.zeros((2, 1)), item_feature_names=("item_feature_0",), n_actions=2,
    )  # fmt: skip
    # every level one-hot (3 + 2 columns), then the affinities (2 columns)
    np.testing.assert_array_equal(
        data.context(),
        [[1, 0, 0, 0, 1, 5, 6], [0, 0, 1, 1, 0, 7, 8], [0, 1, 0, 0, 1, 9, 0]],
    )
    # OBP: pd.get_dummies(drop_first=True): levels "a" and "x" dropped, no affinities
    np.testing.assert_array_equal(data.context(form="obp"), [[0, 0, 1], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match=r"form: expected 'full' or 'obp'"):
        data.context(form="pipeline")


def test_importing_the_package_needs_neither_pyarrow_nor_torch() -> None:
    code = (
        "import sys, bandexa_gym, bandexa_gym.ope, bandexa_gym.logs, bandexa_gym.datasets; "
        "print(sorted(m for m in ('pyarrow', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
