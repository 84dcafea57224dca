"""One summary warning for the inner OT solves of a fit."""

from __future__ import annotations

import contextlib
import warnings

from sklearn.exceptions import ConvergenceWarning

__all__ = ["collect_convergence_warnings", "report_warnings"]


@contextlib.contextmanager
def collect_convergence_warnings():
    """Record every warning raised inside the block (to be passed to
    :func:`report_warnings` after it): a fit that runs many OT solves would
    otherwise emit one ``ConvergenceWarning`` per solve, each with its own
    message (so Python's once-per-location filter does not merge them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def report_warnings(caught, advice, *, during, stacklevel=3):
    """Re-emit the recorded warnings, the convergence warnings of the inner
    solves summed up in a single one (their count, the first message) that
    ends with ``advice``; ``during`` says when they happened ("during
    training")."""
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if conv:
        warnings.warn(
            f"{len(conv)} inner OT solve(s) {during} stopped at their iteration "
            f"budget before the tolerance (first: {conv[0].message}). {advice}",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
