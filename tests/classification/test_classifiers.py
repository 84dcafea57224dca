"""FGWZeroShotClassifier and SelectiveOTClassifier."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from skot import FGWZeroShotClassifier, SelectiveOTClassifier
from skot.metrics import aurc, selective_accuracy


def _clip_like(rng, n=300, k=5, d=16, imbalance=None, noise=0.9):
    T = rng.normal(size=(k, d))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    if imbalance is None:
        y = rng.integers(k, size=n)
    else:
        p = imbalance ** np.arange(k)
        y = rng.choice(k, size=n, p=p / p.sum())
    X = T[y] + noise * rng.normal(size=(n, d)) / np.sqrt(d) * 3
    return X, y, T


def _cos_argmax(X, T):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    return (Xn @ Tn.T).argmax(1)


@pytest.mark.parametrize("reg", [1e-3, 0.01, 1.0])
def test_alpha_zero_no_prior_is_argmax_cosine(rng, reg):
    X, _, T = _clip_like(rng)
    clf = FGWZeroShotClassifier(class_embeddings=T, reg=reg).fit(X)
    np.testing.assert_array_equal(clf.predict(X), _cos_argmax(X, T))
    # and the probabilities are CLIP's softmax at logit scale 1 / reg
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    logits = Xn @ Tn.T / reg
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), ref / ref.sum(1, keepdims=True),
                               atol=1e-10)


def test_proba_rows_sum_to_one_and_decision_matches_predict(rng):
    X, _, T = _clip_like(rng)
    for prior in [None, "uniform", "estimate"]:
        clf = FGWZeroShotClassifier(class_embeddings=T, class_prior=prior).fit(X)
        P = clf.predict_proba(X)
        np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-9)
        np.testing.assert_array_equal(clf.decision_function(X).argmax(1), clf.predict(X))


def test_uniform_prior_balances_the_predicted_classes(rng):
    X, _, T = _clip_like(rng, n=200, k=4)
    clf = FGWZeroShotClassifier(class_embeddings=T, class_prior="uniform",
                                solver="exact").fit(X)
    np.testing.assert_array_equal(np.bincount(clf.predict(X), minlength=4), [50] * 4)


@pytest.mark.parametrize("solver, reg", [("exact", None), ("sinkhorn", 5e-3)])
def test_prior_matching_is_otter_s_assignment(rng, solver, reg):
    # OTTER (ALGORITHMS.md 1.4): balanced OT to the class prior pi is the
    # assignment LP whose class counts are n pi; with n pi integer its solution
    # is a linear sum assignment on the class columns repeated n pi_k times
    from scipy.optimize import linear_sum_assignment

    X, _, T = _clip_like(rng, n=100, k=4, noise=1.4)
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = 1.0 - Xn @ (T / np.linalg.norm(T, axis=1, keepdims=True)).T
    cols = np.repeat(np.arange(4), (100 * prior).round().astype(int))
    rows, j = linear_sum_assignment(C[:, cols])
    lp = cols[j[np.argsort(rows)]]
    assert (lp != C.argmin(1)).sum() > 5  # the prior moves rows off the argmax
    clf = FGWZeroShotClassifier(class_embeddings=T, class_prior=prior,
                                solver=solver, reg=reg).fit(X)
    pred = clf.predict(X)
    np.testing.assert_array_equal(np.bincount(pred, minlength=4), [40, 30, 20, 10])
    np.testing.assert_array_equal(pred, lp)


@pytest.mark.parametrize("solver", ["rows", "total"])
def test_prior_with_a_solver_that_ignores_it_is_refused(rng, solver):
    # the column marginal is free there: the prior was silently dropped
    X, _, T = _clip_like(rng, n=50, k=4)
    with pytest.raises(ValueError, match=r"class_prior='uniform' needs a solver"):
        FGWZeroShotClassifier(class_embeddings=T, class_prior="uniform",
                              solver=solver).fit(X)
    FGWZeroShotClassifier(class_embeddings=T, solver=solver).fit(X)  # no prior: fine


def test_huge_and_tiny_rows_classify_as_unit_rows(rng):
    # the squared norms of rows at 1e300 overflowed: every row read as class 0
    X, _, T = _clip_like(rng)
    clf = FGWZeroShotClassifier(class_embeddings=T).fit(X)
    ref = clf.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        np.testing.assert_array_equal(clf.predict(X * 1e300), ref)
        np.testing.assert_array_equal(clf.predict(X * 1e-300), ref)


def test_true_prior_helps_on_long_tailed_data(rng):
    X, y, T = _clip_like(rng, n=600, k=6, imbalance=0.5, noise=1.6)
    prior = np.bincount(y, minlength=6) / len(y)
    base = np.mean(_cos_argmax(X, T) == y)
    clf = FGWZeroShotClassifier(class_embeddings=T, class_prior=prior).fit(X)
    assert clf.score(X, y) > base + 0.02
    uni = FGWZeroShotClassifier(class_embeddings=T, class_prior="uniform").fit(X)
    assert uni.score(X, y) < clf.score(X, y)
    # the EM estimate of the prior is closer to the truth than a uniform guess
    import torch

    from skot.classification._transductive import estimate_prior

    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = torch.tensor(1 - Xn @ (T / np.linalg.norm(T, axis=1, keepdims=True)).T)
    pi = estimate_prior(C, 0.05).numpy()
    assert np.abs(pi - prior).sum() < np.abs(1 / 6 - prior).sum()


@pytest.mark.parametrize("cls", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_unsorted_classes_are_sorted_with_their_embeddings(rng, cls):
    # scikit-learn's scorers read predict_proba's columns in sorted-label
    # order: with classes in reverse order, log loss read 9.3 instead of 0.56
    from sklearn.metrics import get_scorer

    X, y, T = _clip_like(rng, n=300, k=5)
    names = np.array(["e", "d", "c", "b", "a"])
    prior = np.array([0.1, 0.2, 0.3, 0.2, 0.2])  # in class_embeddings' order
    kw = dict(class_prior=prior) if cls is FGWZeroShotClassifier else {}
    clf = cls(class_embeddings=T, classes=names, **kw).fit(X)
    ref = cls(class_embeddings=T, **kw).fit(X)  # labels 0..4 = names[::-1]
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c", "d", "e"])
    pred = ref.predict(X)
    expect = np.where(pred == -1, -1, names[pred].astype(object))
    np.testing.assert_array_equal(clf.predict(X).astype(object), expect)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X)[:, ::-1])
    for name in ("neg_log_loss", "roc_auc_ovr"):
        scorer = get_scorer(name)
        assert scorer(clf, X, names[y]) == pytest.approx(scorer(ref, X, y))
    if kw:
        np.testing.assert_allclose(clf.class_prior_, prior[::-1])
    with pytest.raises(ValueError, match=r"classes has repeated labels \['a'\]"):
        cls(class_embeddings=T, classes=["a", "a", "b", "c", "d"]).fit(X)


def test_classes_labels_and_few_shot(rng):
    X, y, T = _clip_like(rng)
    names = np.array(["a", "b", "c", "d", "e"])
    clf = FGWZeroShotClassifier(class_embeddings=T, classes=names).fit(X)
    assert set(clf.predict(X)) <= set(names)
    few = FGWZeroShotClassifier().fit(X, names[y])
    np.testing.assert_array_equal(few.classes_, names)
    zero = FGWZeroShotClassifier(class_embeddings=T).fit(X).score(X, y)
    assert few.score(X, names[y]) >= zero - 0.05  # prototypes ~ the true embeddings


def test_structure_term_and_batches_run(rng):
    X, y, T = _clip_like(rng)
    clf = FGWZeroShotClassifier(class_embeddings=T, alpha=0.05, class_prior="uniform",
                                batch_size=100).fit(X)
    assert clf.predict(X).shape == (300,)
    assert clf.score(X, y) > 0.5


def test_gridsearch_over_solver_and_reg(rng):
    X, y, T = _clip_like(rng, n=200)
    gs = GridSearchCV(FGWZeroShotClassifier(class_embeddings=T),
                      {"solver": ["sinkhorn", "exact"], "reg": [0.01, 0.1],
                       "class_prior": [None, "uniform"]}, cv=2).fit(X, y)
    assert gs.best_score_ > 0.5


def test_selective_coverage_is_exact(rng):
    X, y, T = _clip_like(rng, n=301)
    for cov in [0.1, 0.5, 0.77, 1.0]:
        clf = SelectiveOTClassifier(class_embeddings=T, coverage=cov).fit(X)
        kept = clf.predict(X) != -1
        assert abs(kept.mean() - cov) <= 1 / 301 + 1e-12


def test_selective_score_takes_sample_weight(rng):
    X, y, T = _clip_like(rng, n=200, noise=1.4)
    clf = SelectiveOTClassifier(class_embeddings=T, coverage=0.5).fit(X)
    pred = clf.predict(X)
    kept = pred != -1
    w = rng.random(200)
    ref = np.sum(w[kept] * (pred[kept] == y[kept])) / w[kept].sum()
    assert clf.score(X, y, sample_weight=w) == pytest.approx(ref)
    assert clf.score(X, y, sample_weight=w) != pytest.approx(clf.score(X, y))


def test_selective_beats_full_accuracy_and_ranks_consistently(rng):
    X, y, T = _clip_like(rng, n=400, noise=1.4)
    clf = SelectiveOTClassifier(class_embeddings=T, coverage=0.5).fit(X)
    pred = clf.predict(X)
    full = np.mean(_cos_argmax(X, T) == y)
    assert selective_accuracy(y, pred) > full
    score = clf.selection_score(X)
    kept = pred != -1
    assert score[kept].min() >= score[~kept].max()
    assert aurc(y, _cos_argmax(X, T), score) < 1 - full


def test_selective_wraps_a_probabilistic_estimator(rng):
    X, y, _ = _clip_like(rng, n=300)
    lr = LogisticRegression(max_iter=500).fit(X[:150], y[:150])
    clf = SelectiveOTClassifier(estimator=lr, coverage=0.5, reg=0.1).fit(X[:150])
    pred = clf.predict(X[150:])
    assert (pred != -1).sum() == 75
    assert clf.score(X[150:], y[150:]) >= lr.score(X[150:], y[150:])
    # an unfitted estimator is cloned and fitted on fit(X, y)
    clf2 = SelectiveOTClassifier(estimator=LogisticRegression(max_iter=500)).fit(X, y)
    assert clf2.estimator_ is not clf2.estimator


def test_reject_label_string(rng):
    X, y, T = _clip_like(rng, n=50)
    clf = SelectiveOTClassifier(class_embeddings=T, classes=list("abcde"),
                                coverage=0.4, reject_label="none").fit(X)
    pred = clf.predict(X)
    assert (pred == "none").sum() == 30


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_bad_input(rng, Est):
    X, y, T = _clip_like(rng, n=40)
    with pytest.raises(ValueError, match="class_embeddings"):
        Est(class_embeddings=T[:, :5]).fit(X)
    with pytest.raises(ValueError, match="solver"):
        Est(class_embeddings=T, solver="nope").fit(X)
    with pytest.raises(ValueError, match="reg"):
        Est(class_embeddings=T, reg=0.0).fit(X)
    clf = Est(class_embeddings=T).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        clf.predict(Xn)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :5])
    with pytest.raises(ValueError, match="sample"):
        clf.predict(X[:0])
    with pytest.raises(ValueError, match="single class"):
        Est().fit(X, np.zeros(40))
    with pytest.raises(ValueError, match="device"):
        Est(class_embeddings=T, device="cuda:7").fit(X).predict(X)


def test_selective_coverage_out_of_range(rng):
    X, y, T = _clip_like(rng, n=20)
    with pytest.raises(ValueError, match="coverage"):
        SelectiveOTClassifier(class_embeddings=T, coverage=1.5).fit(X)
    with pytest.raises(ValueError, match="coverage"):
        SelectiveOTClassifier(class_embeddings=T, coverage=0.0).fit(X)


@pytest.mark.gpu
def test_cuda_predictions_match_cpu(rng):
    X, y, T = _clip_like(rng)
    cpu = FGWZeroShotClassifier(class_embeddings=T, class_prior="uniform").fit(X)
    gpu = FGWZeroShotClassifier(class_embeddings=T, class_prior="uniform",
                                device="cuda").fit(X)
    np.testing.assert_array_equal(cpu.predict(X), gpu.predict(X))


def test_verbose_progress_over_batches(rng, capsys):
    X, y, T = _clip_like(rng, n=200)
    quiet = FGWZeroShotClassifier(class_embeddings=T, batch_size=50).fit(X).predict(X)
    loud = FGWZeroShotClassifier(class_embeddings=T, batch_size=50,
                                 verbose=1).fit(X).predict(X)
    np.testing.assert_array_equal(quiet, loud)
    assert "batches" in capsys.readouterr().err


def test_float32_default_solve_stops_at_its_rounding_floor():
    # float32 class posteriors: a fixed tol of 1e-6 lay below what float32 can
    # reach here (the L1 marginal error stalled at 1.1e-6), so every solve ran
    # to max_iter and warned although it had converged; the solver's float32
    # default tol (max(1e-6, eps max|M| / reg)) is used instead, and the
    # predictions are those of the float64 solve
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    T = rng.normal(size=(100, 64)).astype(np.float32)
    y = np.arange(1500) % 100
    X = (T[y] + rng.normal(size=(1500, 64))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        pred32 = FGWZeroShotClassifier(class_embeddings=T).fit(X).predict(X)
    pred64 = FGWZeroShotClassifier(class_embeddings=T.astype(np.float64)).fit(
        X.astype(np.float64)).predict(X.astype(np.float64))
    np.testing.assert_array_equal(pred32, pred64)


@pytest.mark.parametrize("cls, solver, match", [
    (FGWZeroShotClassifier, "partial", "mass="),
    (FGWZeroShotClassifier, "sparse", "max_nz"),
    (SelectiveOTClassifier, "partial", "mass="),
    (SelectiveOTClassifier, "sparse", "max_nz"),
    (SelectiveOTClassifier, "unbalanced", "unbalanced="),
])
def test_posterior_solver_missing_option_fails_in_fit(rng, cls, solver, match):
    # these used to fit and then fail inside skot.ot at predict time
    from skot.ot import OTSolver

    X, _, T = _clip_like(rng, n=60)
    with pytest.raises(ValueError, match=match) as err:
        cls(class_embeddings=T, solver=solver, class_prior="uniform").fit(X)
    assert repr(solver) in str(err.value)
    # without a class prior the posterior is rows-only and the name is unused
    cls(class_embeddings=T, solver=solver, class_prior=None).fit(X).predict(X)
    # with the option given through an OTSolver it fits and predicts
    if solver != "sparse":
        option = {"partial": {"mass": 0.9}, "unbalanced": {"unbalanced": 0.5}}[solver]
        pred = cls(class_embeddings=T, solver=OTSolver(solver, **option),
                   class_prior="uniform").fit(X).predict(X)
        assert pred.shape == (60,)


def test_exact_posterior_uses_the_network_simplex_budget(rng):
    # max_iter=None: "exact" keeps POT's budget (the entropic 1000 stopped the
    # network simplex early: infeasible plans, warnings, wrong argmaxes)
    import ot
    from sklearn.exceptions import ConvergenceWarning

    X, _, T = _clip_like(rng, n=400, k=40)
    clf = FGWZeroShotClassifier(T, solver="exact", class_prior="uniform").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        P = clf.predict_proba(X)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    ref = ot.emd(np.full(400, 1 / 400), np.full(40, 1 / 40), 1 - Xn @ Tn.T)
    np.testing.assert_allclose(P, ref * 400, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_selective_full_coverage_keeps_every_row(rng, dtype):
    # coverage=1 used to fail in float32 (mass 1 - 1e-9 above the rounded sum
    # of the row weights) or crawl and warn; it is solved in closed form
    from sklearn.exceptions import ConvergenceWarning

    X, _, T = _clip_like(rng, n=300, k=20)
    X, T = X.astype(dtype), T.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        for n in (2, 12, 23, 46, 47, 59, 61, 200, 300):
            # a balanced prior needs batches above n_classes rows: CLIP's
            # softmax posterior below that, to test the selection step alone
            prior = "uniform" if n >= 200 else None
            clf = SelectiveOTClassifier(T, coverage=1, class_prior=prior).fit(X[:n])
            assert (clf.predict(X[:n]) != -1).all()
    # its scores rank rows as the partial solve with almost all of the mass does
    from skot.ot import solve
    import torch

    clf = SelectiveOTClassifier(T.astype(np.float64), coverage=1).fit(X.astype(float))
    p = torch.as_tensor(clf.predict_proba(X.astype(float)))
    C = -torch.log(p.clamp_min(1e-300))
    res = solve(C, torch.full((300,), 1 / 300, dtype=p.dtype),
                torch.ones(20, dtype=p.dtype), reg=0.3, mass=1 - 1e-9,
                reg_type="entropy", tol=1e-12, max_iter=100000)
    lse = torch.logsumexp((res.potentials[1] - C) / 0.3, 1)
    ref = (res.plan.sum(1) * 300 + 1e-6 * torch.sigmoid(lse - lse.mean())).numpy()
    np.testing.assert_allclose(clf.selection_score(X.astype(float)), ref, atol=1e-8)


def test_selective_labels_that_cannot_hold_reject_label(rng):
    X, y, T = _clip_like(rng, n=200, k=4)
    for labels in (y < 2, y.astype(np.uint8)):
        pred = SelectiveOTClassifier(coverage=0.5).fit(X, labels).predict(X)
        assert pred.dtype == object
        rejected = np.array([p is not True and p is not False and p == -1 for p in pred])
        assert rejected.sum() == 100  # not cast to True or wrapped to 255
        kept = pred[~rejected]
        assert set(kept) <= set(labels.tolist())
    pred = SelectiveOTClassifier(coverage=0.5).fit(X, y).predict(X)
    assert pred.dtype == y.dtype and (pred == -1).sum() == 100
    with pytest.raises(ValueError, match="reject_label=0 is one of the classes"):
        SelectiveOTClassifier(T, reject_label=0).fit(X)
    # True == 1 in Python: abstentions were written as class 1
    with pytest.raises(ValueError, match="reject_label=True is one of the classes"):
        SelectiveOTClassifier(T, reject_label=True).fit(X)
    with pytest.raises(ValueError, match="reject_label=1 is one of the classes"):
        SelectiveOTClassifier(reject_label=1).fit(X, y < 2)
    pred = SelectiveOTClassifier(T, reject_label=True, classes=[2, 3, 4, 5],
                                 coverage=0.5).fit(X).predict(X)
    assert pred.dtype == object and sum(p is True for p in pred) == 100


def test_selective_passes_dataframes_to_the_wrapped_estimator(rng):
    # the wrapped estimator got a bare ndarray: a pipeline that picks columns
    # by name failed, and one fitted on a DataFrame warned about feature names
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    cols = [f"c{i}" for i in range(5)]
    df = pd.DataFrame(X, columns=cols)
    pipe = make_pipeline(ColumnTransformer([("s", StandardScaler(), cols[:2])]),
                         LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sel = SelectiveOTClassifier(estimator=pipe, coverage=0.5).fit(df, y)
        pred = sel.predict(df)
        plain = SelectiveOTClassifier(estimator=LogisticRegression(), coverage=0.5)
        plain.fit(df, y).predict(df)
    assert (pred != -1).sum() == 60 and sel.score(df, y) > 0.9
    np.testing.assert_array_equal(sel.feature_names_in_, cols)


def test_selective_refit_with_an_estimator_forgets_the_class_order(rng):
    # a zero-shot fit with unsorted classes, then a refit wrapping an estimator:
    # the stale class order permuted the new prior (IndexError for 2 classes)
    X, y, T = _clip_like(rng, n=100, k=3)
    sel = SelectiveOTClassifier(class_embeddings=T, classes=[2, 0, 1]).fit(X)
    sel.set_params(class_embeddings=None, classes=None, estimator=LogisticRegression(),
                   class_prior=[1.0, 3.0]).fit(X, y < 1)
    np.testing.assert_allclose(sel.class_prior_, [0.25, 0.75])


def test_selective_wrapped_estimator_checks_feature_count(rng):
    X, y, _ = _clip_like(rng, n=100, k=3)
    lr = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="fitted on 16"):
        SelectiveOTClassifier(estimator=lr).fit(X[:, :10])


def test_few_shot_default_solves_converge(shared_data):
    # few-shot prototypes sit close to their own images: at reg 0.01 the
    # balanced posterior took up to 3000 iterations (ConvergenceWarning at the
    # former default max_iter=1000)
    from sklearn.exceptions import ConvergenceWarning

    d = shared_data / "clip-vitb32-stanford-cars"
    X, y = np.load(d / "img_feats_val.npy"), np.load(d / "img_labels_val.npy")
    X, y = X[y < 10].astype(np.float64), y[y < 10]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = SelectiveOTClassifier().fit(X, y)
        assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
@pytest.mark.parametrize("classes, match", [
    ([0.0, np.nan, 1.0], r"classes=\[0.0, nan, 1.0\] contains missing labels"),
    (["a", None, "b"], r"classes=\['a', None, 'b'\] contains missing labels"),
    (np.array([None, "a", "b"], dtype=object), "classes=.*contains missing labels"),
    (["z", 1, "m"], r"classes=\['z', 1, 'm'\] mixes strings and numbers"),
    (np.array(["z", 1, "m"], dtype=object), "classes=.*mixes strings and numbers"),
])
def test_classes_must_be_present_labels_of_one_kind(rng, Est, classes, match):
    # NaN labels were predicted as labels; 1 among strings came out as '1';
    # None failed inside np.unique ('<' not supported)
    X, _, T = _clip_like(rng, n=20, k=3)
    with pytest.raises(ValueError, match=match):
        Est(class_embeddings=T, classes=classes).fit(X)


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_device_is_checked_in_fit(rng, Est):
    X, y, T = _clip_like(rng, n=20, k=3)
    with pytest.raises(ValueError, match="device='no-such-device'"):
        Est(class_embeddings=T, device="no-such-device").fit(X)
    with pytest.raises(ValueError, match="device='no-such-device'"):
        Est(device="no-such-device").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*CUDA is not available"):
            Est(class_embeddings=T, device="cuda").fit(X)


def test_selective_wrapped_estimator_device_is_checked_in_fit(rng):
    X, y, _ = _clip_like(rng, n=40, k=3)
    with pytest.raises(ValueError, match="device='no-such-device'"):
        SelectiveOTClassifier(estimator=LogisticRegression().fit(X, y),
                              device="no-such-device").fit(X)


def test_selective_wrapped_estimator_needs_two_classes(rng):
    from sklearn.dummy import DummyClassifier

    X, _, _ = _clip_like(rng, n=20, k=3)
    with pytest.raises(ValueError, match=r"1 class\(es\).*at least 2 classes"):
        SelectiveOTClassifier(estimator=DummyClassifier().fit(X, np.zeros(20))).fit(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SelectiveOTClassifier(estimator=DummyClassifier()).fit(X, np.zeros(20))


class _FixedProba(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose predict_proba returns ``kind`` rows."""

    def __init__(self, kind="nan"):
        self.kind = kind

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X):
        k = len(self.classes_) + (2 if self.kind == "wide" else 0)
        p = np.full((len(X), k), 1.0 / k)
        if self.kind == "nan":
            p[0] = np.nan
        return p


