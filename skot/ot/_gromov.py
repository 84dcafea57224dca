r"""(Fused) Gromov-Wasserstein with the square loss.

.. math::

    \min_{P \in U(a, b)} (1 - \alpha) \langle M, P \rangle
        + \alpha \sum_{ijkl} (C^a_{ik} - C^b_{jl})^2 P_{ij} P_{kl}
        \; [+ \varepsilon \mathrm{KL}(P \| a b^\top)]

``"fgw"``: entropic, projected (mirror) descent: linearise the quadratic term at the
current plan and solve an entropic OT problem with the shared Sinkhorn core
(warm-started potentials). ``"fgw_exact"``: POT's conditional gradient
(:func:`ot.gromov.fused_gromov_wasserstein`), on CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._linear import _entropic, _np, _unbalanced_pair
from ._registry import register_method
from ._validation import Problem

__all__ = []


def _gw_tensor(Ca, Cb, P, outer=None):
    """Square-loss linearisation L(Ca, Cb) (x) P, shape (B, n, m).

    ``outer=(a, b)`` says that P = a b^T: then Ca P Cb^T = (Ca a)(Cb b)^T costs
    two matrix-vector products instead of two n x n x m products.
    """
    if outer is not None:
        a, b = outer
        r = a * b.sum(-1, keepdim=True)
        c = b * a.sum(-1, keepdim=True)
        cross = (Ca @ a.unsqueeze(-1)) @ (Cb @ b.unsqueeze(-1)).transpose(-1, -2)
    else:
        r, c = P.sum(-1), P.sum(-2)
        cross = Ca @ P @ Cb.transpose(-1, -2)
    constC = (Ca**2 @ r.unsqueeze(-1)) + (Cb**2 @ c.unsqueeze(-1)).transpose(-1, -2)
    return constC - 2.0 * cross


def gw_tensor_cosine(x, y, P):
    r"""``_gw_tensor(1 - x x^T, 1 - y y^T, P)`` for one (n, m) plan, from the
    features: with d < n the graphs are never formed (products of inner
    dimension d, :math:`O(nmd + (n+m)d^2)` instead of :math:`O(n^2 m + n m^2)`),
    which autograd then differentiates in x and y at the same cost.

    Uses :math:`\sum_k w_k (1 - z_i \cdot z_k)^2 = 1^\top w - 2 z_i^\top (z^\top w)
    + z_i^\top (z^\top \mathrm{diag}(w) z) z_i` and
    :math:`(11^\top - xx^\top) P (11^\top - yy^\top) = 1^\top P 1 - 1 (y y^\top c)^\top
    - (x x^\top r) 1^\top + x (x^\top P y) y^\top`.
    """
    d = x.shape[1]
    if d >= min(x.shape[0], y.shape[0]):
        return _gw_tensor((1.0 - x @ x.T)[None], (1.0 - y @ y.T)[None], P[None])[0]

    def sq_marginal(z, w):  # ((1 - z z^T) o (1 - z z^T)) w
        S = (z * w.unsqueeze(1)).T @ z
        return w.sum() - 2.0 * (z @ (z.T @ w)) + ((z @ S) * z).sum(1)

    r, c = P.sum(1), P.sum(0)
    cross = (P.sum() - (y @ (y.T @ c)).unsqueeze(0) - (x @ (x.T @ r)).unsqueeze(1)
             + (x @ (x.T @ (P @ y))) @ y.T)
    return sq_marginal(x, r).unsqueeze(1) + sq_marginal(y, c).unsqueeze(0) - 2.0 * cross


def fgw_objective(M, Ca, Cb, P, alpha):
    """(1 - alpha) <M, P> + alpha * GW_L2(P) for each problem in the batch."""
    lin = (M * P).sum((-2, -1))
    quad = (_gw_tensor(Ca, Cb, P) * P).sum((-2, -1))
    return (1 - alpha) * lin + alpha * quad, lin


@register_method("fgw", needs_reg=True, quadratic=True, gibbs=True)
def _fgw_entropic(prob, opts):
    """Entropic fused GW by linearise-then-Sinkhorn (projected mirror descent)."""
    M, Ca, Cb, a, b = prob.M, prob.Ca, prob.Cb, prob.a, prob.b
    alpha = opts["alpha"]
    grad = opts["grad"]
    track = grad == "autodiff" and torch.is_grad_enabled()
    rho = _unbalanced_pair(opts.get("unbalanced"))
    kinds = ("kl", "kl") if rho is not None else ("eq", "eq")
    P = a.unsqueeze(-1) * b.unsqueeze(-2)
    if not track:
        P = P.detach()
    pots = None
    inner_opts = dict(opts)
    inner_opts["max_iter"] = opts.get("inner_max_iter") or 1000
    inner_opts["tol"] = opts.get("inner_tol") or (1e-9 if M.dtype == torch.float64 else 1e-6)
    converged, err, it = False, math.inf, 0
    ctx = torch.enable_grad() if track else torch.no_grad()
    with ctx:
        for it in range(1, opts["max_iter"] + 1):
            # the first linearisation is at the independent coupling a b^T
            G = (1 - alpha) * M + 2.0 * alpha * _gw_tensor(
                Ca, Cb, P, outer=(a, b) if it == 1 else None)
            inner_opts["potentials_init"] = pots
            sub = Problem(G if track else G.detach(), a, b, True, False)
            res = _entropic(sub, inner_opts, *kinds)
            P_new = res["plan"]
            pots = tuple(p.detach() for p in res["potentials"])
            with torch.no_grad():
                err = float((P_new - P).abs().max())
            P = P_new
            if err < opts["tol"]:
                converged = True
                break
    if grad == "detach":
        P = P.detach()

    def values():
        value, value_linear = _value(M, Ca, Cb, P, alpha, grad)
        if rho is not None:
            r, c = P.sum(-1), P.sum(-2)
            for w, marg, rr in ((a, r, rho[0]), (b, c, rho[1])):
                if not math.isinf(rr):
                    value = value + rr * (marg * (marg.clamp_min(1e-300).log()
                                                  - w.clamp_min(1e-300).log())).sum(-1)
        return value, value_linear

    if grad == "detach":  # computed on first access only
        return dict(plan=P, value=None, value_linear=None, lazy_values=values,
                    potentials=pots, n_iter=it, err=err, converged=converged)
    value, value_linear = values()
    return dict(plan=P, value=value, value_linear=value_linear, potentials=pots,
                n_iter=it, err=err, converged=converged)


def _value(M, Ca, Cb, P, alpha, grad):
    if grad == "envelope":
        # gradient of the optimal value at the fixed optimal plan (envelope theorem)
        return fgw_objective(M, Ca, Cb, P.detach(), alpha)
    if grad == "detach":
        return tuple(v.detach() for v in fgw_objective(M, Ca, Cb, P, alpha))
    return fgw_objective(M, Ca, Cb, P, alpha)


@register_method("fgw_exact", quadratic=True)
def _fgw_exact(prob, opts):
    """Exact (local) fused GW by POT's conditional gradient."""
    import ot

    if opts.get("unbalanced") is not None:
        raise ValueError("method='fgw_exact' does not support unbalanced=; use 'fgw'")
    max_iter = opts["max_iter"] if opts["max_iter"] is not None else 10_000
    plans, ok = [], True
    for k in range(prob.M.shape[0]):
        a, b = _np(prob.a[k]), _np(prob.b[k])
        b = b * (a.sum() / b.sum())
        plan, log = ot.gromov.fused_gromov_wasserstein(
            _np(prob.M[k]), _np(prob.Ca[k]), _np(prob.Cb[k]), a, b,
            loss_fun="square_loss", alpha=opts["alpha"], log=True,
            max_iter=int(max_iter), tol_rel=opts["tol"], tol_abs=opts["tol"],
        )
        plans.append(torch.as_tensor(np.asarray(plan), dtype=prob.M.dtype,
                                     device=prob.M.device))
    P = torch.stack(plans)
    value, value_linear = _value(prob.M, prob.Ca, prob.Cb, P, opts["alpha"],
                                 "envelope" if opts["grad"] != "detach" else "detach")
    return dict(plan=P, value=value, value_linear=value_linear, potentials=None,
                n_iter=0, err=0.0, converged=ok)
