import numpy as np
import pytest

from star_al.metrics import (auc, auc_weights, brier_score, calibration_summary, cohen_kappa,
                             correlation_matrix, expected_calibration_error,
                             mean_wrong_confidence, pearson, ripl, spearman)


def test_auc_of_flat_curve_is_its_accuracy():
    assert auc([500, 1000, 1500, 5000], [0.6, 0.6, 0.6, 0.6]) == pytest.approx(0.6)


def test_auc_of_linear_curve_from_zero_to_one_is_half():
    assert auc([200, 400, 600, 800], [0.0, 1 / 3, 2 / 3, 1.0]) == pytest.approx(0.5)


def test_auc_weights_points_by_uneven_spacing():
    # x scaled to 0, 0.25, 1: 0.25 * (0.2 + 0.4) / 2 + 0.75 * (0.4 + 0.8) / 2 = 0.525
    assert auc([100, 200, 500], [0.2, 0.4, 0.8]) == pytest.approx(0.525)


def test_auc_sorts_points_by_labeled_size():
    assert auc([500, 100, 200], [0.8, 0.2, 0.4]) == pytest.approx(0.525)


def test_auc_weights_are_the_trapezoid_shares_in_the_given_order():
    # x scaled to 1 (500), 0 (100), 0.25 (200); gaps 0.25 and 0.75, each split between its ends
    assert auc_weights([500, 100, 200]).tolist() == pytest.approx([0.375, 0.125, 0.5])
    assert auc_weights([500]).tolist() == [1.0]


def test_auc_of_single_point_is_its_accuracy():
    assert auc([500], [0.42]) == pytest.approx(0.42)


def test_auc_rejects_repeated_single_size():
    with pytest.raises(ValueError):
        auc([500, 500], [0.1, 0.2])


def test_ripl_of_equal_aucs_is_zero():
    assert ripl(0.6046, 0.6046) == 0.0


def test_ripl_of_perfect_curve_is_one():
    assert ripl(1.0, 0.6046) == pytest.approx(1.0)


def test_ripl_matches_paper_table_1():
    # BoolQ, PE + STAR against RANDOM (docs/method.md section 7): 3.49 %.
    assert 100 * ripl(0.6184, 0.6046) == pytest.approx(3.49, abs=0.01)


def test_ece_of_perfectly_calibrated_bins_is_zero():
    confidence = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0] + [1, 1, 1, 0]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)


def test_ece_hand_computed_case():
    # bins (0.8, 0.9]: conf 0.9, acc 1/2 -> 2/4 * 0.4; (0.5, 0.6]: conf 0.6, acc 1 -> 2/4 * 0.4
    confidence = [0.9, 0.9, 0.6, 0.6]
    correct = [1, 0, 1, 1]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4)


def test_ece_bins_are_right_closed_and_first_bin_holds_zero():
    # 0.5 falls in (0.4, 0.5] with 0.45, not with 0.55; 0 falls in [0, 0.1].
    confidence = [0.45, 0.5, 0.55, 0.0]
    correct = [0, 1, 1, 0]
    # bin (0.4, 0.5]: conf 0.475, acc 0.5 -> 2/4 * 0.025; (0.5, 0.6]: 1/4 * 0.45; [0, 0.1]: 0
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0125 + 0.1125)


def test_brier_score_hand_case():
    # (0.9 - 1)^2 + (0.8 - 0)^2 + (0.6 - 1)^2 = 0.01 + 0.64 + 0.16 = 0.81, / 3
    assert brier_score([0.9, 0.8, 0.6], [1, 0, 1]) == pytest.approx(0.27)


def test_mean_wrong_confidence_averages_only_wrong_answers():
    assert mean_wrong_confidence([0.9, 0.7, 0.6, 0.8], [1, 0, 1, 0]) == pytest.approx(0.75)


def test_mean_wrong_confidence_is_nan_when_nothing_is_wrong():
    assert np.isnan(mean_wrong_confidence([0.9, 0.7], [1, 1]))


def test_calibration_summary_has_all_keys():
    summary = calibration_summary([0.9, 0.8, 0.6], [1, 0, 1])
    assert summary == pytest.approx({"accuracy": 2 / 3, "ece": 1.3 / 3, "brier": 0.27,
                                     "wrong_confidence": 0.8, "n": 3})


def test_confidence_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError):
        brier_score([1.2], [1])


def test_pearson_of_linear_relation_is_one_and_of_reversal_minus_one():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)


def test_pearson_of_constant_input_is_nan():
    assert np.isnan(pearson([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]))


def test_spearman_of_monotone_transform_is_one():
    x = np.array([0.3, -1.0, 2.5, 0.7, 4.0])
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)


def test_spearman_gives_ties_their_average_rank():
    # ranks of [1, 2, 2, 3] are [1, 2.5, 2.5, 4]; Pearson against [1, 2, 3, 4] is 0.9487
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / np.sqrt(10))


def test_correlation_matrix_has_unit_diagonal_and_is_symmetric():
    rows = np.random.default_rng(0).normal(size=(4, 50))
    for method in ("pearson", "spearman"):
        matrix = correlation_matrix(rows, method=method)
        assert matrix.shape == (4, 4)
        np.testing.assert_allclose(np.diag(matrix), 1.0)
        np.testing.assert_allclose(matrix, matrix.T)


def test_correlation_matrix_entries_match_pairwise_functions():
    rows = np.random.default_rng(1).normal(size=(3, 20))
    assert correlation_matrix(rows)[0, 2] == pytest.approx(pearson(rows[0], rows[2]))
    assert correlation_matrix(rows, "spearman")[1, 2] == pytest.approx(spearman(rows[1], rows[2]))


def test_correlation_matrix_rejects_unknown_method():
    with pytest.raises(ValueError):
        correlation_matrix(np.ones((2, 3)), method="kendall")


def test_cohen_kappa_by_hand_and_undefined_for_one_shared_constant():
    """p_o = 3/4; p_e = 1/2 x 1/4 + 1/2 x 3/4 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 0.5."""
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b", "a"], ["b", "a", "b"]) == pytest.approx(-0.8)  # p_o 0, p_e 4/9
    assert np.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # no chance agreement to measure against
    assert cohen_kappa(["a", "a"], ["b", "b"]) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])
