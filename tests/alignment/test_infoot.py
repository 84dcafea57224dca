"""InfoOTAligner and the kernel mutual information."""

import warnings

import numpy as np
import ot
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

import skot.ot as so
from skot import InfoOTAligner
from skot.alignment._kernel_mi import (
    bandwidth,
    gaussian_kernel,
    mi_gradient,
    mutual_information,
)


def _shift(rng, n=60, d=2, k=3, outliers=0):
    centers = rng.normal(size=(k, d)) * 4
    ys = rng.integers(k, size=n)
    yt = rng.integers(k, size=n)
    Xs = centers[ys] + rng.normal(size=(n, d))
    Xt = centers[yt] + rng.normal(size=(n, d)) + 2.5
    if outliers:
        Xs[:outliers] += rng.normal(size=(outliers, d)) * 20
    return Xs, ys, Xt, yt


def _fit(al, Xs, Xt, ys=None):
    X = np.vstack([Xs, Xt])
    sd = np.r_[np.ones(len(Xs), int), -np.ones(len(Xt), int)]
    y = None if ys is None else np.r_[ys, -np.ones(len(Xt), int)]
    return al.fit(X, y, sample_domain=sd)


def test_lam_zero_is_plain_entropic_ot(rng):
    Xs, _, Xt, _ = _shift(rng)
    al = _fit(InfoOTAligner(lam=0.0, reg=0.05), Xs, Xt)
    C = ot.dist(Xs, Xt, metric="euclidean")
    C = C / C.max()
    ref = ot.sinkhorn(ot.unif(60), ot.unif(60), C, 0.05, method="sinkhorn_log",
                      stopThr=1e-12, numItermax=100000)
    np.testing.assert_allclose(al.plan_, ref, atol=1e-7)


def test_mutual_information_identities(rng):
    X = torch.tensor(rng.normal(size=(30, 3)))
    Y = torch.tensor(rng.normal(size=(25, 2)))
    Kx = gaussian_kernel(X, X, bandwidth(X, 0.5))
    Ky = gaussian_kernel(Y, Y, bandwidth(Y, 0.5))
    indep = torch.full((30, 25), 1 / (30 * 25), dtype=torch.float64)
    assert abs(float(mutual_information(Kx, Ky, indep))) < 1e-12
    G = torch.tensor(rng.random((30, 25)))
    G = (G / G.sum()).requires_grad_(True)
    mutual_information(Kx, Ky, G).backward()
    torch.testing.assert_close(G.grad, mi_gradient(Kx, Ky, G.detach()))


def test_mutual_information_is_nonnegative_up_to_kde_bias(rng):
    # ALGORITHMS.md 5.1/10.4: I(G) >= 0 up to the KDE's bias. Without
    # smoothing (identity kernels) it is exactly KL(G | a b^T) >= 0
    n = 12
    G = rng.random((n, n)) ** 4
    G = torch.tensor(ot.sinkhorn(ot.unif(n), ot.unif(n), -np.log(G), 1.0,
                                 method="sinkhorn_log", stopThr=1e-14))
    eye = torch.eye(n, dtype=torch.float64)
    kl = float((G * torch.log(G * n * n)).sum())
    assert kl > 0.05
    assert float(mutual_information(eye, eye, G)) == pytest.approx(kl, rel=1e-12)
    # Gaussian kernels: over random couplings with the right marginals (mixtures
    # of permutations and the independent plan) the estimate dips below 0 by
    # at most the bias (measured -1.3e-3 over 2000 draws), and the more
    # deterministic the coupling the larger it is
    for _ in range(50):
        X = torch.tensor(rng.normal(size=(n, 2)))
        Y = torch.tensor(rng.normal(size=(n, 2)))
        Kx, Ky = (gaussian_kernel(Z, Z, bandwidth(Z, 0.3)) for Z in (X, Y))
        perm = torch.tensor(np.eye(n)[rng.permutation(n)] / n)
        mi = [float(mutual_information(Kx, Ky, t * perm + (1 - t) / n**2))
              for t in (0.0, 0.5, 1.0)]
        assert mi[0] == pytest.approx(0.0, abs=1e-12)
        assert mi[1] > -2e-3 and mi[2] > 0.0 and mi[2] > mi[1]


def test_mi_increases_with_lam(rng):
    Xs, _, Xt, _ = _shift(rng)
    low = _fit(InfoOTAligner(lam=0.0), Xs, Xt).mutual_information_
    high = _fit(InfoOTAligner(lam=1.0), Xs, Xt).mutual_information_
    assert high > low


def test_out_of_sample_projection_uses_stored_bandwidth(rng):
    Xs, ys, Xt, yt = _shift(rng)
    al = _fit(InfoOTAligner(), Xs, Xt)
    full = al.transform_source(Xs)
    np.testing.assert_allclose(al.transform_source(Xs[:7]), full[:7], atol=1e-12)
    new = Xs + 0.01
    assert np.isfinite(al.transform_source(new)).all()
    W = al.conditional_score(Xs[:5])
    np.testing.assert_allclose(W.sum(1), 1.0)


