"""Selective classification metrics: accuracy on kept rows, risk-coverage, AURC."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_consistent_length, column_or_1d
from sklearn.utils.validation import _check_sample_weight

__all__ = ["selective_accuracy", "risk_coverage_curve", "aurc"]


def selective_accuracy(y_true, y_pred, *, reject_label=-1, sample_weight=None):
    """Accuracy over the rows that were not rejected.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
        Predictions, with ``reject_label`` for abstained rows.
    reject_label : int or str, default=-1
    sample_weight : array-like of shape (n_samples,), default=None
        Row weights: the weighted share of correct rows among the kept ones.

    Returns
    -------
    accuracy : float

    Raises
    ------
    ValueError
        If the inputs are empty, every row was rejected, a label is NaN or
        None, the kept rows compare string labels with numbers, or
        ``sample_weight`` is negative or zero on every kept row.

    Examples
    --------
    >>> from skot.metrics import selective_accuracy
    >>> selective_accuracy([0, 1, 1, 0], [0, -1, 0, 0])
    0.6666666666666666
    """
    y_true = column_or_1d(np.asarray(y_true, dtype=object))
    y_pred = column_or_1d(np.asarray(y_pred, dtype=object))
    check_consistent_length(y_true, y_pred)
    if len(y_true) == 0:
        raise ValueError("y_true is empty: need at least 1 sample")
    _check_no_nan(y_true, y_pred)
    kept = y_pred != reject_label
    if not kept.any():
        raise ValueError(
            "every row was rejected (y_pred == reject_label everywhere); selective "
            "accuracy is undefined at zero coverage"
        )
    # the kept rows only: string labels with the default reject_label=-1 mix
    # types legitimately
    _check_label_types(y_true[kept], y_pred[kept], "kept rows")
    if sample_weight is None:
        return float(np.mean(y_true[kept] == y_pred[kept]))
    w = _check_sample_weight(sample_weight, y_true)
    if (w < 0).any():
        raise ValueError(f"Negative values in sample_weight (min {w.min():.6g}); "
                         "weights must be >= 0")
    if w[kept].sum() <= 0:
        raise ValueError("sample_weight is zero on every kept row: selective "
                         "accuracy is undefined there")
    return float(np.average(y_true[kept] == y_pred[kept], weights=w[kept]))


def _check_no_nan(y_true, y_pred):
    """A NaN (or None) label is a ValueError naming its argument, as in
    scikit-learn's metrics: NaN != NaN had counted the row as an error."""
    missing = np.frompyfunc(
        lambda v: v is None or (isinstance(v, (float, np.floating)) and v != v), 1, 1)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        bad = missing(y).astype(bool)
        if bad.any():
            raise ValueError(f"{name} contains NaN or None ({int(bad.sum())} of "
                             f"{len(y)} rows): labels must be defined")


def _check_label_types(y_true, y_pred, rows):
    """Refuse string labels compared with numeric ones (scikit-learn's "Mix of
    label input types" rule of ``accuracy_score``): ``"1" != 1``, so every
    such row had counted as an error, with no hint (a selective accuracy of
    0, an AURC of 1 for ``y`` as strings and predictions as integers)."""
    is_str = np.frompyfunc(lambda v: isinstance(v, str), 1, 1)
    true_str = is_str(y_true).astype(bool)
    pred_str = is_str(y_pred).astype(bool)
    kinds = {"y_true": set(true_str.tolist()), "y_pred": set(pred_str.tolist())}
    if len(kinds["y_true"] | kinds["y_pred"]) > 1:
        def words(k):
            return " and ".join(
                {True: "strings", False: "numbers"}[v] for v in sorted(kinds[k]))
        raise ValueError(
            f"Mix of label input types (string and number) in the {rows}: y_true "
            f"has {words('y_true')}, y_pred has {words('y_pred')}; a string label "
            "never equals a number ('1' != 1), so every such row would count as "
            "an error. Pass labels of one type")


def _check(y_true, y_pred, confidence):
    y_true = column_or_1d(np.asarray(y_true, dtype=object))
    y_pred = column_or_1d(np.asarray(y_pred, dtype=object))
    confidence = column_or_1d(np.asarray(confidence, dtype=float))
    check_consistent_length(y_true, y_pred, confidence)
    if len(y_true) == 0:
        raise ValueError("y_true is empty: need at least 1 sample")
    if not np.isfinite(confidence).all():
        raise ValueError("confidence contains NaN or inf")
    _check_no_nan(y_true, y_pred)
    _check_label_types(y_true, y_pred, "rows")
    return y_true, y_pred, confidence


def risk_coverage_curve(y_true, y_pred, confidence):
    """Risk (error rate on kept rows) as a function of coverage.

    Rows are kept in decreasing order of ``confidence``; at coverage ``k/n`` the
    risk is the error rate of the ``k`` most confident predictions. Rows of
    equal confidence cannot be ordered: within such a group the errors are
    spread evenly over its positions (the mean over the orders of the tied
    rows), so the curve does not depend on the order of the rows (constant
    confidence gives the overall error rate at every coverage).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
        Predicted labels of *every* row (not rejected ones).
    confidence : array-like of shape (n_samples,)
        Higher = more confident (e.g. ``selection_score`` or the max softmax).

    Returns
    -------
    coverage : ndarray of shape (n_samples,)
    risk : ndarray of shape (n_samples,)
    thresholds : ndarray of shape (n_samples,)
        Confidence of the last kept row at each coverage.

    Raises
    ------
    ValueError
        If the inputs are empty or of different lengths, ``confidence`` is not
        finite, a label is NaN or None, or string labels are compared with
        numbers.
    """
    y_true, y_pred, confidence = _check(y_true, y_pred, confidence)
    order = np.argsort(-confidence, kind="stable")
    errors = (y_true[order] != y_pred[order]).astype(float)
    conf = confidence[order]
    n = len(errors)
    k = np.arange(1, n + 1)
    # tied confidences form one group whose errors are spread evenly over its
    # positions (the mean over the orders of the tied rows)
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_err = np.add.reduceat(errors, starts)
    before = np.r_[0.0, np.cumsum(group_err)[:-1]]
    gid = np.repeat(np.arange(len(starts)), sizes)
    cum = before[gid] + (k - starts[gid]) * (group_err / sizes)[gid]
    return k / n, cum / k, conf


def aurc(y_true, y_pred, confidence):
    """Area under the risk-coverage curve (lower is better).

    Parameters
    ----------
    y_true, y_pred, confidence : array-like of shape (n_samples,)
        As in :func:`risk_coverage_curve`.

    Returns
    -------
    aurc : float
        Mean of the risk over the coverages ``1/n, 2/n, ..., 1``.

    Raises
    ------
    ValueError
        As :func:`risk_coverage_curve`.

    Examples
    --------
    >>> from skot.metrics import aurc
    >>> aurc([0, 1, 1], [0, 1, 0], [0.9, 0.8, 0.1])
    0.1111111111111111
    """
    _, risk, _ = risk_coverage_curve(y_true, y_pred, confidence)
    return float(risk.mean())
