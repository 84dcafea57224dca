r"""All-gather with gradients and global-batch losses for data-parallel training.

Every process holds a local batch of features (``x``, ``y``); a contrastive OT loss
must see the *global* batch (the OT marginals couple every pair), so each process
gathers all features and evaluates the same global loss. The gather keeps the
autograd graph of the local slice (the other slices are constants on this
process), as ``open_clip``'s ``gather_with_grad``.

Gradient scaling. Every process computes the same loss :math:`L`; its gradient
w.r.t. the local features is the local slice of :math:`\partial L / \partial X`.
Under :class:`torch.nn.parallel.DistributedDataParallel`, which *averages*
parameter gradients over the W processes, that would give :math:`1/W` of the
global gradient, so the backward of :func:`gather_with_grad` sums the slice's
gradient over processes (W times the slice, as ``torch.distributed.nn.all_gather``
does): after DDP's average the parameters get exactly the gradient of the global
loss. Without DDP (hand-written all-reduce or feature-level use), pass
``ddp=False`` to :func:`global_loss` to get the exact global gradient on the local
features.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_with_grad", "global_loss"]


def _world(group):
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


# every dtype torch defines gets its own code (in a fixed order): with a short
# list, two dtypes outside it (complex64 and complex128) shared the code
# "other", passed the check and the gather aborted the process (gloo SIGABRT)
_DTYPES = sorted({v for v in vars(torch).values() if isinstance(v, torch.dtype)},
                 key=str)
_MAX_DIM = 6


def _describe(x):
    """Fixed-length description exchanged between ranks: rows, ndim, dtype
    code, then the trailing dims padded with -1."""
    code = _DTYPES.index(x.dtype) if x.dtype in _DTYPES else len(_DTYPES)
    tail = list(x.shape[1:]) + [-1] * (_MAX_DIM - x.dim())
    return [x.shape[0], x.dim(), code] + tail


def _shape_text(desc):
    rows, ndim, code = desc[:3]
    dtype = _DTYPES[code] if code < len(_DTYPES) else "other"
    return f"({', '.join(str(s) for s in [rows] + desc[3:3 + ndim - 1])}) {dtype}"


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        world, rank = _world(group)
        ctx.group, ctx.rank, ctx.world = group, rank, world
        # every rank's shape and dtype, not only its rows: tensors that differ
        # past dim 0 made the gather itself abort the process (gloo SIGABRT)
        desc = torch.tensor(_describe(x), device=x.device)
        all_desc = [torch.zeros_like(desc) for _ in range(world)]
        dist.all_gather(all_desc, desc, group=group)
        all_desc = [d.tolist() for d in all_desc]
        if any(d[1:] != all_desc[0][1:] for d in all_desc):
            shapes = [_shape_text(d) for d in all_desc]
            raise ValueError(
                "gather_with_grad needs the same trailing shape and dtype on every "
                f"process (rows may differ); got {shapes} by rank")
        all_sizes = [d[0] for d in all_desc]
        ctx.sizes = all_sizes
        n_max = max(all_sizes)
        if x.shape[0] < n_max:  # all_gather needs equal shapes: pad
            pad = x.new_zeros((n_max - x.shape[0],) + tuple(x.shape[1:]))
            xp = torch.cat([x, pad])
        else:
            xp = x.contiguous()
        out = [torch.empty_like(xp) for _ in range(world)]
        dist.all_gather(out, xp, group=group)
        return torch.cat([o[:s] for o, s in zip(out, all_sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x, group=None):
    """Concatenate ``x`` from every process along dim 0, keeping its gradient.

    Parameters
    ----------
    x : torch.Tensor of shape (n_local, ...)
        Local features (local batch sizes may differ between processes).
    group : torch.distributed process group, optional

    Returns
    -------
    x_all : torch.Tensor of shape (sum of n_local, ...)
        Rank order. In the backward pass the gradient of ``x_all`` is summed over
        the processes and the local slice returned (``torch.distributed.nn``
        semantics): with identical losses on every process that is W times the
        global gradient, which DDP's gradient averaging cancels. Without an
        initialised process group it returns ``x`` unchanged.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not 1 <= x.dim() <= _MAX_DIM:
        raise ValueError(f"x must have 1 to {_MAX_DIM} dimensions (rows first), got "
                         f"shape {tuple(x.shape)}")
    world, _ = _world(group)
    if world == 1:
        return x
    return _AllGather.apply(x, group)


def global_loss(loss_fn, *local, ddp=True, group=None, **kwargs):
    r"""Evaluate ``loss_fn`` on the global batch from local tensors.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(*global_tensors, **kwargs) -> scalar tensor``, e.g.
        :func:`skot.losses.iot_loss` or :func:`skot.losses.infonce_loss`.
    *local : torch.Tensor
        Local tensors (e.g. image and text features of this process's batch),
        gathered in rank order.
    ddp : bool, default=True
        True: gradients for a model wrapped in ``DistributedDataParallel`` (its
        averaging gives the global-loss gradient). False: the local tensors get
        exactly the gradient of the global loss (divide by the world size).
    group : process group, optional
    **kwargs : passed to ``loss_fn``.

    Returns
    -------
    loss : 0-d tensor
        The global loss (same value on every process).

    Examples
    --------
    >>> import torch
    >>> from skot.parallel import global_loss
    >>> x = torch.randn(4, 3, requires_grad=True)
    >>> loss = global_loss(lambda u: (u ** 2).sum(), x)  # no process group: local
    >>> bool(loss == (x ** 2).sum())
    True
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not local:
        raise ValueError("global_loss needs at least one local tensor")
    if not isinstance(ddp, bool):
        raise TypeError(f"ddp must be a bool, got {ddp!r}")
    gathered = [gather_with_grad(t, group=group) for t in local]
    loss = loss_fn(*gathered, **kwargs)
    world, _ = _world(group)
    if ddp or world == 1:
        return loss
    # same value, gradient divided by the world size
    return loss / world + (loss - loss / world).detach()