def test_alignment_helps_1nn_on_a_shift_with_outliers(rng):
    Xs, ys, Xt, yt = _shift(rng, n=150, outliers=10)
    base = KNeighborsClassifier(1).fit(Xs, ys).score(Xt, yt)
    al = _fit(InfoOTAligner(), Xs, Xt[:75])
    knn = KNeighborsClassifier(1).fit(al.transform_source(Xs), ys)
    acc = knn.score(Xt[75:], yt[75:])
    assert acc > base


def test_transform_semantics(rng):
    Xs, _, Xt, _ = _shift(rng)
    al = _fit(InfoOTAligner(), Xs, Xt)
    np.testing.assert_array_equal(al.transform(Xt), Xt)  # None = target rows
    sd = np.r_[np.ones(5, int), -np.ones(5, int)]
    out = al.transform(np.vstack([Xs[:5], Xt[:5]]), sample_domain=sd)
    np.testing.assert_allclose(out[:5], al.transform_source(Xs[:5]))
    np.testing.assert_array_equal(out[5:], Xt[:5])
    bary = al.set_params(projection="barycentric").transform_source(Xs)
    np.testing.assert_allclose(bary, (al.plan_ / al.plan_.sum(1, keepdims=True)) @ Xt)
    with pytest.raises(ValueError, match="barycentric"):
        al.transform_source(Xs[:3])


def test_fit_transform_maps_the_source_rows_fit_found_in_y(rng):
    # no sample_domain: fit reads the targets from y == -1, and fit_transform
    # maps the other rows (it used to return X unchanged)
    Xs, ys, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(len(Xt), int)]
    sd = np.r_[np.ones(len(Xs), int), -np.ones(len(Xt), int)]
    out = InfoOTAligner().fit_transform(X, list(y))
    ref = InfoOTAligner().fit_transform(X, y, sample_domain=sd)
    np.testing.assert_allclose(out, ref)
    assert np.abs(out[: len(Xs)] - Xs).max() > 1.0
    np.testing.assert_array_equal(out[len(Xs):], Xt)


def test_plain_infoot_across_spaces(rng):
    Xs, _, Xt, _ = _shift(rng)
    Yt = np.c_[Xt, Xt[:, :1] ** 2]  # 3-d target space
    al = InfoOTAligner(lam=1.0).fit(Xs, X_target=Yt)
    assert al.transform_source(Xs).shape == (60, 3)
    # the inner solves' marginal tolerance: 0.1 * tol (L1)
    assert np.abs(al.plan_.sum(1) - 1 / 60).sum() <= 0.1 * al.tol


def _across_spaces(rng):
    """A 2-d labelled source and the same shift seen in a 7-d target space."""
    Xs, ys, Xt, yt = _shift(rng)
    Yt = np.c_[Xt, rng.normal(size=(60, 5)) * 0.1]
    return Xs, ys, Yt, yt


def test_across_spaces_output_is_named_and_sized_by_the_target(rng):
    import sklearn

    pd = pytest.importorskip("pandas")
    Xs, ys, Yt, _ = _across_spaces(rng)
    al = InfoOTAligner().fit(Xs, ys, X_target=Yt)
    assert (al.n_features_in_, al.n_features_target_) == (2, 7)
    names = [f"infootaligner{i}" for i in range(7)]
    np.testing.assert_array_equal(al.get_feature_names_out(), names)
    np.testing.assert_array_equal(al.get_feature_names_out(["x0", "x1"]), names)
    with pytest.raises(ValueError, match="input_features"):
        al.get_feature_names_out(["a", "b", "c"])  # checked against the source
    # set_output sizes the frame by the output (it used to name 2 columns)
    with sklearn.config_context(enable_metadata_routing=False):
        out = InfoOTAligner().set_output(transform="pandas").fit_transform(
            pd.DataFrame(Xs, columns=["u", "v"]), ys, X_target=Yt)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == names
    np.testing.assert_allclose(out.to_numpy(), al.transform_source(Xs), atol=1e-12)
    # stacked rows keep the input names (unchanged)
    sd = np.r_[np.ones(60, int), -np.ones(60, int)]
    fused = InfoOTAligner().fit(np.vstack([Xs, Yt[:, :2]]), sample_domain=sd)
    assert fused.n_features_target_ == 2
    np.testing.assert_array_equal(fused.get_feature_names_out(), ["x0", "x1"])


def test_across_spaces_pipeline_predicts_target_rows(rng):
    import sklearn

    Xs, ys, Yt, yt = _across_spaces(rng)
    with sklearn.config_context(enable_metadata_routing=False):
        pipe = make_pipeline(InfoOTAligner(), KNeighborsClassifier(1))
        pipe.fit(Xs, ys, infootaligner__X_target=Yt)
        pred = pipe.predict(Yt)  # target rows, 7 wide: returned unchanged
    al = pipe[0]
    np.testing.assert_array_equal(al.transform(Yt), Yt)
    np.testing.assert_array_equal(
        al.transform(Yt[:5], sample_domain=-np.ones(5, int)), Yt[:5])
    knn = KNeighborsClassifier(1).fit(al.transform_source(Xs), ys)
    np.testing.assert_array_equal(pred, knn.predict(Yt))
    assert set(pred) <= set(ys)  # trained on the source labels only


