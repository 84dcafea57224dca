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


@pytest.mark.parametrize("first", ["scaler", "function"])
def test_from_estimator_on_a_pipeline_uses_the_final_selection_score(rng, first):
    # a Pipeline has no selection_score: from_estimator fell back to the max of
    # predict_proba and reported another curve than the bare classifier's
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    k, d = 4, 6
    T = rng.normal(size=(k, d))
    y = rng.integers(k, size=150)
    X = T[y] + 1.5 * rng.normal(size=(150, d))
    step = (StandardScaler() if first == "scaler"
            else FunctionTransformer(lambda Z: Z - 0.1 * Z.mean(0)))
    pipe = make_pipeline(step, SelectiveOTClassifier(class_embeddings=T, coverage=0.5,
                                                     selection_reg=0.5))
    pipe.fit(X)
    Xt = pipe[:-1].transform(X)
    final = pipe[-1]
    bare = RiskCoverageDisplay.from_estimator(final, Xt, y, plot=False)
    disp = RiskCoverageDisplay.from_estimator(pipe, X, y, plot=False)
    np.testing.assert_array_equal(disp.coverage, bare.coverage)
    np.testing.assert_array_equal(disp.risk, bare.risk)
    assert disp.aurc == bare.aurc
    labels = final.classes_[final.predict_proba(Xt).argmax(1)]
    assert disp.aurc == pytest.approx(aurc(y, labels, final.selection_score(Xt)))
    # not the max-softmax curve the pipeline had read as
    msp = aurc(y, labels, final.predict_proba(Xt).max(1))
    assert disp.aurc != pytest.approx(msp)
    # nested and with a passthrough step: the same curve
    nested = make_pipeline("passthrough", pipe)
    again = RiskCoverageDisplay.from_estimator(nested, X, y, plot=False)
    assert again.aurc == disp.aurc



def test_from_estimator_refuses_string_y_against_number_classes(rng):
    # y as strings, classes_ as integers: the curve read as all errors (AURC 1)
    T = rng.normal(size=(3, 4))
    y = rng.integers(3, size=60)
    X = T[y] + 0.5 * rng.normal(size=(60, 4))
    clf = SelectiveOTClassifier(class_embeddings=T).fit(X)
    with pytest.raises(ValueError, match="Mix of label input types"):
        RiskCoverageDisplay.from_estimator(clf, X, y.astype(str), plot=False)
