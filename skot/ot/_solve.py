"""Public entry points :func:`solve` and :func:`solve_gromov`."""

from __future__ import annotations

import math
import numbers

import torch

from . import _gromov, _linear  # noqa: F401  (register the methods)
from ._gromov import LowRankGraph
from ._linear import _warn_convergence
from ._registry import default_max_iter, default_tol, get_method, needs_reg
from ._result import OTResult
from ._validation import (
    _default_tol,
    Problem,
    check_balanced,
    check_same_backend,
    _to_tensor,
    all_finite,
    check_cost,
    check_mask,
    check_positive,
    check_problem,
    check_reg,
    check_reg_dtype,
    check_weights,
)

__all__ = ["solve", "solve_gromov"]

_GRADS = ("autodiff", "envelope", "detach")
_REG_TYPES = ("kl", "entropy")


def _check_common(reg, reg_type, grad, max_iter, tol, unbalanced_type="KL"):
    reg = check_reg(reg)
    if not isinstance(unbalanced_type, str) or unbalanced_type.upper() != "KL":
        raise ValueError(
            f"unbalanced_type must be 'KL' (KL-relaxed marginals), got "
            f"{unbalanced_type!r}"
        )
    if grad not in _GRADS:
        raise ValueError(f"grad must be one of {_GRADS}, got {grad!r}")
    if not isinstance(reg_type, str) or reg_type.lower() not in _REG_TYPES:
        raise ValueError(f"reg_type must be 'KL' or 'entropy', got {reg_type!r}")
    _check_max_iter(max_iter, "max_iter")
    tol = check_positive(tol, "tol")
    return reg, tol


def _check_max_iter(value, name):
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1
    ):
        raise ValueError(f"{name} must be an integer >= 1 (or None), got {value!r}")


def _finish(res, method, max_iter, batched, numpy_io):
    _warn_convergence(res, method, max_iter)
    plan = res["plan"]
    value, value_linear = res["value"], res["value_linear"]
    pots = res["potentials"]
    lazy = res.get("lazy_values")
    lazy_pots = res.get("lazy_potentials")
    if not batched:
        plan = plan[0]
        if lazy is None:
            value, value_linear = value[0], value_linear[0]
        else:
            lazy = (lambda fn: lambda: tuple(v[0] for v in fn()))(lazy)
        if pots is not None:
            pots = tuple(p[0] for p in pots)
        if lazy_pots is not None:
            lazy_pots = (lambda fn: lambda: tuple(p[0] for p in fn()))(lazy_pots)
    return OTResult(
        value=value,
        value_linear=value_linear,
        potentials=pots,
        n_iter=res["n_iter"],
        converged=bool(res["converged"]),
        method=method,
        err=float(res["err"]),
        status=res.get("status") or ("converged" if res["converged"]
                                     else "max_iter reached"),
        _plan=plan,
        _numpy=numpy_io,
        _lazy_values=lazy,
        _lazy_potentials=lazy_pots,
    )


