"""SelectiveOTClassifier: classify a fraction of the rows, abstain on the rest."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import as_tensor, resolve_device, to_numpy
from ._base import BaseOTClassifier

__all__ = ["SelectiveOTClassifier"]


class SelectiveOTClassifier(BaseOTClassifier):
    r"""Selective classification by partial optimal transport.

    Each row of a batch holds mass :math:`1/n`; only a total mass equal to the
    requested ``coverage`` :math:`c` is transported to the classes, each class
    accepting at most its prior mass :math:`\pi_j` (OT-CLIP §1.5
    :cite:`shi2024otclip`, entropic partial OT :cite:`benamou2015bregman`):

    .. math::

        \min_{P \ge 0} \langle C, P \rangle + \varepsilon\,\mathrm{KL}(P \| \tfrac1n 1\pi^\top)
        \quad \text{s.t.} \quad P 1 \le \tfrac{1}{n} 1,\ P^\top 1 \le \pi,\
        1^\top P 1 = c.

    The cost is :math:`C = 1 - \cos(X, T)` against class embeddings (zero-shot,
    or few-shot prototypes) or :math:`C = -\log p(j \mid x)` from a fitted
    probabilistic ``estimator``. The rows that receive the most mass are kept
    (exactly :math:`\lceil c n \rceil` of them) and labelled with their plan's
    argmax; the others get ``reject_label``. ``selection_score`` ranks rows by
    their uncapped log row mass :math:`\log \sum_j \pi_j e^{(g_j - C_{ij})/\varepsilon}`
    given the class potentials :math:`g` (higher = kept first); the class
    capacities make the selection class-aware, unlike the max-softmax baseline.

    Parameters
    ----------
    class_embeddings : array-like of shape (n_classes, n_features), default=None
        Zero-shot class embeddings; None with ``estimator=None``: few-shot
        prototypes from ``fit(X, y)``.
    classes : array-like of shape (n_classes,), default=None
        Labels of the class embeddings.
    estimator : fitted classifier with ``predict_proba``, default=None
        Wrap a probabilistic classifier instead (cost ``-log p``). It is used as
        given when already fitted; otherwise a clone is fitted on ``fit(X, y)``.
    coverage : float in (0, 1], default=0.8
        Fraction of rows that receive a label.
    reject_label : int or str, default=-1
        Label of the abstained rows.
    reg : float > 0, default=0.01
        Entropic regularisation ε.
    solver : str or OTSolver, default="partial"
        Must solve the partial problem (``"partial"``; ``reg=None`` solves it
        exactly with POT).
    class_prior : None or array-like of shape (n_classes,), default=None
        Class capacities :math:`\pi` (uniform when None).
    batch_size : int, default=None
        Rows per transductive batch.
    max_iter : int, default=1000
        Iteration budget of the OT solver.
    random_state : None, int or RandomState, default=None
        Unused (deterministic); kept for API uniformity.
    device : str, default="cpu"
        Torch device of the OT solves.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    class_embeddings_ : ndarray of shape (n_classes, n_features) or None
    estimator_ : fitted classifier or None
    n_features_in_ : int

    Notes
    -----
    Transductive: which rows are kept depends on the whole batch.

    Examples
    --------
    >>> import numpy as np
    >>> from skot import SelectiveOTClassifier
    >>> T = np.eye(2)
    >>> X = np.array([[1.0, 0.0], [0.9, 0.4], [0.0, 1.0], [0.5, 0.5]])
    >>> clf = SelectiveOTClassifier(class_embeddings=T, coverage=0.5).fit(X)
    >>> clf.predict(X)
    array([ 0, -1,  1, -1])
    """

    _parameter_constraints: dict = {
        **BaseOTClassifier._parameter_constraints,
        "estimator": [HasMethods(["predict_proba"]), None],
        "coverage": [Interval(Real, 0, 1, closed="right")],
        "reject_label": [Integral, str],
        "class_prior": ["array-like", None],
    }

    def __init__(
        self,
        class_embeddings=None,
        *,
        classes=None,
        estimator=None,
        coverage=0.8,
        reject_label=-1,
        reg=0.01,
        solver="partial",
        class_prior=None,
        batch_size=None,
        max_iter=1000,
        random_state=None,
        device="cpu",
    ):
        self.class_embeddings = class_embeddings
        self.classes = classes
        self.estimator = estimator
        self.coverage = coverage
        self.reject_label = reject_label
        self.reg = reg
        self.solver = solver
        self.class_prior = class_prior
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.random_state = random_state
        self.device = device

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit (zero-shot: validate; few-shot: prototypes; or the estimator).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if self.estimator is None:
            self._fit_classes(X, y)
            self.estimator_ = None
        else:
            self._check_solver()
            est = self.estimator
            try:
                check_is_fitted(est)
            except Exception:
                if y is None:
                    raise ValueError("y is required to fit the wrapped estimator")
                est = clone(est).fit(X, y)
            X = validate_data(self, X, dtype=[np.float64, np.float32],
                              ensure_min_samples=1)
            self.estimator_ = est
            self.classes_ = np.asarray(est.classes_)
            self.class_embeddings_ = None
        k = len(self.classes_)
        if self.class_prior is None:
            self.class_prior_ = np.full(k, 1.0 / k)
        else:
            prior = np.asarray(self.class_prior, dtype=float)
            if prior.shape != (k,) or not np.isfinite(prior).all() or (prior < 0).any() \
                    or prior.sum() <= 0:
                raise ValueError(
                    f"class_prior must be None or {k} non-negative weights, got "
                    f"{self.class_prior!r}"
                )
            self.class_prior_ = prior / prior.sum()
        return self

    # ---------------------------------------------------------------- core
    def _cost(self, X):
        if self.estimator_ is not None:
            p = self.estimator_.predict_proba(X)
            device = resolve_device(self.device)
            p = as_tensor(np.asarray(p, dtype=np.float64), device=device)
            return -torch.log(p.clamp_min(1e-300))
        Xt, Tt = self._tensors(X)
        return 1.0 - Xt @ Tt.T

    def _solve_batch(self, C):
        n = C.shape[0]
        a = torch.full((n,), 1.0 / n, dtype=C.dtype, device=C.device)
        prior = as_tensor(self.class_prior_, device=C.device, dtype=C.dtype)
        solver = self._solver()
        # the partial problem's potentials only rank rows: a change below 1e-4 reg
        # per iteration does not move the ranking
        if isinstance(self.solver, str):
            solver.set_params(tol=1e-4)
        reg = None if solver.method == "exact" else solver.reg
        # the transported mass: exactly the requested fraction of the batch
        mass = min(self.coverage, 1.0 - 1e-12)
        res = solver.solve(C, a, prior, method="partial", reg=reg, mass=mass,
                           grad="detach", unbalanced=None)
        plan = res.plan
        if res.potentials is not None and reg is not None:
            g = res.potentials[1]
            score = torch.logsumexp((g.unsqueeze(0) - C) / reg + torch.log(prior), 1)
        else:
            # exact partial OT: row mass, ties broken by the cheapest cost
            score = plan.sum(1) * n - 1e-6 * C.min(1).values
        return plan, score

    def _assign(self, X):
        check_is_fitted(self)
        if self.estimator_ is None:
            X = self._check_X(X)
        else:
            check_is_fitted(self)
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        C = self._cost(X)
        plans, scores = [], []
        for sl in self._batches(len(X)):
            plan, score = self._solve_batch(C[sl])
            plans.append(plan)
            scores.append(score)
        return X, torch.cat(plans), torch.cat(scores), C

    def selection_score(self, X):
        """Confidence of each row (higher = kept first).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        score : ndarray of shape (n_samples,)
        """
        return to_numpy(self._assign(X)[2])

    def predict_proba(self, X):
        """Class probabilities of every row (its plan row, or the softmax of
        its class scores when the row received no mass).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        _, plan, _, C = self._assign(X)
        reg = self.reg or 0.01
        soft = torch.softmax(-C / reg, 1)
        rows = plan.sum(1, keepdim=True)
        tiny = torch.finfo(plan.dtype).tiny
        proba = torch.where(rows > tiny, plan / rows.clamp_min(tiny), soft)
        return to_numpy(proba)

    def predict(self, X):
        """Labels for the kept rows, ``reject_label`` for the others.

        Exactly ``ceil(coverage * n)`` rows of each batch are kept (the realised
        coverage is within ``1/n`` of the request).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        _, plan, score, C = self._assign(X)
        label_idx = to_numpy((plan - 1e-12 * C).argmax(1))
        labels = self.classes_[label_idx]
        if isinstance(self.reject_label, str) or labels.dtype.kind in "OUS":
            out = labels.astype(object)
        else:
            out = labels.copy()
        keep = np.zeros(len(labels), dtype=bool)
        score = to_numpy(score)
        for sl in self._batches(len(labels)):
            n_b = sl.stop - sl.start
            n_keep = min(n_b, math.ceil(self.coverage * n_b - 1e-9))
            order = np.argsort(-score[sl], kind="stable")[:n_keep]
            keep[sl.start + order] = True
        out[~keep] = self.reject_label
        return out

    def score(self, X, y, sample_weight=None):
        """Selective accuracy: accuracy on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : ignored

        Returns
        -------
        score : float
        """
        from ..metrics import selective_accuracy

        return selective_accuracy(y, self.predict(X), reject_label=self.reject_label)
