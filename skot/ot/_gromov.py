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
from ._sinkhorn import _kl_mass, gibbs_nll, tiny_log
from ._registry import register_method
from ._validation import Problem, _default_tol

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
    analogue of OTT-JAX's ``LRCGeometry``. The feature cost ``M`` of
    :func:`~skot.ot.solve_gromov` may be factored too (U of shape (n, k), V of
    shape (m, k)); sharing the graphs' factors (the cosine cost
    :math:`1 - x y^\top` with the graphs of x and y), each linearised cost is
    then one product.

    Parameters
    ----------
    U, V : tensor or array of shape (n, k) or (B, n, k)
        Factors of the same shape (for a feature cost M: (n, k) and (m, k)).
    bias : float, default=0.0
        Constant added to every entry.
    """

    def __init__(self, U, V, bias=0.0):
        self.U, self.V, self.bias = U, V, bias
        self._with_bias = None  # the factors with the bias column, built once
        self._dense = None  # the n x n matrix, when kept (_keep_dense)

    @classmethod
    def cosine(cls, Z):
        r"""The cosine-distance graph :math:`1 - Z Z^\top` of the rows of Z.

        The graph is stored as ``LowRankGraph(Z, -Z, bias=1.0)``; nothing
        n x n is formed. It is the cosine distance when the rows of Z are
        L2-normalised (they are not normalised here).

        Parameters
        ----------
        Z : tensor or array of shape (n, d) or (B, n, d)
            Embeddings, one per row: the factors are U = Z and V = -Z
            (:func:`skot.ot.solve_gromov` converts numpy factors to torch).

        Returns
        -------
        graph : LowRankGraph
            :math:`C = 1 - Z Z^\top` of shape (n, n) (or (B, n, n)), rank d
            (d + 1 with the bias).
        """
        return cls(Z, -Z, bias=1.0)

    @property
    def shape(self):
        return tuple(self.U.shape[:-1]) + (self.V.shape[-2],)

    def factors(self, bias=True):
        r"""Factors (U', V') with :math:`U' V'^\top = C`.

        Parameters
        ----------
        bias : bool, default=True
            True: the bias enters as one more column (a column equal to
            ``bias`` in U', of ones in V'), so that :math:`U' V'^\top =
            \mathrm{bias} + U V^\top`; built once and cached. False: the bias is
            left out and (U, V) returned as stored. A graph with ``bias == 0``
            returns (U, V) either way.

        Returns
        -------
        U, V : tensor of shape (n, k') and (m, k') (or (B, n, k'), (B, m, k'))
            k' = k + 1 with the bias column, k without it.
        """
        U, V = self.U, self.V
        if not bias or self.bias == 0:
            return U, V
        if self._with_bias is None:
            def ones(Z):
                return torch.ones(Z.shape[:-1] + (1,), dtype=Z.dtype, device=Z.device)

            self._with_bias = (torch.cat([U, ones(U) * self.bias], -1),
                               torch.cat([V, ones(V)], -1))
        return self._with_bias

    def dense(self):
        """The (n, n) (or (B, n, n)) matrix."""
        if self._dense is not None:
            return self._dense
        return self.bias + self.U @ self.V.transpose(-1, -2)

    def _keep_dense(self):
        r"""Form the matrix once and keep it: :math:`(C \circ C) w` (the marginal
        term of an unbalanced linearisation) then costs an n x n pass instead
        of two products of n k^2 multiply-adds, at the price of one n x n
        buffer. Worth it for a few such products when n is a few times k at
        most (:func:`skot.losses.fgw_loss`, unbalanced, n < 4 d). Returns self."""
        if self._dense is None:
            self._dense = (self.U @ self.V.transpose(-1, -2)).add_(self.bias)
        return self

    def __repr__(self):
        return (f"LowRankGraph(shape={self.shape}, rank={self.U.shape[-1]}, "
                f"bias={self.bias!r})")


def _dense(C):
    return C.dense() if isinstance(C, LowRankGraph) else C


def _graph_mm(C, X, bias=True):
    """C @ X for a dense or factored graph (``bias=False``: a factored graph's
    bias left out)."""
    if isinstance(C, LowRankGraph):
        U, V = C.factors(bias)
        return U @ (V.transpose(-1, -2) @ X)
    return C @ X


def _graph_sq_mv(C, w):
    """(C o C) w, shape (..., n, 1)."""
    if isinstance(C, LowRankGraph) and C._dense is not None:
        return torch.einsum("...ij,...ij,...j->...i", C._dense, C._dense, w).unsqueeze(-1)
    if isinstance(C, LowRankGraph):
        # sum_k w_k (b + u_i . v_k)^2 = u_i^T (V^T diag(w) V) u_i
        # + 2 b u_i . (V^T w) + b^2 sum(w): products of the factors' own width
        # (a bias column made them k + 1 wide, and kept widened copies of the
        # factors: 513-wide products ran 10-35% slower than 512-wide ones on CPU)
        U, V, b = C.U, C.V, float(C.bias)
        S = (V * w.unsqueeze(-1)).transpose(-1, -2) @ V
        out = ((U @ S) * U).sum(-1, keepdim=True)
        if b != 0:
            out.add_(U @ (V.transpose(-1, -2) @ w.unsqueeze(-1)), alpha=2.0 * b)
            out.add_(w.sum(-1, keepdim=True).unsqueeze(-1), alpha=b * b)
        return out
    return C**2 @ w.unsqueeze(-1)


def _cross_factors(Ca, Cb, P, outer=None, bias=True):
    """(L, R) with Ca P Cb^T = L @ R, each side as thin as the graphs allow
    (``outer=(a, b)``: P = a b^T, two matrix-vector products; ``bias=False``:
    the factored graphs' biases left out)."""
    if outer is not None:
        a, b = outer
        return (_graph_mm(Ca, a.unsqueeze(-1), bias),
                _graph_mm(Cb, b.unsqueeze(-1), bias).transpose(-1, -2))
    if isinstance(Cb, LowRankGraph):
        Ub, Vb = Cb.factors(bias)
        L = P @ Vb
        if isinstance(Ca, LowRankGraph):
            Ua, Va = Ca.factors(bias)
            return Ua @ (Va.transpose(-1, -2) @ L), Ub.transpose(-1, -2)
        return Ca @ L, Ub.transpose(-1, -2)
    R = P @ Cb.transpose(-1, -2)
    if isinstance(Ca, LowRankGraph):
        Ua, Va = Ca.factors(bias)
        return Ua, Va.transpose(-1, -2) @ R
    return Ca, R


def _graph_cross(Ca, Cb, P, bias=True):
    """Ca P Cb^T, with products of the factors' inner dimension where factored
    (``bias=False``: the factored graphs' biases left out)."""
    L, R = _cross_factors(Ca, Cb, P, bias=bias)
    return L @ R


def _gw_const(Ca, Cb, r, c):
    """(Ca o Ca) r 1^T + 1 c^T (Cb o Cb)^T as the pair of its broadcast terms,
    shapes (B, n, 1) and (B, 1, m) (never formed n x m)."""
    return _graph_sq_mv(Ca, r), _graph_sq_mv(Cb, c).transpose(-1, -2)


def _const_with_graph_biases(Ca, Cb, P, outer=None):
    r"""The marginal term of the linearisation (:func:`_gw_const`, from the
    marginals r, c of P) with, folded in, the terms u 1^T + 1 v^T that the
    factored graphs' biases add to the cross term: with them left out of the
    product (``bias=False``), :math:`-4\alpha C_a P C_b^\top` lacks
    :math:`-4\alpha(\beta_b U_a V_a^\top r + \beta_a \beta_b 1^\top P 1)`
    per row and :math:`-4\alpha \beta_a U_b V_b^\top c` per column, i.e. -2
    times those in units of the marginal term's weight 2 alpha."""
    r, c = _marginals(P, outer)
    A, B = _gw_const(Ca, Cb, r, c)
    ba, bb = float(Ca.bias), float(Cb.bias)
    if bb != 0:
        A = A - 2.0 * bb * (_graph_mm(Ca, r.unsqueeze(-1), False)
                            + ba * r.sum(-1, keepdim=True).unsqueeze(-1))
    if ba != 0:
        B = B - 2.0 * ba * _graph_mm(Cb, c.unsqueeze(-1), False).transpose(-1, -2)
    return A, B


def _gw_tensor(Ca, Cb, P, outer=None, const=None):
    """Square-loss linearisation L(Ca, Cb) (x) P, shape (B, n, m).

    ``outer=(a, b)`` says that P = a b^T: then Ca P Cb^T = (Ca a)(Cb b)^T costs
    two matrix-vector products instead of two n x n x m products. ``const``:
    the marginal term for fixed marginals (balanced problems: computed once
    from a and b, as POT's ``init_matrix``); by default from the marginals of P.
    """
    L, R = _cross_factors(Ca, Cb, P, outer)
    cross = L @ R
    A, B = const if const is not None else _gw_const(Ca, Cb, *_marginals(P, outer))
    if cross.requires_grad:
        return A + B - 2.0 * cross
    return cross.mul_(-2.0).add_(A).add_(B)  # cross is a new tensor: in place


def _fgw_linearised(M, Ca, Cb, P, alpha, outer=None, const=None, bias=True,
                    shared=None):
    """The linearised FGW cost (1 - alpha) M + 2 alpha L(Ca, Cb) (x) P without
    an autograd graph, the cross term added to M by one fused product.

    ``const``: the marginal term, a pair of broadcast terms (B, n, 1), (B, 1, m)
    or None to leave it out; ``bias=False`` leaves out the factored graphs'
    biases in the cross term. Both are terms u 1^T + 1 v^T, on which a
    balanced plan does not depend (the potentials then lack them). M may be a
    LowRankGraph; ``shared=s`` says that M = bias + s Ua Ub^T with the graphs'
    left factors (see :func:`_shared_sign`): then the whole cost is one
    product Ua ((1 - alpha) s I - 4 alpha K) Ub^T."""
    if shared is not None:
        (Ua, Va), (Ub, Vb) = Ca.factors(bias), Cb.factors(bias)
        k = M.U.shape[-1]  # the graphs' own columns (a bias column comes last)
        if outer is not None:
            # K = (Va^T a)(b^T Vb) has rank one: Ua B is a rank-one update
            # of Ua (n k entries, instead of a product of n k^2)
            a, b = outer
            UaB = (Ua @ (Va.transpose(-1, -2) @ a.unsqueeze(-1))) @ (
                b.unsqueeze(-2) @ Vb).mul_(-4.0 * alpha)
            UaB[..., :k].add_(Ua[..., :k], alpha=(1.0 - alpha) * shared)
        else:
            B = (Va.transpose(-1, -2) @ (P @ Vb)).mul_(-4.0 * alpha)
            B.diagonal(dim1=-2, dim2=-1)[..., :k].add_((1.0 - alpha) * shared)
            UaB = Ua @ B
        G = torch.baddbmm(torch.tensor((1.0 - alpha) * M.bias, dtype=UaB.dtype,
                                       device=UaB.device),
                          UaB, Ub.transpose(-1, -2))
    else:
        L, R = _cross_factors(Ca, Cb, P, outer, bias)
        if isinstance(M, LowRankGraph):
            G = torch.baddbmm(torch.tensor((1.0 - alpha) * M.bias, dtype=L.dtype,
                                           device=L.device),
                              M.U, M.V.transpose(-1, -2), alpha=1.0 - alpha)
            G.baddbmm_(L, R, alpha=-4.0 * alpha)
        else:
            G = torch.baddbmm(M, L, R, beta=1.0 - alpha, alpha=-4.0 * alpha)
    if const is not None:
        A, B = const
        G.add_(A, alpha=2.0 * alpha).add_(B, alpha=2.0 * alpha)
    return G


def _shared_sign(M, Ca, Cb):
    """s when the factored cost M = bias + U V^T has U equal to Ca's left
    factor and V to s times Cb's (s = +-1; the cosine cost 1 - x y^T with the
    graphs 1 - x x^T, 1 - y y^T: s = -1), else None. Exact comparisons of the
    n x k factors, no n x m pass."""
    if not all(isinstance(C, LowRankGraph) for C in (M, Ca, Cb)):
        return None
    U, V, Ua, Ub = M.U, M.V, Ca.U, Cb.U
    if U.shape != Ua.shape or V.shape != Ub.shape or not torch.equal(U, Ua):
        return None
    if torch.equal(V, Ub):
        return 1.0
    if torch.equal(V, -Ub):
        return -1.0
    return None


def _pair(M, P):
    """<M, P> per problem, M dense or factored."""
    if isinstance(M, LowRankGraph):
        return M.bias * P.sum((-2, -1)) + ((P @ M.V) * M.U).sum((-2, -1))
    return (M * P).sum((-2, -1))


def _change(P_new, P, outer=None):
    """The largest Frobenius norm of P_new - P over the batch (POT's stopping
    rule for entropic (F)GW); P = a b^T when ``outer=(a, b)``, never formed."""
    if outer is not None:
        a, b = outer
        diff = torch.addcmul(P_new, a.unsqueeze(-1), b.unsqueeze(-2), value=-1.0)
    else:
        diff = torch.sub(P_new, P)
    return float(torch.linalg.vector_norm(diff, dim=(-2, -1)).max())


def _restore_potentials(pots, Ca, Cb, a, b, alpha, marg=None):
    """The potentials of the full linearised cost from those of a balanced
    solve that left out its terms u 1^T + 1 v^T: the marginal term
    2 alpha ((Ca o Ca) a, (Cb o Cb) b) and, when ``marg`` (the row and column
    sums r, c of the plan Q of the last linearisation) is given, the factored
    graphs' biases in -4 alpha Ca Q Cb^T:
    beta_b Ua Va^T r + beta_a beta_b 1^T Q 1 (rows), beta_a Ub Vb^T c (columns)."""
    A, B = _gw_const(Ca, Cb, a, b)
    f = pots[0] + 2.0 * alpha * A[..., 0]
    g = pots[1] + 2.0 * alpha * B[..., 0, :]
    if marg is not None:
        r, c = marg
        ba, bb = float(Ca.bias), float(Cb.bias)
        f = f - 4.0 * alpha * (bb * _graph_mm(Ca, r.unsqueeze(-1), False)[..., 0]
                               + ba * bb * r.sum(-1, keepdim=True))
        g = g - 4.0 * alpha * ba * _graph_mm(Cb, c.unsqueeze(-1), False)[..., 0]
    return f, g


def _marginals(P, outer=None):
    """Row and column sums of P (of a b^T when ``outer=(a, b)``)."""
    if outer is not None:
        a, b = outer
        return a * b.sum(-1, keepdim=True), b * a.sum(-1, keepdim=True)
    return P.sum(-1), P.sum(-2)


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
    r"""Fused Gromov-Wasserstein objective (square loss) of a given plan.

    .. math::

        E(P) = (1 - \alpha) \langle M, P \rangle
            + \alpha \sum_{ijkl} (C^a_{ik} - C^b_{jl})^2 P_{ij} P_{kl}

    for each problem of the batch, with no entropic term (the ``value`` of
    :func:`skot.ot.solve_gromov`). The quadratic term is evaluated through the
    linearisation :math:`L(C_a, C_b) \otimes P` without the n x n x m x m tensor.
    Differentiable in every torch input (autograd).

    Parameters
    ----------
    M : torch.Tensor of shape (n, m) or (B, n, m), or LowRankGraph
        Feature cost.
    Ca : torch.Tensor of shape (n, n) or (B, n, n), or LowRankGraph
        Structure matrix of the source points.
    Cb : torch.Tensor of shape (m, m) or (B, m, m), or LowRankGraph
        Structure matrix of the target points.
    P : torch.Tensor of shape (n, m) or (B, n, m)
        Transport plan (any nonnegative matrix; its marginals are not checked).
    alpha : float
        Weight of the structure term, in [0, 1].

    Returns
    -------
    value : torch.Tensor of shape () or (B,)
        :math:`E(P)`, one per problem.
    value_linear : torch.Tensor of shape () or (B,)
        The linear part :math:`(1 - \alpha) \langle M, P \rangle` of
        :math:`E(P)` (POT's ``value_linear``; it was :math:`\langle M, P
        \rangle`, without the factor, until 2026-11-28).

    Examples
    --------
    >>> import torch
    >>> from skot.ot import fgw_objective
    >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> P = torch.eye(2) / 2
    >>> value, value_linear = fgw_objective(torch.zeros(2, 2), C, C, P, 0.5)
    >>> float(value), float(value_linear)
    (0.0, 0.0)
    """
    lin = (1 - alpha) * _pair(M, P)
    quad = (_gw_tensor(Ca, Cb, P) * P).sum((-2, -1))
    return lin + alpha * quad, lin


def _inner_tol(G, reg):
    """Default tol of the inner Sinkhorn solves: 1e-9 in float64; in float32
    1e-6, or a tenth of :func:`skot.ot.solve`'s default (the rounding
    eps max|G| / reg, of which the marginal error reached 0.05-0.4) when that
    is larger. At reg 0.01 a fixed 1e-6 sat at the rounding floor: inner errors
    of 1.01e-6 were reported unconverged (6 of 48 float32 problems, cosine
    graphs, alpha 0.1-0.9, reg 0.01-0.05); solve's default itself loosened the
    inner plans enough that the outer plan change no longer met its 1e-6."""
    if G.dtype == torch.float64:
        return 1e-9
    return max(1e-6, 0.1 * _default_tol(G, reg))


def _extrapolated_stop(err, prev_err, opts):
    """Whether the distance to the fixed point predicted from the last two plan
    changes, err q / (1 - q) with q = c err / prev_err (``opts["extrapolate"]``
    = c), is below the tolerance (see ``_solve_gromov``)."""
    c = opts.get("extrapolate")
    if not c or prev_err is None or not prev_err > 0:
        return False
    q = c * err / prev_err
    return q < 1 and err * q / (1 - q) < opts["tol"]


@register_method("fgw", needs_reg=True, quadratic=True, gibbs=True)
def _fgw_entropic(prob, opts):
    """Entropic fused GW by linearise-then-Sinkhorn (projected mirror descent)."""
    M, Ca, Cb, a, b = prob.M, prob.Ca, prob.Cb, prob.a, prob.b
    alpha = opts["alpha"]
    grad = opts["grad"]
    track = grad == "autodiff" and torch.is_grad_enabled()
    # a gradient will actually be unrolled through the inner iterations
    unrolled = track and any(
        t.requires_grad for C in (M, Ca, Cb, a, b)
        for t in ((C.U, C.V) if isinstance(C, LowRankGraph) else (C,)))
    rho = _unbalanced_pair(opts.get("unbalanced"))
    kinds = ("kl", "kl") if rho is not None else ("eq", "eq")
    P = None  # the first linearisation is at the independent coupling a b^T
    pots = None
    inner_opts = dict(opts)
    inner_opts["max_iter"] = opts.get("inner_max_iter") or 1000
    inner_tol = opts.get("inner_tol")  # None: _inner_tol of each linearised cost
    converged, err, it = False, math.inf, 0
    message = None
    status = None  # set when stopping for another reason than the budget
    prev_err = None  # the plan change of the previous linearisation
    ctx = torch.enable_grad() if track else torch.no_grad()
    # balanced and no graph through the iterations: terms u 1^T + 1 v^T of the
    # linearisation, which leave the plan unchanged, are left out of the
    # iterations and added to the potentials only when they are read: the
    # marginal term (Ca o Ca) a 1^T + 1 b^T (Cb o Cb) (POT's init_matrix, two
    # products of the graphs' size) and the factored graphs' biases. Kept when
    # unrolling (the iterates of a truncated Sinkhorn depend on them).
    reduced = rho is None and not track
    drop_bias = reduced and all(isinstance(C, LowRankGraph) and C.bias != 0
                                for C in (Ca, Cb))
    # unbalanced, no graph: the factored graphs' biases go to the marginal
    # term's broadcast vectors instead of a bias column in the products
    fold_bias = (rho is not None and not track
                 and all(isinstance(C, LowRankGraph) for C in (Ca, Cb))
                 and (Ca.bias != 0 or Cb.bias != 0))
    marg = None  # marginals of the plan of the last linearisation (drop_bias)
    nll_target, nll = opts.get("nll_target"), None
    with ctx:
        const = _gw_const(Ca, Cb, a, b) if rho is None and track else None
        if track:
            Md = M.dense() if isinstance(M, LowRankGraph) else M
        elif isinstance(M, LowRankGraph):
            Md = LowRankGraph(M.U.detach(), M.V.detach(), M.bias)
        else:
            Md = M.detach()
        shared = None if track else _shared_sign(Md, Ca, Cb)
        for it in range(1, opts["max_iter"] + 1):
            outer = (a, b) if P is None else None
            if track:  # the graph through M, the graphs and the plan
                G = (1 - alpha) * Md + 2.0 * alpha * _gw_tensor(Ca, Cb, P, outer, const)
            else:  # one n x m buffer per linearisation
                if drop_bias:
                    marg = _marginals(P, outer)
                if reduced:
                    marg_term = None
                elif fold_bias:
                    marg_term = _const_with_graph_biases(Ca, Cb, P, outer)
                else:
                    marg_term = _gw_const(Ca, Cb, *_marginals(P, outer))
                G = _fgw_linearised(Md, Ca, Cb, P, alpha, outer, marg_term,
                                    bias=not (drop_bias or fold_bias),
                                    shared=shared)
            # unrolled (autodiff): each inner solve starts cold, or the warm
            # start, held constant, would leave a few iterations near the fixed
            # point and cut the gradient short (it went 0.0334 -> 0.0155 as tol
            # tightened)
            inner_opts["potentials_init"] = None if unrolled else pots
            inner_opts["tol"] = (inner_tol if inner_tol is not None
                                 else _inner_tol(G, opts["reg"]))
            sub = Problem(G, a, b, True, False,
                          zero_weights=getattr(prob, "zero_weights", None))
            res = _entropic(sub, inner_opts, *kinds)
            # an inner solve at the default tol that stopped on the rounding
            # of its potentials (every update rounded away) reached what the
            # dtype resolves: float32 unbalanced FGW (rho 10, masses 1 and 2,
            # reg 0.05) stopped so in 9 of 18 inner solves
            inner_ok = bool(res["converged"]) or (
                inner_tol is None and res.get("status") == "tol below rounding")
            P_new = res["plan"]
            pots = tuple(p.detach() for p in res["potentials"])
            if nll_target is not None:
                # -sum T log P of this plan from its potentials and cost (the
                # batch of one of _solve_gromov's loss path)
                with torch.no_grad():
                    G0 = G[0] if isinstance(G, torch.Tensor) else G.dense()[0]
                    nll = gibbs_nll(pots[0][0], pots[1][0], G0, tiny_log(a[0]),
                                    tiny_log(b[0]), opts["reg"],
                                    None if isinstance(nll_target, str) else nll_target)
            del G
            with torch.no_grad():
                err = _change(P_new, P, outer)
            P = P_new
            if err < opts["tol"] or _extrapolated_stop(err, prev_err, opts):
                # the last inner solve must have met its own tolerance: an
                # unconverged plan moving little was reported as converged
                converged = inner_ok
                if not inner_ok:
                    status = "inner solve not converged"
                    message = (
                        "stopped: the plan no longer moves, but the last inner "
                        f"Sinkhorn solve did not converge in inner_max_iter="
                        f"{inner_opts['max_iter']} iterations (error "
                        f"{float(res['err']):.3g}); increase inner_max_iter or reg")
                break
            prev_err = err
    lazy_pots = None
    if reduced:
        def lazy_pots(pots=pots, marg=marg):
            with torch.no_grad():
                return _restore_potentials(pots, Ca, Cb, a, b, alpha, marg)
        pots = None
    if grad == "detach":
        P = P.detach()

    def values():
        value, value_linear = _value(M, Ca, Cb, P, alpha, grad)
        if rho is not None:
            r, c = P.sum(-1), P.sum(-2)
            # the marginal penalties with the generalised KL (mass terms), as
            # skot.ot.solve's unbalanced value
            for w, marg, rr in ((a, r, rho[0]), (b, c, rho[1])):
                if not math.isinf(rr):
                    value = value + rr * _kl_mass(marg, tiny_log(w), w)
        return value, value_linear

    if grad == "detach":  # computed on first access only
        return dict(plan=P, value=None, value_linear=None, lazy_values=values,
                    potentials=pots, lazy_potentials=lazy_pots, n_iter=it, err=err,
                    converged=converged, message=message, status=status,
                    **({} if nll is None else {"nll": nll}))
    value, value_linear = values()
    return dict(plan=P, value=value, value_linear=value_linear, potentials=pots,
                lazy_potentials=lazy_pots, n_iter=it, err=err, converged=converged,
                message=message, status=status,
                **({} if nll is None else {"nll": nll}))


def _value(M, Ca, Cb, P, alpha, grad):
    if grad == "envelope":
        # gradient of the optimal value at the fixed optimal plan (envelope theorem)
        return fgw_objective(M, Ca, Cb, P.detach(), alpha)
    if grad == "detach":
        return tuple(v.detach() for v in fgw_objective(M, Ca, Cb, P, alpha))
    return fgw_objective(M, Ca, Cb, P, alpha)


@register_method("fgw_exact", quadratic=True, max_iter=10_000)
def _fgw_exact(prob, opts):
    """Exact (local) fused GW by POT's conditional gradient."""
    import ot

    if opts.get("unbalanced") is not None:
        raise ValueError("method='fgw_exact' does not support unbalanced=; use 'fgw'")
    max_iter = int(opts["max_iter"])
    plans, ok, n_iter, err = [], True, 0, 0.0
    Ca, Cb, M = _dense(prob.Ca), _dense(prob.Cb), _dense(prob.M)
    alpha = opts["alpha"]
    for k in range(M.shape[0]):
        a, b = _np(prob.a[k]), _np(prob.b[k])
        # POT's conditional gradient starts from a b^T and takes probability
        # weights (with a mass of 2 it returned a b^T, marginals twice a,
        # "converged"). With P = mass P', the objective is
        # mass ((1 - alpha) <M, P'> + alpha mass Q(P')): the problem on
        # a / mass, b / mass with alpha' = alpha mass / (1 - alpha + alpha mass)
        mass = a.sum()
        a = a / mass
        b = b * (a.sum() / b.sum())  # exact-sum rounding for the LP (checked equal)
        alpha_k = alpha * mass / ((1.0 - alpha) + alpha * mass) if alpha > 0 else 0.0
        Mk = _np(M[k])
        # POT's inner network simplex reports costs all below -1 as infeasible
        # (it then returned a b^T, "converged"): a constant shift of M moves
        # the objective of every plan of this mass by the same amount, and the
        # linearised cost (1 - alpha) M + alpha L(Ca, Cb) (x) P (L >= 0) then
        # has a largest entry >= 0; value is computed from M below
        if Mk.size and Mk.max() < 0:
            Mk = Mk - Mk.max()
        plan, log = ot.gromov.fused_gromov_wasserstein(
            Mk, _np(Ca[k]), _np(Cb[k]), a, b,
            loss_fun="square_loss", alpha=float(alpha_k), log=True,
            max_iter=max_iter, tol_rel=opts["tol"], tol_abs=opts["tol"],
        )
        plan = np.asarray(plan) * mass
        # POT's conditional gradient logs one loss per iteration after the
        # first; stopping at the budget means its tolerances were not met
        it = len(log["loss"]) - 1
        n_iter = max(n_iter, it)
        met = False
        if it > 0:  # the last relative change of the objective (POT's tol_rel)
            last, prev = log["loss"][-1], log["loss"][-2]
            rel = abs(last - prev) / max(abs(last), 1e-300)
            err = max(err, rel)
            # POT stops on either tolerance; meeting one on the last allowed
            # iteration is convergence, not a spent budget
            met = rel <= opts["tol"] or abs(last - prev) <= opts["tol"]
        ok = ok and (it < max_iter or met)
        plans.append(torch.as_tensor(np.asarray(plan), dtype=M.dtype,
                                     device=M.device))
    P = torch.stack(plans)
    value, value_linear = _value(prob.M, prob.Ca, prob.Cb, P, alpha,
                                 "envelope" if opts["grad"] != "detach" else "detach")
    return dict(plan=P, value=value, value_linear=value_linear, potentials=None,
                n_iter=n_iter, err=err, converged=ok)
