"""OTContrastiveEmbedder on real CLIP features (Stanford Cars + fashion pairs).

Cars protocol: train on the 16-shot image features of the first half of the
classes (98), each paired with its class text embedding; evaluate zero-shot
accuracy (argmax cosine over all 196 embedded class prompts) on the val images
of the seen and of the unseen classes, against raw CLIP features. Also with half
of the training pairs unpaired (their text row set to NaN). Fashion: recall@1 of
``score`` on a held-out half after fitting on the other half. Writes
``doc/benchmarks/eval_embedder.rst``.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skot import OTContrastiveEmbedder
from skot.neural._embedder import _recall_at_1

ROOT = Path(__file__).resolve().parents[1]
warnings.simplefilter("ignore", ConvergenceWarning)


def zero_shot(Xv, yv, T, emb=None):
    if emb is not None:
        Xv, T = emb.transform(Xv, T)
    Xv = Xv / np.linalg.norm(Xv, axis=1, keepdims=True)
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    return (Xv @ T.T).argmax(1) == yv


def cars_rows(folder, losses, rows, seed=0):
    d = Path(folder) / "clip-vitb32-stanford-cars"
    Xs = np.load(d / "img_feats_16shot.npy")
    ys = np.load(d / "img_labels_16shot.npy")
    Xv = np.load(d / "img_feats_val.npy")
    yv = np.load(d / "img_labels_val.npy")
    T = np.load(d / "text_feats.npy")
    seen = np.arange(98)
    tr = np.isin(ys, seen)
    vs = np.isin(yv, seen)
    raw = zero_shot(Xv, yv, T)
    rows.append(("Cars", "raw CLIP", 100 * raw[vs].mean(), 100 * raw[~vs].mean(), 0.0))
    X, Y = Xs[tr], T[ys[tr]]
    for loss, kw in losses:
        t = time.perf_counter()
        emb = OTContrastiveEmbedder(loss, random_state=seed, **kw).fit(X, Y)
        ok = zero_shot(Xv, yv, T, emb)
        name = loss + ("" if not kw else " " + ", ".join(f"{k}={v}" for k, v in kw.items()))
        rows.append(("Cars", name, 100 * ok[vs].mean(), 100 * ok[~vs].mean(),
                     time.perf_counter() - t))
        print(rows[-1])
    # half of the pairs unpaired: their text rows are missing
    rng = np.random.default_rng(seed)
    Yh = Y.copy()
    Yh[rng.random(len(Y)) < 0.5] = np.nan
    for kw in ({}, {"align_weight": 0.1}):
        t = time.perf_counter()
        emb = OTContrastiveEmbedder(random_state=seed, **kw).fit(X, Yh)
        ok = zero_shot(Xv, yv, T, emb)
        rows.append(("Cars, half unpaired", "iot" + (" align_weight=0.1" if kw else ""),
                     100 * ok[vs].mean(), 100 * ok[~vs].mean(), time.perf_counter() - t))
        print(rows[-1])


def fashion_rows(folder, rows, seed=0):
    d = Path(folder) / "marqo-fashionclip-fashion99"
    X = np.load(d / "img_feats.npy")
    Y = np.load(d / "text_feats.npy")
    perm = np.random.default_rng(seed).permutation(len(X))
    tr, te = perm[: len(X) // 2], perm[len(X) // 2:]
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    # recall@1 as OTContrastiveEmbedder.score counts it (copies of a caption
    # are interchangeable)
    raw = _recall_at_1(Xn[te], Yn[te], Y[te])
    rows.append(("Fashion (held-out half)", "raw features recall@1", 100 * raw, np.nan, 0.0))
    for loss in ("infonce", "iot"):
        emb = OTContrastiveEmbedder(loss, random_state=seed).fit(X[tr], Y[tr])
        rows.append(("Fashion (held-out half)", f"{loss} recall@1",
                     100 * emb.score(X[te], Y[te]), np.nan, 0.0))
        print(rows[-1])
    raw = _recall_at_1(Xn, Yn, Y)
    rows.append(("Fashion (fit and score on all)", "raw features recall@1", 100 * raw,
                 np.nan, 0.0))
    for loss in ("infonce", "iot"):
        emb = OTContrastiveEmbedder(loss, random_state=seed).fit(X, Y)
        rows.append(("Fashion (fit and score on all)", f"{loss} recall@1",
                     100 * emb.score(X, Y), np.nan, 0.0))
        print(rows[-1])


def noisy_rows(folder, rows, seeds=(0, 1, 2), noise=0.3, mix=None):
    """30% of the Cars training pairs get the text of a random other class.

    Zero-shot accuracy on the seen classes is image -> text recall@1 over the
    196 class prompts; mean over ``seeds`` (noise draw and training seed).
    ``mix``: None keeps the default; 1.0 scores the trained heads alone (what
    the loss learned, undiluted by the interpolation with the raw features).
    """
    extra = {} if mix is None else {"mix": mix}
    d = Path(folder) / "clip-vitb32-stanford-cars"
    Xs = np.load(d / "img_feats_16shot.npy")
    ys = np.load(d / "img_labels_16shot.npy")
    Xv = np.load(d / "img_feats_val.npy")
    yv = np.load(d / "img_labels_val.npy")
    T = np.load(d / "text_feats.npy")
    tr, vs = ys < 98, yv < 98
    X = Xs[tr]
    runs = (("clean", "infonce", {}), ("30% wrong pairs", "infonce", {}),
            ("30% wrong pairs", "iot", {}),
            ("30% wrong pairs", "ncu", {"noise_ratio": 0.3}),
            ("30% wrong pairs", "ncu", {}))
    acc = {r[:2] + (str(r[2]),): [] for r in runs}
    fit_s = {k: 0.0 for k in acc}
    for seed in seeds:
        yl = ys[tr].copy()
        rng = np.random.default_rng(seed)
        flip = rng.random(len(yl)) < noise
        yl[flip] = (yl[flip] + rng.integers(1, 98, flip.sum())) % 98
        for name, loss, kw in runs:
            lab = ys[tr] if name == "clean" else yl
            t = time.perf_counter()
            emb = OTContrastiveEmbedder(loss, random_state=seed, **kw, **extra).fit(
                X, T[lab])
            ok = zero_shot(Xv, yv, T, emb)
            key = (name, loss, str(kw))
            fit_s[key] += (time.perf_counter() - t) / len(seeds)
            acc[key].append((100 * ok[vs].mean(), 100 * ok[~vs].mean()))
            print(key, acc[key][-1], flush=True)
    for name, loss, kw in runs:
        key = (name, loss, str(kw))
        tag = loss + ("" if not kw else " " + ", ".join(f"{k}={v}" for k, v in kw.items()))
        m = np.mean(acc[key], axis=0)
        where = f"Cars, {name} (mean of {len(seeds)} seeds" + (
            ")" if mix is None else f", mix={mix})")
        rows.append((where, tag, m[0], m[1], fit_s[key]))


def main(folder=None):
    folder = folder or ROOT.parent / "shared" / "data"
    rows = []
    losses = [("iot", {}), ("infonce", {}), ("iot_total", {}), ("unbalanced", {}),
              ("dbot", {}), ("fgw", {}), ("ufgw", {}), ("ncu", {}),
              ("iot", {"uniformity": 0.2})]
    if "--quick" in sys.argv:
        losses = losses[:2]
    if "--noisy-only" not in sys.argv:
        cars_rows(folder, losses, rows)
        fashion_rows(folder, rows)
    noisy_rows(folder, rows)
    noisy_rows(folder, rows, mix=1.0)
    header = ("data", "method", "seen / R@1 (%)", "unseen (%)", "fit (s)")
    table = [(a, b, f"{c:.1f}", "-" if np.isnan(d) else f"{d:.1f}", f"{e:.1f}")
             for a, b, c, d, e in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    sep = "  ".join("=" * w for w in widths)
    lines = ["OTContrastiveEmbedder on real CLIP features", "=" * 43, "",
             "Generated by ``benchmarks/eval_embedder_cars.py`` (default "
             "hyperparameters unless stated; 2 CPU cores).", "", sep,
             "  ".join(h.ljust(w) for h, w in zip(header, widths)), sep]
    lines += ["  ".join(c.ljust(w) for c, w in zip(t, widths)) for t in table]
    lines += [sep, ""]
    out = ROOT / "doc" / "benchmarks" / "eval_embedder.rst"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(next((a for a in sys.argv[1:] if not a.startswith("--")), None))
