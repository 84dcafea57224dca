"""``skot.show_versions()``: system and dependency versions for bug reports."""

from __future__ import annotations

import importlib
import platform
import sys

__all__ = ["show_versions"]

_DEPS = ["skot", "numpy", "scipy", "sklearn", "torch", "ot", "skorch", "tqdm",
         "matplotlib", "pandas", "skada", "imblearn", "dask", "distributed"]


def _versions():
    out = {}
    for name in _DEPS:
        try:
            mod = importlib.import_module(name)
            out[name] = getattr(mod, "__version__", "installed")
        except ImportError:
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
