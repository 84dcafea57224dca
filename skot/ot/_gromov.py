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

__all__ = ["LowRankGraph", "fgw_pairing"]


class LowRankGraph:
    r"""A structure matrix in factored form, :math:`C = \mathrm{bias} + U V^\top`.

    :func:`skot.ot.solve_gromov` takes it for ``Ca`` / ``Cb`` and never forms the
    n x n matrix: every linearisation :math:`C_a P C_b^\top` costs products of
    inner dimension k (:math:`O(n m k + (n + m) k^2)` instead of
    :math:`O(n^2 m + n m^2)`), and :math:`(C \circ C) w` costs :math:`O(n k^2)`.
    Worth it when the rank k is well below n: the cosine graph
    :math:`1 - z z^\top` of a batch of n embeddings of dimension d < n
    (:meth:`cosine`), a squared Euclidean distance matrix (rank d + 2). The
    analogue of OTT-JAX's ``LRCGeometry``.

    Parameters
    ----------
    U, V : tensor or array of shape (n, k) or (B, n, k)
        Factors of the same shape.
    bias : float, default=0.0
        Constant added to every entry.
    """

    def __init__(self, U, V, bias=0.0):
        self.U, self.V, self.bias = U, V, bias
        self._with_bias = None  # the factors with the bias column, built once

    @classmethod
    def cosine(cls, Z):
        """The cosine-distance graph :math:`1 - Z Z^\top` of the rows of Z (n, d)."""
        return cls(Z, -Z, bias=1.0)

    @property
    def shape(self):
        return tuple(self.U.shape[:-1]) + (self.V.shape[-2],)

    def factors(self, bias=True):
        """(U', V') with :math:`U' V'^\top = C` (the bias as one more column);
        ``bias=False`` leaves the bias out."""
        U, V = self.U, self.V
        if not bias or self.bias == 0:
            return U, V
        if self._with_bias is None:
            ones = torch.ones(U.shape[:-1] + (1,), dtype=U.dtype, device=U.device)
            self._with_bias = (torch.cat([U, ones * self.bias], -1),
                               torch.cat([V, ones], -1))
        return self._with_bias

    def dense(self):
        """The (n, n) (or (B, n, n)) matrix."""
        return self.bias + self.U @ self.V.transpose(-1, -2)

    def __repr__(self):
        return (f"LowRankGraph(shape={self.shape}, rank={self.U.shape[-1]}, "
                f"bias={self.bias!r})")


def _dense(C):
    return C.dense() if isinstance(C, LowRankGraph) else C


def _graph_mm(C, X):
    """C @ X for a dense or factored graph."""
    if isinstance(C, LowRankGraph):
        U, V = C.factors()
        return U @ (V.transpose(-1, -2) @ X)
    return C @ X


def _graph_sq_mv(C, w):
    """(C o C) w, shape (..., n, 1)."""
    if isinstance(C, LowRankGraph):
        # sum_k w_k (u_i . v_k)^2 = u_i^T (V^T diag(w) V) u_i
        U, V = C.factors()
        S = (V * w.unsqueeze(-1)).transpose(-1, -2) @ V
        return ((U @ S) * U).sum(-1, keepdim=True)
    return C**2 @ w.unsqueeze(-1)


def _graph_cross(Ca, Cb, P, bias=True):
    """Ca P Cb^T, with products of the factors' inner dimension where factored
    (``bias=False``: the factored graphs' biases left out)."""
    if isinstance(Cb, LowRankGraph):
        Ub, Vb = Cb.factors(bias)
        L = P @ Vb
        if isinstance(Ca, LowRankGraph):
            Ua, Va = Ca.factors(bias)
            return (Ua @ (Va.transpose(-1, -2) @ L)) @ Ub.transpose(-1, -2)
        return (Ca @ L) @ Ub.transpose(-1, -2)
    R = P @ Cb.transpose(-1, -2)
    if isinstance(Ca, LowRankGraph):
        Ua, Va = Ca.factors(bias)
        return Ua @ (Va.transpose(-1, -2) @ R)
    return Ca @ R


def _gw_const(Ca, Cb, r, c):
    """(Ca o Ca) r 1^T + 1 c^T (Cb o Cb)^T as the pair of its broadcast terms,
    shapes (B, n, 1) and (B, 1, m) (never formed n x m)."""
    return _graph_sq_mv(Ca, r), _graph_sq_mv(Cb, c).transpose(-1, -2)