def solve(
    M,
    a=None,
    b=None,
    *,
    reg=None,
    reg_type="KL",
    unbalanced=None,
    unbalanced_type="KL",
    mass=None,
    method=None,
    max_iter=None,
    tol=None,
    grad="autodiff",
    mask=None,
    box=None,
    max_nz=None,
    potentials_init=None,
    geometry="kernel",
    verbose=False,
):
    r"""Solve a discrete optimal transport problem.

    The general problem (POT's :func:`ot.solve` vocabulary) is

    .. math::

        \min_{P \ge 0} \langle M, P \rangle + \mathrm{reg}\, \mathrm{KL}(P \| a b^\top)
            + \rho_a \mathrm{KL}(P 1 \| a) + \rho_b \mathrm{KL}(P^\top 1 \| b)

    with hard constraints instead of the KL penalties when ``unbalanced`` is None
    (``P 1 = a``, ``P^T 1 = b``), ``P 1 <= a, P^T 1 <= b, 1^T P 1 = mass`` for
    partial transport, and the constraint sets of the other methods below.

    Parameters
    ----------
    M : array-like of shape (n, m) or (B, n, m)
        Cost matrix (numpy or torch). Batched inputs solve B problems at once.
    a, b : array-like of shape (n,) and (m,) (or (B, n), (B, m)), default=None
        Marginal weights; uniform when None.
    reg : float > 0 or None, default=None
        Entropic regularisation; None means exact OT. A solve that does not
        converge with ``reg`` below the rounding of the cost (max|M| times the
        dtype's machine epsilon: 1.2e-7 max|M| in float32) raises a
        ValueError: its plan would be noise. A ``reg`` outside the dtype's
        range (float32: 1.2e-38 to 3.4e38) is a ValueError.
    reg_type : {"KL", "entropy"}, default="KL"
        Entropic term: ``KL(P | a b^T)`` or the negative entropy of P.
    unbalanced : float, pair of floats or None
        KL marginal relaxation ρ (``inf`` on one side = semi-relaxed). A ρ
        above ``1e10 * reg`` in float64 (``1e6 * reg`` in float32) is solved as
        a hard constraint (its plan is then within about reg / ρ, L1, of the
        relaxed one; the relaxed iterations would lose the potentials to
        rounding).
    unbalanced_type : {"KL"}, default="KL"
    mass : float or None
        Total transported mass (``method="partial"``, ``"total"``).
    method : str or None
        One of :func:`available_methods`. None picks ``"exact"`` (reg None),
        ``"unbalanced"`` (unbalanced set), ``"partial"`` (mass set) or ``"sinkhorn"``.
    max_iter : int, optional
        Iteration budget. Default: 1000 (entropic methods), 1_000_000
        network-simplex iterations (``"exact"``, and ``"partial"`` with
        ``reg=None``, as :func:`ot.emd`'s ``numItermax``), 500 L-BFGS
        iterations (``"sparse"``, as POT's ``smooth_ot_dual``).
    tol : float, default=1e-9 (float64); float32: max(1e-6, eps max|M| / reg), at most 1e-3
        (``"sparse"``: 1e-9 for any dtype, POT's ``stopThr``, as it solves in
        float64).
        Stopping threshold on the L1 marginal error (balanced constraints) or
        on the L1 change of the marginals that an iteration makes (KL-relaxed,
        box and inequality constraints: each potential's change weighted by
        its row's or column's mass). Both are measured when the error, falling
        linearly, is predicted below ``tol``, and at least every 10th
        iteration. ``"rows"``, ``"cols"`` and ``"total"`` are softmaxes,
        computed in closed form: ``max_iter`` does not apply (``n_iter`` 1,
        ``err`` the rounding error of the constrained marginal or mass, which
        a ``tol`` below the dtype's rounding reports as not converged).
    grad : {"autodiff", "envelope", "detach"}, default="autodiff"
        ``"autodiff"`` unrolls the iterations; ``"envelope"`` runs them without a
        graph and gives ``value`` the gradient of the optimum (d value/dM = plan)
        with memory of one n x m plan; ``"detach"`` returns constants.
    mask : bool array of shape (n, m), optional
        False marks forbidden pairs (the plan is exactly 0 there). The
        network-simplex and sparse methods cannot take it (``"exact"``,
        ``"partial"`` with ``reg=None``, ``"sparse"``): a ValueError (use a
        large cost there).
    box : float or pair of arrays, optional
        ``method="dbot"``: bounds ``(lo, hi)`` on the column sums, or δ for
        ``[(1-δ) b, (1+δ) b]`` (default δ = 0.5). A box that cannot hold the
        row mass (sum lo > sum a or sum hi < sum a), or NaN bounds, is a
        ValueError.
    max_nz : int, optional
        ``method="sparse"``: at most ``max_nz`` non-zeros per column; at least
        n / m (every row needs one). POT solves the dual of a convex
        relaxation: where ``max_nz`` binds, its plan can miss the marginals,
        and an L1 error above 1e-3 of the mass is reported as not converged
        (``status="marginals not met"``, with a ConvergenceWarning).
    potentials_init : tuple (f, g), optional
        Warm start for the entropic solvers (potentials of an earlier result),
        shaped like ``a`` and ``b``; a hint that the other methods (exact,
        sparse) do not use. With ``grad="autodiff"`` the gradient is
        that of the iterations run from this start, held constant: a start
        near the optimum leaves few iterations and a truncated gradient; use
        ``grad="envelope"`` for the gradient of the optimum.
    geometry : {"kernel", "log"}, default="kernel"
        How the entropic iterations are computed (see :mod:`skot.ot._sinkhorn`);
        both give the same result, ``"kernel"`` is faster.
    verbose : bool, default=False
        Show a tqdm progress bar (iterations and current error) for long
        entropic solves.

    Returns
    -------
    result : OTResult
        ``.plan``, ``.value``, ``.value_linear``, ``.potentials``, ``.n_iter``,
        ``.converged``, ``.marginals``.

    Examples
    --------
    >>> import numpy as np
    >>> from skot.ot import solve
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> solve(M).value
    0.0
    >>> res = solve(M, reg=0.1)
    >>> np.allclose(res.plan.sum(1), 0.5)
    True
    """
    reg, tol = _check_common(reg, reg_type, grad, max_iter, tol, unbalanced_type)
    if method is None:
        if unbalanced is not None:
            method = "unbalanced"
        elif mass is not None:
            method = "partial"
        else:
            method = "sinkhorn" if reg is not None else "exact"
    func = get_method(method)
    if needs_reg(method) and reg is None:
        extra = ""
        if method == "unbalanced":
            # POT solves reg=None by majorisation-minimisation, which converges
            # sublinearly: 1000 iterations (its default) left a 50 x 60 plan
            # 0.14 (L1) from its limit
            extra = ("; exact KL-unbalanced OT is not offered (POT's "
                     "mm_unbalanced converges sublinearly): use a small reg, whose "
                     "plan tends to the exact one")
        raise ValueError(f"method={method!r} needs reg > 0 (entropic), got "
                         f"reg=None{extra}")
    if method in ("exact",) and reg is not None:
        raise ValueError(f"method='exact' solves unregularised OT; got reg={reg!r}")
    if unbalanced is not None and method != "unbalanced":
        raise ValueError(
            f"unbalanced={unbalanced!r} is only used by method='unbalanced', "
            f"got method={method!r}"
        )
    if mass is not None and method not in ("partial", "total"):
        raise ValueError(
            f"mass={mass!r} is only used by method='partial' or 'total', "
            f"got method={method!r}"
        )
    for name, value, users in (("box", box, ("dbot",)), ("max_nz", max_nz, ("sparse",))):
        if value is not None and method not in users:
            raise ValueError(f"{name}={value!r} is only used by method={users[0]!r}, "
                             f"got method={method!r}")
    mass = check_positive(mass, "mass")
    prob = check_problem(M, a, b)
    check_reg_dtype(reg, prob.M.dtype)
    mask_t = check_mask(mask, prob.M)
    if potentials_init is not None:
        potentials_init = _check_potentials_init(potentials_init, prob)
    if geometry not in ("kernel", "log"):
        raise ValueError(f"geometry must be 'kernel' or 'log', got {geometry!r}")
    if max_iter is None:
        max_iter = default_max_iter(method, reg, 1000)
    if tol is None:
        tol = default_tol(method, lambda: _default_tol(prob.M, reg))
    opts = dict(
        reg=reg, reg_type=reg_type, unbalanced=unbalanced,
        unbalanced_type=unbalanced_type, mass=mass, max_iter=max_iter, tol=tol,
        grad=grad, mask=mask_t, box=box, max_nz=max_nz,
        potentials_init=potentials_init, geometry=geometry, verbose=verbose,
    )
    res = func(prob, opts)
    return _finish(res, method, max_iter, prob.batched, prob.numpy_io)


