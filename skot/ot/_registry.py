"""Name -> method registry: the single source of truth for ``solver=`` names."""

from __future__ import annotations

_LINEAR: dict = {}
_QUADRATIC: dict = {}
_NEEDS_REG: set = set()
_GIBBS: set = set()
_MAX_ITER: dict = {}
_TOL: dict = {}

__all__ = ["register_method", "get_method", "available_methods"]


def register_method(name, *, needs_reg=False, quadratic=False, gibbs=False,
                    max_iter=None, tol=None):
    """Register ``func(problem, options) -> dict`` under ``name``.

    ``max_iter``: the method's default iteration budget (``max_iter=None`` in
    :func:`skot.ot.solve`), an int or a function of ``reg`` returning one (or
    None); None keeps the solve's default (1000 for linear methods, 100 outer
    iterations for Gromov ones).

    ``tol``: the method's default tolerance whatever the input dtype (a
    method that solves in float64 itself, e.g. POT's L-BFGS for
    ``"sparse"``); None keeps the solve's dtype-aware default.

    ``gibbs=True``: with ``reg`` set (and ``reg_type="KL"``) the plan is
    ``exp((f_i + g_j - C_ij) / reg + log a_i + log b_j)`` at the returned
    potentials (C the last linearised cost for Gromov methods).
    """

    def deco(func):
        (_QUADRATIC if quadratic else _LINEAR)[name] = func
        if needs_reg:
            _NEEDS_REG.add(name)
        if gibbs:
            _GIBBS.add(name)
        if max_iter is not None:
            _MAX_ITER[name] = max_iter if callable(max_iter) else int(max_iter)
        if tol is not None:
            _TOL[name] = float(tol)
        return func

    return deco


def get_method(name, *, quadratic=False):
    table = _QUADRATIC if quadratic else _LINEAR
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, got {name!r}")
    if name not in table:
        other = _LINEAR if quadratic else _QUADRATIC
        hint = ""
        if name in other:
            hint = (" (it is a "
                    + ("linear method: use skot.ot.solve" if quadratic
                       else "Gromov method: use skot.ot.solve_gromov") + ")")
        raise ValueError(
            f"method={name!r} is not a known {'Gromov ' if quadratic else ''}OT method"
            f"{hint}; choose one of {sorted(table)}"
        )
    return table[name]


def needs_reg(name):
    return name in _NEEDS_REG


def default_max_iter(name, reg, fallback):
    """The iteration budget of ``name`` at ``reg`` when the caller gives
    ``max_iter=None``; ``fallback`` when the method registered none."""
    budget = _MAX_ITER.get(name)
    if callable(budget):
        budget = budget(reg)
    return fallback if budget is None else budget


def default_tol(name, fallback):
    """The tolerance of ``name`` when the caller gives ``tol=None``;
    ``fallback`` (a thunk, the dtype-aware default) when it registered none."""
    return _TOL[name] if name in _TOL else fallback()


def is_gibbs(name):
    """Whether the entropic plan of ``name`` has the Gibbs form (see
    :func:`register_method`)."""
    return name in _GIBBS


def available_methods():
    """Names accepted by ``skot.ot.solve(method=...)``, ``solve_gromov`` and by
    every estimator's ``solver=`` parameter.

    Returns
    -------
    methods : list of str
        Linear methods first, then the (fused) Gromov-Wasserstein ones.
    """
    return list(_LINEAR) + list(_QUADRATIC)
