"""The result object returned by every solver of :mod:`skot.ot`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .._backend import to_numpy

__all__ = ["OTResult"]


@dataclass(eq=False)
class OTResult:
    r"""Solution of an optimal transport problem.

    Attributes mirror POT's :class:`ot.utils.OTResult`. When the inputs were numpy
    arrays every array attribute is a numpy array; for torch inputs they are tensors
    on the inputs' device and dtype.

    Attributes
    ----------
    plan : array of shape (n, m) or (B, n, m)
        Transport plan. Built on first access for entropic solvers (only the
        potentials are kept until then).
    value : float, array of shape (B,) or 0-d tensor
        Objective value, POT's convention: ``<M, P> + reg * KL(P | a b^T)`` for
        entropic OT, ``KL(p | q) = <p, log p/q>`` (``reg_type="entropy"``:
        ``reg * <P, log P>``). Unbalanced OT (``unbalanced`` set) adds the
        marginal penalties, and there every KL is the generalised one,
        ``<p, log p/q> - |p| + |q|``, the entropic term included (entropy:
        ``<P, log P> - |P|``): the objective the iterations minimise, whose
        gradient in M is the plan. POT's unbalanced ``reg_type="entropy"``
        value is the same; its ``reg_type="KL"`` value
        (``sinkhorn_unbalanced``'s ``total_cost``) drops the mass terms and is
        then identically 0 at the optimum. The other methods' entropic term has
        no mass term: where the plan's mass is not ``|a| |b|`` (``"partial"``,
        ``"total"``, ``"dbot"``) it differs from the generalised KL by
        ``reg (|a| |b| - |P|)``, and ``unbalanced=(inf, inf)`` with
        ``reg_type="entropy"`` from ``"sinkhorn"``'s by ``reg |P|``.
        ``"sparse"``: ``<M, P> + (reg / 2) ||P||^2``, the objective its plan
        solves (POT's ``ot.solve(reg_type="L2")`` returns the same plan with
        the value ``<M, P> + reg ||P||^2``).
        Precision: entropic values are read from the potentials, whose
        rounding is about ``reg`` times the dtype's machine epsilon, so when
        ``reg`` is large against the cost the value's relative error grows
        like ``reg * eps / |value|`` (float32, costs in [0, 1]: 1e-5 at reg
        100, about 1e-3 at reg 1e4; POT's values behave alike). Solve in
        float64, or rescale the cost, when ``reg`` is that large.
    value_linear : same type as ``value``
        The linear part ``<M, P>``.
    potentials : tuple (f, g) or None
        Dual potentials, in cost units, shapes (n,) and (m,) (or batched):
        the entropic plan is :math:`P_{ij} = \exp((f_i + g_j - M_{ij})/\mathrm{reg})
        a_i b_j` (``reg_type="KL"``; without :math:`a_i b_j` for ``"entropy"``).
        POT's ``ot.solve`` returns log-scalings instead: its ``(log_u, log_v)``
        are ``(f / reg + log a, g / reg + log b)`` (KL) or ``(f / reg, g /
        reg)`` (entropy), up to a constant moved between the two; convert them
        before passing POT's potentials as ``potentials_init``. Exact OT's
        potentials are POT's.
        Computed on first access where the solver left terms out of its
        iterations (balanced entropic FGW: the marginal term). None where the
        method has none to give: exact partial OT (solved on POT's extended
        problem) and ``"fgw_exact"`` (conditional gradient).
    n_iter : int
        Iterations run. POT's network simplex (``"exact"``, exact
        ``"partial"``) does not report its count: 0, or ``max_iter`` when it
        ran out.
    converged : bool
        False when ``max_iter`` was reached before the tolerance
        (``status="max_iter reached"``), when a ``"sparse"`` plan misses its
        marginals (``"marginals not met"``), when ``tol`` is below the
        rounding of a closed-form plan (``"rows"``, ``"cols"``, ``"total"``)
        or below what the potentials of a relaxed, box or inequality solve
        resolve, every update having rounded away (``"tol below rounding"``),
        or when entropic FGW stopped with an unconverged inner solve
        (``"inner solve not converged"``); a
        :class:`~sklearn.exceptions.ConvergenceWarning` was emitted.
    method : str
        Name of the method that produced the result.
    err : float
        Final error: the L1 marginal violation for balanced problems (of the
        returned plan for the exact methods), the stopping quantity of
        ``tol`` otherwise (see :func:`skot.ot.solve`), the last relative change
        of the objective for ``"fgw_exact"``.
    """

    value: Any = None
    value_linear: Any = None
    potentials: Any = None
    n_iter: int = 0
    converged: bool = True
    method: str = ""
    err: float = 0.0
    status: str = ""
    _plan: Any = None
    _plan_fn: Callable | None = field(default=None, repr=False)
    _numpy: bool = field(default=False, repr=False)
    # () -> (value, value_linear), run on first access (e.g. FGW's objective,
    # two n x n x m products that a caller needing only the plan never pays)
    _lazy_values: Callable | None = field(default=None, repr=False)
    # () -> (f, g), run on first access (e.g. balanced FGW's potentials, which
    # need the marginal term its iterations leave out)
    _lazy_potentials: Callable | None = field(default=None, repr=False)
    # library-internal by-products of a solve (e.g. a loss's -sum T log P)
    _extra: dict = field(default_factory=dict, repr=False)

    def __repr__(self):
        # a summary: the dataclass repr printed the whole plan and ran the lazy
        # values and potentials (two n x n x m products for FGW)
        parts = [f"method={self.method!r}"]
        value = object.__getattribute__(self, "value")
        if value is not None:
            v = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
            parts.append(f"value={v.item():.6g}" if v.ndim == 0 else f"value={v}")
        plan = object.__getattribute__(self, "_plan")
        if plan is not None:
            parts.append(f"plan shape={tuple(plan.shape)}")
        parts += [f"converged={self.converged}", f"n_iter={self.n_iter}",
                  f"err={self.err:.3g}", f"status={self.status!r}"]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __getstate__(self):
        # the lazy parts are closures (not picklable: a result of grad="detach"
        # or of balanced entropic FGW failed to pickle, e.g. when returned by a
        # joblib worker): evaluate them, keep the values
        self.value, self.potentials  # noqa: B018  (runs _lazy_values/_potentials)
        state = dict(self.__dict__)
        state["_plan"] = object.__getattribute__(self, "_plan")
        if state["_plan"] is None and self._plan_fn is not None:
            state["_plan"] = self._plan_fn()
        state["_plan_fn"] = None
        state["_lazy_values"] = state["_lazy_potentials"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def plan(self):
        if self._plan is None and self._plan_fn is not None:
            self._plan = self._plan_fn()
            self._plan_fn = None
        return self._export(self._plan)

    @property
    def marginals(self):
        """Tuple ``(P 1, P^T 1)`` of the plan's row and column sums."""
        plan = self._plan if self._plan is not None else self.plan
        if isinstance(plan, torch.Tensor):
            return self._export(plan.sum(-1)), self._export(plan.sum(-2))
        return plan.sum(-1), plan.sum(-2)

    @property
    def mass(self):
        """Total transported mass."""
        row, _ = self.marginals
        return row.sum(-1)

    def _export(self, x):
        if self._numpy and isinstance(x, torch.Tensor):
            return to_numpy(x)
        return x

    def __getattribute__(self, name):
        # value, value_linear and potentials are stored as tensors and exported
        # to numpy on access when the inputs were numpy.
        value = object.__getattribute__(self, name)
        if name in ("value", "value_linear") and value is None:
            lazy = object.__getattribute__(self, "_lazy_values")
            if lazy is not None:
                self.value, self.value_linear = lazy()
                self._lazy_values = None
                value = object.__getattribute__(self, name)
        if name in ("value", "value_linear") and object.__getattribute__(
            self, "_numpy"
        ):
            if isinstance(value, torch.Tensor):
                value = to_numpy(value)
                return value.item() if value.ndim == 0 else value
        if name == "potentials" and value is None:
            lazy = object.__getattribute__(self, "_lazy_potentials")
            if lazy is not None:
                self.potentials = value = lazy()
                self._lazy_potentials = None
        if name == "potentials" and object.__getattribute__(self, "_numpy"):
            if value is not None:
                return tuple(to_numpy(v) for v in value)
        return value
