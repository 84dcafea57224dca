import itertools
import time
import warnings

import numpy as np
import pytest

imblearn = pytest.importorskip("imblearn")  # before skot's selector: see routing test
import ot  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from imblearn.pipeline import Pipeline  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from skot import WassersteinCoresetSelector  # noqa: E402
from skot.ot import OTSolver  # noqa: E402
from skot.selection._coreset import _class_budgets  # noqa: E402
from skot.selection._goracs import (  # noqa: E402
    SelectionProblem,
    barycenter_select,
    greedy_select,
)


def _cos(A, B):
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return np.maximum(1 - A @ B.T, 0)


def _emd2(C):
    return ot.emd2([], [], np.ascontiguousarray(C, dtype=np.float64),
                   numItermax=10**7)


def _blobs(rng, n=60, d=5, classes=3):
    y = np.arange(n) % classes
    X = rng.normal(size=(n, d)) + 2.0 * np.eye(classes, d)[y]
    return X, y


# ------------------------------------------------------------- sklearn checks
# No expected failures: the selector has fit (which selects and stores the
# coreset) and fit_resample, no predict/transform, so the prediction and
# transformation checks do not apply and are not generated.
@parametrize_with_checks(
    [WassersteinCoresetSelector(n_samples=5, max_iter=5)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_no_transform_and_imblearn_sampler_api(rng):
    X, y = _blobs(rng)
    sel = WassersteinCoresetSelector(n_samples=9)
    assert not hasattr(sel, "transform")
    Xs, ys = sel.fit_resample(X, y)
    np.testing.assert_array_equal(Xs, X[sel.sample_indices_])
    np.testing.assert_array_equal(ys, y[sel.sample_indices_])
    assert np.all(np.diff(sel.sample_indices_) > 0)
    Xs2, ys2 = WassersteinCoresetSelector(n_samples=9).fit_resample(X)
    assert ys2 is None and Xs2.shape == (9, 5)


def test_imblearn_pipeline(rng):
    X, y = _blobs(rng, n=90)
    pipe = Pipeline([("coreset", WassersteinCoresetSelector(n_samples=0.2)),
                     ("clf", LogisticRegression())])
    pipe.fit(X, y)
    sel = pipe.named_steps["coreset"]
    assert len(sel.sample_indices_) == 18
    assert pipe.score(X, y) > 0.8
    # unsupervised: y=None flows through the pipeline
    pipe = Pipeline([("coreset", WassersteinCoresetSelector(n_samples=12)),
                     ("km", KMeans(3, n_init=2, random_state=0))])
    pipe.fit(X)
    assert pipe.named_steps["km"].cluster_centers_.shape == (3, 5)


def test_imblearn_pipeline_routes_reference(rng):
    sel = WassersteinCoresetSelector(n_samples=10)
    if not hasattr(sel, "set_fit_resample_request"):
        pytest.skip("imblearn was imported after the selector class was built")
    X, y = _blobs(rng, n=80, classes=2)
    V = X[:20] + 3.0
    with sklearn.config_context(enable_metadata_routing=True):
        sel.set_fit_request(X_reference=True, y_reference=True)
        sel.set_fit_resample_request(X_reference=True, y_reference=True)
        pipe = Pipeline([("coreset", sel), ("clf", LogisticRegression())])
        pipe.fit(X, y, X_reference=V, y_reference=y[:20])
    ref = clone(sel).fit(X, y, X_reference=V, y_reference=y[:20])
    np.testing.assert_array_equal(
        pipe.named_steps["coreset"].sample_indices_, ref.sample_indices_
    )


def test_pandas_in_pandas_out(rng):
    pd = pytest.importorskip("pandas")
    X, y = _blobs(rng)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    Xs, ys = WassersteinCoresetSelector(n_samples=6).fit_resample(df, pd.Series(y))
    assert isinstance(Xs, pd.DataFrame) and isinstance(ys, pd.Series)
    assert len(Xs) == 6


# ------------------------------------------------------------------ budgets
def test_n_samples_fraction_and_count(rng):
    X, _ = _blobs(rng, n=80)
    assert len(WassersteinCoresetSelector(0.125).fit(X).sample_indices_) == 10
    assert len(WassersteinCoresetSelector(1.0).fit(X).sample_indices_) == 80
    assert len(WassersteinCoresetSelector(7).fit(X).sample_indices_) == 7


@pytest.mark.parametrize("n_samples", [81, 500])
def test_n_samples_too_large(rng, n_samples):
    X, y = _blobs(rng, n=80)
    with pytest.raises(ValueError, match="n_samples"):
        WassersteinCoresetSelector(n_samples).fit_resample(X, y)


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -3])
def test_n_samples_invalid(rng, bad):
    X, _ = _blobs(rng)
    with pytest.raises(ValueError, match="n_samples"):
        WassersteinCoresetSelector(bad).fit(X)