def _solve_inf_cost(M, a, b, *, reg, method, max_iter, tol, potentials_init=None):
    """Internal entropic solve (``grad="detach"``, KL reference) of a cost M
    (n, m) whose forbidden pairs are +inf, without :func:`solve`'s passes over
    M (a finiteness check, a mask's feasibility checks and its inversion, the
    masked fill of the kernel): the kernel entries of +inf costs are
    exp(-inf) = 0, so forbidden pairs get exactly zero mass, as with ``mask=``.
    For callers that build M and know, without a look, that its other entries
    are finite, that every row and column keeps a finite entry, and that reg,
    max_iter and tol are valid (the losses' soft targets); ``a``, ``b``
    positive (n,), (m,) of equal mass. Returns an :class:`OTResult` as
    :func:`solve` does."""
    if M.ndim != 2 or M.shape != (a.shape[0], b.shape[0]):
        raise ValueError(f"M {tuple(M.shape)} does not match a {tuple(a.shape)} and "
                         f"b {tuple(b.shape)}")
    prob = Problem(M.unsqueeze(0), a.unsqueeze(0), b.unsqueeze(0), False, False,
                   zero_weights=(False, False), default_weights=(False, False))
    if potentials_init is not None:
        potentials_init = tuple(torch.as_tensor(p, dtype=M.dtype, device=M.device)
                                .reshape(1, -1) for p in potentials_init)
    opts = dict(
        reg=reg, reg_type="KL", unbalanced=None, unbalanced_type="KL", mass=None,
        max_iter=max_iter, tol=tol, grad="detach", mask=None, box=None, max_nz=None,
        potentials_init=potentials_init, geometry="kernel", verbose=False,
    )
    return _finish(get_method(method)(prob, opts), method, max_iter, False, False)