def test_across_spaces_transform_maps_source_rows(rng):
    Xs, ys, Yt, _ = _across_spaces(rng)
    al = InfoOTAligner().fit(Xs, ys, X_target=Yt)
    # source rows (sample_domain > 0) are mapped, as transform_source does
    out = al.transform(Xs[:5], sample_domain=np.ones(5, int))
    assert out.shape == (5, 7)
    np.testing.assert_allclose(out, al.transform_source(Xs[:5]), atol=1e-12)
    # equal widths but separate spaces: a mixed sample_domain still works
    eq = InfoOTAligner().fit(Xs, X_target=Yt[:, :2] * 2.0)
    mixed = np.vstack([Xs[:3], Yt[:3, :2]])
    out = eq.transform(mixed, sample_domain=np.r_[1, 1, 1, -1, -1, -1])
    np.testing.assert_allclose(out[:3], eq.transform_source(Xs[:3]), atol=1e-12)
    np.testing.assert_array_equal(out[3:], Yt[:3, :2])


def test_across_spaces_widths_are_checked_per_domain(rng):
    Xs, ys, Yt, _ = _across_spaces(rng)
    al = InfoOTAligner().fit(Xs, ys, X_target=Yt)
    # target rows must be X_target's width (they used to pass unchecked)
    with pytest.raises(ValueError, match=r"X has 2 features.*expecting 7.*target"):
        al.transform(Xs)
    with pytest.raises(ValueError, match=r"X has 2 features.*expecting 7"):
        al.transform(Xs, sample_domain=-np.ones(60, int))
    # source rows must be the source's width
    with pytest.raises(ValueError, match=r"X has 7 features.*expecting 2"):
        al.transform(Yt, sample_domain=np.ones(60, int))
    with pytest.raises(ValueError, match=r"X has 7 features.*expecting 2"):
        al.transform_source(Yt)
    # one X cannot hold 2-d source and 7-d target rows
    with pytest.raises(ValueError, match=r"sample_domain marks 3 source .* and 3 "
                                         r"target .*2 features.* 7"):
        al.transform(np.zeros((6, 7)), sample_domain=np.r_[1, 1, 1, -1, -1, -1])
    with pytest.raises(ValueError, match=r"sample_domain has shape \(5,\)"):
        al.transform(Yt, sample_domain=-np.ones(5, int))


def test_label_penalty_and_y_minus_one_targets(rng):
    Xs, ys, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(60, int)]
    al = InfoOTAligner(label_penalty=5.0).fit(X, y)  # targets found from y == -1
    assert al.X_target_.shape == (60, 2)


def _five_d_shift(rng):
    """The brief's shift: the target is the permuted source moved by 3 along x0."""
    Xs = rng.normal(size=(60, 5))
    ys = (Xs[:, 0] > 0).astype(int) + (Xs[:, 1] > 0)
    perm = rng.permutation(60)
    Xt, yt = Xs[perm] + np.r_[3.0, 0, 0, 0, 0], ys[perm]
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(60, int)]
    sd = np.r_[np.ones(60, int), -np.ones(60, int)]
    return Xs, ys, Xt, yt, X, y, sd


def test_sample_domain_is_requested_by_default():
    import sklearn

    # as skada's BaseAdapter: fit and transform request sample_domain
    with sklearn.config_context(enable_metadata_routing=True):
        routing = InfoOTAligner().get_metadata_routing()
        assert routing.fit.requests["sample_domain"] is True
        assert routing.transform.requests["sample_domain"] is True
        assert routing.fit.requests["X_target"] is None  # not routed unless asked
        # still overridable
        al = InfoOTAligner().set_fit_request(sample_domain=False)
        assert al.get_metadata_routing().fit.requests["sample_domain"] is False


def test_skada_pipeline_adapts_by_default(rng):
    import sklearn

    skada = pytest.importorskip("skada")
    Xs, ys, Xt, yt, X, y, sd = _five_d_shift(rng)
    base = KNeighborsClassifier(1).fit(Xs, ys).score(Xt, yt)
    direct_al = InfoOTAligner().fit(X, y, sample_domain=sd)
    knn = KNeighborsClassifier(1).fit(direct_al.transform_source(Xs), ys)
    direct = knn.score(Xt, yt)
    assert direct > base + 0.3  # the shift matters and the aligner undoes it
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = skada.make_da_pipeline(InfoOTAligner(), KNeighborsClassifier(1))
        pipe.fit(X, y.copy(), sample_domain=sd)  # no set_*_request calls
        acc = (pipe.predict(Xt) == yt).mean()
        fitted = pipe[0].get_estimator()
    np.testing.assert_allclose(fitted.plan_, direct_al.plan_, atol=1e-10)
    assert acc >= direct - 0.05
    assert acc > base + 0.3


