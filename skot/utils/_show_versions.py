"""``skot.show_versions()``: system and dependency versions for bug reports."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

__all__ = ["show_versions"]

# import name -> distribution name
_DEPS = {"skot": "skot", "numpy": "numpy", "scipy": "scipy", "sklearn": "scikit-learn",
         "torch": "torch", "ot": "pot", "skorch": "skorch", "tqdm": "tqdm",
         "matplotlib": "matplotlib", "pandas": "pandas", "skada": "skada",
         "imblearn": "imbalanced-learn", "dask": "dask", "distributed": "distributed"}


def _versions():
    """Versions without importing what is not imported yet: importing a
    package has side effects (``import skada`` turns on scikit-learn's
    metadata routing for the whole process), so a module already loaded
    reports its ``__version__`` and any other its installed distribution."""
    import skot

    out = {}
    for name, dist in _DEPS.items():
        if name == "skot":
            out[name] = skot.__version__
            continue
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "installed")
            continue
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _system():
    info = {
        "python": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "machine": platform.platform(),
    }
    try:
        import torch

        info["torch threads"] = str(torch.get_num_threads())
        info["cuda available"] = str(torch.cuda.is_available())
        if torch.cuda.is_available():
            info["cuda device"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    import os

    info["POT_BACKEND_DISABLE_JAX"] = os.environ.get("POT_BACKEND_DISABLE_JAX", "")
    return info


def show_versions(*, as_dict=False):
    """Print (or return) system and dependency information for bug reports.

    Parameters
    ----------
    as_dict : bool, default=False
        Return ``{"system": {...}, "dependencies": {...}}`` instead of printing.

    Returns
    -------
    info : dict or None

    Examples
    --------
    >>> import skot
    >>> info = skot.show_versions(as_dict=True)
    >>> info["dependencies"]["skot"] == skot.__version__
    True
    """
    info = {"system": _system(), "dependencies": _versions()}
    if as_dict:
        return info
    print("\nSystem:")
    for k, v in info["system"].items():
        print(f"{k:>24}: {v}")
    print("\nPython dependencies:")
    for k, v in info["dependencies"].items():
        print(f"{k:>24}: {v}")
    return None
