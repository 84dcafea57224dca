"""Linear OT methods: entropic family (one Sinkhorn core) and POT-backed exact ones.

Each method is one function registered under its name; :func:`skot.ot.solve` only
looks the name up (no if/elif chains on method strings).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .._backend import to_numpy
from ._autograd import FixedPotentialPlan, with_gradient
from ._registry import register_method
from ._sinkhorn import Side, free_side_closed_form, relaxed_terms, sinkhorn_core
from ._sinkhorn import tiny_log as _tiny_log
from ._validation import check_balanced, check_positive, mass_mismatch

__all__ = []


# rho / reg above which a KL-relaxed marginal is solved as hard, per dtype: the
# relaxed plan is then within about reg / rho (L1) of the hard one, below the
# dtype's default tol; past it float32 rounds rho / (rho + reg) to 1
_RHO_HARD = {torch.float64: 1e10, torch.float32: 1e6}


def _unbalanced_pair(unbalanced):
    if unbalanced is None:
        return None
    if isinstance(unbalanced, (tuple, list)):
        if len(unbalanced) != 2:
            raise ValueError(
                f"unbalanced must be a float or a pair (rho_a, rho_b), got {unbalanced!r}"
            )
        pair = tuple(unbalanced)
    else:
        pair = (unbalanced, unbalanced)
    return tuple(
        check_positive(r, "unbalanced", allow_none=False, allow_inf=True) for r in pair
    )


def _side_for(kind, w, eps, rho=None, box=None):
    logw = _tiny_log(w)
    if kind == "kl":
        if math.isinf(rho):
            return Side("eq", logw)
        return Side("kl", logw, phi=rho / (rho + eps), rho=rho)
    if kind == "box":
        lo, hi = box
        return Side("box", logw, loglo=_tiny_log(lo), loghi=_tiny_log(hi))
    return Side(kind, logw)


def _dbot_box(box, b, a=None, uniform=False):
    """The column bounds (lo, hi) of ``box`` (a delta or a pair), checked;
    with ``a``, also that the row mass fits them (sum lo <= sum a <= sum hi).
    ``uniform``: a and b are the default uniform weights (mass 1 each), which
    every delta box holds: no check, no host synchronisation (the losses'
    case)."""
    lo, hi = _dbot_bounds(box, b)
    if a is None or (uniform and not isinstance(box, (tuple, list))):
        return lo, hi
    # an infeasible box ran to max_iter and returned a plan whose rows
    # missed a (hard constraint), with only a ConvergenceWarning
    slack = 1e-9 if a.dtype == torch.float64 else 1e-5
    with torch.no_grad():
        ma = a.sum(-1)
        slo, shi = lo.sum(-1), hi.sum(-1)
        off = (slo > ma * (1 + slack)) | (shi < ma * (1 - slack))
        if not bool(off.any()):  # one host synchronisation
            return lo, hi
        k = int(torch.argmax(off.flatten().to(torch.uint8)))
    raise ValueError(
        f"box is infeasible: the columns must receive sum a = "
        f"{float(ma.flatten()[k]):.6g}, but the bounds allow [sum lo, sum hi] = "
        f"[{float(slo.flatten()[k]):.6g}, {float(shi.flatten()[k]):.6g}]; widen the "
        "box (or rescale b: a delta box is relative to b)")


def _dbot_bounds(box, b):
    if box is None:
        box = 0.5
    if isinstance(box, (int, float, np.floating)) and not isinstance(box, bool):
        delta = float(box)
        if not 0 <= delta:
            raise ValueError(f"box must be a delta >= 0 or a pair (lo, hi), got {box!r}")
        return ((1 - delta) * b).clamp_min(0), (1 + delta) * b
    if not isinstance(box, (tuple, list)) or len(box) != 2:
        raise ValueError(f"box must be a delta >= 0 or a pair (lo, hi), got {box!r}")
    lo = torch.as_tensor(np.asarray(to_numpy(box[0])), dtype=b.dtype, device=b.device)
    hi = torch.as_tensor(np.asarray(to_numpy(box[1])), dtype=b.dtype, device=b.device)
    for name, v in (("lo", lo), ("hi", hi)):
        if v.dim() > b.dim() or any(s not in (1, t) for s, t in
                                     zip(v.shape[::-1], b.shape[::-1])):
            raise ValueError(
                f"box=(lo, hi): {name} has shape {tuple(v.shape)}, which does not "
                f"match the {b.shape[-1]} columns of the cost")
    lo, hi = lo.expand_as(b), hi.expand_as(b)
    with torch.no_grad():  # the checks in one host synchronisation
        bad_value, bad_order = torch.stack([
            torch.isnan(lo).any() | torch.isnan(hi).any() | torch.isinf(lo).any(),
            (lo > hi).any() | (lo < 0).any()]).tolist()
    if bad_value:
        raise ValueError("box=(lo, hi) must not contain NaN (nor an infinite lo)")
    if bad_order:
        raise ValueError("box=(lo, hi) needs 0 <= lo <= hi entrywise")
    return lo, hi


def _check_hard_masses(a, b, rho, eps):
    """Both marginals solved as hard: their masses must agree. Relaxed, the
    plan's mass would be a weighted geometric mean of the two; at these
    weights the potentials (about rho times the log mass ratio) are beyond the
    dtype's resolution in units of reg, so no answer would be right."""
    finite = [r for r in rho if not math.isinf(r)]
    if not finite:
        check_balanced(a, b)
        return
    masses = mass_mismatch(a, b)
    if masses is not None:
        raise ValueError(
            f"unbalanced={rho if rho[0] != rho[1] else rho[0]!r} is "
            f"{max(finite) / eps:.3g} times reg, beyond what {a.dtype} resolves "
            f"as a relaxation (above {_RHO_HARD[a.dtype]:.0e} times reg the "
            "marginals are solved as hard constraints), but a and b have "
            f"different total mass (sum a = {masses[0]:.6g}, sum b = "
            f"{masses[1]:.6g}): lower unbalanced, or normalise a and b"
            + (", or use float64" if a.dtype != torch.float64 else ""))