def test_plain_pipelines_with_and_without_routing(rng):
    import sklearn

    Xs, ys, Xt, yt, X, y, sd = _five_d_shift(rng)
    ref = InfoOTAligner().fit(X, y, sample_domain=sd)
    mapped = ref.transform(X, sample_domain=sd)
    np.testing.assert_array_equal(mapped[60:], Xt)
    with sklearn.config_context(enable_metadata_routing=False):
        p = make_pipeline(InfoOTAligner(), "passthrough")
        out = p.fit_transform(X, y, infootaligner__sample_domain=sd)
        np.testing.assert_allclose(out, mapped, atol=1e-12)
        np.testing.assert_array_equal(p.transform(Xt), Xt)  # predict-time default
    with sklearn.config_context(enable_metadata_routing=True):
        p = make_pipeline(InfoOTAligner(), "passthrough")  # default requests
        out = p.fit_transform(X, y, sample_domain=sd)
        np.testing.assert_allclose(out, mapped, atol=1e-12)
        np.testing.assert_allclose(p.transform(Xs[:5], sample_domain=np.ones(5, int)),
                                   mapped[:5], atol=1e-12)
        np.testing.assert_array_equal(p.transform(Xt), Xt)
        # explicit requests keep working
        al = InfoOTAligner().set_fit_request(sample_domain=True)
        al.set_transform_request(sample_domain=True)
        p = make_pipeline(al, "passthrough")
        p.fit(X, y, sample_domain=sd)
        assert p.transform(Xt, sample_domain=-np.ones(60, int)).shape == (60, 5)


def _reference_weights(al, Q):
    """Conditional weights from the fitted plan, in numpy, with an exact logsumexp."""
    from scipy.spatial.distance import cdist
    from scipy.special import logsumexp

    Xs, Xt = al.X_source_, al.X_target_
    log_kq = -0.5 * cdist(Q, Xs, "sqeuclidean") / al.bandwidth_source_ ** 2
    Ky = np.exp(-0.5 * cdist(Xt, Xt, "sqeuclidean") / al.bandwidth_target_ ** 2)
    with np.errstate(divide="ignore"):
        log_m = np.log(al.plan_ @ Ky)
    log_w = logsumexp(log_kq[:, :, None] + log_m[None], axis=1) - np.log(Ky.mean(1))
    return np.exp(log_w - logsumexp(log_w, axis=1, keepdims=True))


def test_rows_far_from_the_source_keep_normalised_weights():
    rng = np.random.default_rng(1)  # kernel of Xs[:2] + 4 underflows: zeros before
    Xs = rng.normal(size=(50, 5))
    Xt = Xs + 3
    al = InfoOTAligner().fit(np.vstack([Xs, Xt]),
                             sample_domain=np.r_[np.ones(50), -np.ones(50)])
    S = torch.as_tensor(Xs)
    Q = np.vstack([Xs[:3] + 4, Xs[:3] - 10, Xs[:2] + 1e3, Xs[:3]])
    kq = gaussian_kernel(torch.as_tensor(Q), S, al.bandwidth_source_).numpy()
    assert (kq[:8].max(1) == 0).any()  # the plain kernel underflows for these rows
    W = al.conditional_score(Q)
    np.testing.assert_allclose(W.sum(1), 1.0, rtol=1e-12)
    ref = _reference_weights(al, Q)
    np.testing.assert_allclose(W, ref, rtol=1e-8, atol=1e-12)
    mapped = al.transform_source(Q)
    np.testing.assert_allclose(mapped, ref @ Xt, rtol=1e-8, atol=1e-10)
    assert (np.abs(mapped).sum(1) > 0).all()
    # within the hull of the target rows (a convex combination of them)
    assert (mapped >= Xt.min(0) - 1e-9).all() and (mapped <= Xt.max(0) + 1e-9).all()
    # far away, the nearest source row dominates: same map as that row's
    far = Xs[:1] * 1e-3 + np.r_[60.0, 0, 0, 0, 0]
    k = np.argmin(((Xs - far) ** 2).sum(1))
    near = al.conditional_score(Xs[k:k + 1] + (far - Xs[k]) * 1e-6)
    np.testing.assert_allclose(al.conditional_score(far), near, atol=1e-3)