@pytest.mark.parametrize("kind, match", [
    ("nan", "predict_proba returned 3 NaN or infinite"),
    ("wide", r"predict_proba returned shape \(20, 5\); expected \(20, 3\)"),
])
def test_selective_checks_the_wrapped_predict_proba(rng, kind, match):
    # NaN read as "M contains NaN"; extra columns were silently accepted
    X, y, _ = _clip_like(rng, n=20, k=3)
    sel = SelectiveOTClassifier(estimator=_FixedProba(kind).fit(X, y % 3)).fit(X)
    for method in (sel.predict, sel.selection_score, sel.predict_proba):
        with pytest.raises(ValueError, match=match):
            method(X)


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_zero_shot_fit_refuses_y_outside_the_classes(rng, Est):
    # zero-shot fit ignored y: labels that are not among classes were accepted
    # and score(X, y) was then 0 with no hint
    X, y, T = _clip_like(rng, n=60, k=3)
    names = np.array(["cab", "suv", "van"])
    with pytest.raises(ValueError, match=r"y has 3 label\(s\) that are not among the "
                       r"3 classes \(classes\): 0, 1, 2.*'cab', 'suv', 'van'"):
        Est(class_embeddings=T, classes=names).fit(X, y)
    with pytest.raises(ValueError, match=r"classes=None.*'cab'"):
        Est(class_embeddings=T).fit(X, names[y])
    many = np.arange(60) + 10  # at most 5 shown
    with pytest.raises(ValueError, match=r"10, 11, 12, 13, 14 and 55 more"):
        Est(class_embeddings=T).fit(X, many)
    # the labels of y are a subset of the classes: accepted, and score reads them
    clf = Est(class_embeddings=T, classes=names).fit(X[y < 2], names[y[y < 2]])
    assert clf.score(X, names[y]) > 0.5