def _check_mask_feasible(mask, row_kind, col_kind, col_lo=None):
    """A mask that leaves a constrained row or column (or, for a box, one
    with a lower bound above 0; for total mass, the whole plan) no entry."""
    if mask is None:
        return
    # reductions of the bytes: bool any() along an axis was 10-70x slower
    # (11 ms vs 0.16 ms for a 4096 x 4097 mask); every check read in one host
    # synchronisation
    u8 = mask.view(torch.uint8)
    no = torch.zeros((), dtype=torch.bool, device=mask.device)
    free = row_kind == col_kind == "free"
    rows_ok = u8.amax(-1) if row_kind in ("eq", "kl") or free else None
    cols_ok = u8.amax(-2) if col_kind in ("eq", "kl") or col_lo is not None else None
    checks = [
        (rows_ok == 0).any() if row_kind in ("eq", "kl") else no,
        (cols_ok == 0).any() if col_kind in ("eq", "kl") else no,
        ((cols_ok == 0) & (col_lo > 0)).any() if col_lo is not None else no,
        (rows_ok.amax(-1) == 0).any() if free else no,
    ]
    empty_row, empty_col, empty_box_col, empty_plan = torch.stack(checks).tolist()
    if empty_row:
        raise ValueError("mask forbids every entry of some row; that row cannot be served")
    if empty_col:
        raise ValueError(
            "mask forbids every entry of some column; that column cannot be served"
        )
    if empty_box_col:
        raise ValueError(
            "mask forbids every entry of some column whose box lower bound is "
            "above 0; that column cannot be served (a box delta >= 1 allows "
            "empty columns)"
        )
    if empty_plan:
        raise ValueError("mask forbids every entry; the total mass cannot be placed")


def _check_resolution(C, eps, plan):
    """Refuse a reg below the rounding of the cost in its dtype (the largest
    |C| on the entries that carry mass, times the machine epsilon): the
    exponents (f + g - C) / reg are then wrong by more than 1 and the plan is
    noise (reg 1e-17 on a cost in [0, 1]: float64 plans of total mass
    0.96-2.6, float32 plans of inf, after max_iter iterations). Entries with
    no mass do not count: a placeholder cost of 1e6 on forbidden pairs (POT's
    way to forbid them) resolves the plan as a mask does. Checked when a solve
    did not converge, so a converged solve pays no pass over C."""
    with torch.no_grad():
        Cd = C.detach().abs()
        carried = (plan.detach() > 0) & torch.isfinite(Cd)
        big = float(Cd.masked_fill(~carried, 0.0).amax())
        floor = torch.finfo(C.dtype).eps * big
    if eps < floor:
        raise ValueError(resolution_message(eps, floor, C.dtype, "M"))


