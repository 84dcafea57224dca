"""InfoOTAligner and the kernel mutual information."""

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
    acc = KNeighborsClassifier(1).fit(al.transform_source(Xs), ys).score(Xt[75:], yt[75:])
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


def test_plain_infoot_across_spaces(rng):
    Xs, _, Xt, _ = _shift(rng)
    Yt = np.c_[Xt, Xt[:, :1] ** 2]  # 3-d target space
    al = InfoOTAligner(lam=1.0).fit(Xs, X_target=Yt)
    assert al.transform_source(Xs).shape == (60, 3)
    np.testing.assert_allclose(al.plan_.sum(1), 1 / 60, atol=1e-6)


def test_label_penalty_and_y_minus_one_targets(rng):
    Xs, ys, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(60, int)]
    al = InfoOTAligner(label_penalty=5.0).fit(X, y)  # targets found from y == -1
    assert al.X_target_.shape == (60, 2)


def test_pipelines_with_sample_domain(rng):
    import sklearn

    Xs, ys, Xt, yt = _shift(rng)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(60, int)]
    sd = np.r_[np.ones(60, int), -np.ones(60, int)]
    skada = pytest.importorskip("skada")
    pipe = skada.make_da_pipeline(InfoOTAligner(), KNeighborsClassifier(1))
    pipe.fit(X, y, sample_domain=sd)
    assert pipe.predict(Xt).shape == (60,)
    with sklearn.config_context(enable_metadata_routing=True):
        al = InfoOTAligner().set_fit_request(sample_domain=True)
        al.set_transform_request(sample_domain=True)
        p = make_pipeline(al, "passthrough")
        p.fit(X, y, sample_domain=sd)
        assert p.transform(Xt, sample_domain=-np.ones(60, int)).shape == (60, 2)


def test_bad_input(rng):
    Xs, _, Xt, _ = _shift(rng)
    X = np.vstack([Xs, Xt])
    with pytest.raises(ValueError, match="sample_domain"):
        InfoOTAligner().fit(X, sample_domain=np.ones(120, int))
    with pytest.warns(UserWarning, match="onto itself"):
        InfoOTAligner().fit(X)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        InfoOTAligner().fit(Xn, sample_domain=np.r_[np.ones(60), -np.ones(60)])
    with pytest.raises(ValueError, match="solver"):
        InfoOTAligner(solver="nope").fit(X, sample_domain=np.r_[np.ones(60), -np.ones(60)])
    with pytest.raises(ValueError, match="reg"):
        InfoOTAligner(reg=0.0).fit(X, sample_domain=np.r_[np.ones(60), -np.ones(60)])


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
