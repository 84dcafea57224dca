"""
Choosing the solver with GridSearchCV
=====================================

The OT solver of every skot estimator is an ordinary hyper-parameter
(``solver=`` takes any name of :func:`skot.ot.available_methods`), so
scikit-learn's model selection tools can choose it. Here
:class:`~sklearn.model_selection.GridSearchCV` selects the solver, the entropic
regularisation ``reg`` and the class prior of
:class:`skot.FGWZeroShotClassifier` on long-tailed CLIP-like data.
"""

# %%
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skot import FGWZeroShotClassifier
from skot.datasets import make_clip_like
from skot.ot import available_methods

print("available solvers:", available_methods())

n_classes = 10
data = make_clip_like(1000, n_classes=n_classes, n_features=32,
                      class_spread=0.9,
                      imbalance=0.1 ** (1 / (n_classes - 1)), random_state=0)

# %%
# The classifier is transductive (each test fold is solved as one batch), and
# the class embeddings are given, so ``fit`` learns nothing from the folds:
# cross-validation here only *scores* each setting on held-out batches.
param_grid = {
    "solver": ["sinkhorn", "exact", "unbalanced", "dbot"],
    "reg": [0.01, 0.05],
    "class_prior": [None, "uniform", data.class_prior],
}
search = GridSearchCV(
    FGWZeroShotClassifier(class_embeddings=data.class_embeddings),
    param_grid,
    cv=StratifiedKFold(3, shuffle=True, random_state=0),
)
search.fit(data.X, data.y)

# %%
res = pd.DataFrame(search.cv_results_)
res["class_prior"] = res["param_class_prior"].map(
    lambda p: "true" if not (p is None or isinstance(p, str)) else str(p))
table = res[["param_solver", "param_reg", "class_prior", "mean_test_score",
             "rank_test_score"]].sort_values("rank_test_score")
print(table.to_string(index=False, float_format="%.3f"))
best = dict(search.best_params_)
if not (best["class_prior"] is None or isinstance(best["class_prior"], str)):
    best["class_prior"] = "true prior"
print("best:", best, f"score={search.best_score_:.3f}")
