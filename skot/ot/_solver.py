"""Solver objects: OT settings as a clone-able hyperparameter."""

from __future__ import annotations

from sklearn.base import BaseEstimator, clone

from ._registry import _QUADRATIC, available_methods
from ._solve import solve, solve_gromov

__all__ = ["OTSolver", "get_solver"]

# methods that take no entropic regularisation
_UNREGULARISED = {"exact", "fgw_exact"}
# linear methods with a fused Gromov counterpart (None: inferred, as solve does)
_LIFTS_TO_FGW = {None, "sinkhorn", "unbalanced", "exact"}


class OTSolver(BaseEstimator):
    """A configured OT solver, usable as an estimator's ``solver=`` hyperparameter.

    Stores its parameters verbatim (``get_params``/``set_params``/``clone`` work), so
    ``GridSearchCV(est, {"solver__reg": [...]})`` searches over solver settings.

    Parameters
    ----------
    method : str, default="sinkhorn"
        A name from :func:`skot.ot.available_methods`.
    reg : float or None, default=0.05
        Entropic regularisation (ignored by ``"exact"`` and ``"fgw_exact"``).
    reg_type : {"KL", "entropy"}, default="KL"
    unbalanced : float, pair or None, default=None
        KL marginal relaxation (``method="unbalanced"``, ``"fgw"``).
    mass : float or None, default=None
        Transported mass (``method="partial"``, ``"total"``).
    alpha : float, default=0.5
        Structure weight for the Gromov methods.
    max_iter, tol : optional
        Iteration budget and tolerance (solver defaults when None).
    grad : {"autodiff", "envelope", "detach"}, default="autodiff"

    Examples
    --------
    >>> import numpy as np
    >>> from skot.ot import OTSolver
    >>> res = OTSolver("sinkhorn", reg=0.1).solve(np.eye(3))
    >>> bool(res.converged)
    True
    """

    def __init__(
        self,
        method="sinkhorn",
        *,
        reg=0.05,
        reg_type="KL",
        unbalanced=None,
        mass=None,
        alpha=0.5,
        max_iter=None,
        tol=None,
        grad="autodiff",
    ):
        self.method = method
        self.reg = reg
        self.reg_type = reg_type
        self.unbalanced = unbalanced
        self.mass = mass
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.grad = grad

    def _kwargs(self, overrides, quadratic):
        p = self.get_params()
        p.update(overrides)
        method = p.pop("method")
        alpha = p.pop("alpha")
        if method in _UNREGULARISED:
            p["reg"] = None
        if quadratic:
            if method not in _QUADRATIC and method not in _LIFTS_TO_FGW:
                # its constraint set (partial mass, a box, one free side, ...)
                # has no fused Gromov counterpart here: mapping it to balanced
                # fgw dropped the constraint silently
                raise ValueError(
                    f"solver method={method!r} has no fused Gromov-Wasserstein "
                    "counterpart: solve_gromov solves balanced or KL-unbalanced "
                    "(F)GW; use method 'sinkhorn', 'unbalanced', 'exact', 'fgw' or "
                    "'fgw_exact'")
            if method not in _QUADRATIC:
                method = "fgw_exact" if p["reg"] is None or method == "exact" else "fgw"
                if method == "fgw_exact":
                    p["reg"] = None
            p.pop("mass", None)
            return dict(method=method, alpha=alpha, **p)
        if method in _QUADRATIC:
            raise ValueError(
                f"solver method={method!r} is a Gromov-Wasserstein method and needs "
                "structure matrices; this estimator uses a linear OT problem"
            )
        # a stored unbalanced (kept for the quadratic methods) is dropped for
        # another linear method; one passed to this call, or with method=None
        # (which solve infers from it), reaches solve, which refuses a mismatch
        if method not in (None, "unbalanced") and overrides.get("unbalanced") is None:
            p.pop("unbalanced", None)
        return dict(method=method, **p)

    def solve(self, M, a=None, b=None, **overrides):
        """Solve the linear OT problem with cost ``M`` and the stored settings.

        Calls :func:`skot.ot.solve` with this solver's parameters, updated by
        ``overrides``. ``alpha`` is not passed; ``reg`` is set to None for the
        unregularised methods (``"exact"``); a stored ``unbalanced`` is passed
        only with ``method="unbalanced"`` or ``method=None`` (one given to this
        call always is, so a mismatch is an error).

        Parameters
        ----------
        M : array-like of shape (n, m) or (B, n, m)
            Cost matrix (numpy or torch).
        a, b : array-like of shape (n,) and (m,) (or (B, n), (B, m)), default=None
            Marginal weights; uniform when None.
        **overrides
            Keyword arguments that replace this solver's parameters for this
            call only (e.g. ``reg=0.01``), or any other keyword of
            :func:`skot.ot.solve` (``mask``, ``box``, ``potentials_init``, ...).
            The solver itself is not modified.

        Returns
        -------
        result : OTResult
            As :func:`skot.ot.solve`.

        Raises
        ------
        ValueError
            If the method (stored or overridden) is a Gromov-Wasserstein method
            (``"fgw"``, ``"fgw_exact"``).
        """
        return solve(M, a, b, **self._kwargs(overrides, quadratic=False))

    def solve_gromov(self, Ca, Cb, M=None, a=None, b=None, **overrides):
        """Solve a (fused) Gromov-Wasserstein problem with the stored settings.

        Calls :func:`skot.ot.solve_gromov` with this solver's parameters,
        updated by ``overrides``. A linear method maps to its quadratic
        counterpart: ``"exact"``, or ``"sinkhorn"`` / ``"unbalanced"`` with
        ``reg=None``, to ``"fgw_exact"`` (reg None); ``"sinkhorn"`` and
        ``"unbalanced"`` to entropic ``"fgw"`` with the same ``reg``,
        ``reg_type``, ``unbalanced``, ``max_iter``, ``tol`` and ``grad``.
        The other linear methods (``"partial"``, ``"dbot"``, ``"total"``,
        ``"rows"``, ``"cols"``, ``"sparse"``) have no counterpart and are a
        ``ValueError``. ``mass`` is not passed.

        Parameters
        ----------
        Ca : array-like of shape (n, n) or (B, n, n), or LowRankGraph
            Structure matrix of the source points.
        Cb : array-like of shape (m, m) or (B, m, m), or LowRankGraph
            Structure matrix of the target points.
        M : array-like of shape (n, m) or (B, n, m), or LowRankGraph, default=None
            Feature cost; None means pure Gromov-Wasserstein.
        a, b : array-like of shape (n,) and (m,) (or (B, n), (B, m)), default=None
            Marginal weights; uniform when None.
        **overrides
            Keyword arguments that replace this solver's parameters for this
            call only (e.g. ``alpha=0.9``), or any other keyword of
            :func:`skot.ot.solve_gromov` (``inner_max_iter``, ``inner_tol``,
            ...). The solver itself is not modified.

        Returns
        -------
        result : OTResult
            As :func:`skot.ot.solve_gromov`.

        Raises
        ------
        ValueError
            If the method (stored or overridden) is a linear method with no
            fused Gromov counterpart (``"partial"``, ``"dbot"``, ``"total"``,
            ``"rows"``, ``"cols"``, ``"sparse"``).
        """
        return solve_gromov(Ca, Cb, M, a, b, **self._kwargs(overrides, quadratic=True))