def test_class_budgets_proportional_at_least_one():
    counts = np.array([50, 30, 5, 15, 1])
    b = _class_budgets(counts, 10)
    assert b.sum() == 10 and b.min() >= 1 and np.all(b <= counts)
    np.testing.assert_array_equal(b, [4, 3, 1, 1, 1])
    np.testing.assert_array_equal(_class_budgets(counts, 101), counts)
    with pytest.raises(ValueError, match="n_samples"):
        _class_budgets(counts, 4)


def test_stratified_budget_in_fit(rng):
    y = np.repeat([0, 1, 2], [60, 30, 10])
    X = rng.normal(size=(100, 4))
    sel = WassersteinCoresetSelector(n_samples=10).fit(X, y)
    np.testing.assert_array_equal(np.bincount(y[sel.sample_indices_]), [6, 3, 1])
    np.testing.assert_allclose(sel.sample_weight_.sum(), 1.0)
    # transport mass of a kept row = class frequency / class budget
    np.testing.assert_allclose(
        sel.sample_weight_, np.array([0.6 / 6, 0.3 / 3, 0.1])[y[sel.sample_indices_]]
    )
    np.testing.assert_array_equal(sel.classes_, [0, 1, 2])
    no_strat = WassersteinCoresetSelector(n_samples=10, stratify=False).fit(X, y)
    np.testing.assert_allclose(no_strat.sample_weight_, 0.1)
    assert not hasattr(no_strat, "classes_")


def test_string_labels(rng):
    X, y = _blobs(rng)
    ys = np.array(["a", "b", "c"])[y]
    _, out = WassersteinCoresetSelector(6).fit_resample(X, ys)
    assert sorted(out.tolist()) == ["a", "a", "b", "b", "c", "c"]


# ---------------------------------------------------------------- bad input
def test_nan_raises(rng):
    X, y = _blobs(rng)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        WassersteinCoresetSelector(5).fit_resample(X, y)


def test_bad_solver_and_reg(rng):
    X, _ = _blobs(rng)
    with pytest.raises(ValueError, match="solver"):
        WassersteinCoresetSelector(5, solver="nope").fit(X)
    with pytest.raises(ValueError, match="reg"):
        WassersteinCoresetSelector(5, solver="sinkhorn", reg=None).fit(X)
    with pytest.raises(ValueError, match="reg"):
        WassersteinCoresetSelector(5, solver="sinkhorn", reg=0.0).fit(X)
    with pytest.raises(ValueError, match="partial"):
        WassersteinCoresetSelector(5, solver=OTSolver("partial", mass=0.5)).fit(X)


