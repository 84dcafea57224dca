"""Scale-out of model selection: every public estimator pickles, clones and runs
GridSearchCV under ``joblib.parallel_config(backend="dask")`` on a 2-process
``dask.distributed.LocalCluster``; row-independent predict/transform under
dask-ml's ``ParallelPostFit``.
"""

import importlib
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

PUBLIC = [
    "FGWZeroShotClassifier",
    "SelectiveOTClassifier",
    "InfoOTAligner",
    "WassersteinCoresetSelector",
    "OTContrastiveEmbedder",
]


def _estimator(name):
    skot = importlib.import_module("skot")
    try:
        cls = getattr(skot, name)
    except (ImportError, AttributeError) as exc:  # pragma: no cover - development
        pytest.skip(f"skot.{name} is not available yet ({exc})")
    fast = {
        "WassersteinCoresetSelector": dict(n_samples=6, max_iter=5),
        "OTContrastiveEmbedder": dict(max_epochs=2, batch_size=32, random_state=0),
        "InfoOTAligner": dict(max_iter=5),
        "FGWZeroShotClassifier": dict(class_prior="uniform", max_iter=200),
        "SelectiveOTClassifier": dict(max_iter=200),
    }
    return cls(**fast[name])


def _data():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 3
    y = np.repeat(np.arange(3), 12)
    X = centers[y] + rng.normal(size=(36, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = X @ rng.normal(size=(6, 5)) + 0.05 * rng.normal(size=(36, 5))
    return X, y, Y


def _coreset_score(est, X, y=None):
    return -float(len(est.sample_indices_))


def _aligner_score(est, X, y=None):
    return -float(np.mean((est.transform_source(X) - X) ** 2))


# (param grid, fit args (X, y or Y), scoring)
def _case(name):
    X, y, Y = _data()
    return {
        "FGWZeroShotClassifier": ({"reg": [0.05, 0.1]}, (X, y), None),
        "SelectiveOTClassifier": ({"coverage": [0.7, 0.9]}, (X, y), None),
        "InfoOTAligner": ({"reg": [0.1, 0.5]}, (X, None), _aligner_score),
        "WassersteinCoresetSelector": (
            {"n_samples": [4, 6]}, (X, None), _coreset_score),
        "OTContrastiveEmbedder": ({"reg": [0.05, 0.1]}, (X, Y), None),
    }[name]


@pytest.mark.parametrize("name", PUBLIC)
def test_pickle_and_clone(name):
    est = _estimator(name)
    grid, (X, y), _ = _case(name)
    c = clone(est)
    assert c.get_params() == est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    est2 = pickle.loads(pickle.dumps(est))
    assert type(est2) is type(est)
    for attr in ("predict", "transform_source", "transform"):
        if hasattr(est, attr) and name != "OTContrastiveEmbedder":
            out1, out2 = getattr(est, attr)(X), getattr(est2, attr)(X)
            np.testing.assert_array_equal(out1, out2)
            break
    if name == "OTContrastiveEmbedder":
        np.testing.assert_allclose(est.transform(X), est2.transform(X))
    if name == "WassersteinCoresetSelector":
        np.testing.assert_array_equal(est.sample_indices_, est2.sample_indices_)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, processes=True,
                                           threads_per_worker=1,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLIC)
def test_grid_search_on_dask(dask_client, name):
    import joblib

    est = _estimator(name)
    grid, (X, y), scoring = _case(name)
    serial = GridSearchCV(est, grid, cv=2, scoring=scoring, n_jobs=1)
    parallel = GridSearchCV(est, grid, cv=2, scoring=scoring, n_jobs=2)
    from dask.distributed import get_task_stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial.fit(X, y)
        with get_task_stream(client=dask_client) as ts:
            with joblib.parallel_config(backend="dask"):
                parallel.fit(X, y)
    # the fits really ran as tasks on the cluster's worker processes
    assert len(ts.data) >= 2
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-6,
                               atol=1e-8)
    assert parallel.best_params_ == serial.best_params_


@pytest.mark.parametrize("name", ["OTContrastiveEmbedder"])
def test_parallel_post_fit_row_independent(name):
    dask_ml = pytest.importorskip("dask_ml.wrappers")
    da = pytest.importorskip("dask.array")
    est = _estimator(name)
    _, (X, y), _ = _case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = dask_ml.ParallelPostFit(est).fit(X, y)
    method = "transform"
    Xd = da.from_array(X, chunks=(10, X.shape[1]))
    out = getattr(wrapped, method)(Xd).compute()
    np.testing.assert_allclose(out, getattr(wrapped.estimator, method)(X), rtol=1e-6)


@pytest.mark.parametrize("name", ["FGWZeroShotClassifier", "SelectiveOTClassifier"])
def test_transductive_methods_document_whole_batches(name):
    est = _estimator(name)
    doc = type(est).__doc__.lower()
    assert "transductive" in doc
    assert "batch" in doc
