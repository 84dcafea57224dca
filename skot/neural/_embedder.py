"""OTContrastiveEmbedder: projection heads trained with OT contrastive losses."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.helper import SliceDict

from .._backend import DEVICE_CONSTRAINT, as_tensor, resolve_device
from ..losses import LOSSES, OTContrastiveLoss
from ..ot import OTSolver, available_methods
from ..utils._param import Interval
from ..utils._warnings import report_warnings
from ._modules import ContrastiveNet, TwoTower

__all__ = ["OTContrastiveEmbedder"]


#: losses whose inner OT problem is set by an ``OTSolver`` instance
_PLAN_LOSSES = ("iot", "iot_total", "unbalanced", "dbot")
# the skot.ot method each loss solves, besides "sinkhorn" (the default
# solver=, accepted with every loss): a solver name is a choice the loss has
# already made, so any other name is refused rather than ignored (a grid search
# over solver names had scored identical fits)
_LOSS_METHODS = {"infonce": ("rows", "cols"), "iot": (), "iot_total": ("total",),
                 "unbalanced": ("unbalanced",), "dbot": ("dbot",), "fgw": ("fgw",),
                 "ufgw": ("fgw",), "ncu": ()}
#: ``mix="auto"``: the interpolation weight when both heads start at the
#: identity (d_x == d_y == n_components); 1 (the heads alone) otherwise
_AUTO_MIX = 0.075


def _rows_missing(A, name):
    """Rows that are entirely NaN (unpaired); partial NaN rows are an error."""
    nan = np.isnan(A)
    full = nan.all(1)
    part = nan.any(1) & ~full
    if part.any():
        raise ValueError(
            f"{name} has {int(part.sum())} row(s) with some NaN entries (first: row "
            f"{int(np.flatnonzero(part)[0])}); only rows that are entirely NaN "
            f"(unpaired samples) are allowed"
        )
    if np.isinf(A).any():
        raise ValueError(f"{name} contains inf; embeddings must be finite")
    return full


def _alias(Y, y):
    """``Y`` or its scikit-learn spelling ``y`` (not both)."""
    if Y is not None and y is not None:
        raise ValueError("pass the paired features as Y or y, not both")
    return Y if Y is not None else y


class OTContrastiveEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                            BaseEstimator):
    r"""Train projection heads on paired features with an OT contrastive loss.

    Two residual heads (one per modality, initialised at the identity so the
    untrained model keeps the input geometry) map image features ``X`` and text
    features ``Y`` to a shared L2-normalised space. They are trained, through
    skorch, by the inverse-OT loss family of IOT-CL / OT-CLIP
    :cite:`shi2023iotcl,shi2024otclip`: for a batch with cost
    :math:`C = 1 - z_x z_y^\top` and target coupling :math:`\tilde P` (the
    pairs),

    .. math::

        L = \mathrm{KL}(\tilde P \| P^\theta), \qquad
        P^\theta = \arg\min_{P \in \mathcal C} \langle C, P \rangle
            + \varepsilon\, \mathrm{KL}(P \| a b^\top)

    where the constraint set :math:`\mathcal C` picks the loss: rows and
    columns separately = CLIP's InfoNCE (``"infonce"``), both marginals
    (``"iot"``), total mass only (``"iot_total"``), KL-relaxed marginals
    (``"unbalanced"``), a box on the column sums (``"dbot"``), fused Gromov
    with the batch self-similarity graphs (``"fgw"``, ``"ufgw"``), or the
    noisy-correspondence unlearning target of NCU :cite:`han2025ncu`
    (``"ncu"``). Rows that are entirely NaN in ``X`` or ``Y`` are unpaired
    samples (partially aligned data); with ``align_weight > 0`` an entropic OT
    regulariser between the latent clouds of the two modalities uses them.
    ``transform`` and ``fit_transform`` embed the other rows and return an
    all-NaN row for each all-NaN input row; ``score`` evaluates the rows that
    are paired (not NaN in ``X`` nor in ``Y``).

    Parameters
    ----------
    loss : str, default="iot"
        One of ``"infonce"``, ``"iot"``, ``"iot_total"``, ``"unbalanced"``,
        ``"dbot"``, ``"fgw"``, ``"ufgw"``, ``"ncu"``.
    reg : float > 0, default=0.01
        Temperature / entropic regularisation ε of the loss (CLIP's 1/100).
    solver : str or OTSolver, default="sinkhorn"
        A name from :func:`skot.ot.available_methods` or an
        :class:`skot.ot.OTSolver`. ``loss`` selects the inner OT problem, so the
        method is the loss's own: ``"sinkhorn"`` (accepted with every loss) or
        that method's name (``"total"`` for ``"iot_total"``, ``"unbalanced"``,
        ``"dbot"``, ``"fgw"`` for ``"fgw"``/``"ufgw"``, ``"rows"``/``"cols"``
        for ``"infonce"``); any other name, or an ``OTSolver`` of another
        method, is a ``ValueError`` in ``fit`` (to compare OT problems, search
        over ``loss``). An ``OTSolver`` instance sets the inner solve of
        the ``"iot*"``/``"unbalanced"``/``"dbot"`` losses: its ``grad``
        (``"envelope"``, or ``"autodiff"`` with a small ``max_iter`` for the
        papers' unrolled iterations; ``"detach"`` leaves no gradient and is a
        ``ValueError``), ``max_iter`` and ``unbalanced`` (the latter for
        ``"unbalanced"`` only). Note that ``OTSolver``'s own default is
        ``grad="autodiff"``. The loss's temperature is the embedder's ``reg``,
        not the solver's: an ``OTSolver`` setting the loss does not use
        (``reg``, ``tol``, ``reg_type``, ``mass``, ``alpha``, and every one but
        the method with ``"infonce"``, ``"fgw"``, ``"ufgw"``, ``"ncu"``),
        changed from ``OTSolver``'s default, warns in ``fit`` that it is
        unused (a grid over ``solver__reg`` would score identical fits); a
        solver ``reg`` equal to the embedder's is not flagged.
    n_components : int, default=None
        Output dimension (default: ``min(n_features_X, n_features_Y)``).
    heads : {"both", "x", "y"}, default="both"
        Which heads are trained (the other stays the identity map), e.g. "x"
        adapts image features to fixed text prompts.
    hidden : int >= 0, default=0
        Width of the residual MLP; 0 makes the residual branch linear.
    mix : float in [0, 1] or "auto", default="auto"
        ``transform`` returns ``normalize((1 - mix) * x + mix * head(x))``: an
        interpolation of the trained head with the identity (WiSE-FT in embedding
        space), which trades the gain on the classes seen in training against
        zero-shot transfer to unseen ones. ``"auto"`` is 0.075 when both heads
        start at the identity (X and Y of the same width, ``n_components``
        equal to it: e.g. CLIP image and text features), and 1 (the heads
        alone) otherwise: a truncation to the first ``n_components``
        coordinates, or two input spaces of different widths, are no shared
        space to interpolate with (Cars, ``n_components=32``: 11% zero-shot
        accuracy at mix=0.075, 51% at mix=1). Fitted on half of the Stanford Cars
        classes (8 random halves), mix=0.075 gained 5.3 points on the seen classes
        and kept the unseen ones (+0.4 on average, -0.6 at worst); mix=0.2 gained
        10.3 but lost up to 4.2 on the unseen ones. On classes 0-97 (one seed,
        default hyperparameters), mix=1 gained 7.7 points on the seen classes
        but lost 18.5 on the unseen ones (62.3 / 44.8 against raw CLIP's
        54.6 / 63.3; 60.7 / 63.7 at the default mix=0.075). On
        fine-grained sets of few similar classes (one car make) the unseen loss
        grows with mix (mean -1.8 at 0.075, -2.6 at 0.1, -5.1 at 0.2); see the
        user guide. It is read by ``transform``, so ``set_params(mix=...)``
        changes it on a fitted model without refitting.
    uniformity : float >= 0, default=0.0
        Weight of IOT-CL's uniformity penalty on the inner plan of the
        ``"iot"``, ``"iot_total"``, ``"unbalanced"`` and ``"dbot"`` losses; with
        another loss, a weight > 0 warns in ``fit`` that it is unused.
    align_weight : float >= 0, default=0.0
        Weight of the OT alignment regulariser (partially paired data),
        an entropic OT value solved at ``max(reg, 0.05)``.
    align_form : {"pairwise", "barycenter"}, default="pairwise"
        Its form: entropic W between the two latent batches, or the mean W to
        their free-support barycenter (see
        :func:`skot.losses.alignment_regulariser`).
    alpha : float, default=0.1
        Structure weight of ``"fgw"``/``"ufgw"``.
    noise_ratio : float, default=0.1
        Fraction of each batch's pairs treated as noisy by ``"ncu"`` (the least
        confident ones); best set to the expected fraction of wrong pairs. With
        30% of the Stanford Cars pairs wrong, scored with the trained heads
        alone (``mix=1``): 0.3 gave 63.9% seen-class accuracy, 0.1 gave 47.7%,
        InfoNCE 37.4%, InfoNCE on the clean pairs 68.3%.
    max_epochs : int, default=10
    batch_size : int, default=256
    lr : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=1e-4
    device : str, torch.device or None, default="cpu"
        Torch device of the training and the embedding; None means ``"cpu"``.
        Checked in ``fit``: an unknown device, ``"meta"`` (no data), or one
        this torch build or machine lacks (``"cuda"`` without CUDA, ``"xpu"``
        without XPU) is a ``ValueError``, never a silent fallback.
    random_state : int or None, default=None
        Seeds torch and the batch order (CPU runs are reproducible).
    verbose : int, default=0
        skorch's progress printing.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net (``net_.history`` holds the per-epoch losses).
    module_ : torch.nn.Module
        The two heads.
    history_ : skorch.History
        skorch's per-epoch and per-batch record (``train_loss``). With
        partially paired data, a batch holding fewer than two pairs and no
        alignment term has no loss: it is skipped (no optimizer step) and
        recorded with loss 0, which lowers that epoch's mean ``train_loss``.
    n_features_in_ : int
        Number of features of ``X``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features of ``X``, when ``X`` has string column names.
    n_features_y_ : int
        Number of features of ``Y``.
    n_components_ : int
        Output dimension; ``get_feature_names_out()`` names the output columns
        ``otcontrastiveembedder0``, ``otcontrastiveembedder1``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from skot import OTContrastiveEmbedder
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(64, 8)), rng.normal(size=(64, 6))
    >>> emb = OTContrastiveEmbedder(max_epochs=1, random_state=0).fit(X, Y)
    >>> emb.transform(X).shape
    (64, 6)
    """

    _parameter_constraints: dict = {
        "loss": [StrOptions(set(LOSSES))],
        "reg": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions(set(available_methods())), OTSolver],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "heads": [StrOptions({"both", "x", "y"})],
        "mix": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "hidden": [Interval(Integral, 0, None, closed="left")],
        "uniformity": [Interval(Real, 0, None, closed="left")],
        "align_weight": [Interval(Real, 0, None, closed="left")],
        "align_form": [StrOptions({"pairwise", "barycenter"})],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "noise_ratio": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, loss="iot", *, reg=0.01, solver="sinkhorn", n_components=None,
                 heads="both", hidden=0, mix="auto", uniformity=0.0, align_weight=0.0,
                 align_form="pairwise", alpha=0.1, noise_ratio=0.1, max_epochs=10,
                 batch_size=256, lr=1e-3, weight_decay=1e-4, device="cpu",
                 random_state=None, verbose=0):
        self.loss = loss
        self.reg = reg
        self.solver = solver
        self.n_components = n_components
        self.heads = heads
        self.hidden = hidden
        self.mix = mix
        self.uniformity = uniformity
        self.align_weight = align_weight
        self.align_form = align_form
        self.alpha = alpha
        self.noise_ratio = noise_ratio
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        # NaN is accepted only as whole missing rows (unpaired samples), not
        # elementwise, so the elementwise ``allow_nan`` tag stays False
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _validate_xy(self, X, Y):
        if Y is None:
            raise ValueError(
                "OTContrastiveEmbedder requires y to be passed, but the target y is "
                "None: fit(X, Y) needs the paired features Y"
            )
        X = validate_data(self, X, dtype=np.float32, ensure_all_finite=False,
                          ensure_min_samples=2)
        Y = check_array(Y, dtype=np.float32, ensure_all_finite=False, ensure_2d=False,
                        input_name="Y")
        if Y.ndim == 1:
            Y = Y[:, None]
        if len(X) != len(Y):
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: X has "
                f"{len(X)} rows, Y has {len(Y)}"
            )
        mx = ~_rows_missing(X, "X")
        my = ~_rows_missing(Y, "Y")
        if (mx & my).sum() < 2:
            raise ValueError("need at least 2 paired rows (finite in both X and Y)")
        return X, Y, mx, my

    def _check_solver(self):
        """Reject a solver method other than the loss's own, and an
        ``OTSolver`` whose gradient mode cannot train the heads."""
        method = self.solver.method if isinstance(self.solver, OTSolver) else self.solver
        own = _LOSS_METHODS.get(self.loss, ())
        if method != "sinkhorn" and method not in own:
            shown = (f"solver={self.solver!r}" if isinstance(self.solver, str)
                     else f"solver=OTSolver({method!r}, ...)")
            accepted = " or ".join(repr(m) for m in ("sinkhorn", *own))
            raise ValueError(
                f"{shown} does not apply to loss={self.loss!r}: the loss fixes its "
                f"inner OT problem, solved by {accepted}; to compare OT problems, "
                f"search over loss (e.g. loss='unbalanced', 'dbot', 'fgw')")
        if (isinstance(self.solver, OTSolver) and self.loss in _PLAN_LOSSES
                and self.solver.grad not in ("envelope", "autodiff")):
            raise ValueError(
                f"solver=OTSolver(grad={self.solver.grad!r}) cannot train "
                f"loss={self.loss!r}: the loss needs a gradient through the plan; "
                f"use grad='envelope' or grad='autodiff'"
            )

    def _warn_unused(self):
        """Warn about settings the configured loss does not read (a grid over
        them would score identical fits, silently)."""
        if self.uniformity > 0 and self.loss not in _PLAN_LOSSES:
            warnings.warn(
                f"uniformity={self.uniformity!r} is not used by loss={self.loss!r}: "
                f"IOT-CL's uniformity penalty applies to the inner plan of the "
                f"{', '.join(repr(m) for m in _PLAN_LOSSES)} losses",
                UserWarning, stacklevel=3)
        if not isinstance(self.solver, OTSolver):
            return
        used = {"method"}
        if self.loss in _PLAN_LOSSES:
            used |= {"grad", "max_iter"}
            if self.loss == "unbalanced":
                used.add("unbalanced")
        default = OTSolver().get_params()
        unused = {k: v for k, v in self.solver.get_params().items()
                  if k not in used and v != default[k]
                  and not (k == "reg" and v == self.reg)}
        if unused:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(unused.items()))
            reads = ("grad and max_iter" + (" and unbalanced"
                                           if self.loss == "unbalanced" else "")
                     if self.loss in _PLAN_LOSSES else "only its method")
            warnings.warn(
                f"solver=OTSolver({shown}) is not used by loss={self.loss!r}: the "
                f"loss reads {reads} from an OTSolver, and its temperature is the "
                f"embedder's reg={self.reg!r} (search reg, not solver__reg)",
                UserWarning, stacklevel=3)

    def _grad_mode(self):
        """How the contrastive loss is differentiated through its inner plans."""
        return self._options().get("grad", "envelope")

    def _options(self):
        if self.loss in ("fgw", "ufgw"):
            return {"alpha": self.alpha}
        if self.loss == "ncu":
            return {"noise_ratio": self.noise_ratio}
        opts = {}
        if isinstance(self.solver, OTSolver) and self.loss != "infonce":
            # an OTSolver instance sets how the inner problem is solved and
            # differentiated, e.g. OTSolver(grad="autodiff", max_iter=20) for the
            # papers' unrolled iterations
            opts["grad"] = self.solver.grad
            if self.solver.max_iter is not None:
                opts["max_iter"] = self.solver.max_iter
            if self.loss == "unbalanced" and self.solver.unbalanced is not None:
                opts["unbalanced"] = self.solver.unbalanced
        return opts

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, Y=None, *, y=None):
        """Train the heads on the pairs ``(X[i], Y[i])``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            First modality (e.g. image features); all-NaN rows are unpaired.
        Y : array-like of shape (n_samples, n_features_y)
            Second modality, row-aligned with X; all-NaN rows are unpaired.
        y : array-like, default=None
            Alias of ``Y`` (scikit-learn's keyword for the second argument).

        Returns
        -------
        self : OTContrastiveEmbedder
            The fitted embedder.
        """
        self._check_solver()
        self._warn_unused()
        X, Y, mx, my = self._validate_xy(X, _alias(Y, y))
        device = resolve_device(self.device)
        seed = self.random_state
        if seed is None or not isinstance(seed, (int, np.integer)):
            seed = int(np.random.default_rng(seed if seed is not None else None)
                       .integers(2**31 - 1))
        k = self.n_components or min(X.shape[1], Y.shape[1])
        data = SliceDict(
            x=torch.as_tensor(np.nan_to_num(X)), y=torch.as_tensor(np.nan_to_num(Y)),
            mx=torch.as_tensor(mx), my=torch.as_tensor(my),
        )
        gen = torch.Generator().manual_seed(int(seed))
        net = ContrastiveNet(
            TwoTower,
            module__d_x=X.shape[1], module__d_y=Y.shape[1], module__n_components=k,
            module__heads=self.heads, module__hidden=self.hidden,
            criterion=OTContrastiveLoss, criterion__loss=self.loss,
            criterion__reg=self.reg, criterion__uniformity=self.uniformity,
            criterion__align_weight=self.align_weight,
            criterion__align_form=self.align_form,
            criterion__options=self._options(),
            optimizer=torch.optim.AdamW, lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=int(self.max_epochs),
            # int: a numpy integer passes the parameter check but not skorch's
            batch_size=int(min(self.batch_size, len(X))),
            iterator_train__shuffle=True, iterator_train__generator=gen,
            iterator_train__drop_last=bool(len(X) > self.batch_size),
            train_split=None, device=str(device), verbose=self.verbose,
        )
        # the heads are initialised on the CPU from torch's global generator
        # (nothing else in training draws from it: the loader has its own):
        # that generator alone is seeded, in a fork, so that the caller's
        # torch random state (CPU and every device) is left as it was
        with warnings.catch_warnings(record=True) as caught, \
                torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            warnings.simplefilter("always")
            # skorch warns that y=None is unusual for NeuralNet: it is intended
            warnings.filterwarnings("ignore", message=".*y=None.*")
            net.fit(data, None)
        report_warnings(caught, self._convergence_advice(), during="during training")
        n_steps = sum(len(epoch["batches"]) for epoch in net.history)
        if getattr(net, "skipped_steps_", 0) == n_steps:
            warnings.warn(
                f"no training batch held two paired rows (of {int((mx & my).sum())} "
                f"pairs in {len(X)} rows, batch_size={self.batch_size}), and there is "
                "no alignment term: the heads were not trained. Raise batch_size or "
                "align_weight.", UserWarning, stacklevel=3)
        self.net_ = net
        self.module_ = net.module_
        self.history_ = net.history
        self.n_features_y_ = Y.shape[1]
        self.n_components_ = k
        return self

    @property
    def _n_features_out(self):
        """Output dimension, for ``get_feature_names_out`` and ``set_output``
        (:class:`~sklearn.base.ClassNamePrefixFeaturesOutMixin`)."""
        return self.n_components_

    def _convergence_advice(self):
        """What non-converged inner solves mean for the gradients, per grad mode."""
        envelope = ("differentiated at the plans reached (envelope gradients), an "
                    "approximation of the converged plans' gradients that training "
                    "can still use")
        if self.loss not in _PLAN_LOSSES:
            # fgw/ufgw/ncu silence their budgeted inner solves: only the
            # alignment regulariser (envelope gradient) reports
            return (f"They are the alignment regulariser's (align_weight > 0), "
                    f"{envelope}; to converge, increase reg")
        if self._grad_mode() == "autodiff":
            msg = ("With solver grad='autodiff' the loss is differentiated through "
                   "the unrolled iterations, so its gradients are exact for these "
                   "truncated plans (the papers' unrolled mode, where a small "
                   "max_iter is intended)")
            if self.align_weight > 0:
                msg += ("; those of the alignment regulariser (align_weight > 0), "
                        f"if any, are {envelope}")
            return (msg + ". To converge, increase reg or the budget with "
                    "solver=OTSolver(grad='autodiff', max_iter=...) (memory grows "
                    "with max_iter)")
        return (f"The loss is {envelope}; to converge, increase reg or pass "
                "solver=OTSolver(grad='envelope', max_iter=...)")

    def _mix(self):
        """The interpolation weight ``transform`` uses (``mix="auto"`` resolved)."""
        if self.mix != "auto":
            return self.mix
        identity = self.n_features_in_ == self.n_features_y_ == self.n_components_
        return _AUTO_MIX if identity else 1.0

    def _embed(self, A, tower):
        mix = self._mix()
        self.module_.eval()
        dev = next(self.module_.parameters()).device
        out = []
        with torch.no_grad():
            for i in range(0, len(A), 4096):
                t = as_tensor(A[i:i + 4096], device=dev)
                out.append(getattr(self.module_, tower)(t, mix=mix).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_components_),
                                                         dtype=np.float32)

    def _check_y(self, Y):
        """Validate ``Y`` against the fitted second modality."""
        Y = check_array(Y, dtype=np.float32, ensure_all_finite=False, ensure_2d=False,
                        input_name="Y")
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.shape[1] != self.n_features_y_:
            raise ValueError(f"Y has {Y.shape[1]} features, but the embedder was "
                             f"fitted with {self.n_features_y_}")
        return Y

    def _embed_rows(self, A, missing, tower):
        """Embed the rows of ``A``; all-NaN rows (``missing``) give NaN rows."""
        if not missing.any():
            return self._embed(A, tower)
        out = np.full((len(A), self.n_components_), np.nan, dtype=np.float32)
        out[~missing] = self._embed(A[~missing], tower)
        return out

    def transform(self, X, Y=None):
        """Embed X (and Y) in the shared space; each independently.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            First modality. A row that is entirely NaN (an unpaired sample, as
            accepted by ``fit``) gives an all-NaN output row; a row with only
            some NaN entries, or any inf, is a ``ValueError``.
        Y : array-like of shape (n_samples_y, n_features_y), default=None
            Second modality, NaN rows as for ``X``. Row counts of X and Y may
            differ (e.g. images vs class prompts).

        Returns
        -------
        X_emb : ndarray of shape (n_samples, n_components)
            Unit-norm rows, NaN where the row of ``X`` is all-NaN. With
            ``set_output(transform="pandas")`` a DataFrame whose columns are
            ``get_feature_names_out()``.
        Y_emb : ndarray of shape (n_samples_y, n_components)
            Only when ``Y`` is given (then the tuple ``(X_emb, Y_emb)`` is
            returned). As for sklearn's CCA, ``set_output`` wraps only
            ``X_emb``: ``Y_emb`` stays an ndarray.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32,
                          ensure_all_finite=False)
        mx = _rows_missing(X, "X")
        if Y is not None:
            Y = self._check_y(Y)
            my = _rows_missing(Y, "Y")
        zx = self._embed_rows(X, mx, "tower_x")
        if Y is None:
            return zx
        return zx, self._embed_rows(Y, my, "tower_y")

    def fit_transform(self, X, Y=None, *, y=None):
        """Fit on the pairs ``(X[i], Y[i])``, then embed X and Y.

        Accepts what ``fit`` accepts (all-NaN rows are unpaired samples) and
        returns what ``transform(X, Y)`` returns on the same data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            First modality; all-NaN rows are unpaired.
        Y : array-like of shape (n_samples, n_features_y)
            Second modality, row-aligned with X; all-NaN rows are unpaired.
        y : array-like, default=None
            Alias of ``Y``.

        Returns
        -------
        X_emb : ndarray of shape (n_samples, n_components)
            NaN rows where the row of ``X`` is all-NaN.
        Y_emb : ndarray of shape (n_samples, n_components)
            NaN rows where the row of ``Y`` is all-NaN. The pair
            ``(X_emb, Y_emb)`` is returned, the convention of sklearn's CCA.
        """
        Y = _alias(Y, y)
        return self.fit(X, Y).transform(X, Y)

    def score(self, X, Y=None, *, y=None):
        """Mean of X->Y and Y->X recall@1 over the paired rows.

        Rows that are all-NaN in ``X`` or in ``Y`` (unpaired samples) are left
        out: each paired ``X`` row retrieves among the paired ``Y`` rows and
        vice versa. Rows with identical ``Y`` (one caption for many images, as
        in training, where they are positives of each other) are
        interchangeable: an ``X`` row that retrieves any copy of its ``Y`` row,
        or a ``Y`` row that retrieves an ``X`` row paired with a copy of it, is
        a hit (with ties, argmax would otherwise credit only the first copy).
        The similarities are formed a block of ``X`` rows at a time (about 64
        MiB in float32), never as one n x n matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            First modality; all-NaN rows are unpaired.
        Y : array-like of shape (n_samples, n_features_y)
            Second modality, row-aligned with X; all-NaN rows are unpaired.
        y : array-like, default=None
            Alias of ``Y``.

        Returns
        -------
        recall : float
            In [0, 1], higher is better.

        Raises
        ------
        ValueError
            If ``X`` and ``Y`` have different row counts, or no row is paired.
        """
        Y = _alias(Y, y)
        if Y is None:
            raise ValueError("score(X, Y) needs the paired features Y, got Y=None")
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32,
                          ensure_all_finite=False)
        Y = self._check_y(Y)
        if len(X) != len(Y):
            raise ValueError(f"score needs paired rows: X has {len(X)} rows, Y has "
                             f"{len(Y)}")
        paired = ~_rows_missing(X, "X") & ~_rows_missing(Y, "Y")
        if not paired.any():
            raise ValueError("score needs at least one paired row (not all-NaN in X "
                             "nor in Y); each row is all-NaN in X or in Y")
        zx = self._embed(X[paired], "tower_x")
        zy = self._embed(Y[paired], "tower_y")
        return _recall_at_1(zx, zy, Y[paired])


