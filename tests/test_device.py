"""The ``device`` parameter, the same in every estimator: what it accepts, and
the errors ``fit`` raises for devices skot cannot compute on."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from skot import (
    FGWZeroShotClassifier,
    InfoOTAligner,
    OTContrastiveEmbedder,
    SelectiveOTClassifier,
    WassersteinCoresetSelector,
)
from skot._backend import resolve_device


def _data(rng):
    X = rng.normal(size=(24, 4))
    y = np.repeat([0, 1, 2], 8)
    return X, y


def _zero_shot(device, rng):
    X, y = _data(rng)
    est = FGWZeroShotClassifier(class_embeddings=rng.normal(size=(3, 4)),
                                device=device).fit(X)
    return est.predict_proba(X)


def _selective(device, rng):
    X, y = _data(rng)
    return SelectiveOTClassifier(reg=0.1, device=device).fit(X, y).predict(X)


def _infoot(device, rng):
    X = rng.normal(size=(20, 3))
    return InfoOTAligner(device=device).fit(X[:10], X_target=X[10:] + 1).plan_


def _coreset(device, rng):
    X, y = _data(rng)
    est = WassersteinCoresetSelector(5, max_iter=5, device=device)
    return est.fit(X, y).sample_indices_


def _embedder(device, rng):
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    est = OTContrastiveEmbedder(max_epochs=1, random_state=0, device=device)
    return est.fit(X, Y).transform(X)


FITS = [_zero_shot, _selective, _infoot, _coreset, _embedder]


@pytest.mark.parametrize("fit", FITS)
def test_device_accepts_str_torch_device_and_none(fit):
    # None means "cpu"; a torch.device is taken as its string (the coreset
    # selector refused None, the four others a torch.device)
    ref = fit("cpu", np.random.default_rng(0))
    for device in (None, torch.device("cpu"), "cpu:0"):
        out = fit(device, np.random.default_rng(0))
        np.testing.assert_array_equal(out, ref)
    with pytest.raises(InvalidParameterError, match="'device' parameter"):
        fit(0, np.random.default_rng(0))


@pytest.mark.parametrize("fit", FITS)
@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_meta_device_is_a_value_error_in_fit(fit, device):
    # a meta tensor has no data: the estimators failed deep inside with
    # "RuntimeError: Tensor.item() cannot be called on meta tensors"
    with pytest.raises(ValueError, match=r"device=.*meta.* has no data: skot needs a "
                                         r"device that computes"):
        fit(device, np.random.default_rng(0))


@pytest.mark.skipif(torch.xpu.is_available(), reason="XPU is available here")
@pytest.mark.parametrize("fit", FITS)
def test_unavailable_backend_is_a_value_error_in_fit(fit):
    # "xpu" in a torch without XPU: a bare AssertionError before
    with pytest.raises(ValueError, match=r"device='xpu' is not available in this "
                                         r"torch build"):
        fit("xpu", np.random.default_rng(0))


def test_resolve_device_refuses_what_cannot_compute(monkeypatch):
    with pytest.raises(ValueError, match="device='meta' has no data"):
        resolve_device("meta")
    with pytest.raises(ValueError, match="device='no-such' is not a valid torch"):
        resolve_device("no-such")
    # a type with torch.<type>.is_available() (xpu, mtia, ...)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='xpu:0' is not available .*"
                                         r"torch.xpu.is_available\(\) is False"):
        resolve_device("xpu:0")
    # a type torch parses but has no availability check for: torch cannot
    # allocate on it in this CPU build
    if not hasattr(torch, "vulkan"):
        with pytest.raises(ValueError, match="device='vulkan' is not available in "
                                             "this torch build"):
            resolve_device("vulkan")


def test_resolve_device_index_beyond_device_count(monkeypatch):
    # "cuda:9" on a one-GPU machine failed later, with CUDA's "invalid device
    # ordinal" RuntimeError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"device='cuda:9' is not available: this "
                                         r"machine has 1 cuda device\(s\)"):
        resolve_device("cuda:9")
