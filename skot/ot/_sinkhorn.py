r"""Entropic OT for every constraint set, written once.

All entropic solvers of :mod:`skot.ot` (balanced, unbalanced KL, semi-relaxed,
rows-only, columns-only, total-mass-only, partial, DBOT box, masked entries) are one
block-coordinate ascent on the dual:

.. math::

    P_{ij} = \exp\big((f_i + g_j + h - C_{ij})/\varepsilon + r^a_i + r^b_j\big)

where :math:`r^a = \log a, r^b = \log b` for ``reg_type="KL"`` (reference measure
:math:`a b^\top`) and 0 for ``reg_type="entropy"``. Each block update is exact and
in closed form: writing :math:`L_i` for the log row mass *without* :math:`f_i`,

* equality :math:`P1 = a`:          :math:`f_i/\varepsilon = \log a_i - L_i`
* KL relaxation with weight ρ:      :math:`f_i/\varepsilon = \tfrac{\rho}{\rho+\varepsilon}(\log a_i - L_i)`
* inequality :math:`P1 \le a`:      :math:`f_i/\varepsilon = \min(0, \log a_i - L_i)`
* box :math:`lo \le P1 \le hi`:     :math:`f_i/\varepsilon = \mathrm{clip}(L_i, \log lo, \log hi) - L_i`
* no constraint:                    :math:`f_i = 0`

and the total-mass constraint :math:`1^\top P 1 = m` updates the scalar :math:`h`.
Cyclic exact block maximisation of this concave dual is Dykstra's algorithm for KL
projections, so the limit is the exact entropic solution (not the result of naive
alternating projections).

Two interchangeable ways compute the log-sum-exps (the "geometry"):

* ``"log"``: plain log-domain, ``logsumexp`` over ``-C/ε + β`` (one exp per entry
  and per half-iteration);
* ``"kernel"``: log-stabilised kernel scaling. The potentials are periodically
  absorbed into :math:`\tilde K = \exp((\bar f \oplus \bar g - C)/\varepsilon)` and
  the iterations in between are two matrix-vector products on :math:`\tilde K`
  (no exp per entry), with a log-domain step whenever a scaling leaves a safe range
  or underflows. This is as stable as the log domain at any ``reg`` on float32 and
  float64 and as fast as kernel Sinkhorn (memory: one extra n x m matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Side", "free_side_closed_form", "sinkhorn_core", "translation_step"]


@dataclass
class Side:
    """Constraint on one marginal. ``kind`` in eq, kl, le, box, free."""

    kind: str
    logw: torch.Tensor  # log target weights, (B, n)
    phi: float = 1.0  # rho / (rho + eps) for kind == "kl"
    rho: float | None = None  # the KL weight itself
    loglo: torch.Tensor | None = None  # box bounds (log), (B, n)
    loghi: torch.Tensor | None = None

    def prox(self, L):
        """New potential (in units of eps) given the log-mass ``L`` without it."""
        if self.kind == "eq":
            return self.logw - L
        if self.kind == "kl":
            return self.phi * (self.logw - L)
        if self.kind == "le":
            return torch.clamp(self.logw - L, max=0.0)
        if self.kind == "box":
            # a column with no allowed entry (L = -inf; feasible when its lower
            # bound is 0) keeps potential 0 instead of +inf
            out = torch.minimum(torch.maximum(L, self.loglo), self.loghi) - L
            return out.masked_fill(L == -math.inf, 0.0)
        return torch.zeros_like(L)  # free


def _log(x):
    return torch.log(x)


def tiny_log(w):
    """log w with 0 mapped to log(tiny) (finite) instead of -inf."""
    return torch.log(w.clamp_min(torch.finfo(w.dtype).tiny))


def gibbs_nll(f, g, C, la, lb, reg, target=None):
    """-sum T log P for the plan P = exp((f_i + g_j - C_ij) / reg + la_i + lb_j)
    of potentials (f, g), cost C (n, m) and log weights (la, lb) (tensors, or
    scalars for uniform weights), without forming P: exact where the plan's
    entries underflow (float32 at reg 0.01), which -log of the plan clamped
    to ``tiny`` counts as 87 each. ``target`` None: the mean over i of
    -log P_ii (the diagonal coupling I/n); else an (n, m) coupling T."""
    if target is None:
        return -((f + g - torch.diagonal(C)) / reg + la + lb).mean()
    rows, cols = target.sum(1), target.sum(0)
    inner = f @ rows + g @ cols - (C * target).sum()
    return -(inner / reg + (la * rows).sum() + (lb * cols).sum())


def relaxed_terms(r, c, a, b, la, lb, eps, rho, kl_ref=True):
    r"""The terms that KL-relaxed marginals add to the primal value
    :math:`\langle f, r\rangle + \langle g, c\rangle` (r, c the plan's
    marginals, la, lb the log weights): the marginal penalties and the mass
    terms of the generalised KL, KL(p|q) = <p, log p/q> - |p| + |q|, in the
    entropic term and both penalties. This is the objective the iterations
    minimise; without the mass terms (POT's ``sinkhorn_unbalanced``
    ``total_cost``) the value is identically 0 at the optimum and its gradient
    in the cost is 0, not the plan."""
    mass = r.sum(-1)
    value = eps * ((a.sum(-1) * b.sum(-1) if kl_ref else 0.0) - mass)
    for rho_k, p, lq, q in ((rho[0], r, la, a), (rho[1], c, lb, b)):
        if not math.isinf(rho_k):
            value = value + rho_k * _kl_mass(p, lq, q)
    return value


def _kl_mass(p, lq, q):
    """Generalised KL(p|q) as sum q (x log x - x + 1), x = p / q, written
    e^d d - expm1(d) with d = log x: for p near q (a large rho) the direct
    form <p, log p/q> - |p| + |q| loses it to cancellation, which rho then
    multiplies (float32, rho / reg = 1e10: values off by 20)."""
    d = tiny_log(p) - lq
    t = torch.exp(d) * d - torch.expm1(d)
    return torch.where(p > 0, q * t, q).sum(-1)


def _lse_rows(logK, beta):
    return torch.logsumexp(logK + beta.unsqueeze(-2), dim=-1)


def _lse_cols(logK, alpha):
    return torch.logsumexp(logK + alpha.unsqueeze(-1), dim=-2)


# The products go through torch on every device. (An earlier version handed CPU
# products to numpy's BLAS, 2-3x faster in isolation; interleaved with torch's
# own elementwise work, the two thread pools fought over the cores and a whole
# Sinkhorn solve in a training step ran 3-4x slower.)
def _matvec(K, v):
    return torch.matmul(K, v.unsqueeze(-1)).squeeze(-1)


def _vecmat(u, K):
    return torch.matmul(u.unsqueeze(-2), K).squeeze(-2)


def translation_step(f, g, logw_a, logw_b, rho_a, rho_b):
    """Exact dual maximisation of KL-unbalanced OT along (f + lam, g - lam).

    The coupling term does not see this direction and plain unbalanced Sinkhorn
    contracts along it at rate rho / (rho + eps) only (translation-invariant
    Sinkhorn, Sejourne et al. 2022). Potentials in cost units, shapes (..., n)
    and (..., m); returns lam of shape (...).
    """
    # rho_a rho_b / (rho_a + rho_b), without overflow of the product
    return 1.0 / (1.0 / rho_a + 1.0 / rho_b) * (
        torch.logsumexp(logw_a - f / rho_a, dim=-1)
        - torch.logsumexp(logw_b - g / rho_b, dim=-1))


class _State:
    """Absorbed potentials (fb, gb, hb) and log-scalings (alpha, beta, eta)."""

    def __init__(self, fb, gb, hb, eps, forbid=None):
        self.fb, self.gb, self.hb, self.eps = fb, gb, hb, eps
        self.forbid = forbid  # bool (B, n, m): forbidden pairs (cost +inf)
        self.alpha = torch.zeros_like(fb)
        self.beta = torch.zeros_like(gb)
        self.eta = torch.zeros_like(hb)

    def f(self):
        return self.fb + self.eps * self.alpha

    def g(self):
        return self.gb + self.eps * self.beta

    def h(self):
        return self.hb + self.eps * self.eta


def _moved_mass(mass, change, eps):
    """Mass moved when potentials change by ``change`` (cost units) on entries of
    mass ``mass``: mass (exp(change / eps) - 1), the exponent capped so that a
    first step's huge change gives a large finite error (not 0 * inf on an
    empty row)."""
    return mass * torch.expm1((change / eps).clamp_max(50.0))


def _exp_floor(dtype):
    """Exponent below which kernel entries are flushed to exact zeros.

    Subnormal numbers make CPU arithmetic ~30x slower (measured: a 1000 x 1000
    float64 matvec went from 0.4 ms to 13 ms). The margin above ``tiny`` keeps
    the products with scalings down to ``exp(-tau)`` normal; entries this
    small stay negligible in the plan because :func:`sinkhorn_core` absorbs
    the scalings before the largest row and column scalings together raise
    them above ``exp(-33)`` (float32; float64's margin leaves them below
    ``exp(-88)`` at any scaling below ``tau``).
    """
    tiny = math.log(torch.finfo(dtype).tiny)
    return tiny + (40.0 if dtype == torch.float32 else 220.0)


def _row_min(C, forbid=None):
    """Row minima of C over the allowed entries (``forbid`` True = excluded;
    +inf where a row has none), without a masked copy of C: the plain minima,
    then the rows whose minimum sits on a forbidden entry again, masked."""
    if forbid is None:
        return C.amin(-1)
    vals, idx = C.min(-1)
    bad = forbid.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    if bool(bad.any()):
        vals = vals.clone()
        vals[bad] = C[bad].masked_fill(forbid[bad], math.inf).amin(-1)
    return vals


def _log_kernel(C, st, ra, rb, absorbed=True, exp=False):
    """(f + g + h - C) / eps + ra + rb, fused in place when no graph is needed."""
    eps = st.eps
    if absorbed:
        u = (st.fb + st.hb.unsqueeze(-1)) / eps + ra
        v = st.gb / eps + rb
    else:
        u, v = ra, rb
    if not (C.requires_grad or u.requires_grad or v.requires_grad):
        t = torch.sub(u.unsqueeze(-1), C, alpha=1.0 / eps)
        t.add_(v.unsqueeze(-2))
        if exp:
            # entries at or below the floor to -inf in one pass (threshold_;
            # a check, a comparison and a masked fill took twice as long)
            torch.nn.functional.threshold_(t, _exp_floor(t.dtype), -math.inf)
        if st.forbid is not None:
            t.masked_fill_(st.forbid, -math.inf)
        return t.exp_() if exp else t
    t = u.unsqueeze(-1) + v.unsqueeze(-2) - C / eps
    if st.forbid is not None:
        t = t.masked_fill(st.forbid, -math.inf)
    if not exp:
        return t
    return torch.exp(t.masked_fill(t < _exp_floor(t.dtype), -math.inf))


def _overflow_error(where, C, eps):
    """The error for potentials that left the dtype: the cost in units of reg
    overflows it."""
    return FloatingPointError(
        f"non-finite potentials in {where} ({C.dtype}, reg={eps:.3g}, max|M| / reg "
        f"= {float(C.detach().abs().max()) / eps:.3g}): the cost in units of reg "
        "overflows this dtype; scale M down, raise reg or solve in float64"
    )


def free_side_closed_form(C, eps, row: Side, col: Side, *, ra, rb, logmass=None,
                          forbid=None, tol=0.0):
    """The entropic plan when at most one side carries a constraint, in closed
    form (no iterations): rows only (``row`` "eq", ``col`` "free"),
    ``P_ij = a_i softmax_j``; columns only, the transpose; total mass only
    (both "free", ``logmass`` given), ``P = m softmax`` over all entries.

    Same returns as :func:`sinkhorn_core` (``g`` = 0 for rows and total, ``f``
    = 0 for columns; ``err`` the L1 error of the constrained marginal or mass,
    its rounding: converged when it is below ``tol``, so that a ``tol`` under
    the dtype's rounding is reported, as by the scaling loop).
    The scaling loop's start (row minima) is the wrong frame for a free side: at
    reg 0.01 its potentials left the kernel's safe range after one iteration
    and the kernel was rebuilt, one more n x m buffer at the peak (total mass,
    batch 16384 on an H200: 5.4 GiB against 2.2 GiB at reg 0.05). Here: one
    n x m buffer, five passes.
    """
    B, n, m = C.shape
    if row.kind == "eq":  # rows: a softmax along each row
        dims, wlog = (-1,), row.logw.unsqueeze(-1)
    elif col.kind == "eq":  # columns: along each column
        dims, wlog = (-2,), col.logw.unsqueeze(-2)
    else:  # total mass: over all entries
        dims, wlog = (-2, -1), logmass.view(B, 1, 1)
    if C.requires_grad or ra.requires_grad or rb.requires_grad:
        t = ra.unsqueeze(-1) + rb.unsqueeze(-2) - C / eps
        if forbid is not None:
            t = t.masked_fill(forbid, -math.inf)
        pot = wlog - torch.logsumexp(t, dim=dims, keepdim=True)
        # the caller rebuilds the differentiable plan from the potentials:
        # this one (for err, and the caller's other paths) carries no graph
        plan = torch.exp(t.detach() + pot.detach())
    else:
        t = torch.sub(ra.unsqueeze(-1), C, alpha=1.0 / eps)
        t.add_(rb.unsqueeze(-2))
        if forbid is not None:
            t.masked_fill_(forbid, -math.inf)
        mx = t.amax(dim=dims, keepdim=True)
        t.sub_(mx)
        torch.nn.functional.threshold_(t, _exp_floor(t.dtype), -math.inf)
        s = t.exp_().sum(dim=dims, keepdim=True)
        pot = wlog - mx - torch.log(s)
        plan = t.mul_(torch.exp(wlog) / s)
    with torch.no_grad():
        target = torch.exp(wlog.detach())
        err = float((plan.sum(dim=dims, keepdim=True) - target).abs()
                    .flatten(1).sum(-1).max())
        if not (math.isfinite(err) and bool(torch.isfinite(pot).all())):
            raise _overflow_error("the closed-form entropic plan", C, eps)
    # potentials in units of the cost; the constrained side's (rows and total
    # mass: f, the total's constant on every row), the other side 0
    pot = eps * pot
    ok = err < tol
    if dims == (-2,):
        f, g = C.new_zeros((B, n)), pot.reshape(B, m)
    else:
        f = pot.reshape(B, n) if dims == (-1,) else pot.reshape(B, 1).expand(B, n).clone()
        g = C.new_zeros((B, m))
    return f, g, 1, err, ok, plan


def _next_check(err, last_err, gap, tol, it, most=10):
    """Iterations until the next error measurement, after the one at iteration
    ``it``: the scaling iterations contract the error linearly, so the rate
    from the last two measurements (``last_err`` ``gap`` iterations before
    ``err``) predicts when it falls below ``tol``, and it is measured then (at
    most ``most`` iterations on). While the error is not falling, the next
    iteration is measured (every ``most``-th after the first ``most``). A fixed
    schedule (every iteration up to 10, then every 10th) ran DBOT at reg 0.01
    to 20-30 iterations where the error crossed tol at 12 (batch 2048); each
    measurement costs a few passes over vectors of length n and, on a GPU, a
    synchronisation."""
    if not (math.isfinite(err) and math.isfinite(last_err)) or not 0 < err < last_err \
            or not tol > 0:
        return 1 if it < most else most
    rate = (err / last_err) ** (1.0 / gap)
    if not 0.0 < rate < 1.0:  # 1.0: a very slow fall, rounded
        return most
    # logs apart: tol / err can underflow (tol 5e-324)
    need = (math.log(tol) - math.log(err)) / math.log(rate)
    return int(min(max(math.ceil(need - 1e-9), 1), most))


def sinkhorn_core(
    C,
    eps,
    row: Side,
    col: Side,
    *,
    ra,
    rb,
    logmass=None,
    max_iter=1000,
    tol=1e-9,
    f0=None,
    g0=None,
    geometry="kernel",
    verbose=False,
    forbid=None,
    dead=None,
):
    """Run the dual block-coordinate ascent.

    Parameters
    ----------
    C : tensor (B, n, m)
        Cost; ``+inf`` marks forbidden pairs.
    forbid : bool tensor (B, n, m), optional
        More forbidden pairs, applied to the kernel (no masked copy of C).
    dead : pair of bool tensors (B, n), (B, m) or None, optional
        Rows and columns of weight 0 (None for a side without one). In the
        kernel geometry their kernel rows (columns) are exactly 0 and their
        scalings stay at 0 through the iterations; at the end their potentials
        are the limit of a vanishing weight (one log-domain half-step, the
        c-transform for the KL reference). Without this, a zero weight's flushed
        kernel row had a log-sum of -inf, which sent every half-iteration to
        an absorption and a log-domain step (10-50x slower, same result).
    eps : float
        Entropic regularisation.
    row, col : Side
        Constraints on the row and column marginals.
    ra, rb : tensors (B, n), (B, m)
        Log reference weights (``log a``/``log b`` for KL, zeros for entropy).
    logmass : tensor (B,) or None
        Log of the total mass when that constraint is active.
    geometry : {"kernel", "log"}

    Returns
    -------
    f, g : tensors (B, n), (B, m)
        Potentials with the total-mass variable folded into ``f``.
    n_iter, err, converged
    plan : tensor (B, n, m)
        The plan in the solver's own frame (no graph), consistent with ``err``.
    stalled : bool
        Stopped before ``max_iter`` without converging: every update rounded
        away (the change read exactly 0) while one rounding step of the
        relaxed, box or inequality sides' potentials changes the plan by
        ``tol`` or more (``err`` is then that relative rounding step).
    """
    B, n, m = C.shape
    dtype = C.dtype
    zero_g = torch.zeros((B, m), dtype=dtype, device=C.device)
    use_kernel = geometry == "kernel"
    # zero weights (kernel geometry only: the log domain never absorbs): the
    # kernel's reference weights are -inf on those rows and columns; the log
    # domain's (careful steps, final potentials) keep the finite tiny_log
    dead_r, dead_c = dead if (dead is not None and use_kernel) else (None, None)
    ra_k = ra if dead_r is None else ra.masked_fill(dead_r, -math.inf)
    rb_k = rb if dead_c is None else rb.masked_fill(dead_c, -math.inf)
    if f0 is None:
        # start from the row minima of C: the largest kernel entry of each row is
        # then exp(ra + rb), so a small reg does not underflow the first kernel
        # (at reg 0.01 on cosine costs in [0.7, 1.2] it did, and the first
        # iteration fell back to the log domain: two extra n x m passes each way)
        with torch.no_grad():
            fb = _row_min(C.detach(), forbid)
            fb = torch.where(torch.isfinite(fb), fb, 0.0)
    else:
        fb = f0.to(dtype)
    gb = zero_g if g0 is None else g0.to(dtype)
    st = _State(fb, gb, torch.zeros(B, dtype=dtype, device=C.device), eps, forbid)
    # bound on the log-scalings before they are absorbed into the kernel
    tau = 30.0 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 200.0
    # bound on the largest row scaling plus the largest column scaling (and the
    # total mass's), checked at the error measurements and before convergence
    # is declared: kernel entries flushed to 0 at the floor are then worth at
    # most exp(-33) ~ 5e-15 each in the plan (1.3e-6 over all 16384^2
    # entries, below float32's tol). float32's floor (tiny e^40 = e^-47) under
    # scalings summing to 48 (each below tau) had zeroed a plan entry of
    # 3.3e-3, reported converged (cosine cost 60 x 45, reg 0.01: 2.5e-2 L1 off
    # the float64 plan; 1.1e-4 now, as the log domain's). The losses' solves
    # at reg 0.01-0.05 rebuild no more kernels than before (batch 1024-4096).
    # float64 (floor e^-488, tau 200): never binds
    guard = -_exp_floor(dtype) - 33.0
    if use_kernel:
        K = _log_kernel(C, st, ra_k, rb_k, exp=True)
    else:
        logK = _log_kernel(C, st, ra, rb)  # includes a warm start (never re-absorbed)
    need_absorb = False
    balanced = row.kind in ("eq", "free") and col.kind in ("eq", "free")
    translate = row.kind == "kl" and col.kind == "kl" and logmass is None
    err = math.inf
    converged = False
    it = 0
    next_check, last_err, last_it = 1, math.inf, 0
    stalled = False  # stopped because the potentials cannot resolve tol
    mach, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    # Kernel sums are checked for over/underflow only at the iterations that
    # measure the error, in the one host synchronisation of that measurement:
    # a check per half-iteration (the former rule) synchronised a GPU twice per
    # iteration (DBOT at batch 16384 on an H200: 39.7 ms of kernels in a 49.6 ms
    # step). A non-finite value met there rolls the scalings back to the last
    # measured iteration, and the solve goes on checking every half-iteration
    # (absorbing and taking a log-domain step where a sum is not finite), as
    # before. Between measurements nothing is absorbed, so the kernel of the
    # rolled-back state is the current one.
    careful = not use_kernel  # the log domain needs no check
    saved = (st.alpha, st.beta, st.eta, 0)

    def absorb():
        nonlocal K
        st.fb, st.gb, st.hb = st.f(), st.g(), st.h()
        st.alpha = torch.zeros_like(st.alpha)
        st.beta = torch.zeros_like(st.beta)
        st.eta = torch.zeros_like(st.eta)
        K = None  # the old kernel's buffer is free before the new one is built
        K = _log_kernel(C, st, ra_k, rb_k, exp=True)

    def log_rowsum(beta):
        # log of sum_j Ktilde_ij exp(beta_j); None when the kernel under/overflowed
        # (checked only once the solve is careful)
        if not use_kernel:
            return _lse_rows(logK, beta)
        s = _matvec(K, torch.exp(beta))
        if dead_r is not None:  # a dead row's sum is 0: log 1 stands in
            s = s.masked_fill(dead_r, 1.0)
        ls = torch.log(s)
        return ls if not careful or bool(torch.isfinite(ls).all()) else None

    def log_colsum(alpha):
        if not use_kernel:
            return _lse_cols(logK, alpha)
        s = _vecmat(torch.exp(alpha), K)
        if dead_c is not None:
            s = s.masked_fill(dead_c, 1.0)
        lt = torch.log(s)
        return lt if not careful or bool(torch.isfinite(lt).all()) else None

    def live(x, dead_side, fill=0.0):
        # a dead side's row or column masses (or their logs) are exactly 0
        return x if dead_side is None else x.masked_fill(dead_side, fill)

    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc="sinkhorn", unit="it", leave=False)
    while it < max_iter:
        it += 1
        if bar is not None and (it <= 10 or it % 10 == 0):
            bar.update(max(it - bar.n, 0))
            bar.set_postfix(err=f"{err:.2e}")
        # errors are measured when the next one is predicted below tol (see
        # _next_check), at least every 10th iteration, and on the last
        check = it >= next_check or it == max_iter
        # ---- rows
        ls = log_rowsum(st.beta)
        if ls is None:  # underflow/overflow in the kernel: absorb, use log domain
            absorb()
            ls = _lse_rows(_log_kernel(C, st, ra, rb), st.beta)
        # log row mass without f, in the absorbed frame
        L = ls + st.eta.unsqueeze(-1) - st.fb / eps
        zero = ls.new_zeros(())
        err_rows = err_cols = zero
        if check:
            with torch.no_grad():
                if row.kind == "eq":
                    r = live(torch.exp(st.alpha + st.eta.unsqueeze(-1) + ls), dead_r)
                    err_rows = (r - torch.exp(row.logw)).abs().sum(-1).max()
                old_f = st.f().detach()
        st.alpha = row.prox(L) - st.fb / eps
        if dead_r is not None:
            st.alpha = st.alpha.masked_fill(dead_r, 0.0)
        # ---- columns
        lt = log_colsum(st.alpha)
        if lt is None:
            absorb()
            lt = _lse_cols(_log_kernel(C, st, ra, rb), st.alpha)
        L = lt + st.eta.unsqueeze(-1) - st.gb / eps
        if check:
            with torch.no_grad():
                if col.kind == "eq" and row.kind != "eq":
                    c = live(torch.exp(st.beta + st.eta.unsqueeze(-1) + lt), dead_c)
                    err_cols = (c - torch.exp(col.logw)).abs().sum(-1).max()
                old_g = st.g().detach()
                old_h = st.h().detach()
        st.beta = col.prox(L) - st.gb / eps
        if dead_c is not None:
            st.beta = st.beta.masked_fill(dead_c, 0.0)
        if translate:
            f_cur, g_cur = st.f(), st.g()
            lam = translation_step(f_cur, g_cur, row.logw, col.logw, row.rho, col.rho)
            # a step within a few roundings of the potentials is rounding
            # itself: taken, it alternated by one ulp from iteration to
            # iteration and held the moved mass above tol (float32, masses 12
            # and 18, rho 1, reg 0.2: no convergence in 1000 iterations, 19
            # with the step dropped; cosine costs at rho 1-10, reg 0.01-0.05:
            # 28 of 30 converged instead of 27, median 159 iterations for 170)
            with torch.no_grad():
                ulp = mach * (f_cur.detach().abs().amax(-1)
                              + g_cur.detach().abs().amax(-1))
            lam = lam.masked_fill(lam.detach().abs() <= 4 * ulp, 0.0)
            st.alpha = st.alpha + (lam / eps).unsqueeze(-1)
            st.beta = st.beta - (lam / eps).unsqueeze(-1)
        # ---- total mass
        if logmass is not None:
            st.eta = logmass - torch.logsumexp(live(lt, dead_c, -math.inf) + st.beta,
                                               dim=-1)
        if not check:
            continue
        # ---- error and absorption: every scalar in one synchronisation
        with torch.no_grad():
            if balanced:
                terms = [err_rows, err_cols]
            else:
                # relaxed (KL), box (DBOT) and inequality (partial) sides: the
                # L1 change of the marginals that this iteration's potential
                # updates make (the analogue of the balanced L1 marginal
                # error), each potential's change weighted by the mass of its
                # row or column. The largest change in units of eps, the
                # former rule, waited on rows of negligible mass: unbalanced
                # FGW's first solve took 50 iterations where 10 put the plan
                # within 5e-4 (L1) of the converged one (batch 2048, reg
                # 0.01); at reg 0.01 on cosine costs DBOT took 58-114 and
                # partial 850-1030 where balanced Sinkhorn took 38-62 (now
                # 32-48 and 69-120). Stopped at tol, the plans are within a
                # few tol (L1) of the converged ones, as balanced Sinkhorn's.
                df = (st.f().detach() - old_f).abs()
                dg = (st.g().detach() - old_g).abs()
                dh = (st.h().detach() - old_h).abs()
                eta = st.eta.unsqueeze(-1)
                r = live(torch.exp(st.alpha.detach() + eta + ls.detach()), dead_r)
                c = live(torch.exp(st.beta.detach() + eta + lt.detach()), dead_c)
                terms = [_moved_mass(r, df, eps).sum(-1).max(),
                         _moved_mass(c, dg, eps).sum(-1).max(),
                         _moved_mass(c.sum(-1), dh, eps).max(), err_rows, err_cols]
            n_err = len(terms)
            if not balanced:
                # the relative change of a plan entry that one rounding step
                # of the relaxed sides' potentials makes (their mass-weighted
                # mean |f|, in units of eps)
                floors = [torch.zeros((), dtype=dtype, device=C.device)]
                for side, pot, mass in ((row, st.f(), r), (col, st.g(), c)):
                    if side.kind in ("kl", "le", "box"):
                        floors.append(((pot.detach().abs() * mass).sum(-1)
                                       / mass.sum(-1).clamp_min(tiny)).max())
                terms.append(torch.stack(floors).max() * (mach / eps))
            if use_kernel:
                scalings = (st.alpha.detach(), st.beta.detach(), st.eta.detach())
                # the largest factor by which the scalings raise a kernel entry
                terms.append((scalings[0].amax(-1) + scalings[1].amax(-1)
                              + scalings[2]).max())
                terms += [z.abs().max() for z in scalings]
                if not careful:
                    # the sums of this iteration and the scalings (an earlier
                    # iteration's overflow has reached them)
                    terms.append(torch.stack([
                        torch.isfinite(z).all()
                        for z in (ls.detach(), lt.detach()) + scalings]).all())
            values = torch.stack([z.to(ls.dtype) for z in terms]).tolist()
            if use_kernel and not careful and not values.pop():
                # roll back to the last measured iteration and redo the
                # iterations since with a check per half-iteration
                st.alpha, st.beta, st.eta, it = saved
                careful = True
                continue
            raised = False
            if use_kernel:
                big = values[-3:]
                raised = not values[-4] <= guard
                del values[-4:]
                need_absorb = (not all(map(math.isfinite, big)) or max(big) > tau
                               or raised)
            floor = values[n_err] if not balanced else 0.0
            del values[n_err:]
            # a NaN term must reach the non-finite check below (Python's max
            # drops a NaN that is not its first argument)
            err = math.nan if any(map(math.isnan, values)) else max(values)
        if not math.isfinite(err):
            # an overflowing marginal (e.g. after a poor warm start) only means the
            # kernel must be re-absorbed; non-finite potentials are a bug
            with torch.no_grad():
                ok = bool(torch.isfinite(st.f()).all() and torch.isfinite(st.g()).all())
            if not ok:
                raise _overflow_error("Sinkhorn", C, eps)
            if use_kernel:
                absorb()
            saved = (st.alpha, st.beta, st.eta, it)
            continue
        if err < tol and not raised:
            if err == 0.0 and floor >= tol:
                # every update rounded away while one rounding step of the
                # potentials is above tol: a fixed point of the rounding, not
                # of the problem. float32 unbalanced at rho / reg 5e5 with
                # masses 1 and 1.3 (potentials ~650) stopped so at err 0.0,
                # "converged", 6e-3 (L1) off the float64 plan. (A floor alone
                # flagged ordinary float32 solves with masses 2-3 whose plans
                # were as accurate as ever.)
                err, stalled = floor, True
                break
            converged = True
            break
        next_check = it + _next_check(err, last_err, it - last_it, tol, it)
        last_err, last_it = err, it
        if need_absorb:
            absorb()
        saved = (st.alpha, st.beta, st.eta, it)
    if bar is not None:
        bar.update(it - bar.n)
        bar.close()
    f = st.f() + st.h().unsqueeze(-1)
    g = st.g()
    # the plan in the frame the marginal errors were measured in: rebuilding it
    # from (f + g - C) / eps loses ~eps_machine * |C| / reg in float32
    with torch.no_grad():
        scale_r = (st.alpha + st.eta.unsqueeze(-1)).unsqueeze(-1)
        scale_c = st.beta.unsqueeze(-2)
        if use_kernel:
            if need_absorb or not bool(torch.isfinite(scale_r).all()):
                absorb()
                scale_r = (st.alpha + st.eta.unsqueeze(-1)).unsqueeze(-1)
                scale_c = st.beta.unsqueeze(-2)
            if K.requires_grad or any(
                    z.requires_grad for z in (st.alpha, st.beta, st.eta)):
                # K is in the graph, or saved by the products of scalings
                # that are (a, b with a gradient and reg_type="entropy",
                # whose kernel itself has no graph)
                plan = K * torch.exp(scale_r) * torch.exp(scale_c)
            else:  # K is not needed any more: scale it in place
                plan = K.mul_(torch.exp(scale_r)).mul_(torch.exp(scale_c))
        else:
            plan = torch.exp(logK + scale_r + scale_c)
    if dead_r is not None or dead_c is not None:
        # the potentials of the zero weights, held at their start during the
        # iterations: the limit of a vanishing weight, one log-domain
        # half-step each over the other side's live entries (a dead row's
        # kernel row on the finite reference weight of its own side, the dead
        # columns left out: their held potentials are not their limits)
        alpha, beta = st.alpha, st.beta
        if dead_r is not None:
            L = (_lse_rows(_log_kernel(C, st, ra, rb_k), beta)
                 + st.eta.unsqueeze(-1) - st.fb / eps)
            st.alpha = torch.where(dead_r, row.prox(L) - st.fb / eps, alpha)
        if dead_c is not None:
            L = (_lse_cols(_log_kernel(C, st, ra_k, rb), alpha)
                 + st.eta.unsqueeze(-1) - st.gb / eps)
            st.beta = torch.where(dead_c, col.prox(L) - st.gb / eps, beta)
        f = st.f() + st.h().unsqueeze(-1)
        g = st.g()
    return f, g, it, err, converged, plan, stalled
