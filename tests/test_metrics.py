"""SLDBench metrics: NMSE / NMAE / R2 exactly as the benchmark computes them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hybrid_sld.metrics import FAILED_NMSE, Score, failed_score, json_text, score


def test_hand_computed_single_target():
    # true 1, 2, 3, 4: mean 2.5, population variance 1.25, mean absolute deviation 1.0
    # errors +0.5, -0.5, 0, +1: MSE (0.25 + 0.25 + 0 + 1)/4 = 0.375, MAE 2/4 = 0.5
    s = score([1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 3.0, 5.0])
    assert s.nmse == pytest.approx(0.375 / 1.25)
    assert s.nmae == pytest.approx(0.5 / 1.0)
    assert s.r2 == pytest.approx(1 - 0.3)
    assert s.nmse_per_target == pytest.approx((0.3,))
    assert s.r2_per_target == pytest.approx((0.7,))
    assert not s.failed and s.message == ""


def test_perfect_prediction():
    s = score([1.0, 2.0, 5.0], [1.0, 2.0, 5.0])
    assert s.r2 == 1.0 and s.nmse == 0.0 and s.nmae == 0.0


def test_uses_population_variance():
    true = np.array([0.0, 2.0])  # ddof=0 variance 1.0; ddof=1 would give 2.0
    pred = np.array([1.0, 1.0])  # MSE 1.0
    s = score(true, pred)
    assert s.nmse == pytest.approx(1.0)
    assert s.nmse == pytest.approx(np.mean((true - pred) ** 2) / np.var(true, ddof=0))
    assert s.nmse != pytest.approx(np.mean((true - pred) ** 2) / np.var(true, ddof=1))
    assert s.r2 == pytest.approx(0.0)


def test_multi_target_r2_is_one_minus_mean_nmse():
    true = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    pred = np.array([[1.5, 10.0], [1.5, 20.0], [3.0, 30.0], [5.0, 50.0]])
    s = score(true, pred)
    nmse1 = 0.375 / 1.25  # as in the single-target example
    nmse2 = (100 / 4) / 125.0  # var of 10..40 is 125; one error of 10
    assert s.nmse_per_target == pytest.approx((nmse1, nmse2))
    assert s.nmse == pytest.approx((nmse1 + nmse2) / 2)
    assert s.r2 == pytest.approx(1 - (nmse1 + nmse2) / 2)
    # not the R2 of the pooled values, nor the mean of per-target R2 computed another way
    assert s.r2 == pytest.approx(np.mean(s.r2_per_target))
    nmae2 = (10 / 4) / 10.0  # MAD of 10..40 is 10
    assert s.nmae_per_target == pytest.approx((0.5, nmae2))


def test_one_dimensional_and_column_inputs_agree():
    a = score([1.0, 2.0, 4.0], [1.1, 2.2, 3.7])
    b = score(np.array([[1.0], [2.0], [4.0]]), np.array([[1.1], [2.2], [3.7]]))
    assert a == b


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_prediction_fails(bad):
    s = score([1.0, 2.0, 3.0], [1.0, bad, 3.0])
    assert s.failed
    assert s.r2 == -1.0 and s.nmse == FAILED_NMSE and s.nmae == FAILED_NMSE
    assert "non-finite" in s.message and "1" in s.message


def test_shape_mismatch_fails():
    s = score([1.0, 2.0, 3.0], [1.0, 2.0])
    assert s.failed and s.r2 == -1.0
    assert "shape mismatch" in s.message
    s2 = score(np.ones((4, 2)), np.ones((4, 1)))
    assert s2.failed and "shape mismatch" in s2.message


def test_no_rows_is_no_figure_not_a_failure():
    """It scored -1 as a failed fit does: `fit` printed valid R2 -1.0000 for a split with no
    validation rows, which reads as a fit that missed; now n/a, as an undefined R2 prints."""
    s = score([], [])
    assert not s.failed and s.undefined and "no rows" in s.message
    assert math.isnan(s.r2_clipped) and s.r2 == -math.inf  # ranked below every law


def test_zero_variance_target_gives_infinite_nmse():
    s = score([2.0, 2.0, 2.0], [2.0, 2.1, 1.9])
    assert math.isinf(s.nmse) and math.isinf(s.nmae)
    assert s.r2 == -math.inf
    assert not s.failed  # a degenerate target is not a failed prediction
    # but R2 is undefined: no clipped figure, and the message says why
    assert math.isnan(s.r2_clipped)
    assert s.message == "the target takes one value (2) on all 3 row(s), so R2 is undefined"
    assert score([[1.0, 5.0], [2.0, 5.0]], [[1.0, 5.0], [2.0, 5.0]], ("a", "b")).message == \
        "target 'b' takes one value (5) on all 2 row(s), so R2 is undefined"


def test_zero_variance_in_one_of_two_targets():
    true = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    s = score(true, true + 0.0)
    assert s.nmse_per_target[0] == 0.0 and math.isinf(s.nmse_per_target[1])
    assert math.isinf(s.nmse)


def test_r2_clipped():
    assert Score(r2=-7.5, nmse=8.5, nmae=3.0).r2_clipped == -1.0
    assert Score(r2=0.42, nmse=0.58, nmae=0.5).r2_clipped == 0.42
    assert Score(r2=1.0, nmse=0.0, nmae=0.0).r2_clipped == 1.0
    bad = score([1.0, 2.0, 3.0], [10.0, -10.0, 30.0])
    assert bad.r2 < -1 and bad.r2_clipped == -1.0


def test_failed_score_and_to_dict():
    f = failed_score("because")
    assert f.failed and f.r2 == -1.0 and f.message == "because"
    d = score([1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 3.0, 5.0]).to_dict()
    assert set(d) == {"r2", "r2_clipped", "nmse", "nmae", "nmse_per_target", "nmae_per_target",
                      "message"}
    assert d["r2"] == pytest.approx(0.7) and d["message"] == ""


def test_json_text_writes_what_json_has_no_word_for_as_null():
    """json.dumps writes -Infinity and NaN, which JSON.parse and jq refuse."""
    d = score([2.0, 2.0], [2.0, 2.1]).to_dict()
    text = json_text({"valid": d, "x": [np.nan, 1.5, np.float64(np.inf)]}, indent=1)

    def refuse(c):
        raise ValueError(c)
    back = json.loads(text, parse_constant=refuse)
    assert back["valid"]["r2"] is None and back["valid"]["r2_clipped"] is None
    assert back["valid"]["nmse"] is None and "R2 is undefined" in back["valid"]["message"]
    assert back["x"] == [None, 1.5, None]


def test_huge_finite_predictions_fail_as_non_finite_ones_do_without_warnings():
    """Their R2 was -inf: every report showed it as n/a (null in JSON), as an undefined R2, and
    the leaderboard's means left such a seed out."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = score([1.0, 2.0, 3.0], [1e200, 2.0, 3.0])
    assert s.failed and "overflow" in s.message
    assert s.r2 == s.r2_clipped == -1.0 and s.nmse == FAILED_NMSE
    assert json.loads(json_text(s.to_dict()))["r2"] == -1.0
    assert score([1.0, 2.0, 3.0], [1e150, 2.0, 3.0]).r2 < -1e290  # large, but a figure


def test_small_targets_are_scored_like_large_ones():
    """A target of size 1e-6 has variance ~1e-14: not a constant (once taken for one: -inf)."""
    rng = np.random.default_rng(0)
    y = 1 + rng.random(20)
    p = y + 0.01 * rng.standard_normal(20)
    assert math.isclose(score(y * 1e-6, p * 1e-6).r2, score(y, p).r2, rel_tol=1e-9)
    assert score(np.full(5, 3e-6), np.full(5, 3e-6)).r2 == -math.inf  # still: constant


def test_report_value_keeps_six_significant_digits():
    """Rounded to 6 places, an NMSE of 8.7678e-05 was reported as 8.8e-05."""
    from hybrid_sld.metrics import report_value
    assert report_value(8.7678e-05) == 8.7678e-05 and report_value(1.23456789e-7) == 1.23457e-07
    assert [report_value(x) for x in (0.999254, 0.9971224652103431, -1.0, FAILED_NMSE)] == [
        0.999254, 0.997122, -1.0, FAILED_NMSE]
    assert report_value(-188.34790990402834) == -188.34791 and report_value(0) == 0.0
    assert report_value(None) is None and report_value(math.inf) is None