#: Entries of the similarity block ``score`` holds at a time (64 MiB in
#: float32): the rows of X per block are this over the number of Y rows.
_SCORE_BLOCK_ENTRIES = 2**24


def _recall_at_1(zx, zy, Y, *, block=None):
    """Mean of X->Y and Y->X recall@1 of row-paired embeddings ``zx``, ``zy``
    (n, k); rows with identical raw ``Y`` (n, d) are one caption, so any copy
    is a hit.

    The similarities ``zx @ zy.T`` are formed ``block`` rows of ``zx`` at a
    time (default: ``_SCORE_BLOCK_ENTRIES // n`` rows), never as one n x n
    matrix: X->Y takes each row's argmax, Y->X keeps a running column argmax
    across blocks. Both pick the first maximum (the first NaN, if any), as
    argmax over the whole matrix does. No block is a single row (unless
    n = 1): numpy computes a one-row product with BLAS gemv, which sums in
    another order than gemm; with that, the blocks' similarities were those
    of the dense product bit for bit (OpenBLAS), and so is the result.
    """
    n = len(zx)
    if block is None:
        block = _SCORE_BLOCK_ENTRIES // max(n, 1)
    block = max(2, block)
    group = np.unique(Y, axis=0, return_inverse=True)[1].ravel()
    starts = list(range(0, n, block))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()  # the last row joins the block before
    cols = np.arange(n)
    hits = 0
    best = None  # column maxima so far and their rows
    for i, stop in zip(starts, starts[1:] + [n], strict=True):
        S = zx[i:stop] @ zy.T
        hits += np.count_nonzero(group[S.argmax(1)] == group[i:stop])
        rows = S.argmax(0)
        top = S[rows, cols]
        del S
        if best is None:
            best, arg = top, rows
            continue
        # a later block wins only when strictly larger (ties keep the first
        # row), or with a NaN where the earlier blocks had none (argmax
        # returns the first NaN)
        later = (top > best) | (np.isnan(top) & ~np.isnan(best))
        best[later], arg[later] = top[later], rows[later] + i
    x_to_y = hits / n
    y_to_x = np.mean(group[arg] == group)
    return float((x_to_y + y_to_x) / 2)
