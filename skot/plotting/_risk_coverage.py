"""RiskCoverageDisplay, in the style of scikit-learn's display objects."""

from __future__ import annotations

import numpy as np

from ..metrics import risk_coverage_curve

__all__ = ["RiskCoverageDisplay"]


class RiskCoverageDisplay:
    """Risk-coverage curve of a selective classifier.

    Create it with :meth:`from_estimator` or :meth:`from_predictions`; the
    constructor only stores the curve.

    Parameters
    ----------
    coverage : ndarray of shape (n_points,)
    risk : ndarray of shape (n_points,)
    aurc : float, default=None
        Area under the curve, shown in the legend.
    name : str, default=None

    Attributes
    ----------
    line_ : matplotlib Line2D
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> from skot.plotting import RiskCoverageDisplay
    >>> disp = RiskCoverageDisplay.from_predictions(
    ...     [0, 1, 1], [0, 1, 0], [0.9, 0.8, 0.1], plot=False)
    >>> round(disp.aurc, 3)
    0.111
    """

    def __init__(self, coverage, risk, *, aurc=None, name=None):
        self.coverage = np.asarray(coverage)
        self.risk = np.asarray(risk)
        self.aurc = aurc
        self.name = name

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            New figure when None.
        name : str, default=None
            Legend label (defaults to the stored name).
        **kwargs
            Passed to ``ax.plot``; a ``label`` there replaces the legend label.

        Returns
        -------
        self
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # as scikit-learn's displays word it
            raise ImportError(
                f"{type(self).__name__}.plot requires matplotlib: pip install "
                "matplotlib (or skot's [plot] extra)") from err

        if ax is None:
            _, ax = plt.subplots()
        name = name if name is not None else self.name
        label = name
        if self.aurc is not None:
            label = f"{name} (AURC = {self.aurc:.3f})" if name else f"AURC = {self.aurc:.3f}"
        label = kwargs.pop("label", label)
        (self.line_,) = ax.plot(self.coverage, self.risk, label=label, **kwargs)
        ax.set_xlabel("coverage")
        ax.set_ylabel("risk (error rate on kept rows)")
        ax.set_xlim(0, 1)
        if label:
            ax.legend(loc="upper left")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(cls, y_true, y_pred, confidence, *, name=None, ax=None,
                         plot=True, **kwargs):
        """Curve from labels, predictions of every row and confidences.

        Parameters
        ----------
        y_true, y_pred, confidence : array-like of shape (n_samples,)
        name : str, default=None
        ax : matplotlib Axes, default=None
        plot : bool, default=True
            Draw it (needs matplotlib).
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : RiskCoverageDisplay
        """
        coverage, risk, _ = risk_coverage_curve(y_true, y_pred, confidence)
        disp = cls(coverage, risk, aurc=float(risk.mean()), name=name)
        return disp.plot(ax=ax, **kwargs) if plot else disp

    @classmethod
    def from_estimator(cls, estimator, X, y, *, name=None, ax=None, plot=True,
                       **kwargs):
        """Curve of a fitted classifier on ``(X, y)``.

        The predicted label of every row is the argmax of ``predict_proba``
        (rows a selective classifier abstains on included). The confidence is,
        in this order:

        1. ``estimator.selection_score(X)`` when the estimator has that method
           (e.g. :class:`skot.SelectiveOTClassifier`);
        2. for a pipeline (an object with ``steps``, such as
           :class:`sklearn.pipeline.Pipeline`, nested ones included) whose final
           estimator has ``selection_score``: ``X`` is transformed by the
           preceding steps (``"passthrough"`` and None skipped) and the final
           estimator's ``selection_score`` and ``predict_proba`` are used on
           the result, so the curve is that of the final estimator on the
           transformed ``X``;
        3. otherwise the maximum of ``predict_proba`` (the
           max-softmax-probability baseline).

        Parameters
        ----------
        estimator : fitted classifier or pipeline
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        name : str, default=None
            Defaults to the estimator's class name.
        ax : matplotlib Axes, default=None
        plot : bool, default=True
        **kwargs
            Passed to :meth:`plot`.

        Returns
        -------
        display : RiskCoverageDisplay
        """
        selective = _selective_final(estimator, X)
        if selective is not None:
            final, Xt = selective
            proba = final.predict_proba(Xt)
            classes = np.asarray(final.classes_)
            confidence = final.selection_score(Xt)
        else:
            proba = estimator.predict_proba(X)
            classes = np.asarray(estimator.classes_)
            confidence = np.max(proba, axis=1)
        y_pred = classes[np.argmax(proba, axis=1)]
        name = name if name is not None else type(estimator).__name__
        return cls.from_predictions(y, y_pred, confidence, name=name, ax=ax,
                                    plot=plot, **kwargs)


def _ends_selective(estimator):
    """Whether the estimator, or the final step of its (nested) pipeline, has
    ``selection_score``."""
    if hasattr(estimator, "selection_score"):
        return True
    steps = getattr(estimator, "steps", None)
    return bool(steps) and _ends_selective(steps[-1][1])


def _selective_final(estimator, X):
    """``(est, Xt)``: the estimator that has ``selection_score`` and ``X`` as
    it receives it (the estimator itself, or a pipeline's final estimator
    after the preceding steps' ``transform``); None when there is none."""
    if not _ends_selective(estimator):
        return None
    while not hasattr(estimator, "selection_score"):
        *head, (_, estimator) = estimator.steps
        for _, step in head:
            if step is not None and not isinstance(step, str):  # "passthrough"
                X = step.transform(X)
    return estimator, X
