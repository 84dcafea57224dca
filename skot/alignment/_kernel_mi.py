r"""Kernel mutual information of a transport plan (InfoOT), in torch.

Source points :math:`x_i` (n), target points :math:`y_j` (m), plan
:math:`\Gamma`. With Gaussian kernels :math:`K^x, K^y` of bandwidths
:math:`h_x, h_y`, the kernel density estimates are
:math:`f_X(x_i) = \frac1n \sum_k K^x_{ik}`, :math:`f_Y(y_j) = \frac1m \sum_l K^y_{jl}`
and :math:`f_{XY}(x_i, y_j) = (K^x \Gamma K^y)_{ij}`, and

.. math::

    \hat I(\Gamma) = \sum_{ij} \Gamma_{ij}
        \log \frac{f_{XY}(x_i, y_j)}{f_X(x_i) f_Y(y_j)}, \qquad
    \frac{\partial \hat I}{\partial \Gamma_{ij}} =
        \log \frac{f_{XY}}{f_X f_Y}\Big|_{ij}
        + \big(K^x (\Gamma \oslash f_{XY}) K^y\big)_{ij}.

(Chuang et al., InfoOT, ICML 2023; formulas as in the authors' code.)
"""

from __future__ import annotations

import math

import torch

from .._backend import pow2_scale

__all__ = ["euclidean", "bandwidth", "gaussian_kernel", "log_gaussian_kernel",
           "query_log_kernel",
           "mutual_information", "mi_gradient", "conditional_weights"]


def euclidean(A, B):
    r"""Euclidean distances between the rows of ``A`` and ``B``, (len A, len B).

    ``torch.cdist``, on rows moved by a common centre (the centre of ``B``'s
    bounding box; distances are unchanged). For more than 25 rows
    ``torch.cdist`` computes them from :math:`|a|^2 + |b|^2 - 2 a \cdot b`,
    which cancels catastrophically when the rows share a large offset
    (coordinates at 1e7 in float64, at 1e3 in float32): centred, the rounding
    is relative to the rows' spread, not to their offset. The centred rows are
    also divided by a power of two near their extent (exact), so that the
    squares inside ``torch.cdist`` neither overflow nor underflow for rows at
    any scale whose distances the dtype holds (float32 rows at 1e18 or 1e-22).
    """
    c = B.amax(0) / 2 + B.amin(0) / 2
    A, B = A - c, B - c
    scale = pow2_scale(B)  # the coreset selector's rule (exact in binary)
    return torch.cdist(A / scale, B / scale) * scale


def bandwidth(X, h):
    """Relative bandwidth ``h * sqrt(mean(D^2) / 2)`` of the Euclidean distances.

    Raises
    ------
    ValueError
        If the bandwidth is not a positive finite number (fewer than 2 distinct
        rows, or distances that overflow); no floor is substituted.
    """
    D = euclidean(X, X)
    top = D.max()  # mean(D^2) of D / top: no overflow or underflow in the squares
    bw = h * top * torch.sqrt((D / top).pow(2).mean() / 2) if top > 0 else 0 * top
    if not bool(torch.isfinite(bw)) or float(bw) <= 0:
        raise ValueError(
            f"the kernel bandwidth h * sqrt(mean(D^2) / 2) of {X.shape[0]} rows is "
            f"{float(bw)!r}; it needs at least 2 distinct rows and finite distances"
        )
    return bw


def log_gaussian_kernel(A, B, bw):
    """Log of the Gaussian kernel, ``-(|a - b| / bw)^2 / 2``, (len A, len B)."""
    return -0.5 * (euclidean(A, B) / bw).pow(2)


def query_log_kernel(Q, S, bw, *, input_name="X"):
    """Log Gaussian kernel of query rows ``Q`` against ``S``, for
    :func:`conditional_weights`.

    :func:`log_gaussian_kernel`, except in the rows whose maximum is not
    finite: their squared distances (or the distances as ``torch.cdist``
    computes them, from squares) overflow the dtype, e.g. float32 rows at
    1e20, and give -inf (or NaN) everywhere. Those rows are recomputed shifted
    by their maximum, which the normalisation of :func:`conditional_weights`
    cancels: with :math:`c` the centre of ``S``'s bounding box,
    :math:`d_j^2 - d_{min}^2 = g_j - g_{min}`,
    :math:`g_j = |s_j - c|^2 - 2 (q - c) \\cdot (s_j - c)`, on the rows divided
    by a power of two (exact), so that the nearest source rows get log-kernel
    0 and the others their log-kernel ratio to them, without the cancellation
    of two huge distances. The other rows are left as they are (bitwise).

    Raises
    ------
    ValueError
        If the distance of a query row to its nearest row of ``S`` overflows
        the dtype itself (the kernel, and so the weights, are then undefined).
    """
    L = log_gaussian_kernel(Q, S, bw)
    far = ~torch.isfinite(L.amax(1))
    if not bool(far.any()):
        return L
    # bounding-box centre: no overflow, and S - c stays within S's spread
    c = S.amax(0) / 2 + S.amin(0) / 2
    Sc, Qc = S - c, Q[far] - c
    top = max(float(Qc.abs().max()), float(Sc.abs().max()))
    dmin = torch.full((Qc.shape[0],), float("inf"), dtype=Q.dtype, device=Q.device)
    if math.isfinite(top):
        scale = math.ldexp(1.0, math.frexp(top)[1] - 1)  # a power of two <= top
        q, s = Qc / scale, Sc / scale
        g = (s * s).sum(1)[None, :] - 2 * (q @ s.T)
        gmin, jmin = g.min(1, keepdim=True)
        dmin = torch.linalg.vector_norm(q - s[jmin[:, 0]], dim=1) * scale
    if not bool(torch.isfinite(dmin).all()):
        n_bad = int((~torch.isfinite(dmin)).sum())
        raise ValueError(
            f"{input_name} has {n_bad} row(s) whose distance to every fitted source "
            f"row overflows {str(Q.dtype).replace('torch.', '')} (beyond "
            f"{torch.finfo(Q.dtype).max:.3g}); their conditional weights are undefined"
        )
    r = scale / bw
    Lf = -0.5 * ((g - gmin) * r) * r
    L = L.clone()
    L[far] = torch.where(g == gmin, torch.zeros((), dtype=L.dtype, device=L.device), Lf)
    return L


