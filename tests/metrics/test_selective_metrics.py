import numpy as np
import pytest

from skot.metrics import aurc, risk_coverage_curve, selective_accuracy


def test_selective_accuracy_ignores_rejected():
    assert selective_accuracy([0, 1, 2, 2], [0, -1, 2, 1]) == pytest.approx(2 / 3)
    assert selective_accuracy(["a", "b"], ["a", "x"], reject_label="x") == 1.0
    with pytest.raises(ValueError, match="rejected"):
        selective_accuracy([0, 1], [-1, -1])


def test_selective_accuracy_with_sample_weight():
    y, pred = [0, 1, 2, 2], [0, -1, 2, 1]
    # kept rows 0, 2 (right) and 3 (wrong); the rejected row's weight is moot
    w = [1.0, 100.0, 1.0, 2.0]
    assert selective_accuracy(y, pred, sample_weight=w) == pytest.approx(2 / 4)
    assert selective_accuracy(y, pred, sample_weight=np.ones(4)) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="sample_weight"):
        selective_accuracy(y, pred, sample_weight=[0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        selective_accuracy(y, pred, sample_weight=[1.0, 1.0])
    # negative weights gave 1.33
    with pytest.raises(ValueError, match="[Nn]egative"):
        selective_accuracy(y, pred, sample_weight=[1.0, 5.0, -0.5, 1.0])


def test_risk_coverage_curve_by_hand():
    y = np.array([0, 1, 1, 0])
    pred = np.array([0, 0, 1, 1])  # rows 1 and 3 wrong
    conf = np.array([0.9, 0.1, 0.8, 0.5])  # order: 0, 2, 3, 1
    cov, risk, thr = risk_coverage_curve(y, pred, conf)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 0, 1 / 3, 0.5])
    np.testing.assert_allclose(thr, [0.9, 0.8, 0.5, 0.1])
    assert aurc(y, pred, conf) == pytest.approx(np.mean([0, 0, 1 / 3, 0.5]))


def test_oracle_confidence_has_the_lowest_aurc(rng):
    y = rng.integers(3, size=200)
    pred = np.where(rng.random(200) < 0.7, y, (y + 1) % 3)
    oracle = (pred == y).astype(float)
    assert aurc(y, pred, oracle) < aurc(y, pred, rng.random(200))


def test_metric_bad_input():
    with pytest.raises(ValueError):
        aurc([0, 1], [0], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        aurc([0, 1], [0, 1], [np.nan, 0.2])


def test_tied_confidences_do_not_depend_on_row_order():
    # constant confidence: the overall error rate at every coverage (the rows
    # used to be taken in input order, 0.333 or 0.667 for the same data)
    assert aurc([0, 1, 0, 1], [0, 0, 0, 0], np.ones(4)) == pytest.approx(0.5)
    assert aurc([1, 0, 1, 0], [0, 0, 0, 0], np.ones(4)) == pytest.approx(0.5)
    # a tied group's errors are spread evenly over its positions
    cov, risk, thr = risk_coverage_curve([0, 1, 1, 0, 1], [0, 0, 1, 0, 0],
                                         [0.9, 0.5, 0.5, 0.5, 0.1])
    np.testing.assert_allclose(risk, [0, 1 / 6, 2 / 9, 1 / 4, 2 / 5])
    np.testing.assert_allclose(thr, [0.9, 0.5, 0.5, 0.5, 0.1])
    # and equals the mean over all orders of the tied rows
    import itertools

    y, p = np.array([1, 1, 0]), np.array([0, 1, 0])
    curves = [np.cumsum(y[list(o)] != p[list(o)]) / np.arange(1, 4)
              for o in itertools.permutations(range(3))]
    np.testing.assert_allclose(risk_coverage_curve(y, p, np.ones(3))[1],
                               np.mean(curves, axis=0))


def test_selective_accuracy_empty_input():
    with pytest.raises(ValueError, match="empty"):
        selective_accuracy([], [])


def test_string_and_number_labels_are_refused():
    # "1" != 1: every row had counted as an error (accuracy 0, AURC 1)
    with pytest.raises(ValueError, match="Mix of label input types"):
        selective_accuracy(["0", "1"], [0, 1])
    with pytest.raises(ValueError, match="Mix of label input types"):
        risk_coverage_curve(["0", "1"], [0, 1], [0.2, 0.1])
    with pytest.raises(ValueError, match="Mix of label input types"):
        aurc([0, 1], ["0", "1"], [0.2, 0.1])
    # string labels with the default reject_label=-1 on the rejected rows
    assert selective_accuracy(["a", "b", "a"], ["a", -1, "b"]) == 0.5


@pytest.mark.parametrize("y_true, y_pred, name", [
    ([np.nan, 1.0], [0.0, 1.0], "y_true"),
    ([0.0, 1.0], [0.0, np.nan], "y_pred"),
    ([None, 1], [0, 1], "y_true"),
])
def test_nan_labels_are_refused(y_true, y_pred, name):
    # NaN != NaN had counted the row as an error (selective accuracy 0.5 for
    # [nan, 1] vs [0, 1]); scikit-learn's metrics refuse NaN labels
    with pytest.raises(ValueError, match=f"{name} contains NaN or None"):
        selective_accuracy(y_true, y_pred)
    with pytest.raises(ValueError, match=f"{name} contains NaN or None"):
        aurc(y_true, y_pred, [0.5, 0.7])
