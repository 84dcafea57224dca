"""Autograd helpers of the solver layer: values and plans with a given gradient
(envelope theorem), at no n x m cost in the forward pass."""

from __future__ import annotations

import torch

__all__ = ["WithGradient", "with_gradient", "FixedPotentialPlan"]


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