def resolution_message(eps, floor, dtype, name, exact=True):
    """The error of :func:`_check_resolution` (also :func:`skot.ot.solve_sample`'s,
    with its features' largest cost)."""
    return (f"reg={eps:.3g} is below the rounding of the cost in {dtype} (largest "
            f"|cost| x machine epsilon = {floor:.3g}): the entropic plan cannot be "
            f"resolved; raise reg, scale {name} down"
            + (", solve in float64" if dtype != torch.float64 else "")
            + (" or use method='exact'" if exact else ""))


def _dead_sides(prob, a, b):
    """Boolean masks (B, n), (B, m) of the zero weights of ``a`` and ``b`` (None
    for a side without one), for :func:`sinkhorn_core`'s ``dead`` rows and
    columns. Whether there are any comes from the weight checks'
    synchronisation (``Problem.zero_weights``); read here when not known."""
    flags = getattr(prob, "zero_weights", None)
    if flags is None:
        with torch.no_grad():
            flags = tuple(torch.stack([(a == 0).any(), (b == 0).any()]).tolist())
    return tuple((w.detach() == 0) if z else None for w, z in zip((a, b), flags,
                                                                   strict=True))


def _entropic(prob, opts, row_kind, col_kind, *, total_mass=None, box=None):
    """Shared driver for the entropic family: returns an OTResult-like dict."""
    M, a, b = prob.M, prob.a, prob.b
    eps = opts["reg"]
    grad = opts["grad"]
    rho = _unbalanced_pair(opts.get("unbalanced"))
    if rho is not None:
        # rho / reg above 1e10 (float64; 1e6 in float32): the relaxed plan is
        # within about reg / rho (L1) of the hard constraint's, and the
        # translation step (rho times a difference of log masses) would
        # amplify rounding past reg: solved as hard
        given = rho
        rho = tuple(math.inf if r > _RHO_HARD[M.dtype] * eps else r for r in rho)
        if math.isinf(rho[0]) and math.isinf(rho[1]) and row_kind == col_kind == "kl":
            _check_hard_masses(a, b, given, eps)
    kl_ref = opts["reg_type"].lower() == "kl"
    mask = opts.get("mask")
    C = M
    track = grad == "autodiff" and torch.is_grad_enabled()
    Cs = C if track else C.detach()
    a_s = a if track else a.detach()
    b_s = b if track else b.detach()
    dbox = (_dbot_box(box, b_s, a_s, uniform=all(prob.default_weights))
            if col_kind == "box" else None)
    _check_mask_feasible(mask, row_kind, col_kind,
                         col_lo=None if dbox is None else dbox[0].detach())
    # forbidden pairs are applied to the kernel inside the solver (no masked
    # n x m copy of the cost)
    forbid = None if mask is None else ~mask
    row = _side_for(row_kind, a_s, eps, rho[0] if rho else None)
    col = _side_for(col_kind, b_s, eps, rho[1] if rho else None, box=dbox)
    ra = _tiny_log(a_s) if kl_ref else torch.zeros_like(a_s)
    rb = _tiny_log(b_s) if kl_ref else torch.zeros_like(b_s)
    dead = _dead_sides(prob, a_s, b_s)
    logmass = None
    if total_mass is not None:
        logmass = torch.full((M.shape[0],), math.log(total_mass), dtype=M.dtype,
                             device=M.device)
    f0, g0 = opts.get("potentials_init") or (None, None)
    if f0 is not None:
        f0 = torch.as_tensor(f0, dtype=M.dtype, device=M.device).reshape(a.shape)
        g0 = torch.as_tensor(g0, dtype=M.dtype, device=M.device).reshape(b.shape)
    ctx = torch.enable_grad() if track else torch.no_grad()
    # rows only, columns only, total mass only: the plan is a softmax
    closed = (row.kind, col.kind) in (("eq", "free"), ("free", "eq")) or (
        row.kind == col.kind == "free" and logmass is not None)
    with ctx:
        if closed:
            f, g, n_iter, err, converged, plan_loop = free_side_closed_form(
                Cs, eps, row, col, ra=ra, rb=rb, logmass=logmass, forbid=forbid,
                tol=opts["tol"])
            stalled = False
        else:
            f, g, n_iter, err, converged, plan_loop, stalled = sinkhorn_core(
                Cs, eps, row, col, ra=ra, rb=rb, logmass=logmass,
                max_iter=opts["max_iter"], tol=opts["tol"], f0=f0, g0=g0,
                geometry=opts.get("geometry", "kernel"),
                verbose=opts.get("verbose", False), forbid=forbid, dead=dead,
            )
    if not converged:
        _check_resolution(Cs, eps, plan_loop)
    if grad != "autodiff":
        f, g = f.detach(), g.detach()
    if grad == "autodiff" and torch.is_grad_enabled() and (
            C.requires_grad or a.requires_grad or b.requires_grad):
        # the plan differentiable through the unrolled potentials
        ra_p = _tiny_log(a) if kl_ref else torch.zeros_like(a)
        rb_p = _tiny_log(b) if kl_ref else torch.zeros_like(b)
        plan = _plan_from_potentials(C, f, g, eps, ra_p, rb_p)
        if forbid is not None:
            plan = plan.masked_fill(forbid, 0.0)
    else:
        # no graph through the iterations: the solver's own plan (no n x m
        # pass; exactly 0 on masked pairs, whose kernel entries are 0)
        plan = plan_loop.to(C.dtype)

    def values():
        r, c = plan.sum(-1), plan.sum(-2)
        # <M, P>: the plan is 0 on forbidden pairs
        if plan.requires_grad:
            value_linear = (plan * M).sum((-2, -1))
        else:
            value_linear = _bdot(plan, M.detach())
        # primal value <C, P> + reg * sum P log(P / ref); since log(P / ref)
        # equals (f + g - C) / reg exactly, it is <f, P 1> + <g, P^T 1>: no
        # n x m pass needed.
        value = (f * r).sum(-1) + (g * c).sum(-1)
        if rho is not None:
            value = value + relaxed_terms(r, c, a, b, _tiny_log(a), _tiny_log(b), eps,
                                          rho, kl_ref)
        return value, value_linear

    extra = {}
    if stalled:
        extra["status"] = "tol below rounding"
        extra["message"] = (
            f"stopped after {n_iter} iterations: every update rounded away, "
            f"while one rounding step of its potentials (in {M.dtype}, at "
            f"reg={eps:g}) changes the plan by {err:.3g} (relative), above tol="
            f"{opts['tol']:g}; the potentials are too large for this dtype"
            + (" (a large unbalanced weight with unequal masses)"
               if rho is not None else "")
            + "; loosen tol"
            + (", solve in float64" if M.dtype != torch.float64 else "")
            + (" or lower unbalanced" if rho is not None else ""))
    if closed and not converged:
        extra["status"] = "tol below rounding"
        extra["message"] = (
            f"is a closed form (a softmax) whose constrained marginal is off by "
            f"{err:.3g} (L1), its {M.dtype} rounding, which is above tol="
            f"{opts['tol']:g}; loosen tol")
    if grad == "detach":
        # computed on first access (three passes over the plan that a caller
        # needing only the plan, e.g. a loss's soft target, never pays)
        return dict(plan=plan, value=None, value_linear=None, lazy_values=values,
                    potentials=(f, g), n_iter=n_iter, err=err, converged=converged,
                    **extra)
    value, value_linear = values()
    if grad == "envelope" and torch.is_grad_enabled() and M.requires_grad:
        # d<M, P>/dM = P at the fixed plan; the plan itself is differentiable
        # with the potentials held fixed: dP/dM = -P / reg (entrywise)
        value_linear = with_gradient(value_linear.detach(), (M, plan))
        plan = FixedPotentialPlan.apply(M, plan, eps)
    if grad == "envelope":
        value = _envelope(value, M, a, b, plan, f, g, balanced=(row_kind, col_kind) == ("eq", "eq"))
    return dict(plan=plan, value=value, value_linear=value_linear, potentials=(f, g),
                n_iter=n_iter, err=err, converged=converged, **extra)