def test_in_cloud_weights_match_the_plain_formula(rng):
    Xs, _, Xt, _ = _shift(rng)
    al = _fit(InfoOTAligner(), Xs, Xt)
    Q = Xs[:6] + 0.05
    from scipy.spatial.distance import cdist

    Kq = np.exp(-0.5 * cdist(Q, Xs, "sqeuclidean") / al.bandwidth_source_ ** 2)
    Ky = np.exp(-0.5 * cdist(Xt, Xt, "sqeuclidean") / al.bandwidth_target_ ** 2)
    W = Kq @ al.plan_ @ Ky / Ky.mean(1)
    W /= W.sum(1, keepdims=True)
    np.testing.assert_allclose(al.conditional_score(Q), W, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(al.transform_source(Q), W @ Xt, rtol=1e-8)


def test_degenerate_domains_raise_in_fit(rng, monkeypatch):
    import skot.alignment._infoot as mod

    def no_work(*a, **k):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(mod, "bandwidth", no_work)
    Xs, _, Xt, _ = _shift(rng)
    with pytest.raises(ValueError, match="2 distinct source rows.*1 sample"):
        _fit(InfoOTAligner(), Xs[:1], Xt)
    with pytest.raises(ValueError, match="2 distinct source rows.*all identical"):
        _fit(InfoOTAligner(), np.repeat(Xs[:1], 5, axis=0), Xt)
    with pytest.raises(ValueError, match="2 distinct target rows.*1 sample"):
        _fit(InfoOTAligner(), Xs, Xt[:1])
    with pytest.raises(ValueError, match="2 distinct target rows"):
        InfoOTAligner().fit(Xs, X_target=np.ones((4, 3)))


def test_bandwidth_has_no_silent_floor():
    X = torch.zeros((3, 2), dtype=torch.float64)
    with pytest.raises(ValueError, match="bandwidth"):
        bandwidth(X, 0.1)


def test_lengths_checked_before_any_work(rng, monkeypatch):
    import skot.alignment._infoot as mod

    def no_work(*a, **k):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(mod, "bandwidth", no_work)
    Xs, ys, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(60, int)]
    sd = np.r_[np.ones(60, int), -np.ones(60, int)]
    with pytest.raises(ValueError, match=r"y has 119 entries but X has 120 rows"):
        InfoOTAligner().fit(X, y[:-1], sample_domain=sd)
    with pytest.raises(ValueError, match=r"y has 121 entries but X has 120 rows"):
        InfoOTAligner().fit(X, np.r_[y, 0])
    with pytest.raises(ValueError, match="y should be a 1d array"):
        InfoOTAligner().fit(X, np.c_[y, y], sample_domain=sd)
    with pytest.raises(ValueError, match=r"sample_domain has shape \(119,\)"):
        InfoOTAligner().fit(X, y, sample_domain=sd[:-1])
    with pytest.raises(ValueError, match=r"sample_domain has shape \(120, 1\)"):
        InfoOTAligner().fit(X, sample_domain=sd[:, None])
    with pytest.raises(ValueError, match="sample_domain must be finite"):
        InfoOTAligner().fit(X, sample_domain=np.where(sd > 0, np.nan, -1.0))
    with pytest.raises(ValueError, match="sample_domain must be non-zero"):
        InfoOTAligner().fit(X, sample_domain=np.r_[np.zeros(60), -np.ones(60)])
    with pytest.raises(TypeError, match="sample_domain must hold numbers"):
        InfoOTAligner().fit(X, sample_domain=sd > 0)
    # X_target: y and sample_domain describe the rows of X (all source)
    with pytest.raises(ValueError, match=r"y has 59 entries but X has 60 rows"):
        InfoOTAligner().fit(Xs, ys[:-1], X_target=Xt)
    with pytest.raises(ValueError, match=r"sample_domain has shape \(59,\)"):
        InfoOTAligner().fit(Xs, sample_domain=np.ones(59), X_target=Xt)
    with pytest.raises(ValueError, match="sample_domain marks 60 rows as target"):
        InfoOTAligner().fit(Xs, sample_domain=-np.ones(60), X_target=Xt)
    with pytest.raises(ValueError, match=r"X_target must be 2-D.*\(60,\)"):
        InfoOTAligner().fit(Xs, X_target=Xt[:, 0])
    with pytest.raises(ValueError, match=r"X_target must be 2-D.*\(0, 2\)"):
        InfoOTAligner().fit(Xs, X_target=Xt[:0])
    with pytest.raises(ValueError, match="X_target contains NaN"):
        InfoOTAligner().fit(Xs, X_target=np.full((5, 2), np.nan))


def test_transform_checks_sample_domain(rng):
    Xs, _, Xt, _ = _shift(rng)
    al = _fit(InfoOTAligner(), Xs, Xt)
    with pytest.raises(ValueError, match=r"sample_domain has shape \(59,\)"):
        al.transform(Xs, sample_domain=np.ones(59))
    with pytest.raises(ValueError, match="sample_domain must be non-zero"):
        al.transform(Xs, sample_domain=np.zeros(60))  # was: silently unchanged


