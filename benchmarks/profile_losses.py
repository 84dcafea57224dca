"""Where a training step's time goes: the torch profiler over the step of
``bench_losses.py`` (two linear heads 768 -> 512, L2-normalised, loss, backward,
SGD step), per loss.

Prints, per loss, the operations with the most self time (device time on CUDA,
CPU time on CPU) over ``--steps`` profiled steps after two warm-ups, and the
number of operations whose input has at least n^2 / 2 entries (the passes over
n x n buffers; view operations left out; from batch 4096 on, where n^2 / 2
exceeds the heads' 768 x 512 weights and their inputs), and the host
synchronisations per step (tensor -> Python conversions, counted over
``--steps`` more steps).

Usage: ``python benchmarks/profile_losses.py --device cuda --batch 16384
--losses infonce fgw ncu``
"""

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VIEWS = {
    "aten::slice", "aten::select", "aten::as_strided", "aten::view", "aten::reshape",
    "aten::_reshape_alias", "aten::narrow", "aten::expand", "aten::expand_as",
    "aten::matmul", "aten::diagonal", "aten::unsqueeze", "aten::squeeze",
    "aten::transpose", "aten::permute", "aten::t", "aten::numpy_T", "aten::detach",
    "aten::contiguous", "aten::empty", "aten::empty_like", "aten::alias",
    "aten::resolve_conj", "aten::log_softmax", "aten::cross_entropy_loss",
    "aten::nll_loss", "aten::nll_loss_nd", "aten::_unsafe_view", "aten::clone",
    "aten::rsub", "aten::split", "aten::mT", "aten::to", "aten::index_put_",
}


def _is_big(shapes, n):
    return any(isinstance(s, (list, tuple)) and s and all(isinstance(v, int) for v in s)
               and math.prod(s) >= n * n // 2 for s in shapes)


def count_host_syncs(fn, steps):
    """Tensor -> Python conversions (``item``, ``bool``, ``float``, ``int``,
    ``tolist``) per call of ``fn``: each one waits for the GPU's queue to
    drain, and the device idles until the host has queued the next kernels."""
    import torch

    names = ("__bool__", "__float__", "__int__", "item", "tolist")
    orig = {k: getattr(torch.Tensor, k) for k in names}
    calls = [0]

    def spy(k):
        def conv(self, *args):
            calls[0] += 1
            return orig[k](self, *args)
        return conv

    try:
        for k in names:
            setattr(torch.Tensor, k, spy(k))
        for _ in range(steps):
            fn()
    finally:
        for k in names:
            setattr(torch.Tensor, k, orig[k])
    return calls[0] / steps


def profile(loss, batch, device, reg, steps, top):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from bench_losses import setup

    step, dev = setup(loss, batch, device, reg)
    for _ in range(2):
        step()
    cuda = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with tprofile(activities=acts, record_shapes=True) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages(group_by_input_shape=True)
    syncs = count_host_syncs(step, steps)

    def self_time(e):  # microseconds
        if cuda:
            return getattr(e, "self_device_time_total", None) or getattr(
                e, "self_cuda_time_total", 0.0)
        return e.self_cpu_time_total

    by_op, big = {}, {}
    for e in events:
        if not e.key.startswith("aten::"):
            continue
        by_op[e.key] = by_op.get(e.key, 0.0) + self_time(e)
        if e.key not in VIEWS and _is_big(e.input_shapes, batch):
            big[e.key] = big.get(e.key, 0) + e.count
    total = sum(by_op.values())
    print(f"== {loss}, batch {batch}, {device}: {total / 1e3 / steps:.1f} ms of "
          f"{'device' if cuda else 'CPU'} self time per step in aten ops; "
          f"{sum(big.values()) // steps} ops on n x n inputs per step; "
          f"{syncs:g} host synchronisations per step", flush=True)
    for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]:
        print(f"   {k:40s} {v / 1e3 / steps:8.2f} ms  {100 * v / total:5.1f}%"
              f"  (n x n calls per step: {big.get(k, 0) / steps:g})")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--reg", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--losses", nargs="*", default=["infonce", "fgw", "ncu"])
    a = p.parse_args()
    for loss in a.losses:
        profile(loss, a.batch, a.device, a.reg, a.steps, a.top)


if __name__ == "__main__":
    main()