# cuBLAS's dot takes a 32-bit length: at batch 49152 a 49152^2 dot failed on
# an H100 ("dot only supports n, incx, incy with the bound")
_DOT_MAX = 2**31 - 1


def flat_dot(A, B):
    """sum(A * B) over all entries of two same-shape tensors, with no A * B
    temporary and no copy when both are contiguous or both transposed views."""
    if not (A.is_contiguous() and B.is_contiguous()) and A.ndim >= 2 and (
            A.mT.is_contiguous() and B.mT.is_contiguous()):
        A, B = A.mT, B.mT
    a, b = A.reshape(-1), B.reshape(-1)
    if a.numel() <= _DOT_MAX:
        return torch.dot(a, b)
    return sum(torch.dot(u, v) for u, v in zip(a.split(_DOT_MAX), b.split(_DOT_MAX)))


def _bdot(P, C):
    return torch.stack([flat_dot(P[k], C[k]) for k in range(P.shape[0])])


def _plan_from_potentials(C, f, g, eps, ra, rb):
    """P = exp((f + g - C) / eps + ra + rb), in place when no graph is needed."""
    u = f / eps + ra
    v = g / eps + rb
    if not (C.requires_grad or u.requires_grad or v.requires_grad):
        t = torch.sub(u.unsqueeze(-1), C, alpha=1.0 / eps)
        t.add_(v.unsqueeze(-2))
        return t.exp_()
    return torch.exp(u.unsqueeze(-1) + v.unsqueeze(-2) - C / eps)