def test_bad_reference_and_scores(rng):
    X, y = _blobs(rng)
    sel = WassersteinCoresetSelector(6)
    with pytest.raises(ValueError, match="X_reference"):
        sel.fit(X, X_reference=X[:, :3])
    with pytest.raises(ValueError, match="y_reference"):
        sel.fit(X, y, X_reference=X[:10])
    with pytest.raises(ValueError, match="y_reference"):
        sel.fit(X, y, X_reference=X[:10], y_reference=np.zeros(10, int))
    with pytest.raises(ValueError, match="sample_score"):
        sel.fit(X, y, sample_score=np.ones(5))
    with pytest.raises(ValueError, match="sample_score"):
        sel.fit(X, y, sample_score=np.full(60, np.nan))


def test_cuda_without_cuda_raises(rng):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    X, _ = _blobs(rng)
    with pytest.raises(ValueError, match="cuda"):
        WassersteinCoresetSelector(5, device="cuda").fit(X)


# --------------------------------------------------------- objective / math
@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
def test_objective_is_pot_emd_of_kept_rows(rng, metric):
    X, y = _blobs(rng, n=45)
    dist = {"cosine": _cos, "euclidean": lambda A, B: ot.dist(A, B, "euclidean"),
            "sqeuclidean": lambda A, B: ot.dist(A, B)}[metric]
    sel = WassersteinCoresetSelector(8, metric=metric, stratify=False).fit(X, y)
    S = sel.sample_indices_
    assert sel.objective_ == pytest.approx(_emd2(dist(X[S], X)), rel=1e-9, abs=1e-12)
    # stratified: class-frequency-weighted sum of per-class exact OT values
    sel = WassersteinCoresetSelector(9, metric=metric).fit(X, y)
    ref = sum(
        np.mean(y == c) * _emd2(dist(X[[i for i in sel.sample_indices_ if y[i] == c]],
                                     X[y == c]))
        for c in range(3)
    )
    assert sel.objective_ == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_objective_never_increases_during_refinement(rng):
    X = rng.normal(size=(300, 8))
    y = np.arange(300) % 3
    for kw in [dict(), dict(cut_num=3), dict(stratify=False)]:
        sel = WassersteinCoresetSelector(30, **kw).fit(X, y)
        path = sel.objective_path_
        assert len(path) > 2  # refinement did accept moves
        assert np.all(np.diff(path) <= 1e-12)
        assert path[-1] == pytest.approx(sel.objective_)
        greedy = WassersteinCoresetSelector(30, strategy="greedy", **kw).fit(X, y)
        assert greedy.objective_ == pytest.approx(path[0])
        assert sel.objective_ < greedy.objective_


def test_sinkhorn_solver_monotone(rng):
    X = rng.normal(size=(120, 6))
    sel = WassersteinCoresetSelector(12, solver="sinkhorn", reg=0.05).fit(X)
    assert np.all(np.diff(sel.objective_path_) <= 1e-12)
    assert sel.solver_.method == "sinkhorn"


def test_swap_result_is_a_one_swap_local_optimum(rng):
    # small enough that every (inner, outer) pair is a candidate and is tried
    X = rng.normal(size=(10, 3))
    sel = WassersteinCoresetSelector(3, metric="euclidean").fit(X)
    C = ot.dist(X, X, "euclidean")
    S = list(sel.sample_indices_)
    for r in S:
        for i in set(range(10)) - set(S):
            T = [i if s == r else s for s in S]
            assert _emd2(C[T]) >= sel.objective_ - 1e-12
    brute = min(_emd2(C[list(T)]) for T in itertools.combinations(range(10), 3))
    assert sel.objective_ <= 1.05 * brute


def test_self_reference_objective_zero():
    # GORACS identity: lam=0, the reference drawn from the pool, k=|V| -> W = 0
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4))
    V = X[5:15]
    sel = WassersteinCoresetSelector(10, metric="euclidean").fit(X, X_reference=V)
    # (sqrt of a rounding-level squared distance: ~1e-8, not exactly 0)
    assert sel.objective_ == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_array_equal(sel.sample_indices_, np.arange(5, 15))


