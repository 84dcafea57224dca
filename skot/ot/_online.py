r"""Online (tiled) entropic OT between two point clouds.

:func:`solve_sample` solves the same problem as :func:`skot.ot.solve` on the cost
matrix ``C = cost(X_a, X_b)`` with ``method="sinkhorn"`` (or ``"unbalanced"``), but
never stores the n x m cost or plan: every log-sum-exp row/column update
recomputes the cost of one tile of ``batch_size`` rows from the features and
reduces it at once. Memory is O((n + m) d + batch_size x m).

The iteration is the log-domain ("log" geometry) dual block-coordinate ascent of
:mod:`skot.ot._sinkhorn`, from the same starting point and in the same order, so the
potentials, plan and value equal those of :func:`skot.ot.solve` on the explicit cost
up to rounding.

The same code runs on CPU and CUDA tensors; no fused (Triton) kernel is used:
on a GPU each tile is one matrix product plus elementwise work, so the online mode
costs one cost recomputation (2 d flops per entry) per half-iteration.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .._backend import unit_rows
from ._linear import _RHO_HARD, _check_hard_masses, resolution_message
from ._result import OTResult
from ._sinkhorn import relaxed_terms, translation_step
from ._sinkhorn import tiny_log as _tiny_log
from ._validation import (check_positive, check_reg, check_reg_dtype, check_same_backend,
                          mass_mismatch)

__all__ = ["solve_sample", "OnlineOTResult", "sample_cost"]

_METRICS = ("sqeuclidean", "euclidean", "cosine")
_GRADS = ("detach", "envelope")
# default tile: about 2**24 entries (64 MiB in float32)
_TILE_ENTRIES = 1 << 24


def sample_cost(Xa, Xb, metric="sqeuclidean"):
    """Cost matrix between the rows of ``Xa`` (n, d) and ``Xb`` (m, d).

    ``"sqeuclidean"``: :math:`\\|x - y\\|^2`; ``"euclidean"``: :math:`\\|x - y\\|`;
    ``"cosine"``: :math:`1 - \\cos(x, y)`. Differentiable torch in, torch out.
    This is the cost :func:`solve_sample` uses tile by tile.
    """
    if metric == "cosine":
        return 1.0 - unit_rows(Xa) @ unit_rows(Xb).T
    return _cost_tile(Xa, Xb, metric, None, None)


def _cost_tile(Xa, Xb, metric, na2, nb2):
    """Cost of a tile; features are pre-normalised for cosine."""
    if metric == "cosine":
        return 1.0 - Xa @ Xb.T
    if na2 is None:
        na2 = (Xa * Xa).sum(1)
    if nb2 is None:
        nb2 = (Xb * Xb).sum(1)
    C = (na2.unsqueeze(1) + nb2.unsqueeze(0)) - 2.0 * (Xa @ Xb.T)
    C = C.clamp_min(0.0)
    if metric == "euclidean":
        C = C.sqrt()
    return C


class _Geometry:
    """Features, squared norms and the tiling of the rows."""

    def __init__(self, Xa, Xb, metric, batch_size, col_batch_size=None):
        self.metric = metric
        if metric == "cosine":
            Xa, Xb = unit_rows(Xa), unit_rows(Xb)
        self.Xa, self.Xb = Xa, Xb
        self.na2 = None if metric == "cosine" else (Xa * Xa).sum(1)
        self.nb2 = None if metric == "cosine" else (Xb * Xb).sum(1)
        n, m = Xa.shape[0], Xb.shape[0]
        self.n, self.m = n, m
        self.bs = batch_size
        self.bs_cols = col_batch_size

    def row_tiles(self):
        for s in range(0, self.n, self.bs):
            yield slice(s, min(s + self.bs, self.n))

    def tile(self, rows):
        na2 = None if self.na2 is None else self.na2[rows]
        return _cost_tile(self.Xa[rows], self.Xb, self.metric, na2, self.nb2)

    def max_cost(self):
        if self.metric == "cosine":
            return 2.0
        r = float(self.na2.max().sqrt() + self.nb2.max().sqrt())
        return r * r if self.metric == "sqeuclidean" else r


@dataclass(eq=False, repr=False)  # OTResult's summary repr (never builds the plan)
class OnlineOTResult(OTResult):
    """:class:`OTResult` of :func:`solve_sample` with a lazy plan.

    ``plan`` is only built (n x m, tile by tile) when read; ``marginals``,
    ``value`` and :meth:`apply_plan` never build it.
    """

    _marg: Any = field(default=None, repr=False)
    _apply: Any = field(default=None, repr=False)

    @property
    def marginals(self):
        """Tuple ``(P 1, P^T 1)``, computed without the plan."""
        r, c = self._marg
        return self._export(r), self._export(c)

    def __getstate__(self):
        # the plan stays lazy (n x m, never built to pickle): its builder is a
        # picklable object holding the features and the potentials
        self.value, self.potentials  # noqa: B018  (evaluates the lazy parts)
        state = dict(self.__dict__)
        state["_lazy_values"] = state["_lazy_potentials"] = None
        return state

    def apply_plan(self, V, transpose=False):
        """Return ``P @ V`` (or ``P.T @ V``) without materialising ``P``.

        Parameters
        ----------
        V : array-like of shape (m,) or (m, k) ((n,) or (n, k) when ``transpose``)
        transpose : bool, default=False

        Returns
        -------
        out : array of shape (n,) or (n, k) ((m,) or (m, k) when ``transpose``),
            numpy for numpy inputs, torch otherwise.
        """
        numpy_io = not isinstance(V, torch.Tensor)
        out = self._apply(V, transpose)
        return out.detach().cpu().numpy() if numpy_io else out


def _as_features(X, name, like=None):
    if isinstance(X, torch.Tensor):
        t = X
    else:
        arr = np.asarray(X)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        dtype = torch.float32 if arr.dtype == np.float32 else torch.float64
        if like is not None:
            dtype = like.dtype
        t = torch.as_tensor(arr, dtype=dtype)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got "
                         f"{tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if like is None and t.dtype in (torch.float16, torch.bfloat16):
        # as skot.ot.solve: the kernel's exp under/overflows at half precision
        raise TypeError(
            f"{name} has dtype {t.dtype}; skot.ot solves in float32 or float64 "
            "(cast the inputs, e.g. with .float())")
    if like is not None:
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but X_a is on {like.device}")
        t = t.to(like.dtype)
        if t.shape[1] != like.shape[1]:
            raise ValueError(f"X_a has {like.shape[1]} features but {name} has "
                             f"{t.shape[1]}")
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _as_weights(w, name, size, like):
    if w is None:
        return torch.full((size,), 1.0 / size, dtype=like.dtype, device=like.device)
    t = w if isinstance(w, torch.Tensor) else torch.as_tensor(np.asarray(w, float))
    t = t.to(dtype=like.dtype, device=like.device)
    if t.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t.detach()).all()) or bool((t.detach() < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    return t


def _lse_rows(geo, v, eps):
    """log sum_j exp(v_j - C_ij / eps) for every row i, tile by tile."""
    out = torch.empty(geo.n, dtype=v.dtype, device=v.device)
    for rows in geo.row_tiles():
        t = torch.sub(v.unsqueeze(0), geo.tile(rows), alpha=1.0 / eps)
        out[rows] = torch.logsumexp(t, dim=1)
    return out


def _lse_cols(geo, u, eps):
    """log sum_i exp(u_i - C_ij / eps) for every column j (streaming max/sum)."""
    mx = torch.full((geo.m,), -math.inf, dtype=u.dtype, device=u.device)
    s = torch.zeros(geo.m, dtype=u.dtype, device=u.device)
    for rows in geo.row_tiles():
        t = torch.sub(u[rows].unsqueeze(1), geo.tile(rows), alpha=1.0 / eps)
        tm = t.max(dim=0).values
        new = torch.maximum(mx, tm)
        safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
        s = s * torch.exp(mx - safe) + torch.exp(t - safe.unsqueeze(0)).sum(0)
        mx = new
    safe = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    return torch.log(s) + safe


class _LazyPlan:
    """The plan of :func:`solve_sample`, tile by tile from the potentials: built
    (n x m) or applied to a matrix without it. An object, not closures, so that
    a result pickles (with the features, not the plan)."""

    def __init__(self, geo, u, v, eps, n, m):
        self.geo, self.u, self.v, self.eps, self.n, self.m = geo, u, v, eps, n, m

    def build(self):
        geo, u, v, eps = self.geo, self.u, self.v, self.eps
        with torch.no_grad():
            P = torch.empty((self.n, self.m), dtype=u.dtype, device=u.device)
            for rows in geo.row_tiles():
                P[rows] = _plan_tile(geo, rows, u, v, eps)
            return P

    def apply(self, V, transpose):
        geo, u, v, eps, n, m = self.geo, self.u, self.v, self.eps, self.n, self.m
        Vt = V if isinstance(V, torch.Tensor) else torch.as_tensor(np.asarray(V))
        Vt = Vt.to(dtype=u.dtype, device=u.device)
        size = n if transpose else m
        if Vt.shape[0] != size:
            raise ValueError(f"V must have {size} rows, got shape {tuple(Vt.shape)}")
        vec = Vt.ndim == 1
        V2 = Vt.unsqueeze(1) if vec else Vt
        with torch.no_grad():
            if transpose:
                out = torch.zeros((m, V2.shape[1]), dtype=u.dtype, device=u.device)
            else:
                out = torch.empty((n, V2.shape[1]), dtype=u.dtype, device=u.device)
            for rows in geo.row_tiles():
                P = _plan_tile(geo, rows, u, v, eps)
                if transpose:
                    out += P.T @ V2[rows]
                else:
                    out[rows] = P @ V2
        return out[:, 0] if vec else out


def _plan_tile(geo, rows, u, v, eps):
    """exp(u_i + v_j - C_ij / eps) on one tile (u, v include the log-weights)."""
    t = torch.sub(u[rows].unsqueeze(1), geo.tile(rows), alpha=1.0 / eps)
    return t.add_(v.unsqueeze(0)).exp_()


def _check_int(x, name, allow_none=True):
    if x is None and allow_none:
        return None
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 1:
        raise ValueError(f"{name} must be an integer >= 1 (or None), got {x!r}")
    return int(x)


def _check_pots(pots, n, m, like):
    """``potentials_init``: a pair (f, g) of shapes (n,), (m,), finite."""
    if not (isinstance(pots, (tuple, list)) and len(pots) == 2):
        raise ValueError(
            f"potentials_init must be a pair (f, g), got {type(pots).__name__}")
    out = []
    for name, p, k in (("f", pots[0], n), ("g", pots[1], m)):
        t = torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p)
        if tuple(t.shape) != (k,):
            raise ValueError(
                f"potentials_init {name} has shape {tuple(t.shape)}; expected ({k},) "
                f"(one entry per row of {'X_a' if name == 'f' else 'X_b'})")
        t = t.to(like)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"potentials_init {name} contains NaN or inf")
        out.append(t)
    return tuple(out)


def _rho_pair(unbalanced):
    if unbalanced is None:
        return None
    pair = tuple(unbalanced) if isinstance(unbalanced, (tuple, list)) else (
        unbalanced, unbalanced)
    if len(pair) != 2:
        raise ValueError(
            f"unbalanced must be a float or a pair (rho_a, rho_b), got {unbalanced!r}")
    return tuple(check_positive(r, "unbalanced", allow_none=False, allow_inf=True)
                 for r in pair)


class _EnvelopeValue(torch.autograd.Function):
    """Value whose backward is the envelope gradient, computed tile by tile."""

    @staticmethod
    def forward(ctx, value, Xa, Xb, a, b, pack):
        ctx.pack = pack
        return value.clone()

    @staticmethod
    def backward(ctx, gv):
        geo_raw, metric, u, v, eps, bs, f, g, balanced = ctx.pack
        Xa, Xb = geo_raw
        need_a, need_b = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gXa = torch.zeros_like(Xa) if need_a else None
        gXb = torch.zeros_like(Xb) if need_b else None
        if need_a or need_b:
            with torch.enable_grad():
                xb = Xb.detach().requires_grad_(need_b)
                # cosine: normalisation is part of the differentiated cost
                xbn = unit_rows(xb) if metric == "cosine" else xb
                nb2 = None if metric == "cosine" else (xbn * xbn).sum(1)
                for s in range(0, Xa.shape[0], bs):
                    rows = slice(s, min(s + bs, Xa.shape[0]))
                    xa = Xa[rows].detach().requires_grad_(need_a)
                    xan = unit_rows(xa) if metric == "cosine" else xa
                    C = _cost_tile(xan, xbn, metric, None, nb2)
                    with torch.no_grad():
                        P = torch.sub(u[rows].unsqueeze(1), C, alpha=1.0 / eps)
                        P = P.add_(v.unsqueeze(0)).exp_()
                    inputs = [t for t, nd in ((xa, need_a), (xb, need_b)) if nd]
                    grads = torch.autograd.grad((P * C).sum(), inputs,
                                                retain_graph=need_b)
                    grads = list(grads)
                    if need_a:
                        gXa[rows] = grads.pop(0)
                    if need_b:
                        gXb += grads.pop(0)
                    if need_b:  # release the xb part of this tile's graph
                        del C
        ga = gb = None
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            if not balanced:
                raise ValueError(
                    "grad='envelope' gives gradients w.r.t. a and b only for "
                    "balanced problems; detach a and b")
            ga = (f - f.mean()) * gv
            gb = (g - g.mean()) * gv
        return (None, None if gXa is None else gXa * gv,
                None if gXb is None else gXb * gv, ga, gb, None)


def solve_sample(
    X_a,
    X_b,
    a=None,
    b=None,
    *,
    metric="sqeuclidean",
    reg,
    unbalanced=None,
    max_iter=1000,
    tol=None,
    batch_size=None,
    grad="detach",
    potentials_init=None,
):
    r"""Entropic OT between two point clouds without storing the cost matrix.

    Solves, with :math:`C_{ij} = c(x^a_i, x^b_j)` recomputed tile by tile,

    .. math::

        \min_{P \ge 0} \langle C, P \rangle + \mathrm{reg}\,\mathrm{KL}(P \| a b^\top)
            \quad \text{s.t.}\ P 1 = a,\ P^\top 1 = b

    (KL penalties :math:`\rho\,\mathrm{KL}(P1 \| a) + \rho\,\mathrm{KL}(P^\top 1\|b)`
    instead of the constraints when ``unbalanced`` is set). Same problem, iteration
    and results as ``skot.ot.solve(M, a, b, reg=reg, geometry="log")`` on the full
    n x m cost matrix M of the features (for ``"sqeuclidean"``, POT's
    ``ot.dist(X_a, X_b)``); memory O((n + m) d + batch_size x m).

    Parameters
    ----------
    X_a : array-like of shape (n, d)
        Source features (numpy or torch; torch stays on its device and dtype).
    X_b : array-like of shape (m, d)
        Target features.
    a, b : array-like of shape (n,), (m,), default=None
        Marginal weights; uniform when None.
    metric : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Ground cost; ``"cosine"`` is :math:`1 - \cos(x, y)`.
    reg : float > 0
        Entropic regularisation.
    unbalanced : float, pair of floats or None, default=None
        KL marginal relaxation ρ (``inf`` on one side keeps that constraint).
    max_iter : int, default=1000
    tol : float, default=None
        Stopping threshold on the L1 marginal error (balanced) or the change of the
        potentials in units of ``reg`` (unbalanced). None: 1e-9 in float64,
        ``max(1e-6, eps_dtype max C / reg)``, at most 1e-3, in lower precision (as
        :func:`skot.ot.solve`).
    batch_size : int, default=None
        Rows per tile; None picks about 2**24 entries per tile.
    grad : {"detach", "envelope"}, default="detach"
        Unlike POT's ``ot.solve_sample`` (default ``"autodiff"``), no graph is
        kept through the iterations, whose plan is never formed; pass
        ``grad="envelope"`` for a gradient of ``value`` (it agrees with POT's
        autodiff at convergence: 3e-8 on the features in a comparison).
        ``"envelope"``: ``value`` carries the envelope-theorem gradient
        :math:`\sum_{ij} P_{ij} \partial C_{ij}/\partial X` (at the optimal
        potentials), computed tile by tile in the backward pass; w.r.t. ``a`` and
        ``b`` (balanced only) the centred potentials.
    potentials_init : tuple (f, g), optional
        Warm start (potentials of an earlier result).

    Returns
    -------
    result : OnlineOTResult
        ``.value``, ``.value_linear``, ``.potentials``, ``.marginals`` (computed
        without the plan), ``.apply_plan(V)`` (``P @ V`` tile by tile), and a
        lazy ``.plan`` (n x m, built only when read).

    Examples
    --------
    >>> import numpy as np
    >>> from skot.ot import solve_sample
    >>> rng = np.random.default_rng(0)
    >>> Xa, Xb = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    >>> res = solve_sample(Xa, Xb, reg=1.0, batch_size=16)
    >>> np.allclose(res.marginals[0], 1 / 50)
    True
    >>> res.apply_plan(np.ones(40)).shape
    (50,)
    """
    reg = check_reg(reg, allow_none=False)
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if grad not in _GRADS:
        raise ValueError(f"grad must be one of {_GRADS}, got {grad!r}")
    max_iter = _check_int(max_iter, "max_iter", allow_none=False)
    batch_size = _check_int(batch_size, "batch_size")
    tol = check_positive(tol, "tol")
    rho = _rho_pair(unbalanced)
    numpy_io = not isinstance(X_a, torch.Tensor)
    if numpy_io:  # numpy out would drop the torch inputs' graph and device
        check_same_backend(("X_a", X_a), ("X_b", X_b), ("a", a), ("b", b))
    Xa = _as_features(X_a, "X_a")
    Xb = _as_features(X_b, "X_b", like=Xa)
    check_reg_dtype(reg, Xa.dtype)
    n, m = Xa.shape[0], Xb.shape[0]
    a_t = _as_weights(a, "a", n, Xa)
    b_t = _as_weights(b, "b", m, Xa)
    if rho is not None:
        # as skot.ot.solve: a rho far above reg is solved as a hard constraint
        given = rho
        rho = tuple(math.inf if r > _RHO_HARD[Xa.dtype] * reg else r for r in rho)
        if (math.isinf(rho[0]) and math.isinf(rho[1])
                and not all(math.isinf(r) for r in given)):
            _check_hard_masses(a_t, b_t, given, reg)
    if potentials_init is not None:
        potentials_init = _check_pots(potentials_init, n, m, Xa)
    if rho is None or (math.isinf(rho[0]) and math.isinf(rho[1])):
        masses = mass_mismatch(a_t, b_t)  # the tolerance of check_balanced
        if masses is not None:
            raise ValueError(
                f"balanced OT needs a.sum() == b.sum(), got {masses[0]:.6g} and "
                f"{masses[1]:.6g}; set unbalanced=rho")
    if batch_size is None:
        batch_size = max(1, min(n, _TILE_ENTRIES // max(m, 1)))
    eps = reg
    balanced = rho is None or (math.isinf(rho[0]) and math.isinf(rho[1]))

    with torch.no_grad():
        geo = _Geometry(Xa.detach(), Xb.detach(), metric, batch_size)
        big = geo.max_cost()  # a bound on the costs (a Python float64)
        top = torch.finfo(Xa.dtype).max  # float32's overflow, not Python's
        if not big <= top:
            scale = max(float(Xa.detach().abs().max()), float(Xb.detach().abs().max()))
            raise ValueError(
                f"the {metric} costs between X_a and X_b overflow {Xa.dtype} "
                f"(features up to {scale:.3g} in absolute value); scale the "
                "features down")
        if not big / eps <= top:
            raise ValueError(
                f"the {metric} costs between X_a and X_b in units of reg overflow "
                f"{Xa.dtype} (largest cost up to {big:.3g}, reg={eps:.3g}); scale "
                "the features down or raise reg")
        if tol is None:
            if Xa.dtype == torch.float64:
                tol = 1e-9
            else:
                tol = min(1e-3, max(1e-6, torch.finfo(Xa.dtype).eps * geo.max_cost() / eps))
        ad, bd = a_t.detach(), b_t.detach()
        la, lb = _tiny_log(ad), _tiny_log(bd)  # KL reference a b^T
        phi_a = 1.0 if rho is None or math.isinf(rho[0]) else rho[0] / (rho[0] + eps)
        phi_b = 1.0 if rho is None or math.isinf(rho[1]) else rho[1] / (rho[1] + eps)
        if potentials_init is not None:
            f = torch.as_tensor(potentials_init[0]).to(Xa).reshape(n).clone()
            g = torch.as_tensor(potentials_init[1]).to(Xa).reshape(m).clone()
        else:
            f = torch.zeros(n, dtype=Xa.dtype, device=Xa.device)
            g = torch.zeros(m, dtype=Xa.dtype, device=Xa.device)
        translate = rho is not None and not (math.isinf(rho[0]) or math.isinf(rho[1]))
        err, converged, stalled, it = math.inf, False, False, 0
        for it in range(1, max_iter + 1):
            # rows: L_i = log row mass without f_i (units of eps)
            L = la + _lse_rows(geo, g / eps + lb, eps)
            err_rows = float((torch.exp(f / eps + L) - ad).abs().sum())
            f_new = eps * phi_a * (la - L)
            Lc = lb + _lse_cols(geo, f_new / eps + la, eps)
            g_new = eps * phi_b * (lb - Lc)
            if translate:  # as in skot.ot.solve
                lam = translation_step(f_new, g_new, la, lb, rho[0], rho[1])
                f_new, g_new = f_new + lam, g_new - lam
            if balanced:
                err = err_rows
            else:
                err = max(float((f_new - f).abs().max()),
                          float((g_new - g).abs().max())) / eps
            f, g = f_new, g_new
            if not (math.isfinite(err) and bool(torch.isfinite(f).all())
                    and bool(torch.isfinite(g).all())):
                raise FloatingPointError(
                    f"non-finite potentials in solve_sample ({Xa.dtype}, reg="
                    f"{eps:.3g}, largest cost / reg = {big / eps:.3g}); please "
                    "report this with the inputs")
            if err < tol:
                # unbalanced, as skot.ot.solve: every update rounded away (the
                # change reads exactly 0) while one rounding step of the
                # largest potential, in units of eps, is above tol: a fixed
                # point of the rounding (float32, rho / reg 5e4, masses 1 and
                # 1.3: err 0.0, "converged", 7.5e-4 (L1) off the float64 plan)
                floor = 0.0 if balanced else torch.finfo(Xa.dtype).eps * max(
                    float(f.abs().max()), float(g.abs().max())) / eps
                if err == 0.0 and floor >= tol:
                    err, stalled = floor, True
                    break
                converged = True
                break
        if not converged and eps < torch.finfo(Xa.dtype).eps * big:
            raise ValueError(resolution_message(
                eps, torch.finfo(Xa.dtype).eps * big, Xa.dtype, "X_a and X_b",
                exact=False))
        if stalled:
            warnings.warn(
                f"skot.ot.solve_sample stopped after {it} iterations: every update "
                "rounded away, while one rounding step of its potentials (in "
                f"{Xa.dtype}, at reg={eps:g}) is "
                f"{err:.3g} in units of reg, above tol={tol:g}, so the iterations "
                "cannot resolve tol (large potentials: a large unbalanced weight "
                "with unequal masses); loosen tol"
                + (", solve in float64" if Xa.dtype != torch.float64 else "")
                + " or lower unbalanced", ConvergenceWarning, stacklevel=2)
        elif not converged:
            warnings.warn(
                f"skot.ot.solve_sample did not converge in max_iter={max_iter} "
                f"iterations (error {err:.3g}); increase max_iter, loosen tol or "
                "increase reg", ConvergenceWarning, stacklevel=2)
        # final pass: marginals and <C, P> without the plan
        u, v = f / eps + la, g / eps + lb
        r = torch.empty(n, dtype=Xa.dtype, device=Xa.device)
        c = torch.zeros(m, dtype=Xa.dtype, device=Xa.device)
        vl = torch.zeros((), dtype=Xa.dtype, device=Xa.device)
        for rows in geo.row_tiles():
            C = geo.tile(rows)
            P = torch.sub(u[rows].unsqueeze(1), C, alpha=1.0 / eps)
            P = P.add_(v.unsqueeze(0)).exp_()
            r[rows] = P.sum(1)
            c += P.sum(0)
            vl += (P * C).sum()
        value = (f * r).sum() + (g * c).sum()
        if rho is not None:
            value = value + relaxed_terms(r, c, a_t, b_t, la, lb, eps, rho)

    if grad == "envelope" and torch.is_grad_enabled() and (
        Xa.requires_grad or Xb.requires_grad or a_t.requires_grad or b_t.requires_grad
    ):
        pack = ((Xa, Xb), metric, u, v, eps, batch_size, f, g, balanced)
        value = _EnvelopeValue.apply(value, Xa, Xb, a_t, b_t, pack)

    lazy = _LazyPlan(geo, u, v, eps, n, m)
    return OnlineOTResult(
        value=value,
        value_linear=vl,
        potentials=(f, g),
        n_iter=it,
        converged=converged,
        method="sinkhorn" if balanced else "unbalanced",
        err=float(err),
        status="converged" if converged else (
            "tol below rounding" if stalled else "max_iter reached"),
        _plan_fn=lazy.build,
        _numpy=numpy_io,
        _marg=(r, c),
        _apply=lazy.apply,
    )