def _envelope(value, M, a, b, plan, f, g, balanced):
    """Value with the envelope-theorem gradient: dV/dM = P, dV/da = f, dV/db = g.

    No n x m pass in the forward; the backward is one product with the plan."""
    pairs = [(M, plan.detach())]
    if a.requires_grad or b.requires_grad:
        if not balanced:
            raise ValueError(
                "gradients w.r.t. a and b from the duals (grad='envelope', and "
                "every exact or POT-backed method) exist only for balanced "
                "problems; detach a and b, or use an entropic method (reg set) "
                "with grad='autodiff'"
            )
        fc = f.detach() - f.detach().mean(-1, keepdim=True)
        gc = g.detach() - g.detach().mean(-1, keepdim=True)
        pairs += [(a, fc), (b, gc)]
    return with_gradient(value.detach(), *pairs)


def _warn_convergence(res, method, max_iter):
    if not res["converged"]:
        # a method may say why itself (res["message"]); else the budget ran out
        msg = res.get("message") or (
            f"did not converge in max_iter={max_iter} iterations (error "
            f"{res['err']:.3g}); increase max_iter, loosen tol or increase reg")
        entry = "solve_gromov" if method in ("fgw", "fgw_exact") else "solve"
        warnings.warn(f"skot.ot.{entry}(method={method!r}) {msg}", ConvergenceWarning,
                      stacklevel=4)


@register_method("sinkhorn", needs_reg=True, gibbs=True)
def _sinkhorn(prob, opts):
    """Balanced entropic OT: P 1 = a, P^T 1 = b."""
    check_balanced(prob.a, prob.b)
    return _entropic(prob, opts, "eq", "eq")


@register_method("unbalanced", needs_reg=True, gibbs=True)
def _unbalanced(prob, opts):
    """KL-relaxed marginals (``unbalanced=rho`` or a pair; inf = hard constraint)."""
    if opts.get("unbalanced") is None:
        raise ValueError("method='unbalanced' needs unbalanced=rho (a float > 0 or a pair)")
    if opts["unbalanced_type"].upper() != "KL":
        raise ValueError(
            f"unbalanced_type={opts['unbalanced_type']!r} is not supported by the "
            "entropic solver; use 'KL'"
        )
    return _entropic(prob, opts, "kl", "kl")


@register_method("rows", needs_reg=True, gibbs=True)
def _rows(prob, opts):
    """Row marginal only (columns free): P_ij = a_i softmax_j(-M_ij / reg)."""
    return _entropic(prob, opts, "eq", "free")


@register_method("cols", needs_reg=True, gibbs=True)
def _cols(prob, opts):
    """Column marginal only (rows free)."""
    return _entropic(prob, opts, "free", "eq")


@register_method("total", needs_reg=True, gibbs=True)
def _total(prob, opts):
    """Total mass only: P = mass * softmax over all entries of -M / reg."""
    mass = opts.get("mass")
    mass = 1.0 if mass is None else mass
    return _entropic(prob, opts, "free", "free", total_mass=mass)


