"""Entropic OT at scale: skot (stored-cost kernel, log, online) vs POT and GeomLoss.

Protocol (issue 6): fp32, cost 1 - cos of 512-d features (a seeded mixture of 64
clusters, the shape of CLIP features), uniform marginals, reg 0.05 and 0.01, a fixed
number of iterations (default 200, tolerance 0 so nobody stops early; GeomLoss runs
its own epsilon-scaling schedule and is reported as is). For each method: wall time
(after a warm-up run), peak memory above the inputs (CUDA: max_memory_allocated;
CPU: sampled peak RSS increase) and the L1 marginal error ||P1 - a||_1 +
||P^T 1 - b||_1 of the returned solution. The bandwidth bound of the stored-cost
mode is printed next to it: 2 reads of the n x m fp32 matrix per iteration at the
measured device-to-device copy bandwidth.

Runs unchanged on CPU (small n, the default there) and CUDA (n = 8192, 16384,
32768 stored; 65536 online only):

    python benchmarks/bench_scale.py                 # auto device
    python benchmarks/bench_scale.py --device cuda --iters 200

Writes the table to doc/benchmarks/bench_scale.rst.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skot.ot import solve, solve_sample  # noqa: E402

OUT = ROOT / "doc" / "benchmarks" / "bench_scale.rst"


# ----------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory above the level at entry (CUDA allocator or sampled RSS)."""

    def __init__(self, device):
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _malloc_trim()  # return freed heap pages so the RSS increase is visible
            self.base = self._rss()
            self._stop = False
            self._max = self.base

            def sample():
                while not self._stop:
                    self._max = max(self._max, self._rss())
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop = True
            self._thread.join()
            self.peak = max(self._max, self._rss()) - self.base
        return False


def _malloc_trim():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device, nbytes):
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync(device)
    reps = 10 if device.type == "cuda" else 3
    t = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    dt = (time.perf_counter() - t) / reps
    del src, dst
    return 2 * nbytes / dt


