import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skot import SelectiveOTClassifier
from skot.metrics import aurc
from skot.plotting import RiskCoverageDisplay

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_display_from_predictions_and_estimator(rng):
    import matplotlib.pyplot as plt

    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int)
    lr = LogisticRegression().fit(X, y)
    msp = RiskCoverageDisplay.from_estimator(lr, X, y)  # max-softmax baseline
    conf = lr.predict_proba(X).max(1)
    assert msp.aurc == pytest.approx(aurc(y, lr.predict(X), conf))
    assert msp.line_.get_xdata()[-1] == 1.0 and msp.ax_ is not None
    sel = SelectiveOTClassifier(estimator=lr, coverage=0.5, reg=0.1).fit(X)
    disp = RiskCoverageDisplay.from_estimator(sel, X, y, ax=msp.ax_, name="OT")
    assert disp.ax_ is msp.ax_ and "OT" in disp.line_.get_label()
    plt.close("all")


def test_label_in_kwargs_replaces_the_legend_label():
    # sklearn's displays let kwargs override the label; it raised
    # "multiple values for keyword argument 'label'"
    import matplotlib

    matplotlib.use("Agg")
    from skot.plotting import RiskCoverageDisplay

    y = np.array([0, 1, 1, 0])
    disp = RiskCoverageDisplay.from_predictions(
        y, np.array([0, 0, 1, 1]), np.array([0.9, 0.1, 0.8, 0.5]), label="mine")
    assert disp.line_.get_label() == "mine"
