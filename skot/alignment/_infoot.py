"""InfoOTAligner: information-maximising OT domain alignment (SKADA convention)."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import (
    _generate_get_feature_names_out,
    _num_samples,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from .._backend import DEVICE_CONSTRAINT, as_tensor, resolve_device, to_numpy
from ..ot import OTSolver, available_methods, get_solver
from ..ot._validation import _default_tol
from ..utils._param import Interval
from ._kernel_mi import (
    bandwidth,
    conditional_weights,
    euclidean,
    gaussian_kernel,
    mutual_information,
    query_log_kernel,
    solve_infoot,
)

__all__ = ["InfoOTAligner"]

# each linearised step projects onto U(1/n, 1/m): the balanced methods only
_BALANCED = ("sinkhorn", "exact")

# Inner (Sinkhorn) marginal tolerance (L1), as a fraction of the outer tol
# (the L1 plan change at which the linearisation steps stop); see
# doc/notes_infoot.md for the measurements behind 0.1
_INNER = 0.1


def _inner_tol(solver, tol):
    """The marginal tolerance (L1) of the inner solves: the solver's own tol
    when it carries one, else ``_INNER * tol``, never below the solver's
    default for the cost's dtype (1e-9 in float64; float32's rounding)."""
    if solver.tol is not None:
        return solver.tol

    def for_cost(cost):
        return max(_INNER * tol, _default_tol(cost, solver.reg))

    return for_cost


def _check_sample_domain(sample_domain, n_rows):
    """Validate SKADA's ``sample_domain``: one finite non-zero number per row."""
    sd = np.asarray(sample_domain)
    if sd.shape != (n_rows,):
        raise ValueError(
            f"sample_domain has shape {sd.shape}; expected ({n_rows},), one domain "
            "per row of X"
        )
    if not (np.issubdtype(sd.dtype, np.integer)
            or np.issubdtype(sd.dtype, np.floating)):
        raise TypeError(
            f"sample_domain must hold numbers (> 0 source, < 0 target); got dtype "
            f"{sd.dtype}"
        )
    if not np.isfinite(sd).all():
        raise ValueError("sample_domain must be finite (> 0 source, < 0 target); got "
                         f"{int((~np.isfinite(sd)).sum())} non-finite entries")
    if (sd == 0).any():
        raise ValueError("sample_domain must be non-zero (> 0 source, < 0 target); got "
                         f"{int((sd == 0).sum())} zero entries")
    return sd


def _check_spread(Z, name):
    """The kernel bandwidth needs at least two distinct rows."""
    if len(Z) < 2 or not (np.ptp(Z, axis=0) > 0).any():
        n = len(Z)
        raise ValueError(
            f"InfoOTAligner needs at least 2 distinct {name} rows to define the "
            f"{name} kernel bandwidth; got {n} sample{'' if n == 1 else 's'}"
            f"{'' if n == 1 else ', all identical'}"
        )


def _split_domains(X, y, sample_domain):
    """SKADA's convention: positive domain = source, negative = target.

    With ``sample_domain=None``, rows whose label is -1 are the targets. ``X``,
    ``y`` are already validated.
    """
    if sample_domain is None:
        if y is None or not np.any(np.asarray(y) == -1):
            # no domain information at all: the rows are their own target (the
            # alignment is then close to the identity); said out loud, not silent
            warnings.warn(
                "InfoOTAligner.fit got no sample_domain and no target rows (y == -1): "
                "X is aligned onto itself. Pass sample_domain (> 0 source, < 0 "
                "target) to align two domains.", UserWarning, stacklevel=3)
            every = np.ones(len(X), dtype=bool)
            return every, every
        sample_domain = np.where(np.asarray(y) == -1, -2, 1)
    sd = _check_sample_domain(sample_domain, len(X))
    src, tgt = sd > 0, sd < 0
    if not src.any() or not tgt.any():
        raise ValueError(
            f"sample_domain must contain both source (> 0) and target (< 0) rows; got "
            f"{int(src.sum())} source and {int(tgt.sum())} target rows"
        )
    return src, tgt