def test_set_output_pandas(rng):
    import sklearn

    pd = pytest.importorskip("pandas")
    from sklearn.preprocessing import StandardScaler

    Xs, ys, Xt, _, X, y, sd = _five_d_shift(rng)
    cols = ["a", "b", "c", "d", "e"]
    df = pd.DataFrame(X, columns=cols, index=np.arange(100, 220))
    with sklearn.config_context(enable_metadata_routing=False):
        ref = make_pipeline(StandardScaler(), InfoOTAligner())
        expected = ref.fit_transform(X, y, infootaligner__sample_domain=sd)
        pipe = make_pipeline(StandardScaler(), InfoOTAligner()).set_output(
            transform="pandas")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no feature-name warning
            out = pipe.fit_transform(df, y, infootaligner__sample_domain=sd)
            again = pipe.transform(df)
    assert isinstance(out, pd.DataFrame) and isinstance(again, pd.DataFrame)
    assert list(out.columns) == cols and list(again.columns) == cols
    np.testing.assert_array_equal(out.index, df.index)
    np.testing.assert_allclose(out.to_numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(again.to_numpy(), ref.transform(X), atol=1e-12)
    al = pipe[-1]
    np.testing.assert_array_equal(al.get_feature_names_out(), cols)
    np.testing.assert_array_equal(
        InfoOTAligner().fit(X, sample_domain=sd).get_feature_names_out(),
        ["x0", "x1", "x2", "x3", "x4"])


def test_bad_input(rng):
    Xs, _, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    sd = np.r_[np.ones(60), -np.ones(60)]
    with pytest.raises(ValueError, match="sample_domain"):
        InfoOTAligner().fit(X, sample_domain=np.ones(120, int))
    with pytest.warns(UserWarning, match="onto itself"):
        InfoOTAligner().fit(X)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        InfoOTAligner().fit(Xn, sample_domain=sd)
    with pytest.raises(ValueError, match="solver"):
        InfoOTAligner(solver="nope").fit(X, sample_domain=sd)
    with pytest.raises(ValueError, match="reg"):
        InfoOTAligner(reg=0.0).fit(X, sample_domain=sd)


def test_plan_goes_through_skot_ot(rng, monkeypatch):
    calls = []
    real = so.OTSolver.solve

    def spy(self, *args, **kw):
        calls.append(self.method)
        return real(self, *args, **kw)

    monkeypatch.setattr(so.OTSolver, "solve", spy)
    Xs, _, Xt, _ = _shift(rng)
    _fit(InfoOTAligner(max_iter=3), Xs, Xt)
    assert calls and set(calls) == {"sinkhorn"}


def test_retrieve_ranks_by_conditional_score(rng):
    Xs, _, Xt, _ = _shift(rng)
    al = _fit(InfoOTAligner(), Xs, Xt)
    idx = al.retrieve(Xs[:6], n_neighbors=3)
    W = al.conditional_score(Xs[:6])
    assert idx.shape == (6, 3)
    np.testing.assert_array_equal(idx[:, 0], W.argmax(1))
    top = np.take_along_axis(W, idx, axis=1)
    assert (np.diff(top, axis=1) <= 0).all()
    with pytest.raises(ValueError, match="n_neighbors"):
        al.retrieve(Xs[:2], n_neighbors=0)


def _far_limit(al, U):
    """Conditional weights of rows t * U as t -> inf: the kernel keeps only the
    source row nearest along each direction, argmax_j U s_j."""
    from scipy.spatial.distance import cdist

    Xs, Xt = al.X_source_.astype(float), al.X_target_.astype(float)
    Ky = np.exp(-0.5 * cdist(Xt, Xt, "sqeuclidean") / al.bandwidth_target_ ** 2)
    W = (al.plan_.astype(float) @ Ky)[np.argmax(U @ Xs.T, 1)] / Ky.mean(1)
    return W / W.sum(1, keepdims=True)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e20), (np.float64, 1e200)])
def test_rows_whose_squared_distances_overflow_keep_normalised_weights(rng, dtype,
                                                                       scale):
    # the squared distances overflow (cdist itself squares): log-kernel all
    # -inf, and the weights, maps and retrievals of these rows were NaN
    Xs, _, Xt, _ = _shift(rng, n=30, d=3)
    al = _fit(InfoOTAligner(), Xs.astype(dtype), Xt.astype(dtype))
    U = rng.normal(size=(5, 3))
    Q = np.vstack([(U * scale).astype(dtype), np.full((1, 3), scale, dtype)])
    W = al.conditional_score(Q)
    assert W.dtype == dtype and np.isfinite(W).all()
    np.testing.assert_allclose(W.sum(1), 1.0, rtol=1e-6)
    # float32: the rounding of the fitted plan and kernel, not of the distances
    rtol, atol = (1e-4, 1e-7) if dtype == np.float32 else (1e-10, 1e-14)
    np.testing.assert_allclose(W, _far_limit(al, np.vstack([U, np.ones((1, 3))])),
                               rtol=rtol, atol=atol)
    mapped = al.transform_source(Q)
    assert mapped.dtype == dtype and np.isfinite(mapped).all()
    assert np.isfinite(al.transform(Q, sample_domain=np.ones(6))).all()
    np.testing.assert_array_equal(al.retrieve(Q)[:, 0], W.argmax(1))
    # the rows that never overflowed are computed as before, bitwise
    near = Xs[:4].astype(dtype)
    np.testing.assert_array_equal(al.conditional_score(np.vstack([near, Q]))[:4],
                                  al.conditional_score(near))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_whose_distances_overflow_raise(rng, dtype):
    Xs, _, Xt, _ = _shift(rng, n=30, d=3)
    al = _fit(InfoOTAligner(), Xs.astype(dtype), Xt.astype(dtype))
    big = np.finfo(dtype).max * 0.9  # distance sqrt(3) * big
    Q = np.vstack([Xs[:2], np.full((1, 3), big)]).astype(dtype)
    name = np.dtype(dtype).name
    with pytest.raises(ValueError, match=f"X has 1 row.*overflows {name}"):
        al.conditional_score(Q)
    with pytest.raises(ValueError, match=f"X has 1 row.*overflows {name}"):
        al.transform_source(Q)


@pytest.mark.parametrize("solver", ["rows", "cols", "total", "dbot", "unbalanced",
                                    "partial", "sparse", "fgw", "fgw_exact"])
