import os
from pathlib import Path

import numpy as np
import pytest
import torch

_DATA_CANDIDATES = [
    os.environ.get("SKOT_SHARED_DATA", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "data"),
]


def _shared_data_dir():
    for c in _DATA_CANDIDATES:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture
def shared_data():
    """Folder of real CLIP features (../shared/data); skips when absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("real features (../shared/data) not available")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _isolate_sklearn_config():
    """Restore scikit-learn's global config after each test.

    ``import skada`` calls ``sklearn.set_config(enable_metadata_routing=True)``
    for the whole process; without this, every test after the first SKADA test
    ran with metadata routing on (e.g. ``Pipeline.score`` then rejects the
    ``sample_weight`` that sklearn's check_pipeline_consistency passes).
    """
    import sklearn

    config = sklearn.get_config()
    yield
    sklearn.set_config(**config)
