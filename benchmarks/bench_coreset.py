"""WassersteinCoresetSelector at scale: 100k x 512 rows, 1% coreset.

Data: synthetic CLIP-like embeddings (seeded): 100 classes, each a cluster with a
16-dimensional principal subspace plus isotropic noise, rows L2-normalised to
unit norm, float32. The coreset keeps 1% of the rows (1000) under the cosine
cost.

Configurations (each run in a fresh subprocess after a warm-up fit on 2k rows):

* unlabelled (``y=None``): the reference is a random subset of
  ``--max-reference`` rows (5000) of X; ``greedy`` (facility-location stage
  only), ``goracs`` (greedy + ``--max-iter`` swap rounds, ``--max-candidates``
  scored candidates per round) and ``barycenter`` (``--bary-iter`` iterations).
* class-stratified (``y`` given, 100 classes, ~1000 rows each): every class is
  matched to all its own rows (no subsampling), 10 rows per class.

The table reports the wall time of ``fit`` (best of ``--repeat``), the peak
resident memory of the process, the objective achieved (exact OT value against
the reference), and, for context, the objective of a random subset of the same
size (stratified random for the labelled runs; mean of 3 seeds) on the same
reference.

Run ``python benchmarks/bench_coreset.py`` (CPU) or
``python benchmarks/bench_coreset.py --device cuda`` on a GPU machine (the cost
computations and the greedy run on the GPU; the exact OT solves run on the CPU
through POT). The table is printed and written to
``doc/benchmarks/bench_coreset.rst``.
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

CONFIGS = {
    "greedy": dict(labelled=False, strategy="greedy"),
    "goracs": dict(labelled=False, strategy="goracs"),
    "barycenter": dict(labelled=False, strategy="barycenter"),
    "goracs (per class)": dict(labelled=True, strategy="goracs"),
    "barycenter (per class)": dict(labelled=True, strategy="barycenter"),
}


def make_data(n, d=512, n_classes=100, rank=16, seed=0):
    """Unit-norm float32 rows: class centre + class subspace + noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(size=(n_classes, d)).astype(np.float32)
    bases = rng.normal(size=(n_classes, rank, d)).astype(np.float32) / np.sqrt(rank)
    coef = rng.normal(size=(n, rank)).astype(np.float32)
    X = 0.5 * rng.normal(size=(n, d)).astype(np.float32)
    for c in range(n_classes):
        rows = y == c
        X[rows] += centres[c] + 0.8 * coef[rows] @ bases[c]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, y


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _random_objective(X, y, sel, k, labelled, seed):
    """Objective of a (stratified) random subset against the same reference."""
    import torch

    from skot.ot import solve

    rng = np.random.default_rng(seed)
    Xt = torch.as_tensor(X)

    def w(S, R):
        C = 1 - torch.nn.functional.normalize(Xt[S], dim=1) @ Xt[R].T
        return float(solve(C.double(), method="exact", max_iter=10**7).value)

    if not labelled:
        R = np.random.default_rng(sel.random_state).choice(
            len(X), sel.max_reference, replace=False
        )
        return w(rng.choice(len(X), k, replace=False), R)
    classes, counts = np.unique(y, return_counts=True)
    kept = np.bincount(np.searchsorted(classes, y[sel.sample_indices_]),
                       minlength=len(classes))
    total = 0.0
    for c, n_c, k_c in zip(classes, counts, kept):
        rows = np.flatnonzero(y == c)
        total += n_c / len(X) * w(rng.choice(rows, k_c, replace=False), rows)
    return total


