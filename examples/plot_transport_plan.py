"""
Transport plans of the solver layer
===================================

:func:`skot.ot.solve` is the single entry point every estimator uses. This
example draws the plan it returns between 12 images and 12 captions of
CLIP-like data for four methods: exact OT (network simplex), entropic OT
(Sinkhorn), unbalanced OT (KL-relaxed marginals) and partial OT (only half of
the mass is transported).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from skot.datasets import make_clip_like
from skot.ot import solve

data = make_clip_like(12, n_classes=4, n_features=16, random_state=0)
order = np.argsort(data.y, kind="stable")
X, Y = data.X[order], data.Y[order]
M = 1.0 - X @ Y.T  # cosine cost (rows are L2-normalised)

results = {
    "exact": solve(M, method="exact"),
    "sinkhorn (reg=0.1)": solve(M, reg=0.1, method="sinkhorn", max_iter=10000),
    "unbalanced (reg=0.1, rho=0.1)": solve(M, reg=0.1, unbalanced=0.1,
                                           method="unbalanced", max_iter=10000),
    "partial (mass=0.5)": solve(M, mass=0.5, method="partial"),
}

# %%
# Each result carries the plan, the objective ``value`` (with the entropic and,
# for unbalanced OT, the marginal penalties), the linear cost
# ``value_linear`` = <M, P>, the marginals and convergence information.
for name, res in results.items():
    rows, cols = res.marginals
    print(f"{name:32s} value={float(res.value):.4f} "
          f"<M,P>={float(res.value_linear):.4f} converged={res.converged} "
          f"mass={float(res.plan.sum()):.3f} "
          f"nonzeros={int((res.plan > 1e-8).sum()):3d} "
          f"max row-sum={float(rows.max()):.4f}")

# %%
# The unbalanced ``value`` is the objective the iterations minimise,
# <M, P> + reg KL(P | a b^T) + rho KL(P 1 | a) + rho KL(P^T 1 | b), with the
# generalised KL (mass terms included), so that its gradient in M is the plan.
# POT's ``ot.solve`` reports ``sinkhorn_unbalanced``'s ``total_cost`` there,
# which drops the mass terms (about 0 at this optimum). The plans agree, and
# the value is recomputed from the plan below:
import ot  # noqa: E402


def gen_kl(p, q):
    """Generalised KL divergence sum p log(p / q) - p + q."""
    p, q = np.ravel(p), np.ravel(q)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])) - p.sum() + q.sum())


unb = results["unbalanced (reg=0.1, rho=0.1)"]
a, b = np.full(M.shape[0], 1 / M.shape[0]), np.full(M.shape[1], 1 / M.shape[1])
P = np.asarray(unb.plan)
by_hand = (float((M * P).sum()) + 0.1 * gen_kl(P, np.outer(a, b))
           + 0.1 * gen_kl(P.sum(1), a) + 0.1 * gen_kl(P.sum(0), b))
pot = ot.solve(M, reg=0.1, unbalanced=0.1, max_iter=10000)
print(f"skot value={float(unb.value):.4f}, recomputed from its plan={by_hand:.4f}; "
      f"POT ot.solve value={float(pot.value):.4f}, "
      f"max |plan difference|={np.abs(P - np.asarray(pot.plan)).max():.1e}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, (name, res) in zip(axes, results.items()):
    im = ax.imshow(res.plan, cmap="viridis")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("caption")
    ax.set_ylabel("image")
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.tight_layout()
plt.show()