def _check_potentials_init(pots, prob):
    """A pair (f, g) shaped like a and b (batched or not), finite."""
    if not (isinstance(pots, (tuple, list)) and len(pots) == 2):
        raise ValueError(
            f"potentials_init must be a pair (f, g), got {type(pots).__name__}"
        )
    out = []
    for name, p, w in (("f", pots[0], prob.a), ("g", pots[1], prob.b)):
        t = _to_tensor(p, f"potentials_init {name}", like=prob.M)
        shape = tuple(w.shape) if prob.batched else tuple(w.shape[1:])
        if tuple(t.shape) != shape:
            raise ValueError(
                f"potentials_init {name} has shape {tuple(t.shape)}; expected {shape} "
                f"(that of {'a' if name == 'f' else 'b'})"
            )
        if not all_finite(t):
            raise ValueError(f"potentials_init {name} contains NaN or inf")
        out.append(t)
    return tuple(out)


def _check_graph(C, name, size, like, batched):
    if isinstance(C, LowRankGraph):
        return _check_low_rank(C, name, size, like, batched)
    C = _to_tensor(C, name, like=like)
    expected = (size, size)
    shape = tuple(C.shape[-2:])
    if C.ndim == 3 and C.shape[0] != like.shape[0]:
        raise ValueError(
            f"{name} holds a batch of {C.shape[0]} graphs but M a batch of "
            f"{like.shape[0]}; pass one graph, or one per problem of M")
    if batched and C.ndim == 2 and shape == expected:
        C = C.expand(like.shape[0], size, size)
    if shape != expected or C.ndim != (3 if batched else 2):
        raise ValueError(
            f"{name} has shape {tuple(C.shape)}; expected {expected} to match M of "
            f"shape {tuple(like.shape[-2:])} "
            f"(or batched {(like.shape[0],) + expected})"
        )
    if not all_finite(C):
        raise ValueError(f"{name} contains NaN or inf; structure matrices must be finite")
    return C