@register_method("dbot", needs_reg=True, gibbs=True)
def _dbot(prob, opts):
    """Double-bounded OT: P 1 = a, lo <= P^T 1 <= hi (``box``)."""
    return _entropic(prob, opts, "eq", "box", box=opts.get("box"))


# exact partial OT (reg None) runs the network simplex, with its budget
@register_method("partial", gibbs=True,
                 max_iter=lambda reg: 1_000_000 if reg is None else None)
def _partial(prob, opts):
    """Partial OT: P 1 <= a, P^T 1 <= b, total mass ``mass``."""
    mass = opts.get("mass")
    if mass is None:
        raise ValueError("method='partial' needs mass= (the total mass to transport)")
    # sums of many float32 weights round about 1e-7 n^0.5 below their total
    slack = 1e-9 if prob.a.dtype == torch.float64 else 1e-5
    with torch.no_grad():
        sa, sb = prob.a.sum(-1), prob.b.sum(-1)
        cap, full_a, full_b = torch.stack([
            torch.minimum(sa, sb).min(), (sa <= mass * (1 + slack)).all(),
            (sb <= mass * (1 + slack)).all()]).tolist()
    if mass > cap * (1 + slack):
        raise ValueError(
            f"mass={mass!r} exceeds min(sum a, sum b) = {cap:.6g}; partial transport "
            "cannot move more mass than either side holds"
        )
    mass = min(mass, cap)  # within rounding of the smaller side's total
    if opts["reg"] is None:
        if opts.get("mask") is not None:
            # the network simplex never saw it: forbidden pairs carried mass
            raise ValueError("mask= is not supported by method='partial' with "
                             "reg=None (exact); use a large cost, or reg > 0")
        return _pot_partial_exact(prob, opts, mass)
    # a side whose whole mass is moved (mass = sum a) has P 1 = a: its
    # inequality is an equality, and the total mass follows from it. Solved
    # with the equality, the same problem converges as balanced Sinkhorn does:
    # with both inequalities and the total mass, mass = sum a = sum b = 1 ran
    # to max_iter (1000 iterations, error 3.7e-4 at reg 0.1)
    if full_a or full_b:
        return _entropic(prob, opts, "eq" if full_a else "le", "eq" if full_b else "le")
    return _entropic(prob, opts, "le", "le", total_mass=mass)


# --------------------------------------------------------------------- POT-backed
def _np(x):
    return np.ascontiguousarray(to_numpy(x), dtype=np.float64)


def _from_np(x, like):
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _stack_results(results, prob, grad, balanced=True):
    """Stack per-problem numpy results into batched tensors with envelope grads."""
    M, a, b = prob.M, prob.a, prob.b
    plan = torch.stack([_from_np(r[0], M) for r in results])
    value_linear = (plan * M.detach()).sum((-2, -1))
    pots = None
    if results[0][1] is not None:
        f = torch.stack([_from_np(r[1], M) for r in results])
        g = torch.stack([_from_np(r[2], M) for r in results])
        pots = (f, g)
    extra = torch.stack([torch.as_tensor(r[3], dtype=M.dtype, device=M.device)
                         for r in results])
    value = value_linear + extra
    if grad != "detach" and torch.is_grad_enabled() and (
        M.requires_grad or a.requires_grad or b.requires_grad
    ):
        f, g = pots if pots is not None else (torch.zeros_like(a), torch.zeros_like(b))
        value = _envelope(value, M, a, b, plan, f, g, balanced=balanced)
    return plan, value, value_linear, pots