def run_one(name, args):
    """Fit one configuration in this (fresh) process; returns measurements."""
    import torch

    from skot import WassersteinCoresetSelector

    cfg = CONFIGS[name]
    torch.set_num_threads(os.cpu_count() or 1)
    X, y = make_data(args.n, args.d, args.classes)
    labelled = cfg["labelled"]
    params = dict(
        strategy=cfg["strategy"], device=args.device, random_state=0,
        max_iter=args.bary_iter if cfg["strategy"] == "barycenter" else args.max_iter,
    )
    if not labelled:
        params.update(max_reference=args.max_reference,
                      max_candidates=args.max_candidates)

    def make(n_samples):
        return WassersteinCoresetSelector(n_samples, **params)

    Xw, yw = make_data(2000, args.d, args.classes, seed=1)  # warm-up
    make(args.fraction * 10).fit(Xw, yw if labelled else None)
    times, sel = [], None
    for _ in range(args.repeat):
        sel = make(args.fraction)
        t0 = time.perf_counter()
        sel.fit(X, y if labelled else None)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    k = len(sel.sample_indices_)
    rand = [_random_objective(X, y, sel, k, labelled, s) for s in range(3)]
    return dict(
        name=name, time=min(times), mem_mb=_peak_rss_mb(), k=k,
        objective=sel.objective_, greedy=float(sel.objective_path_[0]),
        random=float(np.mean(rand)), n_iter=sel.n_iter_,
        moves=len(sel.objective_path_) - 1,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--max-reference", type=int, default=5000)
    p.add_argument("--max-candidates", type=int, default=4096)
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--bary-iter", type=int, default=10)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "doc"
                                        / "benchmarks" / "bench_coreset.rst"))
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one is not None:
        print(json.dumps(run_one(args._one, args)))
        return
    rows = []
    passthrough = [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
        if k not in ("configs", "out", "_one")
    ]
    for name in args.configs:
        cmd = [sys.executable, __file__, *passthrough, "--_one", name]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append(dict(name=name, error=out.stderr.strip().splitlines()[-1]))
            print(f"{name:24s} failed: {rows[-1]['error']}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{name:24s} k={r['k']} time={r['time']:7.1f}s mem={r['mem_mb']:7.0f}MiB "
              f"objective={r['objective']:.5f} (greedy {r['greedy']:.5f}, random "
              f"{r['random']:.5f}) rounds={r['n_iter']} moves={r['moves']}")
    write_rst(rows, args)


def write_rst(rows, args):
    import torch

    if args.device == "cpu":
        machine = (f"{os.cpu_count()} CPU cores "
                   f"({platform.processor() or platform.machine()})")
    else:
        machine = torch.cuda.get_device_name(0)
    lines = [
        "Wasserstein coreset selection at scale",
        "======================================",
        "",
        f"Machine: {machine}; torch {torch.__version__}; device {args.device}; "
        "float32 features. Generated by ``benchmarks/bench_coreset.py``.",
        f"Data: {args.n} x {args.d} synthetic unit-norm CLIP-like rows, "
        f"{args.classes} classes; coreset = {args.fraction:.0%} of the rows; cosine "
        "cost; exact OT (network simplex). Unlabelled runs: reference = "
        f"{args.max_reference} random rows of X, {args.max_candidates} scored "
        f"swap candidates per round, {args.max_iter} swap rounds at most, "
        f"{args.bary_iter} barycenter iterations. Per-class runs: each class "
        "against all its rows (default parameters, at most 100 rounds per "
        "class).",
        "Time: wall time of ``fit`` (best of the timed runs after a warm-up); "
        "memory: peak resident memory of the process. Objective: OT value of "
        "the coreset against the reference (lower is better); random: same-size "
        "random subset (stratified for per-class runs), mean of 3 seeds.",
        "",
    ]
    header = ["configuration", "rows kept", "time (s)", "peak mem (MiB)",
              "objective", "after greedy", "random subset", "rounds", "moves"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["name"], "-", "failed", "-", r["error"][:40], "-", "-",
                          "-", "-"])
            continue
        table.append([r["name"], str(r["k"]), f"{r['time']:.1f}", f"{r['mem_mb']:.0f}",
                      f"{r['objective']:.5f}", f"{r['greedy']:.5f}",
                      f"{r['random']:.5f}", str(r["n_iter"]), str(r["moves"])])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    sep = "  ".join("=" * w for w in widths)
    lines += [sep, "  ".join(h.ljust(w) for h, w in zip(header, widths)), sep]
    lines += ["  ".join(c.ljust(w) for c, w in zip(t, widths)) for t in table]
    lines += [sep, ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
