"""FGWZeroShotClassifier: zero-/few-shot classification by (fused Gromov) OT."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import StrOptions

from .._backend import as_tensor, to_numpy
from ..ot import OTSolver
from ..ot._registry import is_gibbs
from ..utils._param import Interval
from ._base import BaseOTClassifier
from ._transductive import estimate_prior, transductive_plan

__all__ = ["FGWZeroShotClassifier"]


class FGWZeroShotClassifier(BaseOTClassifier):
    r"""Zero-shot / few-shot classification as optimal transport to the classes.

    The rows of a batch of image features :math:`X` are transported to the class
    embeddings :math:`T` (text prompts for zero-shot, class prototypes for
    few-shot) with cost :math:`C = 1 - \cos(X, T)`; the label of a row is the
    class that receives most of its mass. Prediction is **transductive**: the
    marginal constraints couple the rows of the batch (OT-CLIP
    :cite:`shi2024otclip`, OTTER :cite:`shin2024otter`):

    .. math::

        \min_{P \ge 0,\ P 1 = \frac{1}{n}1,\ [P^\top 1 = \pi]}
            \langle C, P \rangle
            - \frac{\alpha}{2} \langle \bar A\, (nP)\, \bar B, P \rangle / n
            + \varepsilon \, \mathrm{KL}(P \| \tfrac{1}{n} 1 \pi^\top)

    with :math:`\bar A`, :math:`\bar B` the centred image-image and class-class
    cosine similarity graphs (the structure term of fused Gromov-Wasserstein,
    scaled so that ``alpha`` is in cost units for any batch size and number of
    classes) and :math:`\pi` the class prior. Its gradient in P is the
    linearised cost :math:`C - \alpha \bar A (nP) \bar B / n` that each of the
    ``n_outer`` entropic solves uses: ``alpha`` weighs the structure term of
    that cost (OT-CLIP's parametrisation), which is half the weight of the
    quadratic term in the objective.

    With ``alpha=0`` and ``class_prior=None`` (the defaults) the column marginal
    is free and the plan is CLIP's softmax at logit scale :math:`1/\varepsilon`:
    predictions are exactly argmax cosine, which is the safe default (imposing a
    wrong class marginal, e.g. uniform on long-tailed data, loses accuracy). A
    known class prior (``class_prior=array``) turns it into balanced OT with that
    column marginal, which improves long-tailed prediction; ``"uniform"`` is the
    balanced-OT (OTTER) variant for balanced test sets; ``"estimate"`` estimates
    the prior of the batch by EM.

    Parameters
    ----------
    class_embeddings : array-like of shape (n_classes, n_features), default=None
        Class embeddings (e.g. averaged CLIP text prompts). None: few-shot, the
        class prototypes are the normalised means of the labelled rows in ``fit``.
    classes : array-like of shape (n_classes,), default=None
        Labels of the class embeddings (default ``0..n_classes-1``), distinct,
        not missing (None, NaN) and all strings or all numbers.
        ``classes_`` holds them sorted (scikit-learn's order of the
        ``predict_proba`` columns, which its scorers assume), and
        ``class_embeddings_`` and ``class_prior_`` follow that order.
        Only with ``class_embeddings`` (few-shot takes the labels of ``y``;
        a ``ValueError`` in ``fit`` otherwise).
    alpha : float >= 0, default=0.0
        Weight of the structure (fused Gromov) term, in cost units.
    reg : float > 0 or None, default=0.01
        Entropic regularisation ε (CLIP's logit scale 100 is ε = 0.01). None:
        unregularised OT, with ``solver="exact"`` (or with no class prior:
        each row to its cheapest class); an entropic solver with a class
        prior then fails in ``fit`` with a ``ValueError``.
    solver : str or OTSolver, default="sinkhorn"
        Linear OT solver used when a class prior is set (without one, the
        rows-only softmax, except ``"exact"`` / ``"fgw_exact"``, which send
        each row to its cheapest class: one-hot ``predict_proba``, ``reg``
        unused): ``"sinkhorn"``,
        ``"exact"``, ``"dbot"`` (column sums in a box around the prior),
        ``"unbalanced"`` (KL-relaxed prior, see ``unbalanced``), ``"fgw"`` /
        ``"fgw_exact"`` (same as ``"sinkhorn"`` / ``"exact"``; pair with
        ``alpha > 0``). Any name of :func:`skot.ot.available_methods` or an
        :class:`skot.ot.OTSolver`.
    class_prior : None, "uniform", "estimate" or array-like of shape (n_classes,)
        Column marginal: None leaves the classes free (rows-only constraint).
        An array is in the order of ``class_embeddings`` (of the sorted
        labels of ``y`` for few-shot fitting). ``"estimate"``: each batch's
        prior by EM on the softmax posteriors at temperature ``reg`` (at 0.01,
        CLIP's, when ``reg=None``, since the hard assignment has no posterior
        to average), then the batch is solved with it.
    unbalanced : float > 0, default=1.0
        KL relaxation of the prior for ``solver="unbalanced"``. An
        :class:`skot.ot.OTSolver` with its own ``unbalanced`` keeps it (a
        ``UserWarning`` in ``fit`` when this parameter was changed to another
        value); with ``unbalanced=None`` it takes this one.
    box : float >= 0, default=0.5
        Relative box width δ around the prior for ``solver="dbot"``.
    batch_size : int, default=None
        Rows per transductive batch in ``predict`` (None: all rows at once).
        With a class prior each batch is solved with it as its column
        marginal, so a batch must look like the whole: shuffle rows sorted by
        class, and keep batches well above ``n_classes`` rows (Cars, 196
        classes, uniform prior: 6% accuracy at ``batch_size=64`` in file
        order, 44% shuffled, 63% unbatched).
        A batch with fewer rows than classes under a class prior (also a
        short last batch, or ``predict`` on a few rows) is a ``UserWarning``:
        its labels follow the prior, not the features.
    max_iter : int or None, default=None
        Iteration budget of the inner OT solver; None: 10000 for the entropic
        methods (the problems are n x n_classes; few-shot prototypes at
        ``reg=0.01`` took up to 3000), the method's own otherwise (1e6
        network-simplex iterations for ``"exact"``, see :func:`skot.ot.solve`).
        An :class:`skot.ot.OTSolver` with its own ``max_iter`` keeps it; one
        without takes this one (and the same default).
    n_outer : int, default=10
        Linearisation steps of the structure term (``alpha > 0``).
    random_state : None, int or RandomState, default=None
        Unused (the method is deterministic); kept for API uniformity.
    device : str, torch.device or None, default="cpu"
        Torch device of the OT solves; None means ``"cpu"``. Checked in
        ``fit``: an unknown device, ``"meta"`` (no data), or one this torch
        build or machine lacks (``"cuda"`` without CUDA, ``"xpu"`` without XPU)
        is a ``ValueError``, never a silent fallback.
    verbose : int, default=0
        Show a progress bar over the transductive batches of ``predict``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    class_embeddings_ : ndarray of shape (n_classes, n_features)
        L2-normalised class embeddings (or few-shot prototypes).
    class_prior_ : ndarray of shape (n_classes,) or None
        The column marginal used by ``predict`` (in the order of
        ``classes_``, summing to 1); None when the classes are free or the
        prior is estimated per batch (``class_prior="estimate"``).
    n_features_in_ : int

    Notes
    -----
    Predictions of a row depend on the other rows of its batch (transductive),
    so ``predict`` is not row-independent; pass whole test batches (and not
    dask-ml's ``ParallelPostFit`` blocks) unless ``class_prior=None`` and
    ``alpha=0``.

    Examples
    --------
    >>> import numpy as np
    >>> from skot import FGWZeroShotClassifier
    >>> T = np.eye(3)
    >>> X = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 1.0]])
    >>> FGWZeroShotClassifier(class_embeddings=T).fit(X).predict(X)
    array([0, 1, 2])
    """

    _parameter_constraints: dict = {
        **BaseOTClassifier._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "class_prior": [StrOptions({"uniform", "estimate"}), "array-like", None],
        "unbalanced": [Interval(Real, 0, None, closed="neither")],
        "box": [Interval(Real, 0, None, closed="left")],
        "n_outer": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        class_embeddings=None,
        *,
        classes=None,
        alpha=0.0,
        reg=0.01,
        solver="sinkhorn",
        class_prior=None,
        unbalanced=1.0,
        box=0.5,
        batch_size=None,
        max_iter=None,
        n_outer=10,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.class_embeddings = class_embeddings
        self.classes = classes
        self.alpha = alpha
        self.reg = reg
        self.solver = solver
        self.class_prior = class_prior
        self.unbalanced = unbalanced
        self.box = box
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.n_outer = n_outer
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Set the class embeddings (zero-shot) or build prototypes (few-shot).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Image features (few-shot training rows; only validated for zero-shot).
        y : array-like of shape (n_samples,), default=None
            Labels; required without ``class_embeddings``. With
            ``class_embeddings`` (zero-shot) y is optional and not learned
            from, but its labels must be among the classes (``classes``, or
            ``0..n_classes-1`` when it is None): a ``ValueError`` names those
            that are not.

        Returns
        -------
        self
        """
        self._fit_classes(X, y)
        self._check_unbalanced()
        self._fit_prior()
        self._check_posterior_solver()
        return self

    def _posterior_solver(self, dtype=torch.float64):
        solver = self._solver(dtype)
        # an OTSolver carrying its own unbalanced keeps it (its settings win,
        # as for reg): the default unbalanced=1.0 had replaced it silently
        if solver.method == "unbalanced" and (
                not isinstance(self.solver, OTSolver) or solver.unbalanced is None):
            solver.set_params(unbalanced=self.unbalanced)
        return solver

    def _check_unbalanced(self):
        """Warn when ``unbalanced`` was changed but an :class:`OTSolver`
        carrying its own ``unbalanced`` is used (as ``reg`` beside one)."""
        solver = self.solver
        if (isinstance(solver, OTSolver) and solver.method == "unbalanced"
                and solver.unbalanced is not None
                and self.unbalanced != 1.0 and self.unbalanced != solver.unbalanced):
            warnings.warn(
                f"unbalanced={self.unbalanced!r} is not used: solver=OTSolver("
                f"unbalanced={solver.unbalanced!r}) carries its own, which wins; "
                "set solver__unbalanced (or pass the solver by name) to change it",
                UserWarning, stacklevel=3)

    def _assign(self, X):
        X = self._check_X(X)
        Xt, Tt = self._tensors(X)
        solver = self._posterior_solver(Xt.dtype)
        plans, scores = [], []
        self._warn_small_batches(len(X))
        for sl in self._batches(len(X)):
            Xb = Xt[sl]
            if isinstance(self.class_prior, str) and self.class_prior == "estimate":
                prior = estimate_prior(1.0 - Xb @ Tt.T, self.reg or 0.01)
            elif self.class_prior_ is not None:
                prior = as_tensor(self.class_prior_, device=Xb.device, dtype=Xb.dtype)
            else:
                prior = None
            out = transductive_plan(Xb, Tt, solver, prior=prior, alpha=self.alpha,
                                    n_outer=self.n_outer, box=self.box)
            plans.append(out.plan * (sl.stop - sl.start))
            scores.append(out.scores)
        return torch.cat(plans), torch.cat(scores)

    def decision_function(self, X):
        """Class scores: ``(g_j - C_ij) / reg + log prior_j`` (argmax = prediction).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for
            two classes (score of ``classes_[1]`` minus that of ``classes_[0]``,
            scikit-learn's binary convention)
        """
        plan, scores_t = self._assign(X)
        scores = to_numpy(scores_t)
        if not self._exp_form():
            # an exact plan's scores g_j - C_ij tie between the class a row is
            # sent to and others (complementary slackness makes the assigned
            # class one of the maxima, not the first): the argmax of these
            # scores differed from predict on 1% of rows. Lift the predicted
            # class one ulp above the rest of its row
            idx = to_numpy(self._pred_index(plan, scores_t))
            rows = np.arange(len(idx))
            others = scores.copy()
            others[rows, idx] = -np.inf
            top = others.max(1)
            lift = scores[rows, idx] <= top
            scores[rows[lift], idx[lift]] = np.nextafter(top[lift], np.inf)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Rows of the transport plan, normalised to sum to 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        plan, scores = self._assign(X)
        if self._exp_form():
            # the same numbers, from the scores predict and decision_function use
            return to_numpy(torch.softmax(scores, 1))
        plan = plan / plan.sum(1, keepdim=True).clamp_min(torch.finfo(plan.dtype).tiny)
        return to_numpy(plan)

    def _exp_form(self):
        solver = self._solver()
        return (solver.reg is not None and is_gibbs(solver.method)
                and str(getattr(solver, "reg_type", "KL")).lower() == "kl")

    def predict(self, X):
        """Label of the class receiving most of each row's mass.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        plan, scores = self._assign(X)
        return self.classes_[to_numpy(self._pred_index(plan, scores))]

    def _pred_index(self, plan, scores):
        if self._exp_form():
            # an entropic plan's rows are exp(scores + a row constant): the same
            # argmax, without float32 rounding in the solver's frame deciding
            # near-ties differently from decision_function
            return scores.argmax(1)
        # the exact plan's argmax; ties (a row split) by the scores
        return (plan + 1e-12 * torch.softmax(scores, 1) * plan.max()).argmax(1)