def _emd(a, b, M, max_iter):
    """:func:`ot.emd`, on ``M`` scaled up by a power of two to max|M| in
    [0.5, 1) when max|M| is below 0.5, its duals scaled back: the network
    simplex compares reduced costs with an absolute epsilon (about 2e-15), so
    costs below about 1e-10 gave plans up to 7x the optimum, reported as
    converged. The scaling is exact in binary. Costs are never scaled down: a
    large penalty entry (a forbidden pair at 1e13) would push the ordinary
    costs under that epsilon.

    Costs whose largest entry is below 0 are first shifted up by a constant
    (to a largest entry of 0; a balanced plan does not change, the duals are
    shifted back by half of it each): POT's network simplex sizes its
    artificial arcs from the largest cost and reported every problem whose
    costs are all below -1 as infeasible (a plan of zeros).

    Returns ``(plan, u, v, ok)``.
    """
    import ot

    shift = float(M.max()) if M.size else 0.0
    if shift < 0.0:
        M = M - shift
    else:
        shift = 0.0
    top = float(np.abs(M).max()) if M.size else 0.0
    scale = math.ldexp(1.0, math.frexp(top)[1]) if 0.0 < top < 0.5 else 1.0
    with warnings.catch_warnings():
        # POT's own "numItermax reached" UserWarning: skot reports the budget
        # once, as a ConvergenceWarning naming max_iter
        warnings.filterwarnings("ignore", message="numItermax reached",
                                category=UserWarning)
        plan, log = ot.emd(a, b, M / scale, numItermax=int(max_iter), log=True)
    return (plan, log["u"] * scale + shift / 2, log["v"] * scale + shift / 2,
            log.get("warning") is None)


@register_method("exact", max_iter=1_000_000)
def _exact(prob, opts):
    """Exact OT by POT's network simplex (:func:`ot.emd`)."""
    check_balanced(prob.a, prob.b)
    if opts.get("mask") is not None:
        raise ValueError("mask= is not supported by method='exact'; use a large cost")
    max_iter = opts["max_iter"]
    results, ok, err = [], True, 0.0
    for k in range(prob.M.shape[0]):
        a, b = _np(prob.a[k]), _np(prob.b[k])
        b = b * (a.sum() / b.sum())  # exact-sum rounding for the LP
        plan, u, v, done = _emd(a, b, _np(prob.M[k]), max_iter)
        ok = ok and done
        err = max(err, float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()))
        results.append((plan, u, v, 0.0))
    plan, value, value_linear, pots = _stack_results(results, prob, opts["grad"])
    # POT's network simplex does not report its iteration count: n_iter is
    # max_iter when it ran out, else 0; err is the plan's L1 marginal error
    return dict(plan=plan, value=value, value_linear=value_linear, potentials=pots,
                n_iter=0 if ok else int(max_iter), err=err, converged=ok)


def _pot_partial_exact(prob, opts, mass):
    """Exact partial OT as POT's :func:`ot.partial.partial_wasserstein` poses
    it (one dummy row and column absorb the mass left out), solved by
    :func:`ot.emd` directly so that ``max_iter`` reaches the network simplex
    and running out of it is reported (POT raises a ValueError instead). The
    dummy-to-dummy cost ``3 max|M|`` keeps dummy mass off that corner for
    costs of any sign (POT's ``2 max M`` assumes non-negative costs)."""
    results, ok, err = [], True, 0.0
    for k in range(prob.M.shape[0]):
        a, b, M = _np(prob.a[k]), _np(prob.b[k]), _np(prob.M[k])
        n, m = M.shape
        a_ext = np.append(a, max(b.sum() - mass, 0.0))
        b_ext = np.append(b, max(a.sum() - mass, 0.0))
        b_ext *= a_ext.sum() / b_ext.sum()  # exact-sum rounding for the LP
        M_ext = np.zeros((n + 1, m + 1))
        M_ext[:n, :m] = M
        top = np.abs(M).max()
        M_ext[n, m] = 3.0 * top if top > 0 else 1.0
        plan, _, _, done = _emd(a_ext, b_ext, M_ext, opts["max_iter"])
        ok = ok and done
        P = plan[:n, :m]
        # the constraints: P 1 <= a, P^T 1 <= b, total mass
        err = max(err, float(abs(P.sum() - mass) + np.maximum(P.sum(1) - a, 0).sum()
                             + np.maximum(P.sum(0) - b, 0).sum()))
        results.append((P, None, None, 0.0))
    plan, value, value_linear, pots = _stack_results(results, prob, opts["grad"],
                                                     balanced=False)
    return dict(plan=plan, value=value, value_linear=value_linear, potentials=pots,
                n_iter=0 if ok else int(opts["max_iter"]), err=err, converged=ok)


# L1 marginal error, as a share of the mass, above which a "sparse" plan is
# reported as not converged (the optimiser itself reaches 1e-5-1e-4 at
# POT's stopThr=1e-9 where max_nz does not bind)
_SPARSE_MARGINAL_TOL = 1e-3