def get_solver(solver=None, *, owner=None, **defaults):
    """Resolve an estimator's ``solver=`` parameter to an :class:`OTSolver`.

    Parameters
    ----------
    solver : str, OTSolver or None
        A name from :func:`available_methods` (combined with ``defaults``, e.g. the
        estimator's ``reg``), an :class:`OTSolver` (cloned; its own settings win) or
        None (``"sinkhorn"``).
    owner : estimator, optional
        The estimator whose ``reg`` is in ``defaults``: when ``solver`` is an
        :class:`OTSolver` and that ``reg`` was changed from the estimator's
        default to another value than the solver's, a ``UserWarning`` says that
        it is not used (a grid over the estimator's ``reg`` with an ``OTSolver``
        had scored identical fits; search ``solver__reg`` instead).
    **defaults
        OTSolver parameters used when ``solver`` is a name.

    Returns
    -------
    solver : OTSolver
    """
    if solver is None:
        solver = "sinkhorn"
    if isinstance(solver, OTSolver):
        if owner is not None and "reg" in defaults:
            import inspect
            import warnings

            reg = defaults["reg"]
            default = inspect.signature(type(owner).__init__).parameters["reg"].default
            if reg != default and reg != solver.reg:
                warnings.warn(
                    f"reg={reg!r} is not used: solver=OTSolver(reg={solver.reg!r}) "
                    "carries its own reg, which wins; set solver__reg (or pass the "
                    "solver by name) to change it", UserWarning, stacklevel=3)
        return clone(solver)
    if isinstance(solver, str):
        if solver not in available_methods():
            raise ValueError(
                f"solver={solver!r} is not a known OT method; choose one of "
                f"{available_methods()} or pass an skot.ot.OTSolver"
            )
        return OTSolver(solver, **defaults)
    raise TypeError(
        f"solver must be a method name or an skot.ot.OTSolver, got {solver!r}"
    )
