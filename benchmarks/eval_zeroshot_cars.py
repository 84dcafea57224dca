"""Zero-shot, long-tailed and selective classification on real CLIP features.

Data: OpenAI CLIP ViT-B/32 features of Stanford Cars (``../shared/data``, or the
folder given as the first argument): 1635 val images, 3136 16-shot training rows
(averages over 10 augmentations), 196 class text embeddings. Prints the tables
quoted in the user guide and writes them to ``doc/benchmarks/eval_zeroshot_cars.rst``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skot import FGWZeroShotClassifier, SelectiveOTClassifier
from skot.metrics import aurc, selective_accuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rst import write_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(folder):
    d = Path(folder) / "clip-vitb32-stanford-cars"
    return (np.load(d / "img_feats_val.npy").astype(np.float64),
            np.load(d / "img_labels_val.npy"),
            np.load(d / "img_feats_16shot.npy").astype(np.float64),
            np.load(d / "img_labels_16shot.npy"),
            np.load(d / "text_feats.npy").astype(np.float64))


def long_tailed(y, k, seed=0, ratio=20.0):
    """Per class keep a fraction decaying geometrically from 1 to 1/ratio."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(k)
    frac = np.empty(k)
    frac[order] = ratio ** (-np.arange(k) / (k - 1))
    keep = []
    for c in range(k):
        idx = np.flatnonzero(y == c)
        m = max(1, int(round(frac[c] * len(idx))))
        keep.extend(rng.choice(idx, m, replace=False))
    return np.sort(np.array(keep))


def acc(clf, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return 100 * np.mean(clf.predict(X) == y)


def main(folder=None):
    folder = folder or ROOT.parent / "shared" / "data"
    Xv, yv, Xs, ys, T = load(folder)
    k = T.shape[0]
    rows = []

    def add(setting, method, value, note=""):
        rows.append((setting, method, f"{value:.1f}", note))
        print(f"{setting:22s} {method:48s} {value:6.1f} {note}")

    ZS = dict(class_embeddings=T)
    # ---------------------------------------------------------------- balanced
    t0 = time.perf_counter()
    add("Cars val (balanced)", "argmax cosine (default: alpha=0, prior None)",
        acc(FGWZeroShotClassifier(**ZS).fit(Xv), Xv, yv))
    for solver, reg in [("sinkhorn", 0.01), ("sinkhorn", 0.005), ("exact", None)]:
        clf = FGWZeroShotClassifier(**ZS, class_prior="uniform", solver=solver, reg=reg)
        add("Cars val (balanced)", f"balanced OT, uniform prior ({solver}, reg {reg})",
            acc(clf.fit(Xv), Xv, yv))
    add("Cars val (balanced)", "EM-estimated prior",
        acc(FGWZeroShotClassifier(**ZS, class_prior="estimate").fit(Xv), Xv, yv))
    for alpha in [0.02, 0.05, 0.1]:
        clf = FGWZeroShotClassifier(**ZS, class_prior="uniform", alpha=alpha)
        add("Cars val (balanced)", f"FGW, uniform prior, alpha {alpha}",
            acc(clf.fit(Xv), Xv, yv))
    # model selection on the 16-shot set (3-fold), evaluated on val
    grid = {"class_prior": [None, "uniform", "estimate"], "reg": [0.005, 0.01, 0.02],
            "alpha": [0.0, 0.05]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gs = GridSearchCV(FGWZeroShotClassifier(**ZS), grid,
                          cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(Xs, ys)
    best = ", ".join(f"{k_}={v!r}" for k_, v in gs.best_params_.items())
    add("Cars val (balanced)", "GridSearchCV on 16-shot -> val",
        acc(gs.best_estimator_, Xv, yv), best)
    print(f"  ({time.perf_counter() - t0:.0f} s)")
    # ---------------------------------------------------------------- long-tailed
    keep = long_tailed(yv, k)
    Xl, yl = Xv[keep], yv[keep]
    prior = np.bincount(yl, minlength=k) / len(yl)
    setting = f"long-tailed ({len(keep)} rows)"
    add(setting, "argmax cosine (default)", acc(FGWZeroShotClassifier(**ZS).fit(Xl), Xl, yl))
    for solver, reg in [("sinkhorn", 0.01), ("exact", None)]:
        clf = FGWZeroShotClassifier(**ZS, class_prior=prior, solver=solver, reg=reg)
        add(setting, f"true prior ({solver}, reg {reg})", acc(clf.fit(Xl), Xl, yl))
    add(setting, "uniform prior imposed (wrong)",
        acc(FGWZeroShotClassifier(**ZS, class_prior="uniform").fit(Xl), Xl, yl))
    add(setting, "EM-estimated prior",
        acc(FGWZeroShotClassifier(**ZS, class_prior="estimate").fit(Xl), Xl, yl))
    add(setting, "true prior, dbot box 0.5",
        acc(FGWZeroShotClassifier(**ZS, class_prior=prior, solver="dbot").fit(Xl), Xl, yl))
    # ---------------------------------------------------------------- selective
    Xn = Xv / np.linalg.norm(Xv, axis=1, keepdims=True)
    Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
    logits = 100 * Xn @ Tn.T
    msp = np.exp(logits - logits.max(1, keepdims=True))
    msp = (msp / msp.sum(1, keepdims=True)).max(1)
    pred = logits.argmax(1)
    keep_msp = np.argsort(-msp)[: int(np.ceil(0.5 * len(yv)))]
    add("selective, cov 0.5", "max-softmax baseline: selective accuracy",
        100 * np.mean(pred[keep_msp] == yv[keep_msp]))
    add("selective, cov 0.5", "max-softmax baseline: AURC x 100", 100 * aurc(yv, pred, msp))
    for cp in ["uniform", None]:
        sel = SelectiveOTClassifier(**ZS, coverage=0.5, class_prior=cp).fit(Xv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            yp = sel.predict(Xv)
            score = sel.selection_score(Xv)
        name = "default" if cp == "uniform" else "class_prior=None"
        add("selective, cov 0.5", f"SelectiveOTClassifier ({name}): selective acc.",
            100 * selective_accuracy(yv, yp))
        add("selective, cov 0.5", f"SelectiveOTClassifier ({name}): AURC x 100",
            100 * aurc(yv, sel.predict_proba(Xv).argmax(1), score))
    write_rst(rows)


def write_rst(rows):
    write_table(
        "eval_zeroshot_cars",
        "Zero-shot, long-tailed and selective classification (Stanford Cars)",
        ["CLIP ViT-B/32 features; generated by ``benchmarks/eval_zeroshot_cars.py``. "
         "AURC rows give the area under the risk-coverage curve x 100 (lower is "
         "better)."],
        ("setting", "method", "accuracy (%)", "note"), rows)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
