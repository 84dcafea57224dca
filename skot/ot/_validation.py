"""Input checks for the solver layer: every error names the parameter and value."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from .._backend import as_tensor

__all__ = ["check_problem", "check_reg", "check_positive", "Problem"]


def _describe(x):
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"array of shape {tuple(x.shape)}"
    return repr(x)


def check_reg(reg, name="reg", allow_none=True):
    """Validate an entropic regularisation strength (None or a finite float > 0)."""
    if reg is None:
        if allow_none:
            return None
        raise ValueError(f"{name}=None is not allowed here; pass a float > 0")
    alt = " or None" if allow_none else ""
    if isinstance(reg, bool) or not isinstance(reg, (Real, np.floating)):
        raise TypeError(f"{name} must be a float > 0{alt}, got {reg!r}")
    reg = float(reg)
    if not math.isfinite(reg) or reg <= 0:
        alt = f" ({alt[1:]})" if alt else ""
        raise ValueError(f"{name} must be a finite float > 0{alt}, got {reg!r}")
    return reg


def check_reg_dtype(reg, dtype, name="reg"):
    """A reg that the solve's dtype cannot represent (float32: below its
    smallest normal number 1.2e-38, or above its largest, 3.4e38) is refused:
    the first gave a RuntimeError from torch, the second NaN values reported
    as converged."""
    if reg is None or not dtype.is_floating_point:
        return
    info = torch.finfo(dtype)
    if not info.tiny <= reg <= info.max:
        raise ValueError(
            f"{name}={reg!r} is outside the range of {dtype} ({info.tiny:.3g} to "
            f"{info.max:.3g}), in which the solve runs; rescale the cost (and {name}) "
            "or solve in float64")


def check_positive(value, name, *, allow_none=True, allow_inf=False, strict=True):
    """Validate a non-negative (or positive) scalar parameter."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name}=None is not allowed")
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0 or (strict and value == 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _to_tensor(x, name, like=None):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
        ):
            raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
        t = as_tensor(arr)
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    if like is None and t.dtype in (torch.float16, torch.bfloat16):
        # the kernel's exp under/overflows at half precision's range: all-zero
        # plans reported as converged
        raise TypeError(
            f"{name} has dtype {t.dtype}; skot.ot solves in float32 or float64 "
            "(cast the inputs, e.g. with .float())"
        )
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    return t


class Problem:
    """A validated linear OT problem: torch tensors, batched (B, n, m)."""

    def __init__(self, M, a, b, batched, numpy_io, zero_weights=None,
                 default_weights=(False, False)):
        self.M, self.a, self.b = M, a, b
        self.batched = batched
        self.numpy_io = numpy_io
        # (a has a zero entry, b has one), read in the weight checks'
        # synchronisation; None: not known (then read when needed)
        self.zero_weights = zero_weights
        # (a was None, b was None): the uniform weights, known without a look
        self.default_weights = default_weights

    @property
    def shape(self):
        return self.M.shape


def all_finite(t):
    """Whether every entry of tensor t is finite: one reduction (a NaN or inf
    entry makes the sum non-finite), the elementwise test only when the sum
    is not finite (overflow)."""
    with torch.no_grad():
        return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def check_cost(M, name="M", allow_inf=False):
    if M is None:
        raise ValueError(f"{name} must be given, got None")
    numpy_io = not isinstance(M, torch.Tensor)
    M = _to_tensor(M, name)
    if M.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n, m) or (B, n, m), got shape {tuple(M.shape)}"
        )
    if M.shape[-1] == 0 or M.shape[-2] == 0 or (M.ndim == 3 and M.shape[0] == 0):
        raise ValueError(f"{name} is empty: shape {tuple(M.shape)}, need n, m >= 1")
    if all_finite(M):
        return M, numpy_io
    with torch.no_grad():
        if torch.isnan(M).any():
            raise ValueError(f"{name} contains NaN; the cost matrix must be finite")
        if not allow_inf and torch.isinf(M).any():
            raise ValueError(
                f"{name} contains inf; the cost matrix must be finite (use mask= to "
                "forbid pairs)"
            )
    return M, numpy_io


def check_weights(w, name, size, M, batched):
    """Weights of shape (size,) or (B, size), uniform when None, and whether any
    entry is 0 (read in the same host synchronisation as the checks)."""
    B = M.shape[0] if batched else None
    if w is None:
        shape = (B, size) if batched else (size,)
        return torch.full(shape, 1.0 / size, dtype=M.dtype, device=M.device), False
    w = _to_tensor(w, name, like=M)
    expected = (size,) if not batched else (B, size)
    if batched and w.ndim == 1 and w.shape[0] == size:
        w = w.expand(B, size)
    if tuple(w.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(w.shape)} but the cost matrix needs length "
            f"{size} (shape {expected})"
        )
    with torch.no_grad():  # the four checks in one host synchronisation
        nonfinite, negative, empty, zero = torch.stack([
            ~torch.isfinite(w).all(), (w < 0).any(), (w.sum(-1) <= 0).any(),
            (w == 0).any()]).tolist()
    if nonfinite:
        raise ValueError(f"{name} contains NaN or inf; weights must be finite")
    if negative:
        raise ValueError(f"{name} has negative entries; weights must be non-negative")
    if empty:
        raise ValueError(f"{name} sums to 0; weights need positive total mass")
    return w, bool(zero)


