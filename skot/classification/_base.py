"""Shared plumbing of the OT classifiers: validation, class embeddings, batches."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from .._backend import DEVICE_CONSTRAINT, as_tensor, resolve_device, to_numpy, unit_rows
from ..ot import OTSolver, available_methods, get_solver
from ..ot._registry import default_max_iter
from ..ot._validation import check_reg
from ..utils._param import Interval
from ._transductive import transductive_plan

__all__ = ["BaseOTClassifier"]

# max_iter=None: the iteration budget of the entropic posterior solves
_ENTROPIC_MAX_ITER = 10_000


def _normalize(X):
    """Unit rows of a numpy array (:func:`skot._backend.unit_rows`, zero rows
    stay zero): rows at 1e300 or 1e-300 had read as class 0."""
    return to_numpy(unit_rows(as_tensor(X)))


class BaseOTClassifier(ClassifierMixin, BaseEstimator):
    """Zero-shot (class embeddings) or few-shot (prototypes) OT classification."""

    _parameter_constraints: dict = {
        "class_embeddings": ["array-like", None],
        "classes": ["array-like", None],
        "reg": [Interval(Real, 0, None, closed="neither"), None],
        "solver": [StrOptions(set(available_methods())), OTSolver],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "device": DEVICE_CONSTRAINT,
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------ fit helpers
    def _check_solver(self):
        # validated before the sklearn constraint machinery so that the message
        # names the parameter and the value in the same words everywhere
        if isinstance(self.solver, str) and self.solver not in available_methods():
            raise ValueError(
                f"solver={self.solver!r} is not a known OT method; choose one of "
                f"{available_methods()} or pass an skot.ot.OTSolver"
            )
        if self.reg is not None:
            check_reg(self.reg)
        get_solver(self.solver, owner=self, reg=self.reg)  # warns if reg is unused

    def _fit_classes(self, X, y):
        """Validate X (and y) and set classes_, class_embeddings_."""
        self._check_solver()
        resolve_device(self.device)  # in fit, not first in predict
        if self.class_embeddings is not None:
            X = validate_data(self, X, dtype=[np.float64, np.float32])
            T = check_array(self.class_embeddings, dtype=[np.float64, np.float32],
                            input_name="class_embeddings")
            if T.shape[1] != X.shape[1]:
                raise ValueError(
                    f"class_embeddings has {T.shape[1]} features (dim) but X has "
                    f"{X.shape[1]} features; they must live in the same space"
                )
            if T.shape[0] < 2:
                raise ValueError(
                    f"class_embeddings has {T.shape[0]} row(s); need at least 2 classes"
                )
            order = np.arange(T.shape[0])
            if self.classes is None:
                classes = order
            else:
                classes = np.asarray(self.classes)
                if classes.shape != (T.shape[0],):
                    raise ValueError(
                        f"classes has shape {classes.shape}; expected "
                        f"({T.shape[0]},), one label per class embedding"
                    )
                _check_labels(self.classes)
                uniq, counts = np.unique(classes, return_counts=True)
                if (counts > 1).any():
                    raise ValueError(
                        f"classes has repeated labels {uniq[counts > 1].tolist()}; "
                        "each class embedding needs its own label")
                # scikit-learn's scorers read predict_proba's columns in the
                # order of sorted classes_: sort the labels, and the class
                # embeddings and a given prior with them
                order = np.argsort(classes, kind="stable")
            self._class_order = order
            self.classes_ = classes[order]
            self.class_embeddings_ = _normalize(T[order]).astype(X.dtype, copy=False)
            if y is not None:
                y = np.asarray(y)
                if len(y) != len(X):
                    raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
                self._check_zero_shot_y(y)
            return X, y
        self._class_order = None
        if self.classes is not None:
            # it had been ignored: classes_ came from y whatever classes said
            raise ValueError(
                f"classes={self.classes!r} names the rows of class_embeddings, but "
                "class_embeddings is None (few-shot: the classes are the labels "
                "of y); pass class_embeddings with it, or leave classes=None")
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is "
                "None: few-shot fitting needs labels when class_embeddings is None "
                "(pass class_embeddings for zero-shot)"
            )
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}, i.e. 1 class); need at least "
                "2 classes"
            )
        Xn = _normalize(X)
        protos = np.stack([Xn[y_idx == k].mean(0) for k in range(len(classes))])
        self.classes_ = classes
        self.class_embeddings_ = _normalize(protos).astype(X.dtype, copy=False)
        return X, y

    def _check_zero_shot_y(self, y):
        """Zero-shot ``fit`` does not learn from ``y``, but a ``y`` with labels
        outside the classes means ``classes`` does not name the class
        embeddings as ``y`` does (``score`` would then be 0 with no hint):
        refuse it, naming a few of those labels and the classes."""
        y = column_or_1d(y, warn=True)
        known = set(self.classes_.tolist())
        unknown = []
        for label in dict.fromkeys(y.tolist()):
            try:
                found = label in known
            except TypeError:  # unhashable
                found = False
            if not found:
                unknown.append(label)
        if unknown:
            try:
                unknown = sorted(unknown)
            except TypeError:  # labels of several types: first-seen order
                pass
            shown = ", ".join(repr(v) for v in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            k = len(self.classes_)
            names = ", ".join(repr(c) for c in self.classes_[:10].tolist())
            names += ", ..." if k > 10 else ""
            given = ("classes=None, i.e. the row indices 0..n_classes-1 of "
                     "class_embeddings" if self.classes is None else "classes")
            raise ValueError(
                f"y has {len(unknown)} label(s) that are not among the {k} classes "
                f"({given}): {shown}{more}; classes_ = [{names}]. With "
                "class_embeddings given (zero-shot) fit does not learn from y, "
                "but predict can only return these classes: pass classes= with "
                "the labels of y, one per row of class_embeddings, or fit without y"
            )

    def _fit_prior(self):
        """Set ``class_prior_``: None (free classes, or ``"estimate"`` at predict
        time), uniform for ``"uniform"``, or the normalised weights given."""
        k = len(self.classes_)
        prior = self.class_prior
        if prior is None or isinstance(prior, str):
            self.class_prior_ = np.full(k, 1.0 / k) if prior == "uniform" else None
            return
        try:
            prior = np.asarray(prior, dtype=float)
        except (TypeError, ValueError):  # strings: "could not convert 'a'"
            prior = np.array([np.nan])
        if prior.shape != (k,) or not np.isfinite(prior).all() or (prior < 0).any() \
                or prior.sum() <= 0:
            raise ValueError(
                f"class_prior must be None, a string option or {k} non-negative "
                f"weights (one per class), got {self.class_prior!r}"
            )
        if getattr(self, "_class_order", None) is not None:
            prior = prior[self._class_order]  # given in class_embeddings' order
        self.class_prior_ = prior / prior.sum()

    def _posterior_solver(self, dtype=torch.float64):
        """The solver of the class-posterior problem (estimators add their own
        options, e.g. ``unbalanced``)."""
        return self._solver(dtype)

    def _check_posterior_solver(self):
        """Fail in ``fit``, not in ``predict``, when the class-posterior solve
        cannot run with ``solver`` (e.g. ``"partial"`` without ``mass``): one
        probe solve of two rows, one iteration, through the path ``predict``
        takes; :mod:`skot.ot` words the reason. Without a class prior that
        solve is rows-only whatever ``solver`` says."""
        if self.class_prior is None or getattr(self, "estimator_", None) is not None:
            return
        method = self._posterior_solver().method
        if method in ("rows", "cols", "total"):
            # these constraint sets leave the column marginal free: the prior
            # would be ignored and the predictions be the prior-free ones
            raise ValueError(
                f"class_prior={self.class_prior!r} needs a solver that fixes or "
                f"bounds the class marginal; solver={self.solver!r} (method "
                f"{method!r}) leaves it free. Use 'sinkhorn', 'exact', 'dbot' or "
                "'unbalanced', or class_prior=None")
        T = torch.as_tensor(_normalize(self.class_embeddings_), dtype=torch.float64)
        k = T.shape[0]
        # "estimate" has no prior before predict: probe with the uniform one
        prior = (torch.full((k,), 1.0 / k, dtype=T.dtype) if self.class_prior_ is None
                 else torch.as_tensor(self.class_prior_, dtype=T.dtype))
        solver = self._posterior_solver().set_params(max_iter=1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one iteration: not converged
                transductive_plan(T[:2], T, solver, prior=prior)
        except ValueError as err:
            raise ValueError(
                f"solver={self.solver!r} cannot solve the class-posterior problem: {err}"
            ) from err

    def _solver(self, dtype=torch.float64):
        # an L1 marginal error of 1e-6 is far below what changes an argmax. In
        # float32 the solver's own default (max(1e-6, eps max|M| / reg), above
        # the rounding floor of the marginals) is used: on CLIP costs at reg
        # 0.01 the floor is 1-4e-6, and a fixed 1e-6 ran every solve to
        # max_iter and warned although it had converged
        tol = 1e-6 if dtype == torch.float64 else None
        solver = get_solver(self.solver, reg=self.reg, max_iter=self.max_iter, tol=tol)
        # an OTSolver with a max_iter of its own keeps it; one without takes
        # the estimator's max_iter (it had run the solve's default 1000
        # iterations whatever max_iter said, and the ConvergenceWarning asked
        # to increase a max_iter that was not used)
        if solver.max_iter is None and self.max_iter is not None:
            solver.set_params(max_iter=self.max_iter)
        # likewise the tolerance: an OTSolver without one takes the one a name
        # gets (its own default, 1e-9 in float64, ran reg=0.001 posteriors to
        # the budget, with a warning, where the name converged)
        if solver.tol is None and tol is not None:
            solver.set_params(tol=tol)
        # no budget from either (the entropic methods; the registry holds the
        # network simplex's and L-BFGS's): 10000
        if (solver.max_iter is None
                and default_max_iter(solver.method, solver.reg, None) is None):
            solver.set_params(max_iter=self._entropic_max_iter())
        return solver

    def _entropic_max_iter(self):
        """``max_iter``, or 10000 when None: the class-posterior problems are
        n x n_classes, and few-shot prototypes (close to their own images) at
        reg 0.01 took up to 3000 Sinkhorn iterations to the 1e-6 tolerance."""
        return _ENTROPIC_MAX_ITER if self.max_iter is None else self.max_iter

    def _check_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X

    def _batches(self, n):
        """Row slices of the transductive batches (a tqdm bar with ``verbose``)."""
        size = n if self.batch_size is None else self.batch_size
        out = [slice(i, min(i + size, n)) for i in range(0, n, size)]
        if getattr(self, "verbose", 0) and len(out) > 1:
            from tqdm.auto import tqdm

            return tqdm(out, desc=f"{type(self).__name__} batches", leave=False)
        return out

    def _warn_small_batches(self, n):
        """Warn when a batch solved with a class prior has fewer rows than
        classes: the column marginal then spreads every row's mass over the
        classes (a single row gets the prior itself as its probabilities and
        the prior's argmax as its label), whatever its features."""
        if (self.class_prior is None
                or getattr(self, "estimator_", None) is not None):
            return
        k = len(self.classes_)
        bs = self.batch_size
        # the smallest batch (the last one when batch_size does not divide n)
        size = n if bs is None or bs >= n else (n % bs or bs)
        if size < k:
            warnings.warn(
                f"{type(self).__name__} predicts a batch of {size} row(s) with "
                f"class_prior={self.class_prior!r} and {k} classes: the class "
                "marginal is imposed on each batch, so with fewer rows than "
                "classes the labels and probabilities follow the prior, not the "
                "features (one row gets the prior as its probabilities). Predict "
                "whole test batches (transductive), or use class_prior=None for "
                "row-by-row prediction", UserWarning, stacklevel=3)

    def _tensors(self, X):
        device = resolve_device(self.device)
        Xt = as_tensor(_normalize(X), device=device)
        Tt = as_tensor(self.class_embeddings_, device=device, dtype=Xt.dtype)
        return Xt, Tt

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _check_labels(classes):
    """Refuse ``classes`` with missing labels (None, NaN), which predict would
    return as labels, or mixing strings and numbers, which numpy turns into
    strings ('z', 1 -> '1') or cannot sort (scikit-learn's rule in
    :func:`sklearn.utils.multiclass.unique_labels`)."""
    labels = np.asarray(classes, dtype=object).ravel()
    missing = [c for c in labels if c is None or (isinstance(c, Real) and c != c)]
    if missing:
        raise ValueError(
            f"classes={classes!r} contains missing labels ({missing[0]!r}); each "
            "class embedding needs a label that predict can return")
    if len({isinstance(c, str) for c in labels}) > 1:
        raise ValueError(
            f"classes={classes!r} mixes strings and numbers (Mix of label input "
            "types (string and number)); pass labels of one type")


def _to_np(x):
    return to_numpy(x) if isinstance(x, torch.Tensor) else np.asarray(x)
