"""One training step of two linear heads (768 -> 512) + a contrastive loss + backward.

InfoNCE vs each OT loss of :mod:`skot.losses`: wall time per step (median of the
timed repeats after warm-up), its ratio to InfoNCE (steps of both interleaved in one
process) and peak memory. On CPU the peak is the growth of the
process's maximum resident set during the steps (each loss in a fresh subprocess);
on CUDA it is ``torch.cuda.max_memory_allocated``. Writes
``doc/benchmarks/bench_losses.rst``.

Usage: ``python benchmarks/bench_losses.py [--device cuda] [--batch 1024 4096 ...]``
(defaults: batch 1024 on CPU; 1024..65536 on CUDA).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ["infonce", "iot", "iot_total", "unbalanced", "dbot", "fgw", "ufgw", "ncu"]
# the anchors, same loss (KL(I/n || P) of the balanced entropic plan):
# POT's memory fix (ot.solve(..., grad="envelope"), 20 iterations) and a
# log-domain Sinkhorn unrolled for 20 iterations, written out by hand
ANCHORS = ["pot_envelope20", "unrolled20"]


def anchor_loss(name, reg):
    import math

    import torch

    def pot_envelope20(x, y):
        import ot

        C = 1.0 - x @ y.T
        res = ot.solve(C, reg=reg, max_iter=20, grad="envelope")
        n = len(C)
        return (torch.diagonal(C).mean() - res.value) / reg + math.log(n)

    def unrolled20(x, y):
        C = 1.0 - x @ y.T
        n = len(C)
        loga = -math.log(n)
        f = torch.zeros(n, dtype=C.dtype, device=C.device)
        g = torch.zeros_like(f)
        for _ in range(20):
            f = reg * loga - reg * torch.logsumexp((g[None, :] - C) / reg, 1)
            g = reg * loga - reg * torch.logsumexp((f[:, None] - C) / reg, 0)
        logp = (f + g - torch.diagonal(C)) / reg
        return -logp.mean() - math.log(n)

    return {"pot_envelope20": pot_envelope20, "unrolled20": unrolled20}[name]


def setup(loss, batch, device, reg):
    """The benchmark's training step for ``loss`` on seeded data: returns
    ``(step, device)``; ``step(crit)`` runs it with another loss module."""
    import torch

    from skot.losses import OTContrastiveLoss

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    dev = torch.device(device)
    X = torch.randn(batch, 768, device=dev)
    Y = X + 0.5 * torch.randn(batch, 768, device=dev)
    hx = torch.nn.Linear(768, 512).to(dev)
    hy = torch.nn.Linear(768, 512).to(dev)
    crit = anchor_loss(loss, reg) if loss in ANCHORS else OTContrastiveLoss(loss, reg=reg)
    opt = torch.optim.SGD(list(hx.parameters()) + list(hy.parameters()), lr=1e-3)

    def step(crit=crit):
        opt.zero_grad(set_to_none=True)
        zx = torch.nn.functional.normalize(hx(X), dim=1)
        zy = torch.nn.functional.normalize(hy(Y), dim=1)
        out = crit(zx, zy)
        out.backward()
        opt.step()
        return out

    return step, dev


def one(loss, batch, device, repeats, reg, interleave=True):
    import torch

    from skot.losses import OTContrastiveLoss

    step, dev = setup(loss, batch, device, reg)

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # warm-up
    times = []
    for _ in range(repeats):
        dt, value = timed(step)
        times.append(dt)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    out = {"loss": loss, "batch": batch, "ms": 1e3 * _median(times),
           "mib": peak / 2**20, "value": float(value)}
    if interleave and loss != "infonce":
        # the time ratio from InfoNCE steps interleaved with this loss's steps
        # in the same process: the load of a shared machine drifts by 15-25%
        # between runs, which separate processes would put into the ratio
        ref = OTContrastiveLoss("infonce", reg=reg)
        step(ref)  # warm-up
        t_loss, t_ref = [], []
        for _ in range(repeats):
            t_ref.append(timed(lambda: step(ref))[0])
            t_loss.append(timed(step)[0])
        out["ratio"] = _median(t_loss) / _median(t_ref)
    return out


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run_sub(loss, batch, device, repeats, reg, mem_limit_gib=None):
    cmd = [sys.executable, __file__, "--one", loss, "--batch", str(batch),
           "--device", device, "--repeats", str(repeats), "--reg", str(reg)]

    def limit():  # a clean out-of-memory error instead of the kernel's OOM killer
        if mem_limit_gib:
            cap = int(mem_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         preexec_fn=limit)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["failed"]
        if any(w in out.stderr for w in ("can't allocate memory", "out of memory",
                                          "MemoryError")):
            tail = ["out of memory"]
        return {"loss": loss, "batch": batch, "ms": float("nan"),
                "mib": float("nan"), "error": tail[0][:60]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, nargs="*")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--reg", type=float, nargs="*", default=[0.01, 0.05])
    p.add_argument("--losses", nargs="*", default=LOSSES,
                   help=f"among {LOSSES + ANCHORS}")
    p.add_argument("--one")
    p.add_argument("--out", help="file name under doc/benchmarks (default "
                   "bench_losses.rst on CPU, bench_losses_cuda.rst on CUDA)")
    p.add_argument("--title", default="Contrastive losses: one training step")
    p.add_argument("--mem-limit-gib", type=float,
                   help="address-space cap of each CPU run (a clean OOM error)")
    a = p.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.batch[0], a.device, a.repeats, a.reg[0])))
        return
    import torch

    batches = a.batch or ([1024] if a.device == "cpu" else
                          [1024, 4096, 16384, 32768, 65536])
    rows = []
    for b in batches:
        for reg in a.reg:
            ref = None
            for loss in a.losses:
                r = run_sub(loss, b, a.device, a.repeats, reg, a.mem_limit_gib)
                r["reg"] = reg
                ref = r if loss == "infonce" else ref
                r["xt"] = r.get("ratio", r["ms"] / ref["ms"] if ref else float("nan"))
                r["xm"] = (r["mib"] / ref["mib"] if ref and ref["mib"] > 0
                           else float("nan"))
                rows.append(r)
                print(f"{b:6d} {reg:5g} {loss:11s} {r['ms']:9.1f} ms  x{r['xt']:5.2f}  "
                      f"{r['mib']:9.1f} MiB  x{r['xm']:5.2f}  {r.get('error', '')}",
                      flush=True)
    rows.sort(key=lambda r: r["batch"])  # stable: the losses keep their order
    dev = (torch.cuda.get_device_name() if a.device.startswith("cuda")
           else f"CPU ({platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores, {torch.get_num_threads()} threads)")
    head = ["batch", "reg", "loss", "time (ms)", "x InfoNCE", "peak mem (MiB)",
            "x InfoNCE"]
    body = [[str(r["batch"]), f"{r['reg']:g}", r["loss"], f"{r['ms']:.1f}", f"{r['xt']:.2f}",
             f"{r['mib']:.0f}", f"{r['xm']:.2f}"] if "error" not in r else
            [str(r["batch"]), f"{r['reg']:g}", r["loss"], r["error"], "-", "-", "-"]
            for r in rows]
    w = [max(len(h), *(len(x[i]) for x in body)) for i, h in enumerate(head)]
    sep = "  ".join("=" * k for k in w)
    fmt = lambda xs: "  ".join(x.ljust(k) for x, k in zip(xs, w))  # noqa: E731
    title = a.title
    text = "\n".join([
        title, "=" * len(title), "",
        f"Generated by ``benchmarks/bench_losses.py`` on {dev}; torch "
        f"{torch.__version__}; device ``{a.device}``. Two linear heads 768 -> 512, "
        f"L2-normalised, loss, backward, SGD step; median of {a.repeats} steps after "
        "one warm-up; the time ratio x InfoNCE is that of the medians of "
        f"{a.repeats} InfoNCE and {a.repeats} loss steps interleaved in the loss's "
        "process (robust to the drift of a shared machine's load). reg 0.01 is the embedder's default (more Sinkhorn "
        "iterations), 0.05 the papers' range. Peak memory: growth of max RSS during "
        "the steps (CPU; a lower bound, allocator reuse hides some) or "
        "``torch.cuda.max_memory_allocated`` above the inputs (CUDA). "
        "OT losses: no unrolled graph; ``iot`` uses the envelope identity, the "
        "relaxed ones the envelope gradient (T - P) / reg of their plan, ``fgw`` "
        "that of its linearised problem (through C and both batch graphs, in "
        "factored form when d < n), ``ncu`` a detached masked-Sinkhorn target "
        "(its gradient assembled without a graph). Anchors (same loss as ``iot``): "
        "``pot_envelope20`` is POT's ``ot.solve(..., grad='envelope')`` with 20 "
        "iterations, ``unrolled20`` a log-domain Sinkhorn unrolled for 20 "
        "iterations (autograd through every iteration).", "",
        sep, fmt(head), sep, *map(fmt, body), sep, ""])
    name = a.out or ("bench_losses.rst" if a.device == "cpu"
                     else f"bench_losses_{a.device.split(':')[0]}.rst")
    (ROOT / "doc" / "benchmarks" / name).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