def gaussian_kernel(A, B, bw):
    """Unnormalised Gaussian kernel ``exp(-(|a - b| / bw)^2 / 2)``, (len A, len B)."""
    return torch.exp(log_gaussian_kernel(A, B, bw))


def _fxy(Kx, G, Ky):
    return (Kx @ G @ Ky).clamp_min(torch.finfo(G.dtype).tiny)


def mutual_information(Kx, Ky, G):
    """Kernel MI estimate :math:`\\hat I(\\Gamma)` (a scalar tensor)."""
    fx = Kx.mean(1, keepdim=True)
    fy = Ky.mean(1, keepdim=True).T
    return (G * torch.log(_fxy(Kx, G, Ky) / (fx * fy))).sum()


def mi_gradient(Kx, Ky, G):
    """Gradient of :func:`mutual_information` with respect to the plan."""
    fx = Kx.mean(1, keepdim=True)
    fy = Ky.mean(1, keepdim=True).T
    fxy = _fxy(Kx, G, Ky)
    return torch.log(fxy / (fx * fy)) + Kx @ (G / fxy) @ Ky


def conditional_weights(log_Kq, G, Ky):
    """Conditional projection weights of query rows over the targets.

    ``log_Kq`` (q, n) is the *log* kernel between queries and the fitted sources
    (:func:`query_log_kernel`; a row may be shifted by a constant). Row i is
    :math:`(K_q \\Gamma K^y)_{ij} / f_Y(y_j)`, normalised to sum to 1 (the
    query's own density :math:`f_X` cancels).

    The normalisation is done in the log domain, so that queries far from every
    fitted source row (whose kernel values all underflow) still get weights that
    sum to 1, dominated by their nearest source rows: each row of ``log_Kq`` is
    shifted by its maximum before exponentiating (the log-sum-exp trick, so the
    nearest source row has kernel 1 and the row total is at least that row's
    plan mass), and the weights are a softmax over the targets of
    :math:`\\log (K_q \\Gamma K^y)_{ij} - \\log f_Y(y_j)`. Queries whose
    squared distances overflow the dtype need the rows of
    :func:`query_log_kernel` (a row all -inf would give NaN).
    """
    log_fy = torch.log(Ky.mean(1))
    shift = log_Kq.max(1, keepdim=True).values
    P = torch.exp(log_Kq - shift) @ (G @ Ky)
    return torch.softmax(torch.log(P) - log_fy[None, :], dim=1)


def solve_infoot(C, Kx, Ky, solver, *, lam, max_iter=50, tol=1e-6, inner_tol=None):
    r"""Fused InfoOT by linearise-then-project.

    Minimises :math:`\langle C, \Gamma\rangle - \lambda \hat I(\Gamma)` (+ the
    entropy of the solver) over :math:`\Gamma \in U(1/n, 1/m)`: each step solves
    the entropic OT problem with the linearised cost
    :math:`C - \lambda \nabla \hat I(\Gamma_t)` through ``solver`` (warm-started
    potentials). ``C=None`` gives plain InfoOT (MI only).

    Parameters
    ----------
    inner_tol : float, callable or None
        Marginal tolerance (L1) of every inner solve; a callable gets the
        linearised cost and returns it. None: the solver's own tol.

    Returns
    -------
    plan : tensor (n, m)
    n_iter : int
    converged : bool
        The plan moved by less than ``tol`` (L1) in the last step.
    last : OTResult
        The last inner solve, whose plan is returned (the caller reports its
        non-convergence; the earlier, warm-started solves only move the
        linearisation point).
    info : dict
        ``inner_iters``: the iterations of every inner solve;
        ``inner_tol``: the last solve's tol (None: the solver's own).
    """
    n, m = Kx.shape[0], Ky.shape[0]
    dtype, device = Kx.dtype, Kx.device
    a = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    b = torch.full((m,), 1.0 / m, dtype=dtype, device=device)
    G = a[:, None] * b[None, :]
    base = torch.zeros((n, m), dtype=dtype, device=device) if C is None else C
    pots = None
    it = 0
    kw = {}
    inner_iters = []
    for it in range(1, max_iter + 1):
        cost = base - lam * mi_gradient(Kx, Ky, G) if lam > 0 else base
        # the linearised cost is shifted to start at 0 (plans are unchanged)
        cost = cost - cost.min()
        if inner_tol is not None:
            kw["tol"] = inner_tol(cost) if callable(inner_tol) else inner_tol
        res = solver.solve(cost, a, b, potentials_init=pots, grad="detach", **kw)
        inner_iters.append(res.n_iter)
        pots = res.potentials
        change = float((res.plan - G).abs().sum())
        G = res.plan
        if lam <= 0 or change < tol:
            break
    info = dict(inner_iters=inner_iters, inner_tol=kw.get("tol"))
    return G, it, lam <= 0 or change < tol, res, info