# POT's L-BFGS runs in float64 whatever the input dtype: its stopThr stays
# POT's 1e-9 (float32's tol stopped it at a 5e-3 marginal error)
@register_method("sparse", needs_reg=True, max_iter=500, tol=1e-9)
def _sparse(prob, opts):
    """Sparsity-constrained OT (at most ``max_nz`` non-zeros per column), via POT."""
    import ot

    check_balanced(prob.a, prob.b)
    if opts.get("mask") is not None:
        # POT's smooth dual never saw it: forbidden pairs carried mass
        raise ValueError("mask= is not supported by method='sparse'; use a large cost")
    max_nz = opts.get("max_nz")
    m_rows = prob.M.shape[-2]
    if max_nz is None:
        raise ValueError("method='sparse' needs max_nz= (non-zeros allowed per column)")
    if isinstance(max_nz, bool) or not isinstance(max_nz, (int, np.integer)) or max_nz < 1:
        raise ValueError(f"max_nz must be an integer >= 1, got {max_nz!r}")
    n_cols = prob.M.shape[-1]
    if max_nz * n_cols < m_rows:
        # every row needs a non-zero, and the columns hold max_nz each
        raise ValueError(
            f"max_nz={max_nz} is infeasible for {m_rows} rows and {n_cols} columns: "
            f"the plan has at most max_nz * {n_cols} = {max_nz * n_cols} non-zeros and "
            f"every row needs one; max_nz must be at least {-(-m_rows // n_cols)}")
    reg = opts["reg"]
    max_iter = opts["max_iter"]
    tol = opts["tol"]  # the registered 1e-9 unless the caller set one
    results, ok, n_iter, err = [], True, 0, 0.0
    for k in range(prob.M.shape[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            # POT passes L-BFGS-B options that scipy deprecates: not the user's
            warnings.simplefilter("ignore", DeprecationWarning)
            # max_nz >= n leaves the constraint inactive: quadratically
            # regularised OT (POT's selection of the top-k needs k < n)
            kind = ("l2" if max_nz >= m_rows else "sparsity_constrained")
            extra = {} if kind == "l2" else {"max_nz": int(max_nz)}
            plan, log = ot.smooth.smooth_ot_dual(
                _np(prob.a[k]), _np(prob.b[k]), _np(prob.M[k]), reg,
                reg_type=kind, numItermax=int(max_iter), stopThr=tol, log=True,
                **extra,
            )
        res = log["res"]  # scipy's L-BFGS-B result on the dual
        # status 1: the iteration (or evaluation) budget ran out; status 2 (a
        # line search that cannot progress) happens at the optimum to within
        # rounding, so only the budget counts as not converged
        ok = ok and res.status != 1
        n_iter = max(n_iter, int(res.nit))
        err = max(err, float(np.abs(plan.sum(1) - _np(prob.a[k])).sum()
                             + np.abs(plan.sum(0) - _np(prob.b[k])).sum()))
        results.append((plan, log["alpha"], log["beta"], 0.5 * reg * (plan**2).sum()))
    plan, value, value_linear, pots = _stack_results(results, prob, opts["grad"])
    out = dict(plan=plan, value=value, value_linear=value_linear, potentials=pots,
               n_iter=n_iter, err=err, converged=ok)
    # the dual is that of a convex relaxation: where max_nz binds, its plan can
    # miss the marginals by far more than the optimiser's accuracy (8 x 5,
    # max_nz=2: 0.1 of the mass, at any tol), and that is not a feasible plan
    mass = float(_np(prob.a).sum(-1).max())
    if ok and err > _SPARSE_MARGINAL_TOL * mass:
        out["converged"] = False
        out["status"] = "marginals not met"
        why = ("max_nz does not bind here (quadratically regularised OT): the "
               "L-BFGS dual stopped short; lower tol or raise max_iter"
               if max_nz >= m_rows else
               f"max_nz={max_nz} binds and the relaxed dual's plan need not be "
               "feasible; increase max_nz, or lower tol if the error is the "
               "optimiser's")
        out["message"] = (
            f"returned a plan whose marginals are off by {err:.3g} (L1; more than "
            f"{_SPARSE_MARGINAL_TOL:g} of the mass): {why}")
    return out
