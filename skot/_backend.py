"""Boundary between numpy (estimators, users) and torch (all numerics).

No math lives here: only conversion and device/dtype resolution.
"""

import math
import warnings

import numpy as np
import torch

__all__ = ["as_tensor", "to_numpy", "is_torch", "resolve_device", "unit_rows",
           "DEVICE_CONSTRAINT"]


def is_torch(*arrays):
    """True when any of ``arrays`` is a torch tensor."""
    return any(isinstance(x, torch.Tensor) for x in arrays)


#: The ``_parameter_constraints`` entry of every estimator's ``device``: a
#: string, a :class:`torch.device` or None (``"cpu"``). The value itself is
#: checked in ``fit`` by :func:`resolve_device`. Shared: do not mutate.
DEVICE_CONSTRAINT = [str, torch.device, None]


def resolve_device(device):
    """Return a :class:`torch.device`, raising a clear error for unusable ones.

    Never falls back silently: ``device="cuda"`` without CUDA is a ``ValueError``.

    Parameters
    ----------
    device : str, torch.device or None
        None means ``"cpu"``.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If ``device`` is not a torch device, is ``"meta"`` (no data), or names
        a backend that this torch build or machine lacks: one whose
        ``torch.<type>.is_available()`` is False (``"cuda"`` without CUDA,
        ``"xpu"`` in a build without XPU) or, for a type without such a
        function, on which torch cannot allocate; or an index beyond
        ``torch.<type>.device_count()``.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device") from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":
        raise ValueError(
            f"device={device!r} has no data: skot needs a device that computes "
            "(cpu, cuda, mps, ...)"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; pass device='cpu'"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available")
    module = getattr(torch, dev.type, None)
    is_available = getattr(module, "is_available", None)
    if not callable(is_available):
        # a type torch parses but has no availability check for (xla, hip,
        # vulkan, ...): a zero-size allocation says whether it can run here
        try:
            torch.empty(0, device=dev)
        except Exception as exc:
            raise ValueError(
                f"device={device!r} is not available in this torch build; pass "
                "device='cpu'"
            ) from exc
        return dev
    if not is_available():
        raise ValueError(
            f"device={device!r} is not available in this torch build or on this "
            f"machine (torch.{dev.type}.is_available() is False); pass device='cpu'"
        )
    device_count = getattr(module, "device_count", None)
    if dev.index is not None and callable(device_count):
        count = device_count()
        if dev.index >= count:
            raise ValueError(
                f"device={device!r} is not available: this machine has {count} "
                f"{dev.type} device(s), indices 0 to {count - 1}"
            )
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


def unit_rows(v):
    """Rows of ``v`` scaled to unit L2 norm (zero rows stay zero), each first
    scaled by the power of two at or above its largest entry. The squared norm
    of float32 rows from about 1e19 on overflowed (and of float64 rows at
    1e300; below about 1e-19 it underflowed), and such rows came out zero. The
    scaling is exact in binary and held constant, so rows in range give the
    same values and gradients bit for bit. The one row normalisation of skot:
    cosine costs, the embedder's heads, the classifiers' embeddings."""
    with torch.no_grad():
        top = v.abs().amax(-1, keepdim=True)
        exponent = torch.where(top > 0, -torch.frexp(top)[1], 0)
        # two factors: 2**149 (a subnormal float32 row) is itself beyond float32
        half = torch.div(exponent, 2, rounding_mode="floor")
        one = torch.ones_like(top)
        s1, s2 = torch.ldexp(one, half), torch.ldexp(one, exponent - half)
    return torch.nn.functional.normalize(v * s1 * s2, dim=-1)


def pow2_scale(*arrays):
    """The power of two at or above the largest absolute entry of the tensors
    (1.0 when they are all zero or not finite): dividing rows by it is exact in
    binary, so distances computed on the scaled rows and scaled back are bit for
    bit the unscaled ones wherever those neither overflow nor underflow, and
    finite where the squares inside them would not be (float32 rows from about
    1e19, or below 1e-19). The one scale rule of the pairwise distances of the
    coreset selector and of InfoOT's kernels."""
    s = max(float(Z.abs().max()) if Z.numel() else 0.0 for Z in arrays)
    return math.ldexp(1.0, math.frexp(s)[1]) if 0.0 < s < math.inf else 1.0