def test_solver_must_be_balanced_and_is_checked_before_any_work(rng, monkeypatch,
                                                               solver):
    # 'unbalanced', 'partial', 'sparse' failed inside skot.ot after the kernels
    # were built; 'rows' silently put most of the mass in one target column
    import skot.alignment._infoot as mod

    def no_work(*a, **k):
        raise AssertionError("work started before validation")

    monkeypatch.setattr(mod, "bandwidth", no_work)
    Xs, _, Xt, _ = _shift(rng)
    with pytest.raises(ValueError, match="solver") as err:
        _fit(InfoOTAligner(solver=solver), Xs, Xt)
    for word in (repr(solver), "'sinkhorn'", "'exact'"):
        assert word in str(err.value)
    with pytest.raises(ValueError, match=r"solver=OTSolver\(.*\) is not supported"):
        _fit(InfoOTAligner(solver=so.OTSolver(solver, unbalanced=1.0, mass=0.5)),
             Xs, Xt)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["sinkhorn", "exact", so.OTSolver("exact"),
                                    so.OTSolver("sinkhorn", reg=0.1)])
def test_balanced_solvers_are_accepted(rng, solver):
    Xs, _, Xt, _ = _shift(rng, n=20)
    al = _fit(InfoOTAligner(solver=solver, max_iter=3), Xs, Xt)
    np.testing.assert_allclose(al.plan_.sum(0), np.full(20, 1 / 20), atol=1e-6)


def test_unconverged_last_inner_solve_warns(rng):
    # the inner solves' ConvergenceWarnings are silenced during the loop (the
    # intermediate, warm-started ones only move the linearisation point); the
    # last one, whose plan is returned, had been silenced too: a fit whose
    # every inner solve stopped at its budget reported nothing
    from sklearn.exceptions import ConvergenceWarning

    from skot.ot import OTSolver

    Xs, ys, Xt, _, X, y, sd = _five_d_shift(rng)
    with pytest.warns(ConvergenceWarning, match="last inner OT solve"):
        InfoOTAligner(solver=OTSolver("sinkhorn", reg=0.05, max_iter=2)).fit(
            X, sample_domain=sd)


def _check_n_iter_data():
    # the data of scikit-learn's check_transformer_n_iter, aligned onto itself
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=30, centers=[[0, 0, 0], [1, 1, 1]], random_state=0,
                      n_features=2, cluster_std=0.1)
    return X


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inner_tol_follows_tol_and_keeps_the_plan():
    # the inner solves stop at a marginal error (L1) of 0.1 * tol (1e-5 at the
    # default tol), not 1e-7: the plan is the 1e-7 solves' to within 1e-5 (L1)
    # on these near-permutation plans (see doc/notes_infoot.md), with fewer
    # inner iterations; n_inner_iter_ records them
    from skot.ot import OTSolver

    X = _check_n_iter_data()
    al = InfoOTAligner().fit(X)
    tight = InfoOTAligner(solver=OTSolver("sinkhorn", reg=0.05, tol=1e-7)).fit(X)
    assert al.n_inner_iter_.shape == (al.n_iter_,)
    assert al.n_inner_iter_.sum() <= tight.n_inner_iter_.sum()
    np.testing.assert_allclose(al.plan_, tight.plan_, atol=1e-5)
    assert np.abs(al.plan_ - tight.plan_).sum() < 1e-5
    n = len(X)
    assert np.abs(al.plan_.sum(1) - 1 / n).sum() < 1e-4


def test_inner_tol_is_reported_in_the_warning(rng):
    from sklearn.exceptions import ConvergenceWarning

    from skot.ot import OTSolver

    Xs, ys, Xt, _, X, y, sd = _five_d_shift(rng)
    with pytest.warns(ConvergenceWarning, match=r"tol=1e-05\)"):
        InfoOTAligner(solver=OTSolver("sinkhorn", reg=0.05, max_iter=2)).fit(
            X, sample_domain=sd)
    with pytest.warns(ConvergenceWarning, match=r"tol=0\.001\)"):
        InfoOTAligner(tol=1e-2, solver=OTSolver("sinkhorn", reg=0.05, max_iter=2)).fit(
            X, sample_domain=sd)


@pytest.mark.parametrize("dtype, offset", [(np.float64, 1e7), (np.float32, 1e3)])
def test_a_common_offset_does_not_change_the_fit(dtype, offset):
    # InfoOT only sees distances, so moving every row by the same vector (UTM
    # coordinates, a feature with a large mean) changes nothing. torch.cdist
    # computes distances from |a|^2 + |b|^2 - 2 a.b for more than 25 rows,
    # which cancelled at these offsets: L1 plan changes 0.17 (float64, 1e7)
    # and 1.0 (float32, 1e3), mapped rows ~3 off
    rng = np.random.default_rng(1)
    Xs, Xt = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 1
    X = np.vstack([Xs, Xt])
    sd = np.r_[np.ones(40), -np.ones(40)]
    ref = InfoOTAligner().fit(X.astype(dtype), sample_domain=sd)
    moved = InfoOTAligner().fit((X + offset).astype(dtype), sample_domain=sd)
    # the rows themselves round to eps * offset (6e-5 in float32 at 1e3)
    atol = 1e-6 if dtype == np.float64 else 2e-3
    assert moved.bandwidth_source_ == pytest.approx(ref.bandwidth_source_, rel=1e-3)
    assert np.abs(moved.plan_ - ref.plan_).sum() < (1e-6 if dtype == np.float64
                                                    else 2e-2)
    mapped = moved.transform_source((Xs + offset).astype(dtype)).astype(float)
    np.testing.assert_allclose(mapped - offset, ref.transform_source(Xs.astype(dtype)),
                               atol=atol * 10)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e18), (np.float32, 1e-22),
                                          (np.float64, 1e160), (np.float64, 1e-170)])