def _check_symmetric(C, name):
    """A structure matrix must be symmetric (dense: to 1e-6 of its largest
    entry; factored U V^T + bias: probed with two random vectors)."""
    with torch.no_grad():
        if isinstance(C, LowRankGraph):
            g = torch.Generator(device="cpu").manual_seed(0)
            r = torch.randn(C.U.shape[-2], 2, generator=g, dtype=C.U.dtype).to(C.U.device)
            # r1^T (U V^T) r2 - r2^T (U V^T) r1; the bias term is symmetric
            left = (r[..., 0] @ C.U) * (r[..., 1] @ C.V)
            right = (r[..., 1] @ C.U) * (r[..., 0] @ C.V)
            gap = (left - right).sum(-1).abs().max()
            scale = (r[..., 0] @ C.U).abs().sum(-1).max() * (
                r[..., 1] @ C.V).abs().sum(-1).max()
        else:
            gap = (C - C.transpose(-1, -2)).abs().max()
            scale = C.abs().max()
        if float(gap) > 1e-6 * max(float(scale), torch.finfo(torch.float32).tiny):
            raise ValueError(
                f"{name} is not symmetric (largest asymmetry {float(gap):.3g}); "
                "method='fgw' linearises the quadratic term for symmetric "
                f"structure matrices: pass ({name} + {name}.T) / 2, or use "
                "method='fgw_exact'")


def _check_low_rank(C, name, size, like, batched, cols=None):
    """Validate a LowRankGraph: factors U (size, k), V (cols or size, k) (or
    batched), finite, a real bias; returns one with tensor factors."""
    U = _to_tensor(C.U, f"{name}.U", like=like)
    V = _to_tensor(C.V, f"{name}.V", like=like)
    cols = size if cols is None else cols
    if (U.ndim not in (2, 3) or U.ndim != V.ndim or U.shape[-1] != V.shape[-1]
            or U.shape[:-2] != V.shape[:-2] or U.shape[-2] != size
            or V.shape[-2] != cols):
        raise ValueError(
            f"{name} is a LowRankGraph with factors of shapes {tuple(U.shape)} and "
            f"{tuple(V.shape)}; expected ({size}, k) and ({cols}, k) (or batched "
            f"(B, {size}, k), (B, {cols}, k)) factors to match M of shape "
            f"{tuple(like.shape[-2:])}"
        )
    if batched and U.ndim == 2:
        U = U.expand((like.shape[0],) + U.shape)
        V = V.expand((like.shape[0],) + V.shape)
    if U.ndim != (3 if batched else 2) or (batched and U.shape[0] != like.shape[0]):
        raise ValueError(f"{name} factors have shape {tuple(U.shape)}; the batch of "
                         f"M has {like.shape[0]} problems")
    try:
        bias = float(C.bias)
    except (TypeError, ValueError):
        raise TypeError(f"{name}.bias must be a real number, got {C.bias!r}") from None
    if not (math.isfinite(bias) and all_finite(U) and all_finite(V)):
        raise ValueError(f"{name} contains NaN or inf; structure matrices must be "
                         "finite")
    out = LowRankGraph(U, V, bias)
    kept = C._dense  # formed once from the factors (LowRankGraph._keep_dense)
    if kept is not None:
        kept = _to_tensor(kept, f"{name} (dense)", like=like)
        out._dense = kept.expand(U.shape[:-1] + (V.shape[-2],))
    return out


def _factored_problem(M, a, b, like):
    """A Problem whose cost is the LowRankGraph M (factors (n, k), (m, k), or
    batched; never formed), with batched factors and weights."""
    U = _to_tensor(M.U, "M.U", like=like)
    V = _to_tensor(M.V, "M.V", like=like)
    if U.ndim not in (2, 3) or V.ndim != U.ndim:
        raise ValueError(f"M is a LowRankGraph with factors of shapes "
                         f"{tuple(U.shape)} and {tuple(V.shape)}; expected (n, k) "
                         "and (m, k) (or batched)")
    batched = U.ndim == 3
    # a stand-in with M's shape, dtype and device (zero strides: no memory)
    shape = tuple(U.shape[:-1]) + (V.shape[-2],)
    stand = torch.zeros((), dtype=U.dtype, device=U.device).expand(shape)
    if not batched:
        stand = stand.unsqueeze(0)
    Mf = _check_low_rank(M, "M", shape[-2], stand, True, cols=shape[-1])
    a, za = check_weights(a, "a", shape[-2], stand, batched)
    b, zb = check_weights(b, "b", shape[-1], stand, batched)
    if not batched:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    prob = Problem(Mf, a, b, batched, not isinstance(M.U, torch.Tensor),
                   zero_weights=(za, zb))
    return prob, stand


