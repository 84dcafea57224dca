"""Boundary between numpy (estimators, users) and torch (all numerics).

No math lives here: only conversion and device/dtype resolution.
"""

import warnings

import numpy as np
import torch

__all__ = ["as_tensor", "to_numpy", "is_torch", "resolve_device"]


def is_torch(*arrays):
    """True when any of ``arrays`` is a torch tensor."""
    return any(isinstance(x, torch.Tensor) for x in arrays)


def resolve_device(device):
    """Return a :class:`torch.device`, raising a clear error for unusable ones.

    Never falls back silently: ``device="cuda"`` without CUDA is a ``ValueError``.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; pass device='cpu'"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available")
    return dev


def as_tensor(x, *, device=None, dtype=None):
    """Convert ``x`` to a torch tensor (no copy when already matching)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.to(device=device if device is not None else x.device, dtype=dtype)
    arr = np.asarray(x)
    if dtype is None:
        dtype = torch.float32 if arr.dtype == np.float32 else torch.float64
    if not arr.flags.writeable:
        # read-only input (a memmap, pandas 3's arrays): torch warns that the
        # shared tensor is writable; skot never writes to its inputs
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not "
                                    "writable", category=UserWarning)
            return torch.as_tensor(arr, dtype=dtype, device=device)
    return torch.as_tensor(arr, dtype=dtype, device=device)


def to_numpy(t):
    """Detach, move to CPU and return a numpy array."""
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)