def test_fit_is_scale_invariant_over_the_dtypes_range(dtype, scale):
    # only distance ratios enter the plan; rows at these scales are finite and
    # distinct, but their squared distances overflowed or underflowed, and fit
    # raised that the bandwidth was inf or 0 ("needs at least 2 distinct rows")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(15, 3)), rng.normal(size=(12, 3)) + 1])
    sd = np.r_[np.ones(15), -np.ones(12)]
    ref = InfoOTAligner().fit(X.astype(dtype), sample_domain=sd)
    al = InfoOTAligner().fit((X * scale).astype(dtype), sample_domain=sd)
    assert al.bandwidth_source_ == pytest.approx(ref.bandwidth_source_ * scale,
                                                 rel=1e-5)
    rtol = 1e-9 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(al.plan_, ref.plan_, rtol=rtol, atol=rtol / 1e3)
    mapped = al.transform_source((X[:15] * scale).astype(dtype)).astype(float)
    np.testing.assert_allclose(mapped / scale,
                               ref.transform_source(X[:15].astype(dtype)),
                               rtol=rtol, atol=rtol)


def test_barycentric_maps_only_the_fitted_rows_at_any_scale(rng):
    # the check was np.allclose with its absolute tolerance 1e-8: at a scale of
    # 1e-9 any rows of the fitted shape passed and silently got the fitted
    # rows' barycentric map
    Xs, _, Xt, _ = _shift(rng, n=20)
    al = _fit(InfoOTAligner(projection="barycentric"), Xs * 1e-9, Xt * 1e-9)
    fitted = al.transform_source(Xs * 1e-9)
    np.testing.assert_allclose(
        fitted, (al.plan_ / al.plan_.sum(1, keepdims=True)) @ (Xt * 1e-9))
    with pytest.raises(ValueError, match="barycentric"):
        al.transform_source(rng.normal(size=Xs.shape) * 1e-9)
    with pytest.raises(ValueError, match="barycentric"):
        al.transform_source(Xs[::-1] * 1e-9)
    # the fitted rows in float32 are still the fitted rows
    np.testing.assert_allclose(al.transform_source((Xs * 1e-9).astype(np.float32)),
                               fitted, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_labels_raise(rng, bad):
    # a NaN label is unequal to itself: with label_penalty the row's distance to
    # itself was penalised (source kernel diagonal exp(-(penalty/hx)^2/2), not 1)
    Xs, ys, Xt, _ = _shift(rng, n=20)
    y = np.r_[ys, -np.ones(20)].astype(float)
    y[0] = bad
    sd = np.r_[np.ones(20), -np.ones(20)]
    with pytest.raises(ValueError, match="y"):
        InfoOTAligner(label_penalty=1.0).fit(np.vstack([Xs, Xt]), y, sample_domain=sd)


def test_plain_infoot_stuck_at_the_independent_coupling_warns():
    # with narrow kernels p q^T is a stationary point of the kernel MI: the fit
    # stopped there after one step and mapped every row to the target mean,
    # silently
    rng = np.random.default_rng(0)
    Xs, Xt = rng.normal(size=(15, 3)), rng.normal(size=(12, 3)) + 1
    with pytest.warns(UserWarning, match="independent coupling.*increase h"):
        al = InfoOTAligner().fit(Xs, X_target=Xt)
    assert np.ptp(al.transform_source(Xs), 0).max() < 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        al = InfoOTAligner(h=0.5).fit(Xs, X_target=Xt)
    assert al.mutual_information_ > 0.5


def test_retrieve_checks_fitted_first_and_names_n_target(rng):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        InfoOTAligner().retrieve(np.zeros((2, 2)), n_neighbors=0)
    Xs, Xt = rng.normal(size=(15, 3)), rng.normal(size=(12, 3)) + 1
    al = InfoOTAligner(h=0.5).fit(Xs, X_target=Xt)
    with pytest.raises(ValueError, match="n_target = 12 fitted target rows; got 13"):
        al.retrieve(Xs, n_neighbors=13)
    assert al.retrieve(Xs, n_neighbors=12).shape == (15, 12)


def test_label_penalty_without_labels_warns(rng):
    # it had been ignored silently
    Xs, Xt = rng.normal(size=(15, 3)), rng.normal(size=(12, 3)) + 1
    with pytest.warns(UserWarning, match="label_penalty=5.0 is not used"):
        InfoOTAligner(h=0.5, label_penalty=5.0).fit(Xs, X_target=Xt)