def check_same_backend(first, *others):
    """A numpy first input with torch ones would give numpy out and drop their
    autograd graph and device: refuse the mix (as POT's backends do). Torch
    first inputs take numpy others (converted to the first's device and dtype)."""
    name, x = first
    for other, y in others:
        if isinstance(y, torch.Tensor):
            raise TypeError(
                f"{name} is a {type(x).__name__} but {other} is a torch tensor: pass "
                f"{name} as a torch tensor too (torch in, torch out, gradients kept), "
                "or every input as numpy"
            )


def check_problem(M, a, b, *, allow_inf=False):
    """Convert and validate ``M, a, b``; returns a :class:`Problem`."""
    if not isinstance(M, torch.Tensor):
        check_same_backend(("M", M), ("a", a), ("b", b))
    M, numpy_io = check_cost(M, allow_inf=allow_inf)
    batched = M.ndim == 3
    a_given, b_given = a, b
    a, za = check_weights(a, "a", M.shape[-2], M, batched)
    b, zb = check_weights(b, "b", M.shape[-1], M, batched)
    if not batched:
        M, a, b = M.unsqueeze(0), a.unsqueeze(0), b.unsqueeze(0)
    return Problem(M, a, b, batched, numpy_io, zero_weights=(za, zb),
                   default_weights=(a_given is None, b_given is None))


def check_mask(mask, M):
    """Boolean mask of allowed pairs, broadcast to ``M`` (B, n, m)."""
    if mask is None:
        return None
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool):
        mask = _to_tensor(mask, "mask")
    if mask.dtype != torch.bool:
        if not torch.isin(mask, torch.tensor([0, 1], dtype=mask.dtype)).all():
            raise ValueError("mask must be boolean (True = allowed pair)")
        mask = mask.bool()
    mask = mask.to(M.device)
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.shape[-2:] != M.shape[-2:] or mask.shape[0] not in (1, M.shape[0]):
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}, expected {tuple(M.shape[-2:])} "
            f"(or batched {tuple(M.shape)})"
        )
    return mask.expand_as(M)


def mass_mismatch(a, b):
    """``None`` when the total masses of ``a`` and ``b`` agree (relative 1e-6
    in float64, 1e-4 in float32, per problem of a batch), else the pair of
    totals (of the first problem that mismatches) for a message."""
    with torch.no_grad():
        ma, mb = a.sum(-1), b.sum(-1)
        tol = 1e-6 if a.dtype == torch.float64 else 1e-4
        off = ((ma - mb).abs() > tol * torch.maximum(ma, mb)).flatten()
        if off.any():
            # the first problem that mismatches (the first problem's totals
            # had been reported, equal when another one of the batch was off)
            k = int(torch.argmax(off.to(torch.uint8)))
            return ma.flatten()[k].item(), mb.flatten()[k].item()
    return None


def check_balanced(a, b, name="unbalanced"):
    masses = mass_mismatch(a, b)
    if masses is not None:
        raise ValueError(
            f"a and b have different total mass (sum a = {masses[0]:.6g}, sum b = "
            f"{masses[1]:.6g}); a balanced problem needs equal sums: normalise them, "
            f"or pass {name}= (KL-relaxed marginals) or mass= (partial transport)"
        )


def _default_tol(M, reg):
    """1e-9 in float64; in lower precision the marginal error cannot go below the
    rounding of (f + g - M) / reg, about eps * max|M| / reg: measured 0.05-0.4
    times that on CLIP cosine costs (3-1635 rows, 10-196 columns, reg 1e-3 to
    0.05, sinkhorn and rows), so the default is max(1e-6, eps * max|M| / reg,
    eps * max(n, m) / 50) (the last for the rounding of long sums, below),
    capped at 1e-3: past that, float32 cannot hold the marginals to 0.1%
    (max|M| / reg above about 1e4), and the solve runs to max_iter and warns
    instead of stopping at once on a bound that any plan meets (an L1 error is
    at most 2)."""
    if M.dtype == torch.float64:
        return 1e-9
    if reg is None:
        return 1e-6
    with torch.no_grad():
        scale = float(M.abs().max())
    eps = torch.finfo(M.dtype).eps
    # the marginals' sums over the longer side round too: on CLIP cosine costs
    # (Cars val replicated to n rows x 196 classes, reg 0.01) the float32 error
    # levelled off at about eps n / 120 (2.2e-6 at 1635 rows, 9.8e-6 at 10k,
    # 1.5e-5 at 15k, 2.9e-5 at 30k): from 15k rows the former default, 1.3e-5,
    # was below it and every solve ran its 10000 iterations (21 s at 15k rows,
    # 101 s at 30k, instead of 0.2 s)
    length = max(M.shape[-2], M.shape[-1])
    return min(1e-3, max(1e-6, eps * scale / reg, eps * length / 50))