class InfoOTAligner(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Information-maximising OT alignment of a source domain onto a target.

    Fused InfoOT :cite:`chuang2023infoot` couples source rows :math:`x_i` and
    target rows :math:`y_j` by

    .. math::

        \min_{\Gamma \in U(\frac1n 1, \frac1m 1)}
            \langle C, \Gamma \rangle - \lambda\, \hat I(\Gamma)
            + \varepsilon\, \mathrm{KL}(\Gamma \| \tfrac{1}{nm} 1 1^\top),

    with :math:`C` the Euclidean cost (divided by its maximum) and
    :math:`\hat I` the kernel estimate of the mutual information of the plan
    (Gaussian kernels with bandwidths fitted once, at ``fit``, and stored). It is
    solved by linearising :math:`\hat I` and solving an entropic OT problem with
    :mod:`skot.ot` at each step. Without a shared space (``X_target=`` in
    ``fit``) the geometric term is dropped (plain InfoOT).

    Source rows are mapped into the target domain by the *conditional
    projection*, a kernel-weighted average of target rows that is defined for
    rows never seen in ``fit`` (the out-of-sample property of InfoOT):

    .. math::

        T(x) = \frac{\sum_j w_j(x) y_j}{\sum_j w_j(x)}, \qquad
        w_j(x) = \frac{(k_x(x)^\top \Gamma K^y)_j}{f_Y(y_j)}.

    The weights are normalised in the log domain, so a row far from every
    fitted source row (where the kernel underflows, or even the squared
    distances overflow the dtype) is mapped by its nearest source rows instead
    of to zero or NaN; only a row whose distance to its nearest source row is
    itself beyond the dtype's range is a ``ValueError``.

    Like SKADA's adapters, ``fit`` and ``transform`` request ``sample_domain``
    by default under scikit-learn's metadata routing, so
    ``skada.make_da_pipeline`` (and any routing-enabled pipeline) passes it on
    without ``set_fit_request``/``set_transform_request`` calls. Stacked
    source and target rows belong in ``skada.make_da_pipeline``, which drops
    the unlabelled target rows before the final estimator: a plain
    scikit-learn ``Pipeline`` trains it on every row, the target rows with
    their label -1 included. In a plain ``Pipeline``, fit on the labelled
    source rows only and pass the targets as ``X_target`` (see the user
    guide).

    With ``X_target`` the output is in the target space: ``transform`` takes
    target rows (``sample_domain=None`` or < 0) of ``n_features_target_``
    columns and returns them unchanged, source rows (> 0) of
    ``n_features_in_`` columns and maps them, and ``get_feature_names_out``
    names the ``n_features_target_`` output columns.

    Parameters
    ----------
    reg : float > 0, default=0.05
        Entropic regularisation ε (on the cost scaled to [0, 1]).
    lam : float >= 0, default=1.0
        Weight λ of the mutual information; 0 gives plain entropic OT.
    h : float > 0, default=0.1
        Relative kernel bandwidth: ``h * sqrt(mean(D^2) / 2)`` per domain (the
        reference code uses 0.5; 0.1 measured better on the synthetic shift of
        ``benchmarks/bench_infoot.py``: 1-NN 0.75 vs 0.31). Plain InfoOT
        (``X_target``, no geometric cost) starts from the independent coupling,
        a stationary point of the kernel MI when the kernels are narrow: a fit
        that stays there (every row mapped to the target mean) warns to
        increase ``h``.
    solver : {"sinkhorn", "exact"} or OTSolver, default="sinkhorn"
        Linear OT solver of each linearised step, which projects onto the
        balanced plans :math:`U(\frac1n 1, \frac1m 1)`: ``"sinkhorn"``, or
        ``"exact"`` (network simplex, ``reg`` unused), or an
        :class:`skot.ot.OTSolver` with one of these methods. The methods that
        free or relax a marginal (``"rows"``, ``"cols"``, ``"total"``,
        ``"dbot"``, ``"unbalanced"``, ``"partial"``), ``"sparse"`` and the
        Gromov methods are a ``ValueError`` in ``fit``. The inner solves stop
        at a marginal error (L1) of ``0.1 * tol`` (the solver's own ``tol``
        when an ``OTSolver`` carries one; never below the solver's default
        for the dtype, e.g. float32's rounding).
    projection : {"conditional", "barycentric"}, default="conditional"
        Map used by ``transform``/``transform_source``; barycentric is defined
        for the fitted source rows only.
    label_penalty : float >= 0, default=0.0
        Added to the source-source distances of differently labelled rows (with
        ``y``), which makes the source kernel class-aware (bandwidth still from the
        unpenalised distances). It shapes the plan only: the conditional
        projection weighs every query, fitted rows included, with the
        unpenalised kernel (queries carry no labels), so a fitted row maps as a
        new row at the same place would.
    max_iter : int, default=30
        Linearisation steps.
    tol : float, default=1e-4
        Stop when the plan changes by less (L1); ``0.1 * tol`` is the inner
        solves' marginal tolerance (see ``solver``).
    random_state : None, int or RandomState, default=None
        Unused (deterministic); kept for API uniformity.
    device : str, torch.device or None, default="cpu"
        Torch device of the kernels and the OT solves; None means ``"cpu"``.
        Checked in ``fit``: an unknown device, ``"meta"`` (no data), or one
        this torch build or machine lacks (``"cuda"`` without CUDA, ``"xpu"``
        without XPU) is a ``ValueError``, never a silent fallback.

    Attributes
    ----------
    plan_ : ndarray of shape (n_source, n_target)
    X_source_, X_target_ : ndarray
        Fitted source and target rows.
    bandwidth_source_, bandwidth_target_ : float
        Kernel bandwidths, fitted once and reused by every query.
    hx_, hy_ : float
        Aliases of ``bandwidth_source_`` and ``bandwidth_target_``.
    mutual_information_ : float
        :math:`\hat I` of the fitted plan.
    n_iter_ : int
        Linearisation steps run.
    n_inner_iter_ : ndarray of int
        Iterations of each inner OT solve, one per step, in order.
    n_features_in_ : int
        Width of the rows of ``X`` in ``fit``: of the source rows, which
        ``transform_source`` and ``transform`` (``sample_domain > 0``) take.
    n_features_target_ : int
        Width of the target rows: ``n_features_in_`` when source and target
        rows are stacked in ``X``, the width of ``X_target`` otherwise; the
        width of the output and of the target rows ``transform`` takes.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when ``X`` has string feature names. With stacked rows
        ``transform`` keeps the input features; with ``X_target`` the output
        columns are ``infootaligner0``, ``infootaligner1``, ... (see
        ``get_feature_names_out``).

    Examples
    --------
    >>> import numpy as np
    >>> from skot import InfoOTAligner
    >>> rng = np.random.default_rng(0)
    >>> Xs, Xt = rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 3
    >>> al = InfoOTAligner().fit(np.vstack([Xs, Xt]),
    ...                          sample_domain=np.r_[np.ones(20), -np.ones(20)])
    >>> bool(al.transform_source(Xs).mean() > 2)
    True
    """

    # as SKADA's BaseAdapter: route sample_domain by default (metadata routing)
    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__transform = {"sample_domain": True}

    _parameter_constraints: dict = {
        "reg": [Interval(Real, 0, None, closed="neither")],
        "lam": [Interval(Real, 0, None, closed="left")],
        "h": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions(set(_BALANCED)), OTSolver],
        "projection": [StrOptions({"conditional", "barycentric"})],
        "label_penalty": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": DEVICE_CONSTRAINT,
    }

    def __init__(self, *, reg=0.05, lam=1.0, h=0.1, solver="sinkhorn",
                 projection="conditional", label_penalty=0.0, max_iter=30, tol=1e-4,
                 random_state=None, device="cpu"):
        self.reg = reg
        self.lam = lam
        self.h = h
        self.solver = solver
        self.projection = projection
        self.label_penalty = label_penalty
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, sample_domain=None, X_target=None):
        """Fit the plan between the source and target rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source and target rows stacked (or only source rows with ``X_target``).
        y : array-like of shape (n_samples,), default=None
            Source labels (-1 for target rows), used by ``label_penalty`` and to
            find the targets when ``sample_domain`` is None.
        sample_domain : array-like of shape (n_samples,), default=None
            > 0 for source rows, < 0 for target rows (SKADA's convention).
        X_target : array-like of shape (n_target, n_features_target), default=None
            Target rows in another space (plain InfoOT); then every row of X is a
            source row (a ``sample_domain`` given with it must be all > 0).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``y`` or ``sample_domain`` does not have one entry per row of
            ``X``, if ``y`` has NaN or infinite entries, if ``sample_domain``
            has zero or non-finite entries or lacks
            source or target rows, or if the source or the target rows have
            fewer than 2 distinct rows (the kernel bandwidth is then 0); also
            for a ``sample_domain`` with target rows given with ``X_target``,
            an ``X_target`` that is not a non-empty 2-D array, and a ``solver``
            other than ``"sinkhorn"``, ``"exact"`` or an OTSolver with one of
            these methods.
        TypeError
            If ``sample_domain`` does not hold numbers.
        """
        _check_solver(self.solver)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if y is not None:
            y = column_or_1d(y, input_name="y")
            # a NaN label is unequal to itself (label_penalty would penalise a
            # row against itself) and never -1 (never a target row)
            assert_all_finite(y, input_name="y")
            if len(y) != len(X):
                raise ValueError(
                    f"y has {len(y)} entries but X has {len(X)} rows; pass one label "
                    "per row of X (-1 for target rows)"
                )
        if X_target is not None:
            if sample_domain is not None:
                sd = _check_sample_domain(sample_domain, len(X))
                if (sd < 0).any():
                    raise ValueError(
                        "with X_target every row of X is a source row, but "
                        f"sample_domain marks {int((sd < 0).sum())} rows as target "
                        "(< 0)"
                    )
            shape = np.shape(X_target)
            if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
                raise ValueError(
                    "X_target must be 2-D, of shape (n_target, n_features_target) with "
                    f"at least one row and column; got shape {shape}"
                )
            Xs = X
            Xt = check_array(X_target, dtype=X.dtype, input_name="X_target")
            ys = y
            fused = False
        else:
            src, tgt = _split_domains(X, y, sample_domain)
            Xs, Xt = X[src], X[tgt]
            ys = None if y is None else y[src]
            fused = True
        _check_spread(Xs, "source")
        _check_spread(Xt, "target")
        device = resolve_device(self.device)
        S = as_tensor(Xs, device=device)
        T = as_tensor(Xt, device=device, dtype=S.dtype)
        hx, hy = bandwidth(S, self.h), bandwidth(T, self.h)
        Kx = gaussian_kernel(S, S, hx)
        if ys is None and self.label_penalty > 0:
            # it shapes the source kernel through the labels: without them it
            # had been ignored silently
            warnings.warn(
                f"label_penalty={self.label_penalty!r} is not used: it penalises "
                "differently labelled source rows, and fit was given no source "
                "labels (pass y)", UserWarning, stacklevel=2)
        if ys is not None and self.label_penalty > 0:
            same = as_tensor(ys[:, None] == ys[None, :], device=device, dtype=S.dtype)
            D = torch_cdist_penalised(S, same, self.label_penalty)
            Kx = (-0.5 * (D / hx) ** 2).exp()
        Ky = gaussian_kernel(T, T, hy)
        C = None
        if fused:
            import torch

            C = euclidean(S, T)
            C = C / C.max().clamp_min(torch.finfo(C.dtype).tiny)
        solver = get_solver(self.solver, owner=self, reg=self.reg)
        inner_tol = None if solver.method == "exact" else _inner_tol(solver, self.tol)
        with warnings.catch_warnings():
            # the warm-started solves of the intermediate linearisation steps
            # only move the linearisation point: the last one, whose plan is
            # returned, is reported below
            warnings.simplefilter("ignore", ConvergenceWarning)
            plan, n_iter, converged, last, info = solve_infoot(
                C, Kx, Ky, solver, lam=self.lam, max_iter=self.max_iter, tol=self.tol,
                inner_tol=inner_tol)
        self.n_inner_iter_ = np.asarray(info["inner_iters"])
        if not last.converged:
            used = solver.tol if info["inner_tol"] is None else info["inner_tol"]
            used = "the solver's default" if used is None else f"{used:.3g}"
            warnings.warn(
                f"InfoOT: the last inner OT solve, whose plan is returned, did not "
                f"converge (error {float(last.err):.3g}, solver {solver.method!r} "
                f"with reg={solver.reg}, tol={used}); increase reg, or the "
                "inner budget with solver=OTSolver('sinkhorn', max_iter=...)",
                ConvergenceWarning, stacklevel=2)
        if not converged:
            warnings.warn(
                f"InfoOT did not converge in max_iter={self.max_iter} linearisation "
                "steps; increase max_iter or reg", ConvergenceWarning, stacklevel=2)
        if not fused and self.lam > 0:
            # plain InfoOT starts from the independent coupling p q^T, which is
            # a stationary point of the kernel MI when the kernels are narrow
            # (the linearised cost is then constant): the fit stopped there
            # after one step, MI ~ 0, every row mapped to the target mean,
            # silently (the reference code does the same)
            indep = plan.sum(1, keepdim=True) * plan.sum(0, keepdim=True)
            if float((plan - indep).abs().sum()) < self.tol:
                warnings.warn(
                    f"InfoOT stopped at the independent coupling p q^T (after "
                    f"{n_iter} step(s), mutual information "
                    f"{float(mutual_information(Kx, Ky, plan)):.2g}): with kernels "
                    f"this narrow (h={self.h!r}) it is a stationary point, and every "
                    "row maps to the mean of the target; increase h (e.g. 0.5)",
                    UserWarning, stacklevel=2)
        self._Kx, self._Ky, self._plan_t = Kx, Ky, plan
        self.plan_ = to_numpy(plan)
        self.X_source_, self.X_target_ = Xs, Xt
        self.bandwidth_source_, self.bandwidth_target_ = float(hx), float(hy)
        self.hx_, self.hy_ = self.bandwidth_source_, self.bandwidth_target_
        self.mutual_information_ = float(mutual_information(Kx, Ky, plan))
        self.n_iter_ = n_iter
        self.n_features_target_ = Xt.shape[1]
        self._fused = fused  # False: X_target given, the output is the target space
        return self

    def get_feature_names_out(self, input_features=None):
        """Names of the output features.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Names of the input (source) features, checked against
            ``feature_names_in_`` as scikit-learn does.

        Returns
        -------
        feature_names_out : ndarray of str objects
            With stacked source and target rows, the input features (the
            output is in the shared space). With ``X_target``, the
            ``n_features_target_`` names ``infootaligner0``,
            ``infootaligner1``, ... of the target space.
        """
        check_is_fitted(self, "n_features_target_")
        if self._fused:
            return super().get_feature_names_out(input_features)
        return _generate_get_feature_names_out(
            self, self.n_features_target_, input_features=input_features)

    def _check_target_rows(self, X):
        """Validate target rows in the X_target mode: ``n_features_target_`` wide."""
        X = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        if X.shape[1] != self.n_features_target_:
            raise ValueError(
                f"X has {X.shape[1]} features, but InfoOTAligner is expecting "
                f"{self.n_features_target_} features for target rows (sample_domain "
                "None or < 0: the width of X_target in fit); source rows "
                f"(sample_domain > 0) have {self.n_features_in_}"
            )
        return X

    def conditional_score(self, X):
        """Retrieval scores of source rows over the fitted target rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Source-domain rows (seen in fit or not).

        Returns
        -------
        scores : ndarray of shape (n_queries, n_target)
            Conditional projection weights (rows sum to 1); rank targets by them.

        Raises
        ------
        ValueError
            If a row of ``X`` is farther from every fitted source row than its
            dtype can represent (the distance itself overflows; a row whose
            squared distances overflow still gets weights summing to 1).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return to_numpy(self._weights(X))

    def retrieve(self, X, n_neighbors=1):
        """Indices of the best-scoring fitted target rows for each source row.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Source-domain rows (seen in fit or not).
        n_neighbors : int, default=1
            Number of target rows returned per query, best first.

        Returns
        -------
        indices : ndarray of shape (n_queries, n_neighbors)
            Row indices into ``X_target_``, ranked by :meth:`conditional_score`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the aligner is not fitted (checked first).
        ValueError
            If ``n_neighbors`` is not an int in [1, number of fitted target
            rows].
        """
        check_is_fitted(self)
        n_target = len(self.X_target_)
        if (isinstance(n_neighbors, bool) or not isinstance(n_neighbors, Integral)
                or n_neighbors < 1 or n_neighbors > n_target):
            raise ValueError(
                f"n_neighbors must be an int in [1, n_target] with n_target = "
                f"{n_target} fitted target rows; got {n_neighbors!r}")
        W = self.conditional_score(X)
        return np.argsort(-W, axis=1, kind="stable")[:, :n_neighbors]

    def _weights(self, X):
        S = as_tensor(self.X_source_, device=self._plan_t.device)
        Q = as_tensor(X, device=S.device, dtype=S.dtype)
        log_Kq = query_log_kernel(Q, S, self.bandwidth_source_)
        return conditional_weights(log_Kq, self._plan_t.to(S.dtype),
                                   self._Ky.to(S.dtype))

    def transform_source(self, X):
        """Map source rows into the target domain.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source-domain rows; with ``projection="conditional"`` they need not
            have been seen in fit.

        Returns
        -------
        X_mapped : ndarray of shape (n_samples, n_features_target)

        Raises
        ------
        ValueError
            As :meth:`conditional_score`, for a row whose distance to every
            fitted source row overflows its dtype.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._transform_source(X)

    def _transform_source(self, X):
        """:meth:`transform_source` of an already validated ``X``."""
        Yt = self.X_target_
        if self.projection == "barycentric":
            # the fitted rows, up to the rounding of the coarser dtype (no
            # absolute tolerance: rows at 1e-9 are not all "close")
            eps = max(np.finfo(X.dtype).eps, np.finfo(self.X_source_.dtype).eps)
            if X.shape != self.X_source_.shape or not np.allclose(
                    X, self.X_source_, rtol=4 * eps, atol=0):
                raise ValueError(
                    "projection='barycentric' maps only the fitted source rows; use "
                    "projection='conditional' for new rows"
                )
            W = self.plan_ / self.plan_.sum(1, keepdims=True)
        else:
            W = to_numpy(self._weights(X))
        return (W @ Yt).astype(X.dtype, copy=False)

    def transform(self, X, *, sample_domain=None):
        """Map source rows into the target domain; target rows are unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source rows have ``n_features_in_`` columns, target rows
            ``n_features_target_`` (the same number unless ``fit`` got
            ``X_target``).
        sample_domain : array-like of shape (n_samples,), default=None
            > 0 source, < 0 target; None means every row is a target row
            (SKADA's inference-time default), returned unchanged. Requested by
            default under metadata routing.

        Returns
        -------
        X_out : ndarray of shape (n_samples, `n_features_target_`)

        Raises
        ------
        ValueError
            If ``sample_domain`` does not have one finite, non-zero entry per row,
            if ``X`` is not as wide as its rows' domain (``n_features_in_`` for
            source rows, ``n_features_target_`` for target rows), if
            ``sample_domain`` mixes source and target rows while their widths
            differ (``fit`` with ``X_target``), or (as
            :meth:`transform_source`) a source row's distance to every fitted
            source row overflows its dtype.
        TypeError
            If ``sample_domain`` does not hold numbers.
        """
        check_is_fitted(self)
        if not self._fused:
            return self._transform_across_spaces(X, sample_domain)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if sample_domain is None:
            return X
        sd = _check_sample_domain(sample_domain, len(X))
        out = X.copy()
        src = sd > 0
        if src.any():
            out[src] = self._transform_source(X[src])
        return out

    def _transform_across_spaces(self, X, sample_domain):
        """:meth:`transform` after ``fit`` with ``X_target``: target rows are
        ``n_features_target_`` wide, source rows ``n_features_in_``."""
        if sample_domain is None:
            return self._check_target_rows(X)
        sd = _check_sample_domain(sample_domain, _num_samples(X))
        src = sd > 0
        if not src.any():
            return self._check_target_rows(X)
        if src.all():
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
            return self._transform_source(X)
        if self.n_features_in_ != self.n_features_target_:
            raise ValueError(
                f"sample_domain marks {int(src.sum())} source (> 0) and "
                f"{int((~src).sum())} target (< 0) rows, but after fit with X_target "
                f"source rows have {self.n_features_in_} features and target rows "
                f"{self.n_features_target_}, so one X cannot hold both; transform "
                "them in separate calls"
            )
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        out = X.copy()
        out[src] = self._transform_source(X[src])
        return out

    def fit_transform(self, X, y=None, *, sample_domain=None, X_target=None):
        """Fit, then ``transform(X, sample_domain=sample_domain)`` (with
        ``X_target``: ``transform_source(X)``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source and target rows stacked (or only source rows with ``X_target``).
        y : array-like of shape (n_samples,), default=None
            Source labels (-1 for target rows); see :meth:`fit`.
        sample_domain : array-like of shape (n_samples,), default=None
            > 0 for source rows, < 0 for target rows (SKADA's convention).
        X_target : array-like of shape (n_target, n_features_target), default=None
            Target rows in another space (plain InfoOT).

        Returns
        -------
        X_out : ndarray of shape (n_samples, `n_features_target_`)
            ``X`` with its source rows mapped into the target domain (with
            ``X_target``: every row mapped, in the target space). Without
            ``sample_domain``, the source rows are those ``fit`` found: the
            rows whose label is not -1.
        """
        self.fit(X, y, sample_domain=sample_domain, X_target=X_target)
        if X_target is not None:
            return self.transform_source(X)
        if sample_domain is None and y is not None:
            # the domains fit read from y (-1: target rows), as SKADA's adapters
            # infer them in fit_transform; transform alone has no y to read
            labels = column_or_1d(y)
            if np.any(labels == -1):
                sample_domain = np.where(labels == -1, -2, 1)
        return self.transform(X, sample_domain=sample_domain)


def _check_solver(solver):
    """``solver`` must solve the balanced problem of each linearised step
    (checked before any work, also without scikit-learn's validation)."""
    method = solver.method if isinstance(solver, OTSolver) else solver
    if isinstance(method, str) and method in _BALANCED:
        return
    known = method in available_methods() if isinstance(method, str) else False
    raise ValueError(
        f"solver={solver!r} is not "
        + ("supported by InfoOTAligner: each linearised step needs a balanced OT "
           "solver (plans in U(1/n, 1/m))" if known else "a known OT method")
        + f"; choose one of {list(_BALANCED)} or an skot.ot.OTSolver with one of "
        "these methods")


def torch_cdist_penalised(S, same, penalty):
    """Euclidean distances plus ``penalty`` between differently labelled rows."""
    import torch

    return euclidean(S, S) + penalty * (1 - same)
