"""Fixed feature maps: the map names, the ``auto`` choice, and the concat head's two parts."""

from __future__ import annotations

import pytest
import torch

from bandexa_gym.features.arms import MAX_FIXED_ARMS
from bandexa_gym.features.fixed import (
    FEATURE_MAPS,
    ConcatFeatures,
    ConcatHead,
    check_feature_map,
    check_one_hot,
    choose_feature_map,
    concat_rows,
    flat_contexts,
    head_dim,
)
from bandexa_gym.posterior import BayesianLinearRegression


def test_the_map_names_and_their_checks() -> None:
    assert FEATURE_MAPS == ("auto", "concat", "disjoint", "per_arm")
    for name in FEATURE_MAPS:
        check_feature_map(name)
    with pytest.raises(ValueError, match="feature_map must be 'auto', 'concat'.*got 'dense'"):
        check_feature_map("dense")
    check_one_hot(torch.eye(3)[None])
    with pytest.raises(ValueError, match="needs one-hot candidate rows"):
        check_one_hot(torch.full((1, 3, 3), 0.5))
    assert [head_dim(m, 4, 3) for m in ("concat", "disjoint", "per_arm")] == [7, 4, 4]


def test_auto_picks_disjoint_for_one_hot_per_arm_for_a_fixed_set_and_concat_otherwise() -> None:
    labels = torch.eye(MAX_FIXED_ARMS + 1)[None]
    small = torch.randn(1, MAX_FIXED_ARMS, 2)
    large = torch.randn(1, MAX_FIXED_ARMS + 1, 2)
    assert choose_feature_map(labels, True) == "disjoint"
    assert choose_feature_map(small, None) == "per_arm"
    assert choose_feature_map(small, True) == "concat"  # the env says its rows change
    assert choose_feature_map(large, False) == "concat"


def test_contexts_are_flattened_to_float64_and_a_wrong_shape_is_named() -> None:
    contexts = torch.arange(12, dtype=torch.int64).reshape(2, 3, 2)
    flat = flat_contexts(contexts, (3, 2))
    assert flat.dtype == torch.float64 and flat.tolist() == [list(range(6)), list(range(6, 12))]
    with pytest.raises(ValueError, match=r"context must have shape \(6,\) .*got \(3, 2\)"):
        flat_contexts(contexts, (6,))
    rows = concat_rows(flat, torch.ones(2, 2, dtype=torch.float32))
    assert rows.dtype == torch.float64 and rows.shape == (2, 8)
    assert torch.equal(rows, ConcatFeatures(flat, torch.ones(2, 1, 2)).dense()[:, 0])


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("draws", [None, 4])
def test_the_concat_head_scores_as_the_head_on_dense_features(batch: int, draws) -> None:
    gen = torch.Generator().manual_seed(0)
    head = BayesianLinearRegression(5, intercept=True)
    for _ in range(6):
        z = torch.randn(5, generator=gen, dtype=torch.float64)
        head.update(z, float(z.sum()))
    x = torch.randn(batch, 2, generator=gen, dtype=torch.float64)
    cand = torch.randn(batch, 4, 3, generator=gen, dtype=torch.float64)
    features = ConcatFeatures(x, cand)
    dense = features.dense()
    assert dense.shape == (batch, 4, 5)
    scores = ConcatHead(head, 2).thompson_scores(features, torch.Generator().manual_seed(1), draws)
    w = head.sample(batch * (draws or 1), generator=torch.Generator().manual_seed(1))
    w = w.reshape(draws or 1, batch, 1, 6)
    expected = (dense * w[..., :5]).sum(-1) + w[..., 5]
    torch.testing.assert_close(scores, expected if draws else expected[0], rtol=1e-12, atol=1e-12)
    mean, variance = ConcatHead(head, 2).predict(features)
    want_mean, want_variance = head.predict(dense)
    assert torch.equal(mean, want_mean) and torch.equal(variance, want_variance)
