"""Thin ``nn.Module`` wrappers around :mod:`skot.losses._functional`."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..ot._validation import check_positive, check_reg
from . import _functional as F

__all__ = ["OTContrastiveLoss", "LOSSES"]

#: Loss name -> (function of :mod:`skot.losses`, fixed keyword arguments):
#: ``"infonce"``: :func:`infonce_loss`; ``"iot"``, ``"iot_total"``,
#: ``"unbalanced"``, ``"dbot"``: :func:`iot_loss` with ``method="sinkhorn"``,
#: ``"total"``, ``"unbalanced"``, ``"dbot"``; ``"fgw"``: :func:`fgw_loss`;
#: ``"ufgw"``: :func:`fgw_loss` with ``unbalanced=1.0``; ``"ncu"``:
#: :func:`ncu_loss`.
LOSSES = {
    "infonce": (F.infonce_loss, {}),
    "iot": (F.iot_loss, {"method": "sinkhorn"}),
    "iot_total": (F.iot_loss, {"method": "total"}),
    "unbalanced": (F.iot_loss, {"method": "unbalanced"}),
    "dbot": (F.iot_loss, {"method": "dbot"}),
    "fgw": (F.fgw_loss, {}),
    "ufgw": (F.fgw_loss, {"unbalanced": 1.0}),
    "ncu": (F.ncu_loss, {}),
}


class OTContrastiveLoss(nn.Module):
    """Contrastive loss of a given ``loss`` name, plus the optional regularisers.

    Parameters
    ----------
    loss : str, default="iot"
        One of :data:`LOSSES`: ``"infonce"``, ``"iot"``, ``"iot_total"``,
        ``"unbalanced"``, ``"dbot"``, ``"fgw"``, ``"ufgw"``, ``"ncu"``.
    reg : float, default=0.05
        Temperature / entropic regularisation, passed to the loss function as
        ``reg``.
    uniformity : float, default=0.0
        Weight of IOT-CL's uniformity penalty (``"iot*"``, ``"unbalanced"``,
        ``"dbot"``; ignored by the other losses).
    align_weight : float, default=0.0
        Weight of the OT regulariser between the latent clouds of both
        modalities (partially paired data), solved at ``max(reg, 0.05)``.
    align_form : {"pairwise", "barycenter"}, default="pairwise"
        Form of that regulariser (see :func:`alignment_regulariser`).
    options : dict, default=None
        Extra keyword arguments of the loss function (``alpha``,
        ``unbalanced``, ``noise_ratio``, ``gamma``, ...); they override the
        fixed ones of :data:`LOSSES`.

    Raises
    ------
    ValueError
        If ``loss`` or ``align_form`` is not known, ``reg`` is not a finite
        float > 0, ``uniformity`` / ``align_weight`` is negative or not
        finite, or an entry of ``options`` is refused by the loss function
        (checked at construction, by evaluating the loss on two pairs).
    TypeError
        If the loss function does not take an entry of ``options`` (or refuses
        its type).
    """

    def __init__(self, loss="iot", *, reg=0.05, uniformity=0.0, align_weight=0.0,
                 align_form="pairwise", options=None):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not known; choose one of {sorted(LOSSES)}")
        check_reg(reg, allow_none=False)
        for name, value in (("uniformity", uniformity), ("align_weight", align_weight)):
            # a negative or NaN weight would drop the term silently
            check_positive(value, name, allow_none=False, strict=False)
        if align_form not in ("pairwise", "barycenter"):
            raise ValueError(f"align_form={align_form!r} is not known; use "
                             "'pairwise' or 'barycenter'")
        self.loss, self.reg = loss, reg
        self.uniformity, self.align_weight = uniformity, align_weight
        self.align_form = align_form
        self.options = {} if options is None else dict(options)
        self._check_options()

    def _check_options(self):
        """Check ``options`` at construction, before any training: the loss
        function is evaluated once on a batch of two orthogonal pairs (a 2 x 2
        solve), so that each option is checked by the function that reads it
        (a bad ``max_iter`` or ``unbalanced`` was found in the first training
        step)."""
        func, fixed = LOSSES[self.loss]
        kw = {**fixed, **self.options}
        if self.uniformity and func is F.iot_loss:
            kw["uniformity"] = self.uniformity
        z = torch.eye(2, dtype=torch.float64)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # only the checks are wanted here
            func(z, z, reg=self.reg, **kw)

    def forward(self, zx, zy, *, x_all=None, y_all=None, target=None):
        """Loss on paired rows (+ the alignment regulariser on all rows).

        Parameters
        ----------
        zx, zy : tensors (n, k)
            Normalised embeddings of the n pairs.
        x_all, y_all : tensors, optional
            Embeddings of every available row of each modality (paired or not),
            used by the alignment regulariser (default: the pairs).
        target : tensor (n, n), optional
            Target coupling (see :func:`skot.losses.target_plan`).

        Returns
        -------
        loss : tensor of shape ()
            The contrastive loss (0, with zero gradients, when fewer than two
            pairs are given) plus
            ``align_weight`` times the alignment regulariser.
        """
        func, fixed = LOSSES[self.loss]
        kw = {**fixed, **self.options}
        if self.uniformity and func is F.iot_loss:
            kw["uniformity"] = self.uniformity
        # the loss's checks that read no values, also for batches too small
        # for the loss (whose 0 has zx's dtype and device)
        F._check_batch(zx, zy, target)
        # 0 as a sum over no rows: a term of the graph when zx or zy needs a
        # gradient, so that backward() on a batch too small for the loss gives
        # zero gradients (as the functions' 0 at one pair does) rather than
        # torch's "element 0 of tensors does not require grad"
        total = zx[:0].sum() + zy[:0].sum()
        if len(zx) >= 2:
            total = total + func(zx, zy, reg=self.reg, target=target, **kw)
        if self.align_weight > 0:
            xa = zx if x_all is None else x_all
            ya = zy if y_all is None else y_all
            for name, t in (("x_all", xa), ("y_all", ya)):
                F._check_tensor(name, t)
                F._check_like("zx", zx, name, t)  # no silent promotion of the sum
            if len(xa) and len(ya):
                total = total + self.align_weight * F.alignment_regulariser(
                    xa, ya, reg=max(self.reg, 0.05), form=self.align_form)
        return total