# ----------------------------------------------------------------------- data
def features(n, d, device, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(64, d, generator=g)
    lab = torch.randint(0, 64, (n,), generator=g)
    X = centers[lab] + 1.5 * torch.randn(n, d, generator=g)
    X = X / X.norm(dim=1, keepdim=True)
    return X.to(device=device, dtype=torch.float32)


def cosine_cost(Xa, Xb):
    return 1.0 - Xa @ Xb.T


def marginal_error_from_plan(P, a, b):
    return float((P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum())


def marginal_error_from_potentials(Xa, Xb, f, g, a, b, eps, tile=4096):
    """||P1 - a|| + ||P^T 1 - b|| with P = a b^T exp((f + g - C)/eps), tiled, fp64."""
    r = torch.empty(Xa.shape[0], dtype=torch.float64, device=Xa.device)
    c = torch.zeros(Xb.shape[0], dtype=torch.float64, device=Xa.device)
    la, lb = torch.log(a).double(), torch.log(b).double()
    for s in range(0, Xa.shape[0], tile):
        rows = slice(s, min(s + tile, Xa.shape[0]))
        C = cosine_cost(Xa[rows].double(), Xb.double())
        P = torch.exp((f[rows].double()[:, None] + g.double()[None] - C) / eps
                      + la[rows, None] + lb[None])
        r[rows] = P.sum(1)
        c += P.sum(0)
    return float((r - a.double()).abs().sum() + (c - b.double()).abs().sum())


# ----------------------------------------------------------------------- methods
TOL0 = 1e-30  # "never stop early"


def run_skot_kernel(Xa, Xb, a, b, reg, iters):
    M = cosine_cost(Xa, Xb)
    res = solve(M, a, b, reg=reg, max_iter=iters, tol=TOL0, grad="detach",
                geometry="kernel")
    f, g = res.potentials
    del M
    return f, g, None


def run_skot_log(Xa, Xb, a, b, reg, iters):
    M = cosine_cost(Xa, Xb)
    res = solve(M, a, b, reg=reg, max_iter=iters, tol=TOL0, grad="detach",
                geometry="log")
    f, g = res.potentials
    del M
    return f, g, None


ONLINE_TILE_ENTRIES = [1 << 24]  # set from --online-tile-entries


def run_skot_online(Xa, Xb, a, b, reg, iters):
    bs = max(1, ONLINE_TILE_ENTRIES[0] // Xb.shape[0])
    res = solve_sample(Xa, Xb, a, b, metric="cosine", reg=reg, max_iter=iters,
                       tol=TOL0, batch_size=bs)
    f, g = res.potentials
    return f, g, None


def run_pot(method):
    def run(Xa, Xb, a, b, reg, iters):
        import ot

        M = cosine_cost(Xa, Xb)
        P = ot.sinkhorn(a, b, M, reg, method=method, numItermax=iters,
                        stopThr=TOL0, warn=False)
        err = marginal_error_from_plan(P, a, b)
        del M, P
        return None, None, err

    return run


def run_geomloss(Xa, Xb, a, b, reg, iters):
    from geomloss import SamplesLoss

    # cost 1 - cos on (B, N, D) batches; p=1 so that eps = blur = reg
    def cost(x, y):
        return 1.0 - x @ y.transpose(-1, -2)

    loss = SamplesLoss("sinkhorn", p=1, blur=reg, scaling=0.9, debias=False,
                       potentials=True, cost=cost, backend="tensorized")
    F, G = loss(a[None], Xa[None], b[None], Xb[None])
    return F[0], G[0], None


METHODS = {
    "skot kernel (stored)": (run_skot_kernel, "stored"),
    "skot log (stored)": (run_skot_log, "stored"),
    "skot online": (run_skot_online, "online"),
    "POT log (sinkhorn_log)": (run_pot("sinkhorn_log"), "stored"),
    "POT kernel (sinkhorn)": (run_pot("sinkhorn"), "stored"),
    "GeomLoss tensorized": (run_geomloss, "stored"),
}


def have_geomloss():
    try:
        import geomloss  # noqa: F401
    except ImportError:
        return False
    return True


def measure(fn, Xa, Xb, a, b, reg, iters, device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # warm-up (kernels, allocator) on the same problem with 2 iterations
        try:
            fn(Xa, Xb, a, b, reg, 2)
        except torch.cuda.OutOfMemoryError:
            return dict(time=math.nan, mem=math.nan, err=math.nan, note="OOM")
        sync(device)
        try:
            with PeakMemory(device) as pm:
                t = time.perf_counter()
                f, g, err = fn(Xa, Xb, a, b, reg, iters)
                sync(device)
                dt = time.perf_counter() - t
        except torch.cuda.OutOfMemoryError:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return dict(time=math.nan, mem=math.nan, err=math.nan, note="OOM")
        except Exception as exc:  # noqa: BLE001 - report, do not hide
            return dict(time=math.nan, mem=math.nan, err=math.nan,
                        note=type(exc).__name__)
    if err is None:
        if torch.isfinite(f).all() and torch.isfinite(g).all():
            err = marginal_error_from_potentials(Xa, Xb, f, g, a, b, reg)
        else:
            err = math.nan
    if not math.isfinite(err):
        note = "non-finite (underflow)"
    elif err > 1.0:
        note = "failed (kernel underflow)"
    else:
        note = ""
    return dict(time=dt, mem=pm.peak, err=err, note=note)


# ----------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--online-sizes", type=int, nargs="*", default=None)
    p.add_argument("--regs", type=float, nargs="*", default=[0.05, 0.01])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--online-tile-entries", type=int, default=None,
                   help="entries per tile of the online mode (default 2**24 on CUDA, "
                        "2**20 on CPU)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda requested but CUDA is not available")
    cuda = device.type == "cuda"
    sizes = args.sizes or ([8192, 16384, 32768] if cuda else [1000, 2000, 4000])
    online_sizes = args.online_sizes
    if online_sizes is None:
        online_sizes = [65536] if cuda else []
    ONLINE_TILE_ENTRIES[0] = args.online_tile_entries or (
        (1 << 24) if cuda else (1 << 20))
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    bw = copy_bandwidth(device, (1 << 30) if cuda else (1 << 28))
    if cuda:
        machine = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        machine = f"CPU ({platform.processor() or platform.machine()}), " \
                  f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    header = (f"device: {machine}; torch {torch.__version__}; fp32; d={args.dim}; "
              f"{args.iters} iterations; online tile {ONLINE_TILE_ENTRIES[0]} entries; "
              f"copy bandwidth {bw / 1e9:.1f} GB/s")
    print(header)
    methods = {k: v for k, v in METHODS.items()
               if k != "GeomLoss tensorized" or have_geomloss()}
    if "GeomLoss tensorized" not in methods:
        print("GeomLoss not installed: skipped")
    rows = []
    for n in sorted(set(sizes) | set(online_sizes)):
        Xa = features(n, args.dim, device, seed=1)
        Xb = features(n, args.dim, device, seed=2)
        a = torch.full((n,), 1.0 / n, device=device)
        b = torch.full((n,), 1.0 / n, device=device)
        bound = args.iters * 2 * n * n * 4 / bw
        for reg in args.regs:
            for name, (fn, kind) in methods.items():
                if n not in sizes and kind == "stored":
                    continue
                if n not in online_sizes and n not in sizes:
                    continue
                r = measure(fn, Xa, Xb, a, b, reg, args.iters, device)
                ratio = r["time"] / bound if kind == "stored" else math.nan
                row = dict(n=n, reg=reg, method=name, bound=bound, ratio=ratio, **r)
                rows.append(row)
                print(f"n={n:6d} reg={reg:<5g} {name:24s} "
                      f"time {r['time']:8.3f} s  (x{ratio:5.2f} bound {bound:.3f} s)  "
                      f"mem {r['mem'] / 2**20:9.1f} MiB  err {r['err']:.2e} "
                      f"{r['note']}", flush=True)
                # rewritten after every row: an interrupted run keeps its table
                write_rst(rows, header, Path(args.out), args, quiet=True)
        del Xa, Xb
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    write_rst(rows, header, Path(args.out), args)
    return rows


def _fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else format(x, spec)


def write_rst(rows, header, out, args, quiet=False):
    cols = ["n", "reg", "method", "time (s)", "x bound", "bound (s)",
            "peak mem (MiB)", "marginal err", "note"]
    table = []
    for r in rows:
        table.append([str(r["n"]), f"{r['reg']:g}", r["method"], _fmt(r["time"], ".3f"),
                      _fmt(r["ratio"], ".2f"), f"{r['bound']:.3f}",
                      _fmt(r["mem"] / 2**20 if math.isfinite(r["mem"]) else math.nan,
                           ".1f"),
                      _fmt(r["err"], ".2e"), r["note"] or ""])
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    sep = "  ".join("=" * w for w in widths)

    def line(vals):
        return "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()

    title = "Entropic OT at scale (bench_scale.py)"
    text = [title, "=" * len(title), "",
            "Generated by ``benchmarks/bench_scale.py`` "
            f"(``--iters {args.iters}``). Machine: {header}.", "",
            "``x bound``: time over the bandwidth bound of the stored-cost mode "
            "(2 reads of the n x m fp32 cost per iteration at the measured copy "
            "bandwidth). Peak memory is above the inputs (CUDA allocator peak; on CPU "
            "a sampled RSS increase). Marginal error: L1, both marginals, of the "
            "returned solution. GeomLoss uses its own epsilon-scaling schedule.", "",
            sep, line(cols), sep]
    text += [line(t) for t in table]
    text += [sep, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    if not quiet:
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
