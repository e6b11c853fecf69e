"""Metrics against hand-computed cases, plain references, and the real MSD top-50 imbalance."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tagfold.training.metrics import (UndefinedMetricWarning, average_precision_reference, roc_auc_reference,
                                      score)


def test_hand_computed_two_tags():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.1], [0.8, 0.7], [0.7, 0.8], [0.6, 0.2]])
    s = score(y, p, ["a", "b"])
    # tag a: positives 0.9, 0.7 vs negatives 0.8, 0.6 -> pairs won: (.9>.8, .9>.6, .7>.6) = 3 of 4.
    assert s.roc_auc[0] == pytest.approx(0.75)
    # ranking .9(+) .8(-) .7(+) .6(-): AP = (1/1 + 2/3) / 2.
    assert s.pr_auc[0] == pytest.approx((1 + 2 / 3) / 2)
    # tag b: positives 0.7, 0.8 above both negatives -> perfect.
    assert s.roc_auc[1] == 1.0 and s.pr_auc[1] == 1.0
    assert s.macro_roc_auc == pytest.approx((0.75 + 1) / 2)
    assert s.macro_pr_auc == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    # micro over all 8 cells: positives .9 .7 .7 .8 vs negatives .8 .6 .1 .2 win 4 + 3 + 3 + 3.5
    # (the .8/.8 tie counts half) of 16 pairs.
    assert s.micro_roc_auc == pytest.approx(13.5 / 16)


def test_ties_count_half():
    s = score(np.array([[1], [0], [1], [0]]), np.array([[0.5], [0.5], [0.5], [0.5]]))
    assert s.roc_auc[0] == 0.5
    assert s.pr_auc[0] == pytest.approx(0.5)        # one threshold: precision 2/4


def test_undefined_tag_warns_and_is_left_out_of_macro():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    p = np.array([[0.9, 0.3, 0.2], [0.1, 0.4, 0.5], [0.8, 0.5, 0.1]])
    with pytest.warns(UndefinedMetricWarning, match=r"2 of 3 tags.*b \(no positives\).*c \(no negatives\)"):
        s = score(y, p, ["a", "b", "c"], context="test split")
    assert np.isnan(s.roc_auc[1]) and np.isnan(s.pr_auc[2])
    assert s.macro_roc_auc == 1.0 and s.n_defined == 1
    assert s.undefined_tags == ["b", "c"]
    cats = s.by_category(["genre", "emotion", "genre"])
    assert np.isnan(cats["emotion"]["roc_auc"]) and cats["emotion"]["n_defined"] == 0
    assert cats["genre"]["roc_auc"] == 1.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="must be equal 2-D"):
        score(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="0/1"):
        score(np.full((2, 1), 2), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        score(np.array([[1], [0]]), np.array([[np.nan], [0.1]]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_matches_plain_references(pairs):
    y = np.array([a for a, _ in pairs], dtype=np.uint8)[:, None]
    p = np.array([b / 6 for _, b in pairs])[:, None]       # few distinct values: many ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        s = score(y, p)
    ref_roc = roc_auc_reference(y[:, 0], p[:, 0])
    ref_ap = average_precision_reference(y[:, 0], p[:, 0])
    if 0 < y.sum() < len(y):
        assert s.roc_auc[0] == pytest.approx(ref_roc)
        assert s.pr_auc[0] == pytest.approx(ref_ap)
    else:
        assert np.isnan(s.roc_auc[0])


@pytest.fixture(scope="module")
def msd_test_y(shared):
    return np.load(shared / "msd_top50" / "test_y.npy")


def test_msd_top50_noisy_predictions(msd_test_y):
    """Real imbalance (28,540 tracks x 50 tags): chance, informative and perfect scorers."""
    y = msd_test_y.astype(np.uint8)
    rng = np.random.default_rng(0)
    prevalence = y.mean(axis=0)
    assert prevalence.min() < 0.01 < 0.1 < prevalence.max()     # the imbalance the test is about

    chance = score(y, rng.random(y.shape))
    assert chance.macro_roc_auc == pytest.approx(0.5, abs=0.02)
    # Chance PR-AUC is the prevalence of each tag, not 0.5: this is why PR-AUC matters here.
    np.testing.assert_allclose(chance.pr_auc, prevalence, atol=0.02)

    noisy = score(y, y + rng.normal(0, 1.0, y.shape))
    perfect = score(y, y + 0.1 * rng.random(y.shape))
    assert 0.5 < chance.macro_roc_auc < noisy.macro_roc_auc < perfect.macro_roc_auc == 1.0
    # Equal-noise scores give the same ROC-AUC for every tag (it ignores prevalence)...
    # Theory for unit-variance noise on a unit gap: Phi(1 / sqrt 2) = 0.7602.
    from scipy.stats import norm
    expected = norm.cdf(1 / np.sqrt(2))
    assert noisy.macro_roc_auc == pytest.approx(expected, abs=0.01)
    assert np.abs(noisy.roc_auc - expected).max() < 0.08
    # ...but PR-AUC falls with prevalence: the rarest tag scores far below the commonest.
    assert noisy.pr_auc[prevalence.argmin()] < 0.5 * noisy.pr_auc[prevalence.argmax()]


def test_msd_top50_rare_tags_in_a_small_split(msd_test_y):
    """A split small enough that some real tags have no positives: warned, excluded, no crash."""
    y = msd_test_y[:60].astype(np.uint8)
    empty = np.flatnonzero(y.sum(axis=0) == 0)
    assert empty.size > 0
    p = np.random.default_rng(1).random(y.shape)
    with pytest.warns(UndefinedMetricWarning, match=f"{empty.size} of 50 tags"):
        s = score(y, p)
    assert s.n_defined == 50 - empty.size
    assert np.isnan(s.roc_auc[empty]).all() and np.isfinite(s.macro_roc_auc)
    defined = np.flatnonzero(y.sum(axis=0) > 0)
    assert s.macro_roc_auc == pytest.approx(np.mean([roc_auc_reference(y[:, j], p[:, j]) for j in defined]))
    assert s.macro_pr_auc == pytest.approx(np.mean([average_precision_reference(y[:, j], p[:, j]) for j in defined]))
