r"""Transductive OT classification of a batch: the math behind the classifiers.

Given image features :math:`X` (n, d) and class embeddings :math:`T` (k, d), both
L2-normalised, the node cost is :math:`C = 1 - X T^\top`. The plan :math:`P`
couples the rows of the batch (mass ``1/n`` each) with the classes:

* rows only (``class_prior=None``): :math:`P_{ij} = \frac1n \mathrm{softmax}_j
  (-C_{ij}/\varepsilon)`, i.e. CLIP's zero-shot softmax at logit scale
  :math:`1/\varepsilon`;
* a class prior :math:`\pi`: balanced OT :math:`P \in U(1/n, \pi)` (OTTER-style
  prior matching) with the chosen solver (``sinkhorn``, ``exact``, ``dbot`` box
  around :math:`\pi`, ``unbalanced`` KL relaxation);
* a structure term (``alpha > 0``): fused Gromov with similarity graphs
  :math:`A = X X^\top`, :math:`B = T T^\top`, solved by re-linearising
  :math:`G(P) = C - \alpha \, \bar A \, Q \, \bar B` with :math:`Q = nP` (row
  conditional class distribution) and the centred graphs divided by n, so that
  ``alpha`` is in cost units for any n and k (OT-CLIP §1.3); each linearised
  problem is solved with the same constraint set (projected mirror descent).

The EM estimate of the class prior (``class_prior="estimate"``, Saerens et al.)
iterates :math:`\pi \leftarrow \frac1n \sum_i \mathrm{softmax}_j(-C_{ij}/\varepsilon
+ \log \pi_j)`; its fixed point is the balanced OT plan for :math:`b = \pi`.
"""

from __future__ import annotations

import math

import torch

from ..ot import OTSolver

__all__ = ["transductive_plan", "estimate_prior", "Assignment"]


class Assignment:
    """Plan, class scores and potentials for one batch (torch tensors)."""

    def __init__(self, plan, scores, g):
        self.plan = plan  # (n, k), rows sum to 1/n (or less for partial)
        self.scores = scores  # (n, k), argmax = prediction, softmax = proba
        self.g = g  # (k,) column potentials


def estimate_prior(C, reg, *, pseudo_count=10.0, max_iter=100, tol=1e-6):
    """MAP-EM estimate of the class prior of a batch (Saerens et al. 2002).

    A symmetric Dirichlet prior adds ``pseudo_count`` rows to every class: plain
    EM collapses onto a few classes when there are few rows per class (measured
    on Stanford Cars, 196 classes and ~8 images per class: 48.5% accuracy
    against 59.0% for argmax cosine; 61.0% with the pseudo-counts, 54.6% on
    the long-tailed batch where argmax cosine has 58.7%), while with many rows
    per class the pseudo-counts are negligible.
    """
    k = C.shape[1]
    logits = -C / reg
    log_pi = torch.full((k,), -math.log(k), dtype=C.dtype, device=C.device)
    for _ in range(max_iter):
        post = torch.softmax(logits + log_pi, dim=1)
        n = post.shape[0]
        pi = (post.sum(0) + pseudo_count) / (n + pseudo_count * k)
        new = torch.log(pi.clamp_min(torch.finfo(C.dtype).tiny))
        done = float((new.exp() - log_pi.exp()).abs().sum()) < tol
        log_pi = new
        if done:
            break
    return log_pi.exp()


def _graphs(X, T):
    A = X @ X.T
    B = T @ T.T
    A = A - A.mean()
    B = B - B.mean()
    return A, B


def transductive_plan(X, T, solver: OTSolver, *, prior=None, alpha=0.0,
                      n_outer=10, box=None):
    """Solve the batch problem; returns an :class:`Assignment`.

    Parameters
    ----------
    X : tensor (n, d), T : tensor (k, d)
        L2-normalised image features and class embeddings.
    solver : OTSolver
        Inner linear solver (method ``rows`` is used when ``prior`` is None).
    prior : tensor (k,) or None
        Column marginal (sums to 1); None leaves the classes free.
    alpha : float
        Structure weight in cost units (0 = no structure term).
    """
    n = X.shape[0]
    C = 1.0 - X @ T.T
    a = torch.full((n,), 1.0 / n, dtype=C.dtype, device=C.device)
    method = solver.method
    reg = solver.reg if method not in ("exact", "fgw_exact") else None
    if method in ("fgw", "fgw_exact"):
        method = "sinkhorn" if reg is not None else "exact"
    overrides = {"grad": "detach"}
    if prior is None:
        if reg is None:
            # exact rows-only OT: every row sends its mass to its cheapest class
            plan = torch.zeros_like(C)
            plan[torch.arange(n), C.argmin(1)] = 1.0 / n
            return Assignment(plan, -C, torch.zeros_like(C[0]))
        method = "rows"
        b = None
    else:
        b = prior
    if method == "dbot" and box is not None:
        overrides["box"] = box
    if method not in ("unbalanced",):
        overrides["unbalanced"] = None
    G = C
    A = B = None
    res = None
    for it in range(n_outer if alpha > 0 else 1):
        if it > 0:
            if A is None:
                A, B = _graphs(X, T)
            G = C - alpha * (A @ (res.plan * n) @ B) / n
            overrides["potentials_init"] = res.potentials
        res = solver.solve(G, a, b, method=method, reg=reg, **overrides)
    plan = res.plan
    f, g = res.potentials if res.potentials is not None else (None, None)
    if g is None:
        g = torch.zeros(C.shape[1], dtype=C.dtype, device=C.device)
    if reg is None:
        scores = g.unsqueeze(0) - G
    else:
        logb = torch.log(b) if b is not None else torch.full_like(g, -math.log(len(g)))
        scores = (g.unsqueeze(0) - G) / reg + logb.unsqueeze(0)
    return Assignment(plan, scores, g)