def test_selective_score_ranking_does_not_depend_on_coverage_in_float32(rng):
    # the columns are never capped, so each row's mass is a monotone function
    # of its uncapped mass: the ranking, and so the risk-coverage curve, is the
    # same at every coverage. In float32 the rows at the cap (mass 1) tied, as
    # the 1e-6 term that orders them is below float32's resolution near 1
    X, y, T = _clip_like(rng, n=400, k=8)
    X, T = X.astype(np.float32), T.astype(np.float32)
    ref = None
    for cov in (0.3, 0.8, 0.95, 1.0):
        sel = SelectiveOTClassifier(T, coverage=cov, reg=0.1).fit(X)
        score = sel.selection_score(X)
        assert len(np.unique(score)) == len(X)  # no ties among the kept rows
        ref = score if ref is None else ref
        np.testing.assert_array_equal(np.argsort(-score), np.argsort(-ref))
        labels = sel.classes_[sel.predict_proba(X).argmax(1)]
        assert aurc(y, labels, score) == aurc(y, labels, ref)


def test_otsolver_keeps_its_own_unbalanced(rng):
    # FGWZeroShotClassifier set its default unbalanced=1.0 on every solver, so
    # OTSolver("unbalanced", unbalanced=0.05) solved with 1.0, silently
    from skot.ot import OTSolver

    X, _, T = _clip_like(rng, n=120)
    by_name = FGWZeroShotClassifier(class_embeddings=T, solver="unbalanced",
                                    unbalanced=0.05, class_prior="uniform").fit(X)
    solver = OTSolver("unbalanced", reg=0.01, unbalanced=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default unbalanced: no warning
        obj = FGWZeroShotClassifier(class_embeddings=T, solver=solver,
                                    class_prior="uniform").fit(X)
    # (the OTSolver's own tol, not the estimator's 1e-6: close, not equal)
    np.testing.assert_allclose(obj.predict_proba(X), by_name.predict_proba(X),
                               atol=1e-3)
    assert not np.allclose(obj.predict_proba(X), FGWZeroShotClassifier(
        class_embeddings=T, solver="unbalanced",
        class_prior="uniform").fit(X).predict_proba(X), atol=1e-2)
    # a changed unbalanced beside an OTSolver that carries one is not used
    with pytest.warns(UserWarning, match=r"unbalanced=3.0 is not used"):
        FGWZeroShotClassifier(class_embeddings=T, solver=solver, unbalanced=3.0,
                              class_prior="uniform").fit(X)


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_otsolver_without_max_iter_takes_the_estimator_s(rng, Est):
    # an OTSolver without max_iter ran the solve's default 1000 iterations
    # whatever max_iter said, and the warning asked to increase max_iter
    from sklearn.exceptions import ConvergenceWarning

    from skot.ot import OTSolver

    X, _, T = _clip_like(rng, n=80)
    est = Est(class_embeddings=T, solver=OTSolver("sinkhorn", reg=0.01),
              class_prior="uniform", max_iter=3).fit(X)
    with pytest.warns(ConvergenceWarning, match="max_iter=3 "):
        est.predict(X)
    # its own max_iter wins
    est.set_params(solver=OTSolver("sinkhorn", reg=0.01, max_iter=2)).fit(X)
    with pytest.warns(ConvergenceWarning, match="max_iter=2 "):
        est.predict(X)


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_otsolver_without_tol_takes_the_name_s(rng, Est):
    # an OTSolver without tol solved to its own float64 default (1e-9), the
    # name to 1e-6: the same method differed (and warned) by how it was passed
    from skot.ot import OTSolver

    X, _, T = _clip_like(rng, n=80)
    X = X.astype(np.float64)
    seen = []
    for solver in ("sinkhorn", OTSolver("sinkhorn", reg=0.01)):
        est = Est(class_embeddings=T, solver=solver, reg=0.01,
                  class_prior="uniform").fit(X)
        seen.append(est._solver(torch.float64).tol)
    assert seen == [1e-6, 1e-6]
    # its own tol wins
    est.set_params(solver=OTSolver("sinkhorn", reg=0.01, tol=1e-8)).fit(X)
    assert est._solver(torch.float64).tol == 1e-8


def test_exact_decision_function_argmax_is_predict(rng):
    # the exact plan's dual scores g_j - C_ij tie between the assigned class
    # and others; argmax took the first and disagreed with predict on ~1% rows
    X, _, T = _clip_like(rng, n=200)
    for prior in ("uniform", [0, 1, 1, 1, 1]):
        clf = FGWZeroShotClassifier(class_embeddings=T, solver="exact", reg=None,
                                    class_prior=prior).fit(X)
        pred = clf.predict(X)
        D = clf.decision_function(X)
        np.testing.assert_array_equal(clf.classes_[D.argmax(1)], pred)
        np.testing.assert_array_equal(clf.classes_[clf.predict_proba(X).argmax(1)],
                                      pred)
    # binary: the sign of decision_function picks classes_[1]
    X2, y2, T2 = _clip_like(rng, n=60, k=2)
    clf = FGWZeroShotClassifier(class_embeddings=T2, solver="exact", reg=None,
                                class_prior="uniform").fit(X2)
    np.testing.assert_array_equal((clf.decision_function(X2) > 0).astype(int),
                                  clf.predict(X2))


@pytest.mark.parametrize("selection_reg", [1.0, 1.5])
def test_selection_reg_of_one_or_more_is_refused(rng, selection_reg):
    # rows are ranked by sum_j p^(1/eps): equal for every row at eps = 1, the
    # least confident first above; selective accuracy fell below the full one
    from sklearn.utils._param_validation import InvalidParameterError

    X, _, T = _clip_like(rng, n=60)
    with pytest.raises(InvalidParameterError, match="'selection_reg'.*1.0"):
        SelectiveOTClassifier(class_embeddings=T,
                              selection_reg=selection_reg).fit(X)
    # below 1 the kept rows beat the whole batch
    X, y, T = _clip_like(rng, n=400)
    clf = SelectiveOTClassifier(class_embeddings=T, selection_reg=0.9,
                                coverage=0.3).fit(X)
    full = np.mean(clf.classes_[clf.predict_proba(X).argmax(1)] == y)
    assert clf.score(X, y) > full


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_batches_smaller_than_the_classes_with_a_prior_warn(rng, Est):
    # with a class prior one row gets the prior as its probabilities and
    # its argmax as its label whatever its features: that was silent
    X, _, T = _clip_like(rng, n=103)
    clf = Est(class_embeddings=T, class_prior="uniform").fit(X)
    with pytest.warns(UserWarning, match="batch of 1 row.*class_prior='uniform'"):
        clf.predict(X[:1])
    clf.set_params(batch_size=50)  # last batch of 3 rows
    with pytest.warns(UserWarning, match="batch of 3 row"):
        clf.predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf.predict(X[:100])
        clf.set_params(class_prior=None, batch_size=None).fit(X).predict(X[:1])


@pytest.mark.parametrize("Est", [FGWZeroShotClassifier, SelectiveOTClassifier])
def test_classes_without_class_embeddings_is_refused(rng, Est):
    # few-shot took classes_ from y and ignored classes=, silently
    X, y, _ = _clip_like(rng, n=60)
    with pytest.raises(ValueError, match=r"classes=\['a', 'b'.*class_embeddings is None"):
        Est(classes=list("abcde")).fit(X, y)


@pytest.mark.parametrize("name", ["class_embeddings", "classes"])
def test_selective_estimator_with_class_embeddings_is_refused(rng, name):
    # the wrapped estimator was used and class_embeddings / classes ignored
    X, y, T = _clip_like(rng, n=60)
    params = {"class_embeddings": T} if name == "class_embeddings" else {
        "classes": list("abcde")}
    with pytest.raises(ValueError, match=f"{name} is given with estimator="):
        SelectiveOTClassifier(estimator=LogisticRegression(), **params).fit(X, y)


def test_class_prior_of_strings_names_the_parameter(rng):
    X, _, T = _clip_like(rng, n=30)
    with pytest.raises(ValueError, match=r"class_prior must be.*got \['a', 'b'"):
        FGWZeroShotClassifier(class_embeddings=T, class_prior=list("abcde")).fit(X)