def test_reference_distribution_is_matched(rng):
    # pool = two clusters; the reference lies on cluster B only
    A = rng.normal(size=(50, 3))
    B = rng.normal(size=(50, 3)) + 6.0
    X = np.vstack([A, B])
    V = rng.normal(size=(30, 3)) + 6.0
    sel = WassersteinCoresetSelector(10, metric="euclidean").fit(X, X_reference=V)
    assert np.all(sel.sample_indices_ >= 50)
    own = WassersteinCoresetSelector(10, metric="euclidean").fit(X)
    assert (own.sample_indices_ < 50).sum() == 5


def test_sample_score_pulls_selection(rng):
    X = rng.normal(size=(60, 4))
    score = np.zeros(60)
    score[:10] = 1.0
    base = WassersteinCoresetSelector(10, metric="euclidean").fit(X)
    sel = WassersteinCoresetSelector(10, metric="euclidean", lam=10.0).fit(
        X, sample_score=score
    )
    assert np.isin(sel.sample_indices_, np.arange(10)).all()
    assert not np.isin(base.sample_indices_, np.arange(10)).all()
    # objective = <P, D> - lam * mean score of the kept rows
    D = ot.dist(X[sel.sample_indices_], X, "euclidean")
    assert sel.objective_ == pytest.approx(_emd2(D) - 10.0, rel=1e-9)
    # lam = 0 ignores the scores
    zero = WassersteinCoresetSelector(10, metric="euclidean", lam=0.0).fit(
        X, sample_score=score
    )
    np.testing.assert_array_equal(zero.sample_indices_, base.sample_indices_)


def test_lazy_greedy_equals_plain_greedy(rng):
    X = torch.as_tensor(rng.normal(size=(70, 5)))
    V = torch.as_tensor(rng.normal(size=(50, 5)))
    prob = SelectionProblem(X, V, metric="euclidean", solve=None)
    S = greedy_select(prob, 12, batch=4, prune=False)
    C = ot.dist(X.numpy(), V.numpy(), "euclidean")
    ref = [int(np.argmin(C.sum(1)))]
    mj = C[ref[0]].copy()
    while len(ref) < 12:
        tot = np.minimum(C, mj).sum(1)
        tot[ref] = np.inf
        ref.append(int(np.argmin(tot)))
        mj = np.minimum(mj, C[ref[-1]])
    np.testing.assert_array_equal(S, ref)