def _gw_tensor(Ca, Cb, P, outer=None, const=None):
    """Square-loss linearisation L(Ca, Cb) (x) P, shape (B, n, m).

    ``outer=(a, b)`` says that P = a b^T: then Ca P Cb^T = (Ca a)(Cb b)^T costs
    two matrix-vector products instead of two n x n x m products. ``const``:
    the marginal term for fixed marginals (balanced problems: computed once
    from a and b, as POT's ``init_matrix``); by default from the marginals of P.
    """
    if outer is not None:
        a, b = outer
        r = a * b.sum(-1, keepdim=True)
        c = b * a.sum(-1, keepdim=True)
        cross = (_graph_mm(Ca, a.unsqueeze(-1))
                 @ _graph_mm(Cb, b.unsqueeze(-1)).transpose(-1, -2))
    else:
        r, c = P.sum(-1), P.sum(-2)
        cross = _graph_cross(Ca, Cb, P)
    A, B = const if const is not None else _gw_const(Ca, Cb, r, c)
    if cross.requires_grad:
        return A + B - 2.0 * cross
    return cross.mul_(-2.0).add_(A).add_(B)  # cross is a new tensor: in place


def fgw_pairing(W, M, Ca, Cb, P, alpha, *, balanced):
    r""":math:`\langle W, (1-\alpha) M + 2\alpha\, L(C_a, C_b) \otimes P\rangle`
    with the plan P held fixed, differentiable in M, Ca and Cb (dense tensors or
    :class:`LowRankGraph` with differentiable factors).

    With W the gradient of a loss with respect to the linearised cost G of an
    FGW problem (e.g. :math:`(\tilde P - P)/\varepsilon`), its gradient is the
    loss's envelope gradient through M and both graphs. ``balanced=True``
    leaves out the terms :math:`u 1^\top + 1 v^\top` of G (the marginal term of
    L and the biases of factored M and graphs): they do not change a balanced
    plan, and their pairing :math:`(W1)\cdot u + (W^\top 1)\cdot v` vanishes when
    W's rows and columns sum to zero. With factored M and graphs of rank k the
    cost is then a few products of inner dimension k, and nothing n x n is formed.
    """
    factored = isinstance(Ca, LowRankGraph) and isinstance(Cb, LowRankGraph)
    if factored:
        # <W, Ua (Va^T P Vb) Ub^T> = <Ua^T W Ub, Va^T P Vb>
        Ua, Va = Ca.factors(bias=not balanced)
        Ub, Vb = Cb.factors(bias=not balanced)
        R = Ua.transpose(-1, -2) @ (W @ Ub)
        K = Va.transpose(-1, -2) @ (P @ Vb)
        cross = (R * K).sum((-2, -1))
    else:
        cross = (W * _graph_cross(Ca, Cb, P, bias=not balanced)).sum((-2, -1))
    if isinstance(M, LowRankGraph):
        if factored and M.U is Ca.U and M.V is Cb.U:
            # M = bias + Ua Ub^T shares the graphs' left factors (cosine
            # features): <W, Ua Ub^T> = tr(Ua^T W Ub), a block of R
            k = M.U.shape[-1]
            lin = torch.diagonal(R[..., :k, :k], dim1=-2, dim2=-1).sum(-1)
            if not balanced:
                lin = lin + M.bias * W.sum((-2, -1))
        else:
            U, V = M.factors(bias=not balanced)
            lin = ((W @ V) * U).sum((-2, -1))
    else:
        lin = (W * M).sum((-2, -1))
    quad = -2.0 * cross
    if not balanced:
        r, c = P.sum(-1), P.sum(-2)
        quad = quad + (W.sum(-1) * _graph_sq_mv(Ca, r)[..., 0]).sum(-1) + (
            W.sum(-2) * _graph_sq_mv(Cb, c)[..., 0]).sum(-1)
    return (1 - alpha) * lin + 2.0 * alpha * quad


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
        # balanced: the marginals of every iterate are a and b, so the marginal
        # term of the linearisation is fixed (POT's init_matrix)
        const = _gw_const(Ca, Cb, a, b) if rho is None else None
        for it in range(1, opts["max_iter"] + 1):
            # the first linearisation is at the independent coupling a b^T
            G = _gw_tensor(Ca, Cb, P, outer=(a, b) if it == 1 else None, const=const)
            if track:  # the graph through M, the graphs and the plan
                G = (1 - alpha) * M + 2.0 * alpha * G
            else:  # in place: one n x m buffer per linearisation
                G.mul_(2.0 * alpha).add_(M.detach(), alpha=1 - alpha)
            inner_opts["potentials_init"] = pots
            sub = Problem(G if track else G.detach(), a, b, True, False)
            res = _entropic(sub, inner_opts, *kinds)
            P_new = res["plan"]
            pots = tuple(p.detach() for p in res["potentials"])
            with torch.no_grad():
                err = float(torch.sub(P_new, P).abs_().max())
            del G
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
    Ca, Cb = _dense(prob.Ca), _dense(prob.Cb)
    for k in range(prob.M.shape[0]):
        a, b = _np(prob.a[k]), _np(prob.b[k])
        b = b * (a.sum() / b.sum())
        plan, log = ot.gromov.fused_gromov_wasserstein(
            _np(prob.M[k]), _np(Ca[k]), _np(Cb[k]), a, b,
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
