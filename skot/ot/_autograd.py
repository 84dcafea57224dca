"""Autograd helpers of the solver layer: values and plans with a given gradient
(envelope theorem), at no n x m cost in the forward pass."""

from __future__ import annotations

import torch

__all__ = ["WithGradient", "with_gradient", "with_product_gradient", "FixedPotentialPlan"]


class WithGradient(torch.autograd.Function):
    """A (batched) value whose gradient with respect to each input is given."""

    @staticmethod
    def forward(ctx, value, *pairs):
        ctx.save_for_backward(*pairs[1::2])
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        out = [None]
        for k, w in enumerate(ctx.saved_tensors):
            if ctx.needs_input_grad[1 + 2 * k]:
                g = grad.reshape(grad.shape + (1,) * (w.ndim - grad.ndim))
                out += [g * w, None]
            else:
                out += [None, None]
        return tuple(out)


def with_gradient(value, *pairs):
    """``value`` (detached) carrying d value / d x = w for each pair (x, w)."""
    pairs = [(x, w) for x, w in pairs if x.requires_grad]
    if not pairs or not torch.is_grad_enabled():
        return value
    return WithGradient.apply(value, *(t for p in pairs for t in p))


class ProductGradient(torch.autograd.Function):
    """A value whose gradient in S = x @ y.T is scale * G, with S never in the
    graph: d/dx = scale G y and d/dy = scale G^T x (two products; the scalars
    are applied to the n x d results, not to G)."""

    @staticmethod
    def forward(ctx, value, x, y, G, scale):
        ctx.save_for_backward(x, y, G)
        ctx.scale = scale
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        x, y, G = ctx.saved_tensors
        s = grad * ctx.scale
        gx = (G @ y).mul_(s) if ctx.needs_input_grad[1] else None
        gy = (G.mT @ x).mul_(s) if ctx.needs_input_grad[2] else None
        return None, gx, gy, None, None


def with_product_gradient(value, x, y, G, scale=1.0):
    """``value`` (detached) carrying d value / dS = scale * G for S = x @ y.T.

    The losses' alternative to ``with_gradient(value, (S, W))`` with S in the
    graph: no n x m pass in the backward (that form scales W by the incoming
    gradient and, for S = 1 - C, negates it: two passes over n x m)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or y.requires_grad):
        return value
    return ProductGradient.apply(value, x, y, G, scale)


class FixedPotentialPlan(torch.autograd.Function):
    """P = exp((f + g - M) / reg + ...) with the potentials held fixed: the
    forward pass reuses the solver's plan, the backward is -P * grad / reg."""

    @staticmethod
    def forward(ctx, M, plan, eps):
        ctx.save_for_backward(plan)
        ctx.eps = eps
        return plan.view_as(plan)

    @staticmethod
    def backward(ctx, grad):
        (plan,) = ctx.saved_tensors
        return grad * plan * (-1.0 / ctx.eps), None, None
