"""
Coreset selection with optimal transport
========================================

:class:`skot.WassersteinCoresetSelector` keeps ``n_samples`` rows whose
empirical distribution is closest, in Wasserstein distance, to the full
training set (GORACS' proxy objective; per class when labels are given). It is
an imbalanced-learn style *sampler*: ``fit_resample(X, y)`` returns the subset.

Here a 5% coreset of CLIP-like image features is compared with stratified
random subsets of the same size by the test accuracy of a logistic regression
trained on the subset, and by the OT objective itself.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skot import WassersteinCoresetSelector
from skot.datasets import make_clip_like

data = make_clip_like(3000, n_classes=10, n_features=32, class_spread=1.2,
                      random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    data.X, data.y, test_size=0.5, stratify=data.y, random_state=0)

# %%
# A 5% coreset (75 of 1500 rows), stratified by class (the default when ``y``
# is given).
selector = WassersteinCoresetSelector(n_samples=0.05, random_state=0)
X_core, y_core = selector.fit_resample(X_train, y_train)
print(f"coreset: {len(X_core)} rows, {len(np.unique(y_core))} classes, "
      f"OT objective = {selector.objective_:.4f}")

clf = LogisticRegression(max_iter=2000)
acc_core = clf.fit(X_core, y_core).score(X_test, y_test)
acc_full = clf.fit(X_train, y_train).score(X_test, y_test)

# %%
# Stratified random subsets of the same size, over 10 seeds. Their OT
# objective (the quantity the selector minimises: class-frequency-weighted
# exact OT between the kept rows and all rows of each class, cosine cost) is
# computed directly with :func:`skot.ot.solve`; for the coreset it must equal
# the selector's ``objective_``.
from skot.ot import solve  # noqa: E402


def ot_objective(idx):
    """Class-frequency-weighted exact OT (cosine cost) of rows idx to X_train."""
    total = 0.0
    for c in np.unique(y_train):
        pool = X_train[y_train == c]
        kept = X_train[idx][y_train[idx] == c]
        M = 1.0 - kept @ pool.T
        total += len(pool) / len(X_train) * float(solve(M, method="exact").value)
    return total


acc_rand, obj_rand = [], []
for seed in range(10):
    idx, _ = train_test_split(np.arange(len(X_train)), train_size=len(X_core),
                              stratify=y_train, random_state=seed)
    acc_rand.append(clf.fit(X_train[idx], y_train[idx]).score(X_test, y_test))
    obj_rand.append(ot_objective(idx))

print(f"OT objective of the coreset (recomputed) = "
      f"{ot_objective(selector.sample_indices_):.4f}")
print(f"OT objective, random subsets (mean of 10) = {np.mean(obj_rand):.4f}")
print(f"LogisticRegression test accuracy: full train set = {acc_full:.3f}")
print(f"                                  OT coreset     = {acc_core:.3f}")
print(f"                                  random subsets = "
      f"{np.mean(acc_rand):.3f} +- {np.std(acc_rand):.3f}")

# %%
# The coreset in the first two principal components of the training set.
pca = PCA(2).fit(X_train)
Z = pca.transform(X_train)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
for ax, (title, sel) in zip(
        axes, [("OT coreset", selector.sample_indices_), ("random subset", idx)]):
    ax.scatter(Z[:, 0], Z[:, 1], c=y_train, cmap="tab10", s=4, alpha=0.25)
    ax.scatter(Z[sel, 0], Z[sel, 1], c=y_train[sel], cmap="tab10", s=40,
               edgecolor="k")
    ax.set_title(f"{title} ({len(sel)} of {len(X_train)} rows)")
fig.tight_layout()
plt.show()
