"""Projection heads for precomputed features, and the skorch net that trains them."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.dataset import unpack_data
from torch import nn

from .._backend import unit_rows
from ..losses import target_plan

__all__ = ["ResidualHead", "TwoTower", "TowerOutput", "ContrastiveNet"]


class TowerOutput(NamedTuple):
    """Normalised embeddings of the two modalities, shapes (n, k)."""

    zx: torch.Tensor
    zy: torch.Tensor


class ResidualHead(nn.Module):
    """Residual projection head, the identity map at initialisation.

    ``z = normalize(B x + U relu(V x))`` (``z = normalize(B x + U x)`` when
    ``hidden=0``), with ``B`` the identity (or the truncation to, or zero
    padding from, the first ``min(d_in, d_out)`` coordinates), fixed, and
    ``U = 0`` at initialisation, so the untrained head keeps the input
    geometry (CLIP's zero-shot transfer). Only ``U`` and ``V`` (with their
    biases) are trained.

    Parameters
    ----------
    d_in : int
        Input dimension.
    d_out : int
        Output dimension.
    hidden : int or None, default=None
        Width of the hidden layer of the residual MLP; None uses
        ``min(d_in, 512)``, 0 makes the residual branch linear
        (``U x``, no hidden layer).
    """

    def __init__(self, d_in, d_out, hidden=None):
        super().__init__()
        hidden = min(d_in, 512) if hidden is None else hidden
        self.base = nn.Linear(d_in, d_out, bias=False)
        with torch.no_grad():
            self.base.weight.zero_()
            k = min(d_in, d_out)
            self.base.weight[:k, :k] = torch.eye(k)
        # the base map stays fixed: training moves only the residual branch, and
        # weight decay pulls it back towards the identity (keeps zero-shot transfer)
        self.base.weight.requires_grad_(False)
        # hidden=0: a linear residual map; otherwise a one-hidden-layer MLP
        self.V = nn.Linear(d_in, hidden) if hidden else nn.Identity()
        self.U = nn.Linear(hidden or d_in, d_out)
        nn.init.zeros_(self.U.weight)
        nn.init.zeros_(self.U.bias)
        self.hidden = hidden

    def forward(self, x, mix=1.0):
        """Embed the rows of ``x``.

        Parameters
        ----------
        x : torch.Tensor of shape (n, d_in)
            Input features.
        mix : float, default=1.0
            Weight of the trained head: ``mix >= 1`` returns ``z``; otherwise
            ``normalize((1 - mix) * normalize(B x) + mix * z)``, an
            interpolation with the untrained (identity) map.

        Returns
        -------
        z : torch.Tensor of shape (n, d_out)
            L2-normalised embeddings.
        """
        h = torch.relu(self.V(x)) if self.hidden else x
        b = self.base(x)
        z = unit_rows(b + self.U(h))
        if mix >= 1.0:
            return z
        return F.normalize((1.0 - mix) * unit_rows(b) + mix * z, dim=-1)


class TwoTower(nn.Module):
    """One :class:`ResidualHead` per modality.

    Parameters
    ----------
    d_x : int, default=2
        Input dimension of the first modality (e.g. image features).
    d_y : int, default=2
        Input dimension of the second modality (e.g. text features).
    n_components : int, default=2
        Output dimension of both heads.
    hidden : int or None, default=None
        Hidden width of both heads (see :class:`ResidualHead`).
    heads : {"both", "x", "y"}, default="both"
        Which heads are trained; the parameters of the other are frozen
        (``requires_grad=False``), so it stays the identity map.
    """

    def __init__(self, d_x=2, d_y=2, n_components=2, hidden=None, heads="both"):
        super().__init__()
        self.tower_x = ResidualHead(d_x, n_components, hidden)
        self.tower_y = ResidualHead(d_y, n_components, hidden)
        for name, tower in (("x", self.tower_x), ("y", self.tower_y)):
            if heads not in ("both", name):
                for p in tower.parameters():
                    p.requires_grad_(False)

    def forward(self, x, y, mx=None, my=None):
        """Embed both modalities with the heads alone (``mix=1``).

        Parameters
        ----------
        x : torch.Tensor of shape (n, d_x)
            Features of the first modality.
        y : torch.Tensor of shape (n, d_y)
            Features of the second modality.
        mx, my : torch.Tensor of shape (n,), optional
            Pairing masks (True where the row is present). Not used here:
            they are accepted because skorch passes every key of the input
            dict to ``forward``; :class:`ContrastiveNet` reads them in its
            loss.

        Returns
        -------
        out : TowerOutput
            ``(zx, zy)``, L2-normalised embeddings of shapes
            (n, n_components).
        """
        return TowerOutput(self.tower_x(x), self.tower_y(y))


class ContrastiveNet(NeuralNet):
    """skorch net whose loss sees both towers and the pairing masks.

    ``get_loss`` and ``train_step_single`` are overridden: skorch owns the loop,
    callbacks, device, history and checkpointing.
    """

    def train_step_single(self, batch, **fit_params):
        """skorch's step, except that a batch with no loss term (fewer than two
        pairs and no alignment term: partially paired data) is skipped: its
        gradients stay None, so the optimizer leaves the heads (and its own
        state) untouched. ``backward`` on its constant loss used to fail."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        if loss.requires_grad:
            loss.backward()
        else:
            self.skipped_steps_ = getattr(self, "skipped_steps_", 0) + 1
        return {"loss": loss, "y_pred": y_pred}

    def get_loss(self, y_pred, y_true, X=None, training=False):
        zx, zy = y_pred
        mx, my = X["mx"].to(zx.device), X["my"].to(zx.device)
        paired = mx & my
        target = None
        if paired.sum() >= 2:
            # rows sharing the same paired embedding (one prompt, many images)
            # are positives of each other
            target = target_plan(y_raw=X["y"].to(zx.device)[paired])
        elif not (self.criterion_.align_weight > 0 and mx.any() and my.any()):
            # no loss term: a constant, so that train_step_single skips the step
            return zx.new_zeros(())
        try:
            return self.criterion_(zx[paired], zy[paired], x_all=zx[mx],
                                   y_all=zy[my], target=target)
        except ValueError as exc:
            # the inputs were checked finite in fit: non-finite embeddings mean
            # that the heads' weights diverged (the loss's own message, "x or
            # y contains NaN or inf", named neither the cause nor lr)
            with torch.no_grad():
                finite = bool(torch.isfinite(zx).all() & torch.isfinite(zy).all())
            if finite:
                raise
            epoch = len(self.history)
            raise ValueError(
                f"training diverged: the heads' embeddings became NaN or inf in "
                f"epoch {epoch} (lr={self.lr!r}); lower lr, or reg if it is tiny"
            ) from exc