def test_max_reference_subsamples_reproducibly(rng):
    X, y = _blobs(rng, n=120)
    a = WassersteinCoresetSelector(12, max_reference=30, random_state=0).fit(X, y)
    b = WassersteinCoresetSelector(12, max_reference=30, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    assert a.objective_ == b.objective_
    np.testing.assert_allclose(a.sample_weight_.sum(), 1.0)


def test_float32_input(rng):
    X, y = _blobs(rng)
    sel = WassersteinCoresetSelector(6).fit(X.astype(np.float32), y)
    ref = WassersteinCoresetSelector(6).fit(X, y)
    assert sel.objective_ == pytest.approx(ref.objective_, rel=1e-4)


# ------------------------------------------------------------------ barycenter
def test_barycenter_matches_pot_free_support(rng):
    V = torch.as_tensor(rng.normal(size=(40, 3)))
    X = torch.as_tensor(rng.normal(size=(60, 3)))
    from skot.ot import solve

    prob = SelectionProblem(
        X, V, metric="sqeuclidean",
        solve=lambda M, a, b: solve(M, a, b, method="exact", max_iter=10**7),
    )
    S0 = np.arange(4)
    S, Z, values = barycenter_select(prob, S0, max_iter=10, tol=0.0)
    ref = ot.lp.free_support_barycenter(
        [V.numpy()], [np.full(40, 1 / 40)], X[:4].numpy().copy(),
        b=np.full(4, 0.25), numItermax=10, stopThr=0.0,
    )
    np.testing.assert_allclose(Z.numpy(), ref, atol=1e-8)
    assert np.all(np.diff(values) <= 1e-12)  # Lloyd steps never increase W2^2
    assert len(set(S.tolist())) == 4
    # snapped rows: the Hungarian assignment of Z to the rows of X
    D = ot.dist(Z.numpy(), X.numpy())
    assert D[np.arange(4), S].sum() <= D.min(1).sum() + D.max()


def test_barycenter_one_point_is_row_nearest_to_mean(rng):
    X = rng.normal(size=(50, 4))
    sel = WassersteinCoresetSelector(1, metric="euclidean", strategy="barycenter")
    sel.fit(X)
    d = np.linalg.norm(X - X.mean(0), axis=1)
    assert sel.sample_indices_.tolist() == [int(np.argmin(d))]


def test_barycenter_mode_distinct_rows_and_objective(rng):
    X, y = _blobs(rng, n=90)
    sel = WassersteinCoresetSelector(15, strategy="barycenter").fit(X, y)
    assert len(np.unique(sel.sample_indices_)) == 15
    np.testing.assert_array_equal(np.bincount(y[sel.sample_indices_]), [5, 5, 5])
    assert sel.objective_ == pytest.approx(sel.objective_path_[-1])
    greedy = WassersteinCoresetSelector(15, strategy="greedy").fit(X, y)
    assert sel.objective_path_[0] == pytest.approx(greedy.objective_)


# ------------------------------------------------------------------ real data
def _cars(shared_data):
    d = shared_data / "clip-vitb32-stanford-cars"
    X = np.load(d / "img_feats_16shot.npy").astype(np.float64)
    y = np.load(d / "img_labels_16shot.npy")
    Xv = np.load(d / "img_feats_val.npy").astype(np.float64)
    yv = np.load(d / "img_labels_val.npy")
    return X, y, Xv, yv


def test_cars_coreset_beats_stratified_random(shared_data):
    X, y, Xv, yv = _cars(shared_data)
    t = time.perf_counter()
    sel = WassersteinCoresetSelector(0.125).fit(X, y)
    assert time.perf_counter() - t < 60
    assert len(sel.sample_indices_) == 392

    def acc(idx):
        clf = LogisticRegression(max_iter=1000).fit(X[idx], y[idx])
        return clf.score(Xv, yv)

    rand = []
    for seed in range(3):
        r = np.random.default_rng(seed)
        idx = np.concatenate(
            [r.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(196)]
        )
        rand.append(acc(idx))
    ours = acc(sel.sample_indices_)
    assert ours >= np.mean(rand) + 0.03
    # per-class k-means medoids (2 per class, nearest distinct row to a centroid)
    med = []
    for c in range(196):
        rows = np.flatnonzero(y == c)
        km = KMeans(2, n_init=10, random_state=0).fit(X[rows])
        for z in km.cluster_centers_:
            order = rows[np.argsort(((X[rows] - z) ** 2).sum(1))]
            med.append(next(int(j) for j in order if int(j) not in med))
    assert ours >= acc(np.array(med))


@pytest.mark.gpu
def test_cuda_matches_cpu(rng):
    X, y = _blobs(rng, n=90)
    cpu = WassersteinCoresetSelector(12).fit(X, y)
    gpu = WassersteinCoresetSelector(12, device="cuda").fit(X, y)
    np.testing.assert_array_equal(cpu.sample_indices_, gpu.sample_indices_)
    assert gpu.objective_ == pytest.approx(cpu.objective_, rel=1e-9)


@pytest.mark.parametrize("strategy", ["goracs", "greedy", "barycenter"])
def test_tied_gains_terminate_with_distinct_rows(strategy):
    # more than 256 candidates tied at the top gain: the lazy greedy's argmax
    # lay outside its refresh set and fit never returned; chosen rows were
    # re-evaluated to a finite gain and chosen again (repeated indices)
    X = np.repeat(np.random.default_rng(0).normal(size=(5, 2)), 100, axis=0)
    sel = WassersteinCoresetSelector(n_samples=10, strategy=strategy).fit(X)
    idx = sel.sample_indices_
    assert len(np.unique(idx)) == 10 and (np.diff(idx) > 0).all()
    X = np.vstack([np.random.default_rng(1).normal(size=(10, 4))] * 3)
    for k in (15, 30):
        idx = WassersteinCoresetSelector(n_samples=k, strategy=strategy).fit(X)
        idx = idx.sample_indices_
        assert len(np.unique(idx)) == k and (np.diff(idx) > 0).all()
    # a reference smaller than the budget
    rng = np.random.default_rng(2)
    sel = WassersteinCoresetSelector(n_samples=20, strategy=strategy).fit(
        rng.normal(size=(50, 4)), X_reference=rng.normal(size=(3, 4)))
    assert len(np.unique(sel.sample_indices_)) == 20


def test_reference_classes_missing_from_y_warn(rng):
    X, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    V, yV = rng.normal(size=(30, 3)), np.repeat([0, 1, 2], 10)
    with pytest.warns(UserWarning, match=r"classes \[2\].*33.3%"):
        WassersteinCoresetSelector(n_samples=6).fit(X, y, X_reference=V, y_reference=yV)


def test_class_budgets_follow_y_not_the_reference(rng):
    # documented choice: GORACS' split by the reference's class frequencies
    # was measured worse on Cars (unbalanced coresets); the reference still
    # weighs the classes in the objective
    X = rng.normal(size=(300, 4))
    y = np.repeat([0, 1, 2], [200, 80, 20])
    V = rng.normal(size=(100, 4))
    sel = WassersteinCoresetSelector(n_samples=30, random_state=0)
    sel.fit(X, y, X_reference=V, y_reference=np.repeat([0, 1, 2], [20, 30, 50]))
    np.testing.assert_array_equal(np.bincount(y[sel.sample_indices_]), [20, 8, 2])
    masses = np.bincount(y[sel.sample_indices_], weights=sel.sample_weight_)
    np.testing.assert_allclose(masses, [0.2, 0.3, 0.5])


def test_swaps_reach_distinct_points_among_many_copies():
    # 5 points x 100 copies, 10 kept: the swap candidates (best dual scores)
    # were all copies of one point and the swaps stalled at masses 6/1/2/1/0
    # (objective 0.238); one copy per point among them reaches 0.158
    X = np.repeat(np.random.default_rng(0).normal(size=(5, 2)), 100, axis=0)
    sel = WassersteinCoresetSelector(n_samples=10).fit(X)
    assert sel.objective_ < 0.2
    assert len(np.unique(sel.sample_indices_ // 100)) >= 4



@pytest.mark.parametrize("strategy", ["goracs", "barycenter"])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_selection_does_not_depend_on_the_data_scale(rng, strategy, metric):
    # absolute tolerances (POT's simplex, swap and barycenter stopping) made
    # rows at 1e-9 select differently; cosine rows below 1e-12 were all-zero
    X = rng.normal(size=(60, 5))
    ref = WassersteinCoresetSelector(n_samples=8, metric=metric, strategy=strategy,
                                     random_state=0).fit(X)
    power = {"euclidean": 1, "sqeuclidean": 2, "cosine": 0}[metric]
    for scale in (1e-9, 1e-13, 1e6):
        sel = WassersteinCoresetSelector(n_samples=8, metric=metric, strategy=strategy,
                                         random_state=0).fit(X * scale)
        np.testing.assert_array_equal(sel.sample_indices_, ref.sample_indices_)
        assert sel.objective_ == pytest.approx(ref.objective_ * scale**power, rel=1e-6)


def test_entropic_barycenter_keeps_reg_in_cost_units(rng):
    # rows x2 and reg x4 is the same sqeuclidean problem; computing the
    # barycenter on rows rescaled to max 1 with reg unchanged was not
    X = 3 * rng.normal(size=(80, 5))
    kw = dict(n_samples=10, metric="sqeuclidean", strategy="barycenter",
              solver="sinkhorn", random_state=0)
    a = WassersteinCoresetSelector(reg=0.5, **kw).fit(X)
    b = WassersteinCoresetSelector(reg=2.0, **kw).fit(2 * X)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    assert b.objective_ == pytest.approx(4 * a.objective_, rel=1e-6)


def test_costs_beyond_the_dtype_raise_instead_of_hanging(rng):
    # squared distances of rows at 1e20 overflow float32: inf - inf made NaN
    # gains and the greedy never returned
    X = (rng.normal(size=(40, 4)) * 1e20).astype(np.float32)
    sel = WassersteinCoresetSelector(n_samples=5, metric="sqeuclidean")
    with pytest.raises(ValueError, match=r"metric='sqeuclidean' costs .* rescale X"):
        sel.fit(X)
    with pytest.raises(ValueError, match="below"):
        sel.fit(X * np.float32(1e-45))
    # squared costs near 1e-36 are still normal float32 numbers: selected as at
    # unit scale
    small = WassersteinCoresetSelector(n_samples=5, metric="sqeuclidean", random_state=0)
    np.testing.assert_array_equal(
        small.fit(X * np.float32(1e-39)).sample_indices_,
        clone(small).fit(X / np.float32(1e20)).sample_indices_)
    # the euclidean cost of the same rows fits, and selects as at unit scale
    ok = WassersteinCoresetSelector(n_samples=5, metric="euclidean", random_state=0)
    np.testing.assert_array_equal(ok.fit(X).sample_indices_,
                                  clone(ok).fit(X / np.float32(1e20)).sample_indices_)


def test_solver_names_alone_are_a_grid(rng):
    # reg defaults to 0.05 (cost units) and "exact" ignores it: each solver
    # name fits with the other parameters at their defaults (with reg=None
    # the entropic entries of such a grid had failed)
    X, y = _blobs(rng)
    kept = {}
    for solver in ("exact", "sinkhorn"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and the default reg converges
            sel = WassersteinCoresetSelector(12, solver=solver).fit(X, y)
        kept[solver] = set(sel.sample_indices_)
        assert len(kept[solver]) == 12 and np.isfinite(sel.objective_)
    exact = WassersteinCoresetSelector(12, solver="exact", reg=None).fit(X, y)
    assert set(exact.sample_indices_) == kept["exact"]


def test_refit_without_stratification_drops_classes(rng):
    # classes_ is documented as absent when the selection was not stratified;
    # a refit on the same estimator had kept the classes of the earlier fit
    X, y = _blobs(rng)
    sel = WassersteinCoresetSelector(6).fit(X, y)
    np.testing.assert_array_equal(sel.classes_, [0, 1, 2])
    sel.fit(X)
    assert not hasattr(sel, "classes_")
    sel.fit(X, y)
    sel.set_params(stratify=False).fit(X, y)
    assert not hasattr(sel, "classes_")


def test_mixed_label_types_name_the_labels(rng):
    # np.unique's "TypeError: '<' not supported between 'int' and 'str'"
    # named neither y nor y_reference
    X, y = _blobs(rng)
    mixed = np.array(["a", 1, "c"], dtype=object)[y]
    with pytest.raises(ValueError, match=r"^y mixes label types .*int, str"):
        WassersteinCoresetSelector(6).fit(X, mixed)
    ys = np.array(["a", "b", "c"])[y]
    with pytest.raises(ValueError, match=r"^y_reference mixes label types"):
        WassersteinCoresetSelector(6).fit(
            X, ys, X_reference=X[:30], y_reference=mixed[:30])
    # the labels are only carried along without stratification
    _, out = WassersteinCoresetSelector(6, stratify=False).fit_resample(X, mixed)
    assert len(out) == 6


@pytest.mark.parametrize("strategy", ["goracs", "barycenter"])
def test_running_out_of_max_iter_warns(rng, strategy):
    # the refinement (or the barycenter iterations) stopped at max_iter while
    # still improving without any warning; sklearn's convention is a
    # ConvergenceWarning naming max_iter
    from sklearn.exceptions import ConvergenceWarning

    X = np.random.default_rng(0).normal(size=(200, 5))
    with pytest.warns(ConvergenceWarning, match=r"max_iter=1 .*increase max_iter"):
        sel = WassersteinCoresetSelector(20, strategy=strategy, max_iter=1).fit(X)
    assert sel.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        full = WassersteinCoresetSelector(20, strategy=strategy).fit(X)  # converges
        WassersteinCoresetSelector(20, strategy=strategy, max_iter=0).fit(X)
    assert 1 < full.n_iter_ < 100


def test_huge_selection_warns_or_refuses_before_allocating(rng, monkeypatch):
    # the unlabelled default matches X to itself: cost cache and dense k x m
    # OT solves grow as n^2 (20000 x 512 float32 at 10%: 3.9 GiB measured) with
    # no word before the allocation; now a warning naming max_reference, and
    # a ValueError when the estimate exceeds the machine's memory
    import skot.selection._coreset as mod

    X = rng.normal(size=(300, 8)).astype(np.float32)
    monkeypatch.setattr(mod, "_SOLVE_WARN_BYTES", 30 * 300 * 64 - 1)
    with pytest.warns(UserWarning, match=r"dense 30 x 300 .*max_reference"):
        WassersteinCoresetSelector(30, strategy="greedy").fit(X)
    with warnings.catch_warnings():  # a bounded reference: no warning
        warnings.simplefilter("error", UserWarning)
        WassersteinCoresetSelector(30, strategy="greedy", max_reference=200,
                                   random_state=0).fit(X)

    def no_work(*args, **kwargs):
        raise AssertionError("the selection started")

    monkeypatch.setattr(mod, "_physical_memory", lambda: 10**5)
    monkeypatch.setattr(mod, "greedy_select", no_work)
    with pytest.raises(ValueError, match=r"does not fit .*max_reference=None"):
        WassersteinCoresetSelector(30).fit(X)


def test_inner_solve_warnings_are_one_summary():
    # one ConvergenceWarning per OT solve, each with its own message (Python's
    # once-per-location filter kept them all: ~12 per fit at reg 0.05 on these
    # Gaussian classes), pointing into skot.ot
    from sklearn.exceptions import ConvergenceWarning

    X = np.random.default_rng(0).normal(size=(60, 5))
    y = np.repeat([0, 1, 2], 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        WassersteinCoresetSelector(6, solver="sinkhorn").fit(X, y)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    msg = str(conv[0].message)
    assert "inner OT solve(s) during the selection" in msg
    assert int(msg.split()[0]) > 1  # the count of solves that stopped
    assert conv[0].filename == __file__  # the caller's line, not skot's


def test_single_class_or_continuous_y_is_refused():
    # API.md's errors (a single class) and imbalanced-learn's samplers (which
    # refuse one class and continuous targets); a continuous y had made each
    # distinct float a class of one row
    X = np.random.default_rng(0).normal(size=(60, 4))
    with pytest.raises(ValueError, match=r"y has a single class \(0\.0\)"):
        WassersteinCoresetSelector(6).fit_resample(X, np.zeros(60))
    with pytest.raises(ValueError, match="y is continuous"):
        WassersteinCoresetSelector(60).fit_resample(
            X, np.random.default_rng(1).normal(size=60))
    # without stratification the labels are only carried along
    Xs, ys = WassersteinCoresetSelector(6, stratify=False).fit_resample(X, np.zeros(60))
    assert Xs.shape == (6, 4) and (ys == 0).all()
