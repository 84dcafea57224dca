"""Entropic OT: skot.ot.solve vs POT's log-domain and kernel-domain Sinkhorn.

Problem: cost = 1 - cosine similarity of 512-d CLIP-like features (class
structure + a modality gap), uniform marginals, reg 0.05 and 0.01. Every solver
runs until its L1 marginal error is below 1e-6 (POT: ``stopThr=1e-6/sqrt(n)`` on
the L2 norm of its column-marginal error; skot: ``tol=1e-6`` on the L1 norm of the
row-marginal error); the table reports the L1 marginal error (rows +
columns) actually reached by each plan, the time (best of ``--repeat`` runs after
one warm-up) and the peak extra memory of the solve (each run in a fresh
subprocess: peak RSS growth on CPU, ``torch.cuda.max_memory_allocated`` on GPU).

Run ``python benchmarks/bench_solvers.py`` (CPU: n = 1000, 2000) or, on a GPU
machine, ``python benchmarks/bench_solvers.py --device cuda --dtype float32
--sizes 8192 16384 32768``. The table is printed and written to
``doc/benchmarks/bench_solvers.rst``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")
os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rst import rst_table  # noqa: E402

SOLVERS = ["pot_log", "pot_kernel", "skot_kernel", "skot_log"]


def make_cost(n, d=512, seed=0, dtype="float64", device="cpu"):
    """1 - cosine between two modalities of n class-structured points."""
    import torch

    g = torch.Generator().manual_seed(seed)
    k = max(2, n // 50)
    centers = torch.randn(k, d, generator=g, dtype=torch.float64)
    lab_x = torch.randint(k, (n,), generator=g)
    lab_y = torch.randint(k, (n,), generator=g)
    gap = torch.randn(d, generator=g, dtype=torch.float64)
    X = centers[lab_x] + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = centers[lab_y] + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64) + gap
    X = X / X.norm(dim=1, keepdim=True)
    Y = Y / Y.norm(dim=1, keepdim=True)
    C = (1 - X @ Y.T).to(getattr(torch, dtype))
    return C.to(device)


def _rss_now():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(solver, n, reg, dtype, device, repeat, max_iter):
    """Run in a fresh process; returns a dict of measurements."""
    import ot
    import torch

    import skot.ot as so

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    C = make_cost(n, dtype=dtype, device=device)
    use_np = device == "cpu" and solver.startswith("pot")
    Cx = C.cpu().numpy() if use_np else C
    if use_np:
        a = np.full(n, 1.0 / n, dtype=Cx.dtype)
    else:
        a = torch.full((n,), 1.0 / n, dtype=C.dtype, device=C.device)

    # POT stops on the L2 norm of the column error; L1 <= sqrt(n) L2, so this
    # threshold guarantees the same L1 error (1e-6) that skot's tol=1e-6 asks for
    thr = 1e-6 / np.sqrt(n)

    def solve():
        if solver == "pot_log":
            return ot.sinkhorn(a, a, Cx, reg, method="sinkhorn_log", stopThr=thr,
                               numItermax=max_iter, warn=False)
        if solver == "pot_kernel":
            return ot.sinkhorn(a, a, Cx, reg, method="sinkhorn", stopThr=thr,
                               numItermax=max_iter, warn=False)
        geometry = solver.split("_")[1]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = so.solve(Cx, a, a, reg=reg, tol=1e-6, max_iter=max_iter,
                           geometry=geometry)
        return res.plan

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    if not (use_np and solver == "pot_log"):
        P = solve()  # warm-up (POT's numpy log-domain solver has nothing to warm)
        sync()
    times = []
    for _ in range(repeat):
        if device != "cpu":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_now()
        t0 = time.perf_counter()
        P = solve()
        sync()
        times.append(time.perf_counter() - t0)
        peak = (torch.cuda.max_memory_allocated() if device != "cpu" else _peak_rss())
    Pt = torch.as_tensor(P).double()
    ref = 1.0 / n
    err = float((Pt.sum(1) - ref).abs().sum() + (Pt.sum(0) - ref).abs().sum())
    finite = bool(torch.isfinite(Pt).all())
    return dict(solver=solver, n=n, reg=reg, time=min(times),
                mem_mb=max(0, peak - base) / 2**20, err=err, finite=finite)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    p.add_argument("--regs", type=float, nargs="+", default=[0.05, 0.01])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=100_000)
    p.add_argument("--solvers", nargs="+", default=SOLVERS)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "doc"
                                        / "benchmarks" / "bench_solvers.rst"))
    p.add_argument("--single", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:
        kw = json.loads(args.single)
        print(json.dumps(run_one(**kw)))
        return
    rows = []
    for n in args.sizes:
        for reg in args.regs:
            for solver in args.solvers:
                kw = dict(solver=solver, n=n, reg=reg, dtype=args.dtype,
                          device=args.device, repeat=args.repeat, max_iter=args.max_iter)
                out = subprocess.run([sys.executable, __file__, "--single", json.dumps(kw)],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    msg = out.stderr.strip().splitlines()[-1] if out.stderr else "failed"
                    rows.append(dict(solver=solver, n=n, reg=reg, error=msg))
                    print(f"{solver:12s} n={n:6d} reg={reg:<5g} FAILED: {msg}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(f"{solver:12s} n={n:6d} reg={reg:<5g} time={r['time']:8.3f}s "
                      f"mem={r['mem_mb']:8.1f}MiB err={r['err']:.1e} finite={r['finite']}")
    write_rst(rows, args)


def write_rst(rows, args):
    import torch

    if args.device == "cpu":
        machine = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    else:
        machine = torch.cuda.get_device_name(0)
    lines = [
        "Entropic OT solvers",
        "===================",
        "",
        f"Machine: {machine}; torch {torch.__version__}; dtype {args.dtype}; "
        f"device {args.device}. Generated by ``benchmarks/bench_solvers.py``.",
        "Time: best of the timed runs after a warm-up. Memory: peak extra memory "
        "of the solve. Error: L1 marginal error (rows + columns) of the plan. "
        "Speed-up: POT log-domain time / this row's time. Threads per solve: "
        f"BENCH_THREADS={os.environ.get('BENCH_THREADS', os.cpu_count())}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.",
        "",
    ]
    header = ["n", "reg", "solver", "time (s)", "peak mem (MiB)", "marginal err",
              "speed-up vs POT log"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([str(r["n"]), f"{r['reg']:g}", r["solver"], "failed", "-",
                          r["error"][:40], "-"])
            continue
        base = next((q for q in rows if q.get("solver") == "pot_log" and q["n"] == r["n"]
                     and q["reg"] == r["reg"] and "time" in q), None)
        speed = f"{base['time'] / r['time']:.1f}x" if base else "-"
        table.append([str(r["n"]), f"{r['reg']:g}", r["solver"], f"{r['time']:.3f}",
                      f"{r['mem_mb']:.0f}", f"{r['err']:.1e}"
                      + ("" if r["finite"] else " (NaN)"), speed])
    lines += rst_table(header, table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