def _graph_tensor(C, name):
    """A dense graph as a tensor; a LowRankGraph as is (shape and dtype from U)."""
    if isinstance(C, LowRankGraph):
        U = _to_tensor(C.U, f"{name}.U")
        if U.ndim not in (2, 3):
            raise ValueError(f"{name}.U must have shape (n, k) or (B, n, k), got "
                             f"{tuple(U.shape)}")
        return U, C.shape, not isinstance(C.U, torch.Tensor)
    t = _to_tensor(C, name)
    return t, tuple(t.shape), not isinstance(C, torch.Tensor)


def solve_gromov(
    Ca,
    Cb,
    M=None,
    a=None,
    b=None,
    *,
    alpha=0.5,
    reg=None,
    reg_type="KL",
    loss="L2",
    unbalanced=None,
    unbalanced_type="KL",
    method=None,
    max_iter=None,
    tol=None,
    grad="autodiff",
    inner_max_iter=None,
    inner_tol=None,
):
    r"""Solve a (fused) Gromov-Wasserstein problem with the square loss.

    .. math::

        \min_{P \in U(a, b)} (1-\alpha) \langle M, P \rangle
            + \alpha \sum_{ijkl} (C^a_{ik} - C^b_{jl})^2 P_{ij} P_{kl}
            + \mathrm{reg}\, \mathrm{KL}(P \| a b^\top)

    Parameters
    ----------
    Ca : array-like of shape (n, n) or (B, n, n), or LowRankGraph
        Structure (distance or similarity) matrix of the source points; a
        :class:`~skot.ot.LowRankGraph` ``bias + U V^T`` is never formed (each
        linearisation costs products of inner dimension k instead of n).
    Cb : array-like of shape (m, m) or (B, m, m), or LowRankGraph
        Structure matrix of the target points.
    M : array-like of shape (n, m) or (B, n, m), or LowRankGraph, optional
        Feature cost (fused GW); None means pure GW (``alpha`` is then 1). A
        :class:`~skot.ot.LowRankGraph` with factors (n, k), (m, k) is never
        formed either (e.g. ``1 - x y^T``); when its factors are those of the
        graphs (``M.U`` equal to ``Ca.U``, ``M.V`` to plus or minus ``Cb.U``)
        each linearised cost costs one product of inner dimension k.
    a, b : array-like of shape (n,), (m,), optional
        Marginals, uniform when None.
    alpha : float in [0, 1], default=0.5
        Weight of the structure term.
    reg : float > 0 or None
        Entropic regularisation (``method="fgw"``); None: exact conditional
        gradient (``method="fgw_exact"``, POT). A ``reg`` outside the dtype's
        range is a ValueError, as in :func:`solve`.
    reg_type : {"KL", "entropy"}
    loss : {"L2"}
        Only the square loss is implemented.
    unbalanced : float or pair, optional
        KL relaxation of the marginals (entropic solver only).
    unbalanced_type : {"KL"}, default="KL"
    method : {"fgw", "fgw_exact"} or None
    max_iter : int, optional
        Outer iterations (linearisations): default 100 for ``"fgw"``, 10000
        for ``"fgw_exact"`` (POT's conditional gradient default).
    tol : float, default=1e-7 (float64); 1e-6 (float32)
        Stop when the plan changes by less than ``tol`` in Frobenius norm
        between two linearisations (POT's rule for entropic FGW). In float32
        the change levels off at 2-4e-7 (the inner solves' own tolerance is
        1e-6), so 1e-7 ran to ``max_iter`` and warned; at 1e-6 the plans are
        1e-5 to 3e-5 (L1) from float64's.
    grad : {"autodiff", "envelope", "detach"}
        ``"envelope"``: the gradient of the objective at the returned plan held
        fixed (as POT's). For ``"fgw_exact"`` at a (local) optimum that is the
        gradient of ``value``; for entropic FGW ``value`` leaves the entropic
        term out, so it is the gradient of the full regularised objective, not
        of ``value``.
    inner_max_iter : int, default=1000
        Sinkhorn iterations per linearisation (``method="fgw"``).
    inner_tol : float, default=None
        Marginal tolerance of each linearisation's Sinkhorn solve (warm-started
        from the previous one); a training loss can use 1e-4. None: 1e-9 in
        float64; in float32, 1e-6 or a tenth of :func:`solve`'s default
        ``tol`` for each linearised cost G (its rounding eps max|G| / reg),
        whichever is larger. An inner solve at this default that stops because
        every update rounded away (status ``"tol below rounding"``) counts as
        converged: it reached what the dtype resolves.

    Returns
    -------
    result : OTResult
        ``value`` is the FGW objective without the entropic term; with
        ``unbalanced``, plus the marginal penalties (generalised KL, as in
        :func:`solve`). ``value_linear`` is its linear part
        :math:`(1 - \alpha) \langle M, P \rangle`, as POT's (the exact
        solver's ``value`` and ``value_linear`` equal POT's). POT's entropic
        ``value`` also counts the entropic term: it is ``value + reg * sum(P log
        P)`` for its ``reg_type="entropy"``.
    """
    return _solve_gromov(
        Ca, Cb, M, a, b, alpha=alpha, reg=reg, reg_type=reg_type, loss=loss,
        unbalanced=unbalanced, unbalanced_type=unbalanced_type, method=method,
        max_iter=max_iter, tol=tol, grad=grad, inner_max_iter=inner_max_iter,
        inner_tol=inner_tol)


