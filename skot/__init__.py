"""skot: scikit-learn estimators for optimal transport on embeddings.

Optimal transport (OT) methods for representation learning and inference on
precomputed features (CLIP image/text embeddings and the like), as ordinary
scikit-learn estimators. Every estimator goes through one solver layer,
:mod:`skot.ot`.
"""

import os as _os

# POT imports JAX (and TensorFlow) when they are installed; JAX then grabs 75% of
# the GPU memory. Disable those backends before anything imports ``ot``, unless
# the user chose otherwise.
_os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")
_os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

__version__ = "0.1.0"

_LAZY = {
    "OTContrastiveEmbedder": "skot.neural._embedder",
    "FGWZeroShotClassifier": "skot.classification._zero_shot",
    "SelectiveOTClassifier": "skot.classification._selective",
    "InfoOTAligner": "skot.alignment._infoot",
    "WassersteinCoresetSelector": "skot.selection._coreset",
    "show_versions": "skot.utils._show_versions",
}

__all__ = [
    "OTContrastiveEmbedder",
    "FGWZeroShotClassifier",
    "SelectiveOTClassifier",
    "InfoOTAligner",
    "WassersteinCoresetSelector",
    "show_versions",
    "__version__",
]


# public subpackages, imported on first attribute access (``import skot;
# skot.ot.solve(...)``), as scikit-learn does for its submodules
_SUBMODULES = ("ot", "losses", "metrics", "datasets", "plotting", "parallel")


def __getattr__(name):
    # Estimators are imported on first use so that ``import skot`` stays cheap and
    # ``skot.ot`` can be used without loading skorch.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"skot.{name}")
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skot' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