def _solve_gromov(Ca, Cb, M, a, b, *, alpha, reg, reg_type, loss, unbalanced,
                  unbalanced_type, method, max_iter, tol, grad, inner_max_iter,
                  inner_tol, extrapolate=None, nll_target=None):
    r""":func:`solve_gromov`, with the library's own options.

    ``extrapolate=c`` (entropic method only): also stop once the distance to
    the fixed point that the last two plan changes predict is below ``tol``:
    with :math:`\Delta_k = \|P_k - P_{k-1}\|_F` and
    :math:`q = c\,\Delta_k / \Delta_{k-1}` (the observed contraction,
    inflated c times), stop when q < 1 and :math:`\Delta_k\, q / (1 - q)` is
    below ``tol`` (the geometric bound on :math:`\|P_k - P_\infty\|_F`).

    ``nll_target`` (entropic method, unbatched): ``"diag"`` or an (n, m)
    coupling T; the result then carries ``-sum T log P`` (for ``"diag"``, the
    mean of ``-log P_ii``) from the last inner solve's potentials and cost
    (``result._extra["nll"]``), exact where float32 plan entries underflow.
    """
    reg, tol = _check_common(reg, reg_type, grad, max_iter, tol, unbalanced_type)
    if loss != "L2":
        raise ValueError(f"loss={loss!r} is not supported; only loss='L2' is")
    alpha = check_positive(alpha, "alpha", strict=False)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if method is None:
        method = "fgw" if reg is not None else "fgw_exact"
    func = get_method(method, quadratic=True)
    if needs_reg(method) and reg is None:
        raise ValueError(f"method={method!r} needs reg > 0, got reg=None")
    if method == "fgw_exact" and reg is not None:
        raise ValueError(f"method='fgw_exact' solves unregularised FGW; got reg={reg!r}")
    for name, C in (("Ca", Ca), ("Cb", Cb)):
        if C is None:
            raise TypeError(f"{name} is required: a graph of shape (n, n) or "
                            "(B, n, n), or a LowRankGraph")
    if not isinstance(Ca.U if isinstance(Ca, LowRankGraph) else Ca, torch.Tensor):
        others = [("Cb", Cb.U if isinstance(Cb, LowRankGraph) else Cb),
                  ("M", M.U if isinstance(M, LowRankGraph) else M), ("a", a), ("b", b)]
        check_same_backend(("Ca", Ca), *others)
    Ca_t, a_shape, numpy_io = _graph_tensor(Ca, "Ca")
    if len(a_shape) not in (2, 3):
        raise ValueError(f"Ca must have shape (n, n) or (B, n, n), got {a_shape}")
    Cb_t, b_shape, _ = _graph_tensor(Cb, "Cb")
    if len(b_shape) not in (2, 3):
        raise ValueError(f"Cb must have shape (m, m) or (B, m, m), got {b_shape}")
    if len(a_shape) == len(b_shape) == 3 and a_shape[0] != b_shape[0]:
        raise ValueError(f"Ca and Cb hold different batches of graphs: Ca has "
                         f"shape {a_shape}, Cb {b_shape}")
    n, m = a_shape[-1], b_shape[-1]
    if M is None:
        shape = a_shape[:-2] + (n, m)
        M = torch.zeros(shape, dtype=Ca_t.dtype, device=Ca_t.device)
        alpha = 1.0
    if isinstance(M, LowRankGraph):
        prob, like = _factored_problem(M, a, b, Ca_t)
    else:
        Mt, _ = check_cost(M if isinstance(M, torch.Tensor)
                           else _to_tensor(M, "M", like=Ca_t))
        prob = check_problem(Mt, a, b)
        like = prob.M
    prob.numpy_io = numpy_io
    check_reg_dtype(reg, like.dtype)
    n_m, m_m = like.shape[-2:]
    prob.Ca = _check_graph(Ca if isinstance(Ca, LowRankGraph) else Ca_t, "Ca", n_m,
                           like, True)
    prob.Cb = _check_graph(Cb if isinstance(Cb, LowRankGraph) else Cb_t, "Cb", m_m,
                           like, True)
    if unbalanced is None:
        check_balanced(prob.a, prob.b)
    if max_iter is None:
        max_iter = default_max_iter(method, reg, 100)
    if tol is None:
        tol = 1e-7 if like.dtype == torch.float64 else 1e-6
    if method == "fgw" and alpha > 0:
        # the linearisation 2 L(Ca, Cb) (x) P is the gradient of the quadratic
        # term only for symmetric graphs (an asymmetric one needs both L (x) P
        # and its transpose): refused rather than solved as another problem
        for name, C in (("Ca", prob.Ca), ("Cb", prob.Cb)):
            _check_symmetric(C, name)
    if (prob.a.requires_grad or prob.b.requires_grad) and (
            grad != "autodiff" or method == "fgw_exact"):
        raise ValueError(
            "gradients w.r.t. a and b of a (fused) Gromov-Wasserstein value are "
            "only available with grad='autodiff' and method='fgw' (unrolled); "
            f"got grad={grad!r}, method={method!r}: detach a and b")
    opts = dict(
        reg=reg, reg_type=reg_type, unbalanced=unbalanced,
        unbalanced_type=unbalanced_type, alpha=alpha, max_iter=max_iter, tol=tol,
        grad=grad, mask=None,
    )
    _check_max_iter(inner_max_iter, "inner_max_iter")
    if inner_max_iter is not None:
        opts["inner_max_iter"] = int(inner_max_iter)
    if inner_tol is not None:
        opts["inner_tol"] = check_positive(inner_tol, "inner_tol")
    if extrapolate is not None:
        opts["extrapolate"] = check_positive(extrapolate, "extrapolate")
    if nll_target is not None:
        opts["nll_target"] = nll_target
    res = func(prob, opts)
    out = _finish(res, method, max_iter, prob.batched, numpy_io)
    if "nll" in res:
        out._extra["nll"] = res["nll"]
    return out


_ = Problem
