"""solve_gromov against POT; solver objects as hyperparameters."""

import math
import warnings

import numpy as np
import ot
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import skot.ot as so


def _graphs(rng, n=12, m=9, d=4):
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    Ca, Cb = ot.dist(X, X), ot.dist(Y, Y)
    Ca, Cb = Ca / Ca.max(), Cb / Cb.max()
    M = ot.dist(X, Y[:, :d])
    return Ca, Cb, M / M.max()


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_exact_fgw_matches_pot(rng, alpha):
    Ca, Cb, M = _graphs(rng)
    res = so.solve_gromov(Ca, Cb, M, alpha=alpha)
    a, b = ot.unif(12), ot.unif(9)
    ref = ot.gromov.fused_gromov_wasserstein2(M, Ca, Cb, a, b, alpha=alpha)
    assert res.value <= ref + 1e-9
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_values_follow_pots_solve_gromov(rng, alpha):
    # value_linear is the linear part (1 - alpha) <M, P> of the objective, as
    # POT's (it was <M, P> without the factor); exact FGW: value and plan as
    # POT's for the same arguments; entropic: POT's value adds the entropic
    # term reg sum P log P (its reg_type="entropy"), documented
    Ca, Cb, M = _graphs(rng)
    res, ref = so.solve_gromov(Ca, Cb, M, alpha=alpha), ot.solve_gromov(
        Ca, Cb, M, alpha=alpha)
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-12)
    assert res.value == pytest.approx(ref.value, rel=1e-10)
    assert res.value_linear == pytest.approx(ref.value_linear, rel=1e-10)
    assert res.value_linear == pytest.approx((1 - alpha) * (M * res.plan).sum())
    reg = 0.05
    res = so.solve_gromov(Ca, Cb, M, alpha=alpha, reg=reg, reg_type="entropy",
                          max_iter=500, tol=1e-10)
    ref = ot.solve_gromov(Ca, Cb, M, alpha=alpha, reg=reg, max_iter=500, tol=1e-10)
    P = ref.plan
    t = lambda x: torch.tensor(x)  # noqa: E731
    value, lin = so.fgw_objective(t(M), t(Ca), t(Cb), t(P), alpha)
    assert float(lin) == pytest.approx(ref.value_linear, rel=1e-10)
    assert float(value) + reg * (P * np.log(P)).sum() == pytest.approx(ref.value,
                                                                       rel=1e-8)


@pytest.mark.parametrize("alpha", [0.2, 0.5])
@pytest.mark.parametrize("reg", [0.05, 0.01])
def test_entropic_fgw_no_worse_than_pot(rng, alpha, reg):
    Ca, Cb, M = _graphs(rng)
    a, b = ot.unif(12), ot.unif(9)
    res = so.solve_gromov(Ca, Cb, M, alpha=alpha, reg=reg, max_iter=200)
    P_pot = ot.gromov.entropic_fused_gromov_wasserstein(
        M, Ca, Cb, a, b, epsilon=reg, alpha=alpha, max_iter=200
    )
    t = lambda x: torch.tensor(x)[None]  # noqa: E731
    pot_value = so.fgw_objective(t(M), t(Ca), t(Cb), t(P_pot), alpha)[0].item()
    assert res.value <= pot_value + 1e-6
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-6)
    np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-6)


def test_fgw_alpha_zero_is_linear_ot(rng):
    Ca, Cb, M = _graphs(rng)
    res = so.solve_gromov(Ca, Cb, M, alpha=0.0, reg=0.05)
    np.testing.assert_allclose(res.plan, so.solve(M, reg=0.05).plan, atol=1e-7)


def test_fgw_envelope_gradient_wrt_M(rng):
    Ca, Cb, M = _graphs(rng)
    Mt = torch.tensor(M, requires_grad=True)
    res = so.solve_gromov(torch.tensor(Ca), torch.tensor(Cb), Mt, alpha=0.3, reg=0.05,
                          grad="envelope")
    res.value.backward()
    torch.testing.assert_close(Mt.grad, 0.7 * res.plan.detach())


def test_fgw_batched_equals_loop(rng):
    Ca, Cb, M = _graphs(rng)
    Ca2, Cb2, M2 = _graphs(np.random.default_rng(5))
    res = so.solve_gromov(np.stack([Ca, Ca2]), np.stack([Cb, Cb2]), np.stack([M, M2]),
                          alpha=0.5, reg=0.05)
    for k, (A, B, C) in enumerate([(Ca, Cb, M), (Ca2, Cb2, M2)]):
        single = so.solve_gromov(A, B, C, alpha=0.5, reg=0.05)
        np.testing.assert_allclose(res.plan[k], single.plan, atol=1e-6)


def test_gromov_bad_input(rng):
    Ca, Cb, M = _graphs(rng)
    with pytest.raises(ValueError, match="alpha"):
        so.solve_gromov(Ca, Cb, M, alpha=1.5)
    with pytest.raises(ValueError, match="Cb"):
        so.solve_gromov(Ca, Cb[:3, :3], M)
    with pytest.raises(ValueError, match="loss"):
        so.solve_gromov(Ca, Cb, M, loss="KL")
    with pytest.raises(ValueError, match="solve_gromov"):
        so.solve(M, reg=0.1, method="fgw")
    with pytest.raises(ValueError, match="unbalanced_type"):
        so.solve_gromov(Ca, Cb, M, reg=0.1, unbalanced=0.5, unbalanced_type="partial")
    with pytest.raises(ValueError, match="fgw_exact"):
        so.solve_gromov(Ca, Cb, M, reg=0.1, method="fgw_exact")
    n, m = M.shape
    for reg in (0.1, None):  # balanced: equal masses, as in solve
        with pytest.raises(ValueError, match="different total mass"):
            so.solve_gromov(Ca, Cb, M, np.ones(n) / n, 2 * np.ones(m) / m, reg=reg)


def test_fgw_exact_budget_and_convergence_flag(rng):
    Ca, Cb, M = _graphs(rng)
    res = so.solve_gromov(Ca, Cb, M)
    ref = ot.gromov.fused_gromov_wasserstein2(M, Ca, Cb, alpha=0.5)
    assert res.converged and res.n_iter >= 1
    assert res.value == pytest.approx(ref, rel=1e-6)
    with pytest.warns(ConvergenceWarning, match="fgw_exact"):
        res = so.solve_gromov(Ca, Cb, M, max_iter=1)
    assert not res.converged


def test_available_methods_lists_everything():
    names = so.available_methods()
    for name in ["exact", "sinkhorn", "unbalanced", "partial", "dbot", "rows", "cols",
                 "total", "sparse", "fgw", "fgw_exact"]:
        assert name in names


def test_get_solver_names_objects_and_errors():
    s = so.get_solver("unbalanced", reg=0.1, unbalanced=2.0)
    assert isinstance(s, so.OTSolver) and s.reg == 0.1 and s.unbalanced == 2.0
    custom = so.OTSolver("sinkhorn", reg=0.3)
    got = so.get_solver(custom, reg=0.01)
    assert got is not custom and got.reg == 0.3  # the object's own settings win
    with pytest.raises(ValueError, match="solver='nope'"):
        so.get_solver("nope")
    with pytest.raises(TypeError, match="solver"):
        so.get_solver(3.0)


def test_solver_object_is_a_clonable_hyperparameter(rng):
    s = so.OTSolver("sinkhorn", reg=0.2, max_iter=50)
    c = clone(s)
    assert c.get_params() == s.get_params()
    c.set_params(reg=0.5)
    assert s.reg == 0.2
    M = rng.random((4, 3))
    np.testing.assert_allclose(s.solve(M).plan, so.solve(M, reg=0.2, max_iter=50).plan)
    # exact ignores reg; linear names map to FGW in solve_gromov
    assert so.OTSolver("exact", reg=0.2).solve(M).method == "exact"
    Ca, Cb = np.eye(4), np.eye(3)
    assert s.solve_gromov(Ca, Cb, M).method == "fgw"


def test_detached_fgw_value_is_computed_on_access_and_matches_eager(rng):
    Ca, Cb, M = _graphs(rng)
    args = [torch.tensor(v) for v in (Ca, Cb, M)]
    lazy = so.solve_gromov(*args, alpha=0.4, reg=0.1, grad="detach")
    eager = so.solve_gromov(*args, alpha=0.4, reg=0.1, grad="autodiff")
    assert lazy._lazy_values is not None
    torch.testing.assert_close(lazy.value, eager.value.detach())
    torch.testing.assert_close(lazy.value_linear, eager.value_linear.detach())
    assert lazy._lazy_values is None
    # numpy in, numpy (float) out, also for the lazy value
    res = so.solve_gromov(Ca, Cb, M, alpha=0.4, reg=0.1, grad="detach")
    assert res.value == pytest.approx(float(eager.value))


@pytest.mark.parametrize("unbalanced", [None, 0.5])
@pytest.mark.parametrize("graphs", ["dense", "factored", "cosine"])
@pytest.mark.parametrize("grad", ["detach", "envelope", "autodiff"])
def test_fgw_potentials_give_the_plan_of_the_linearised_cost(rng, unbalanced, graphs,
                                                             grad):
    # the registry's Gibbs form for "fgw": P = exp((f + g - G) / reg) a b^T with
    # G the linearised cost at the (converged) plan; balanced solves leave the
    # marginal term and the factored graphs' biases out of their iterations and
    # add them to the potentials on access
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(9, 2))
    if graphs == "cosine":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Y /= np.linalg.norm(Y, axis=1, keepdims=True)
        Ca, Cb = 1 - X @ X.T, 1 - Y @ Y.T
    else:
        Ca, Cb = ot.dist(X, X) / 4, ot.dist(Y, Y) / 4
    M = ot.dist(X[:, :2], Y)
    a, b = rng.random(12) + 0.5, rng.random(9) + 0.5
    a, b = a / a.sum(), b / b.sum()
    args = [torch.tensor(v) for v in (Ca, Cb, M, a, b)]
    if graphs == "factored":
        Ua, Va = _sq_euclidean_factors(X)
        Ub, Vb = _sq_euclidean_factors(Y)
        args[:2] = [so.LowRankGraph(torch.tensor(Ua / 4), torch.tensor(Va)),
                    so.LowRankGraph(torch.tensor(Ub), torch.tensor(Vb / 4))]
    elif graphs == "cosine":
        # bias 1 and 0.5 (+ 0.5 in the factors)
        half = np.full((9, 1), 0.5 ** 0.5)
        args[:2] = [so.LowRankGraph.cosine(torch.tensor(X)),
                    so.LowRankGraph(torch.tensor(np.hstack([Y, half])),
                                    torch.tensor(np.hstack([-Y, half])), bias=0.5)]
    alpha, reg = 0.4, 0.2
    res = so.solve_gromov(*args, alpha=alpha, reg=reg, unbalanced=unbalanced,
                          grad=grad, tol=1e-13, inner_tol=1e-13)
    assert res.converged
    P = res.plan.detach()
    Cat, Cbt, Mt, at, bt = (torch.tensor(v) for v in (Ca, Cb, M, a, b))
    r, c = P.sum(1), P.sum(0)
    G = (1 - alpha) * Mt + 2 * alpha * (
        (Cat**2 @ r)[:, None] + (Cbt**2 @ c)[None, :] - 2 * Cat @ P @ Cbt.T)
    f, g = (p.detach() for p in res.potentials)
    gibbs = torch.exp((f[:, None] + g[None, :] - G) / reg) * at[:, None] * bt[None, :]
    torch.testing.assert_close(gibbs, P, rtol=1e-7, atol=1e-12)


def _sq_euclidean_factors(Z):
    # |z_i - z_k|^2 = |z_i|^2 + |z_k|^2 - 2 z_i.z_k: rank d + 2
    s = (Z**2).sum(1, keepdims=True)
    one = np.ones_like(s)
    return np.hstack([Z, s, one]), np.hstack([-2 * Z, one, s])


@pytest.mark.parametrize("unbalanced", [None, 0.5])
@pytest.mark.parametrize("grad", ["detach", "autodiff"])
def test_low_rank_graphs_give_the_dense_solution(rng, unbalanced, grad):
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(9, 2))
    Ua, Va = _sq_euclidean_factors(X)
    Ub, Vb = _sq_euclidean_factors(Y)
    Ca, Cb = ot.dist(X, X), ot.dist(Y, Y)
    np.testing.assert_allclose(Ua @ Va.T, Ca, atol=1e-12)
    M = ot.dist(X[:, :2], Y)
    kw = dict(alpha=0.4, reg=0.2, unbalanced=unbalanced, grad=grad)
    dense = so.solve_gromov(Ca / 4, Cb / 4, M, **kw)
    low = so.solve_gromov(so.LowRankGraph(Ua, Va / 4), so.LowRankGraph(Ub / 4, Vb), M, **kw)
    # same problem; rounding differs, the stopping rule is at tol=1e-7
    np.testing.assert_allclose(low.plan, dense.plan, atol=1e-7)
    assert low.value == pytest.approx(dense.value, abs=1e-7)
    # a bias is one more rank; batched factors solve each problem
    Z = rng.normal(size=(9, 4))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    cos = so.LowRankGraph.cosine(Z)
    np.testing.assert_allclose(cos.dense(), 1 - Z @ Z.T)
    batch = so.solve_gromov(so.LowRankGraph(np.stack([Ua, Ua]), np.stack([Va, Va]) / 4),
                            cos, np.stack([M, 2 * M]), **kw)
    single = so.solve_gromov(Ca / 4, 1 - Z @ Z.T, 2 * M, **kw)
    np.testing.assert_allclose(batch.plan[1], single.plan, atol=1e-7)


@pytest.mark.parametrize("unbalanced", [None, 0.5])
@pytest.mark.parametrize("grad", ["detach", "envelope", "autodiff"])
def test_factored_feature_cost_gives_the_dense_solution(rng, unbalanced, grad):
    # M = bias + U V^T as a LowRankGraph: with the graphs' own factors (the
    # cosine cost 1 - x y^T, one product per linearisation) and with others
    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(9, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    Ca, Cb = so.LowRankGraph.cosine(Xt), so.LowRankGraph.cosine(Yt)
    kw = dict(alpha=0.4, reg=0.2, unbalanced=unbalanced, grad=grad)
    W = torch.tensor(rng.normal(size=(9, 2)))
    Z = torch.tensor(rng.normal(size=(12, 2)))
    for M in (so.LowRankGraph(Xt, -Yt, bias=1.0), so.LowRankGraph(Z, W, bias=0.3)):
        low = so.solve_gromov(Ca, Cb, M, **kw)
        dense = so.solve_gromov(Ca, Cb, M.dense(), **kw)
        torch.testing.assert_close(low.plan, dense.plan, atol=1e-9, rtol=0)
        torch.testing.assert_close(low.value, dense.value)
        torch.testing.assert_close(low.value_linear, dense.value_linear)
        for f, g in zip(low.potentials, dense.potentials):
            torch.testing.assert_close(f, g)
    # batched factors; numpy in, numpy out; the exact solver densifies
    Mb = so.LowRankGraph(np.stack([X, X]), np.stack([-Y, -2 * Y]), bias=1.0)
    batch = so.solve_gromov(np.stack([Ca.dense().numpy()] * 2),
                            np.stack([Cb.dense().numpy()] * 2), Mb, **kw)
    single = so.solve_gromov(Ca.dense().numpy(), Cb.dense().numpy(), 1 - 2 * X @ Y.T, **kw)
    # (the batch stops on its largest change: tol=1e-7)
    np.testing.assert_allclose(batch.plan[1], single.plan, atol=1e-7)
    if unbalanced is None:
        exact = so.solve_gromov(Ca, Cb, so.LowRankGraph(Xt, -Yt, bias=1.0), alpha=0.4)
        ref = so.solve_gromov(Ca.dense(), Cb.dense(), 1 - Xt @ Yt.T, alpha=0.4)
        torch.testing.assert_close(exact.plan, ref.plan)


def test_factored_feature_cost_gradient_and_bad_input(rng):
    # autodiff through the factors == autodiff through the dense cost
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=(7, 3))
    Ca, Cb = ot.dist(X, X) / 10, ot.dist(Y, Y) / 10
    U0, V0 = torch.tensor(X), torch.tensor(Y)
    grads = []
    for factored in (True, False):
        U, V = U0.clone().requires_grad_(True), V0.clone().requires_grad_(True)
        M = so.LowRankGraph(U, V, bias=1.0) if factored else 1.0 + U @ V.T
        so.solve_gromov(torch.tensor(Ca), torch.tensor(Cb), M, alpha=0.3, reg=0.3,
                        max_iter=50).value.backward()
        grads.append((U.grad, V.grad))
    for g_low, g_dense in zip(*grads):
        torch.testing.assert_close(g_low, g_dense)
    with pytest.raises(ValueError, match="M is a LowRankGraph"):
        so.solve_gromov(Ca, Cb, so.LowRankGraph(X[None], Y), reg=0.1)
    with pytest.raises(ValueError, match="Ca has shape"):
        so.solve_gromov(Ca, Cb, so.LowRankGraph(X[:5], Y), reg=0.1)
    with pytest.raises(ValueError, match="M is a LowRankGraph"):
        so.solve_gromov(Ca, Cb, so.LowRankGraph(X, Y[:, :2]), reg=0.1)
    bad = Y.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="M contains NaN or inf"):
        so.solve_gromov(Ca, Cb, so.LowRankGraph(X, bad), reg=0.1)
    with pytest.raises(TypeError, match="M.bias"):
        so.solve_gromov(Ca, Cb, so.LowRankGraph(X, Y, bias=None), reg=0.1)


def test_low_rank_graphs_with_exact_solver_and_objective(rng):
    X = rng.normal(size=(10, 3))
    Ua, Va = _sq_euclidean_factors(X)
    G = so.LowRankGraph(Ua, Va)
    M = rng.random((10, 10))
    low = so.solve_gromov(G, G, M, alpha=0.5)
    dense = so.solve_gromov(ot.dist(X, X), ot.dist(X, X), M, alpha=0.5)
    np.testing.assert_allclose(low.plan, dense.plan, atol=1e-12)
    P = torch.tensor(dense.plan)
    Gt = so.LowRankGraph(torch.tensor(Ua), torch.tensor(Va))
    Ct = torch.tensor(ot.dist(X, X))
    for v, w in zip(so.fgw_objective(torch.tensor(M), Gt, Gt, P, 0.5),
                    so.fgw_objective(torch.tensor(M), Ct, Ct, P, 0.5)):
        torch.testing.assert_close(v, w)


def test_low_rank_graph_bad_input(rng):
    M = rng.random((5, 4))
    U = rng.normal(size=(5, 2))
    Cb = np.eye(4)
    with pytest.raises(ValueError, match="Ca is a LowRankGraph"):
        so.solve_gromov(so.LowRankGraph(U, U[:, :1]), Cb, M, reg=0.1)
    with pytest.raises(ValueError, match="Ca is a LowRankGraph"):
        so.solve_gromov(so.LowRankGraph(U[:4], U[:4]), Cb, M, reg=0.1)
    bad = U.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Ca contains NaN"):
        so.solve_gromov(so.LowRankGraph(bad, U), Cb, M, reg=0.1)
    with pytest.raises(ValueError, match="Ca contains NaN"):
        so.solve_gromov(so.LowRankGraph(U, U, bias=np.inf), Cb, M, reg=0.1)
    with pytest.raises(TypeError, match="Ca.bias"):
        so.solve_gromov(so.LowRankGraph(U, U, bias="one"), Cb, M, reg=0.1)


@pytest.mark.parametrize("factored", [False, True])
def test_fgw_pairing_is_the_pairing_with_the_linearised_cost(rng, factored):
    # the gradient of <W, G(x, y; P fixed)> for the full linearised cost G,
    # by autograd on dense matrices, against fgw_pairing (dense or factored)
    from skot.ot._gromov import _gw_tensor, fgw_pairing

    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 3, dtype=torch.float64, generator=g)
    y = torch.randn(11, 3, dtype=torch.float64, generator=g)
    P = torch.rand(11, 11, dtype=torch.float64, generator=g)
    W = torch.randn(11, 11, dtype=torch.float64, generator=g)

    def full(x, y, W):
        Ca, Cb, M = 1 - x @ x.T, 1 - y @ y.T, 1 - x @ y.T
        G = 0.7 * M + 0.6 * _gw_tensor(Ca[None], Cb[None], P[None])[0]
        return (W * G).sum()

    def pairing(x, y, W, balanced):
        if factored:
            M, Ca, Cb = (so.LowRankGraph(x, -y, bias=1.0), so.LowRankGraph.cosine(x),
                         so.LowRankGraph.cosine(y))
        else:
            M, Ca, Cb = 1 - x @ y.T, 1 - x @ x.T, 1 - y @ y.T
        return fgw_pairing(W, M, Ca, Cb, P, 0.3, balanced=balanced)

    def grads(f, *args):
        xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        v = f(xa, ya, *args)
        return (v, *torch.autograd.grad(v, (xa, ya)))

    # any W: the full pairing
    for u, v in zip(grads(full, W), grads(pairing, W, False)):
        torch.testing.assert_close(u, v)
    # W with zero row and column sums (W = (T - P) / eps for T, P in U(a, b)):
    # the balanced pairing leaves out terms u 1^T + 1 v^T, same gradient
    W0 = W - W.mean(0) - W.mean(1, keepdim=True) + W.mean()
    ref, mine = grads(full, W0), grads(pairing, W0, True)
    for u, v in zip(ref[1:], mine[1:]):
        torch.testing.assert_close(u, v)


def test_fgw_autodiff_gradient_wrt_M_flows_through_the_plan(rng):
    # unrolled: d value / dM differs from the plan (the envelope gradient) by
    # the plan's own derivative; a finite difference of the value checks it
    Ca, Cb, M = (torch.tensor(v) for v in _graphs(rng, n=6, m=5))
    Mt = M.clone().requires_grad_(True)
    kw = dict(alpha=0.5, reg=0.5, max_iter=3, tol=1e-12)
    value = so.solve_gromov(Ca, Cb, Mt, grad="autodiff", **kw).value
    (g,) = torch.autograd.grad(value, Mt)
    E = torch.zeros_like(M)
    E[1, 2] = 1e-6
    fd = (so.solve_gromov(Ca, Cb, M + E, grad="detach", **kw).value
          - so.solve_gromov(Ca, Cb, M - E, grad="detach", **kw).value) / 2e-6
    assert float(g[1, 2]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_extrapolated_stop_is_within_tol_of_the_fixed_point():
    # _solve_gromov(extrapolate=c) stops once the change still to come,
    # predicted geometrically from the last two changes (ratio inflated c
    # times), is below tol: here after 2 linearisations where the plain rule
    # (change below tol) takes 3, and the plan is within tol of the fixed point
    from skot.ot._solve import _solve_gromov

    torch.manual_seed(0)
    n, d = 256, 32
    x = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(x + 0.5 * torch.randn(n, d, dtype=torch.float64),
                                      dim=1)
    Ca, Cb, M = 1 - x @ x.T, 1 - y @ y.T, 1 - x @ y.T
    kw = dict(alpha=0.1, reg=0.05, reg_type="KL", loss="L2", unbalanced=None,
              unbalanced_type="KL", method=None, grad="detach", inner_max_iter=None,
              inner_tol=1e-12)
    tol = 1e-3 / math.sqrt(n)
    plain = _solve_gromov(Ca, Cb, M, None, None, max_iter=50, tol=tol, **kw)
    fast = _solve_gromov(Ca, Cb, M, None, None, max_iter=50, tol=tol, extrapolate=10.0,
                         **kw)
    fixed = _solve_gromov(Ca, Cb, M, None, None, max_iter=50, tol=1e-12, **kw)
    assert (fast.n_iter, plain.n_iter) == (2, 3) and fast.converged
    assert float(torch.linalg.norm(fast.plan - fixed.plan)) < tol
    # a public solve_gromov keeps POT's rule
    pub = so.solve_gromov(Ca, Cb, M, alpha=0.1, reg=0.05, tol=tol, inner_tol=1e-12,
                          grad="detach")
    assert pub.n_iter == 3
    with pytest.raises(ValueError, match="extrapolate"):
        _solve_gromov(Ca, Cb, M, None, None, max_iter=5, tol=tol, extrapolate=-1.0, **kw)


def test_low_rank_factors_with_bias_for_rectangular_costs(rng):
    # the bias column was built from U's rows only: n != m failed in torch.cat
    U = torch.tensor(rng.normal(size=(5, 3)))
    V = torch.tensor(rng.normal(size=(4, 3)))
    u, v = so.LowRankGraph(U, V, bias=0.7).factors()
    torch.testing.assert_close(u @ v.T, 0.7 + U @ V.T)
    # unbalanced FGW with that factored cost equals the dense one
    X, Y = torch.tensor(rng.normal(size=(5, 3))), torch.tensor(rng.normal(size=(4, 3)))
    Ca, Cb = 1 - X @ X.T, 1 - Y @ Y.T
    low = so.solve_gromov(Ca, Cb, so.LowRankGraph(U, V, bias=0.7), reg=0.1,
                          unbalanced=1.0)
    dense = so.solve_gromov(Ca, Cb, 0.7 + U @ V.T, reg=0.1, unbalanced=1.0)
    torch.testing.assert_close(low.plan, dense.plan)


def test_unbalanced_fgw_value_uses_generalised_kl(rng):
    Ca, Cb, M = _graphs(rng)
    res = so.solve_gromov(Ca, Cb, M, reg=0.1, unbalanced=0.5, alpha=0.3)
    P = res.plan
    n, m = M.shape
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)

    def kl(p, q):
        return (p * np.log(p / q)).sum() - p.sum() + q.sum()

    fgw, _ = so.fgw_objective(torch.tensor(M), torch.tensor(Ca), torch.tensor(Cb),
                              torch.tensor(P), 0.3)
    expected = float(fgw) + 0.5 * (kl(P.sum(1), a) + kl(P.sum(0), b))
    assert res.value == pytest.approx(expected, rel=1e-10)


def test_solver_passes_unbalanced_when_solve_would_use_it(rng):
    # method=None dropped a stored unbalanced (a balanced plan came back), and
    # an unbalanced= given to one call with method="sinkhorn" was ignored
    M = rng.random((6, 5))
    res = so.OTSolver(method=None, reg=0.1, unbalanced=1.0).solve(M)
    ref = so.solve(M, reg=0.1, unbalanced=1.0)
    assert res.method == "unbalanced"
    np.testing.assert_allclose(res.plan, ref.plan)
    with pytest.raises(ValueError, match="unbalanced=0.5 is only used by"):
        so.OTSolver("sinkhorn", reg=0.1).solve(M, unbalanced=0.5)
    # a stored value kept for the quadratic methods is still dropped here
    assert so.OTSolver("sinkhorn", reg=0.1, unbalanced=1.0).solve(M).method == "sinkhorn"


def _cos_graphs(rng, n=12, m=10, d=3):
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return 1 - X @ X.T, 1 - Y @ Y.T, 1 - X @ Y.T


def test_fgw_reports_an_unconverged_inner_solve(rng):
    # the outer rule saw a plan that no longer moved, and said converged
    Ca, Cb, M = _cos_graphs(rng, 40, 30)
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum()
    with pytest.warns(ConvergenceWarning, match="inner Sinkhorn solve did not converge"):
        res = so.solve_gromov(Ca, Cb, M, a, b, alpha=0.0, reg=1e-4)
    assert not res.converged
    assert res.status == "inner solve not converged"  # was "max_iter reached"
    assert res.n_iter < 100
    assert np.abs(res.plan.sum(1) - a).sum() > 1e-4  # the plan misses its marginals


def test_fgw_float32_inner_solves_stop_at_a_reachable_tol():
    # a fixed inner tol of 1e-6 sat at float32's rounding at reg 0.01: inner
    # errors of 1.01e-6 reported as unconverged, a warning for a plan 1.1e-5
    # (L1) from float64's
    rr = np.random.default_rng(0)
    X, Y = rr.normal(size=(40, 6)), rr.normal(size=(30, 6))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    Ca, Cb, M = 1 - X @ X.T, 1 - Y @ Y.T, 1 - X @ Y.T
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        r32 = so.solve_gromov(Ca.astype(np.float32), Cb.astype(np.float32),
                              M.astype(np.float32), alpha=0.5, reg=0.01)
    r64 = so.solve_gromov(Ca, Cb, M, alpha=0.5, reg=0.01)
    assert r32.converged and r32.status == "converged"
    assert np.abs(r32.plan - r64.plan).sum() < 1e-4


def test_fgw_autodiff_gradient_does_not_depend_on_tol(rng):
    # warm-started inner solves, held constant, cut the unrolled gradient short
    # as tol tightened (0.0334 -> 0.0155 against a finite difference of 0.0334)
    import torch

    Ca, Cb, M = _cos_graphs(rng, 8, 7)
    grads = []
    for tol in (1e-7, 1e-11):
        Mt = torch.tensor(M, requires_grad=True)
        res = so.solve_gromov(torch.tensor(Ca), torch.tensor(Cb), Mt, alpha=0.5,
                              reg=0.1, tol=tol, inner_tol=1e-12, max_iter=500)
        res.value.backward()
        grads.append(Mt.grad[0, 0].item())
    h = 1e-6
    def value(shift):
        Mp = M.copy()
        Mp[0, 0] += shift
        return so.solve_gromov(Ca, Cb, Mp, alpha=0.5, reg=0.1, tol=1e-12,
                               inner_tol=1e-13, max_iter=2000).value
    fd = (value(h) - value(-h)) / (2 * h)
    np.testing.assert_allclose(grads, [fd, fd], rtol=1e-4)


def test_fgw_input_checks(rng):
    import torch

    Ca, Cb, M = _cos_graphs(rng)
    A = Ca + 0.1 * rng.random(Ca.shape)  # not symmetric
    with pytest.raises(ValueError, match="Ca is not symmetric"):
        so.solve_gromov(A, Cb, M, reg=0.1)
    so.solve_gromov(A, Cb, M, method="fgw_exact")  # the exact solver handles it
    a = torch.full((12,), 1 / 12, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="gradients w.r.t. a and b"):
        so.solve_gromov(torch.tensor(Ca), torch.tensor(Cb), torch.tensor(M), a,
                        reg=0.1, grad="envelope")
    with pytest.raises(ValueError, match="batch of 2 graphs but M a batch of 1"):
        so.solve_gromov(np.stack([Ca, Ca]), Cb, M, reg=0.1)


def test_fgw_float32_default_tol_converges(rng):
    # the float64 tol (1e-7) sat below float32's floor of the plan change:
    # every float32 solve ran to max_iter and warned
    Ca, Cb, M = (C.astype(np.float32) for C in _cos_graphs(rng, 40, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = so.solve_gromov(Ca, Cb, M, alpha=0.5, reg=0.05)
    ref = so.solve_gromov(Ca.astype(float), Cb.astype(float), M.astype(float),
                          alpha=0.5, reg=0.05, tol=1e-10, max_iter=1000)
    assert res.converged and np.abs(res.plan - ref.plan).sum() < 1e-4


def test_fgw_exact_converging_on_the_last_iteration_is_converged(rng):
    Ca, Cb, M = _cos_graphs(rng, 12, 10)
    M = M + rng.random(M.shape)
    free = so.solve_gromov(Ca, Cb, M, alpha=0.5, method="fgw_exact")
    assert free.converged and free.n_iter >= 2
    exact_budget = so.solve_gromov(Ca, Cb, M, alpha=0.5, method="fgw_exact",
                                   max_iter=free.n_iter)
    assert exact_budget.converged  # was False: budget == iterations needed
    with pytest.warns(ConvergenceWarning):
        short = so.solve_gromov(Ca, Cb, M, alpha=0.5, method="fgw_exact",
                                max_iter=free.n_iter - 1)
    assert not short.converged


@pytest.mark.parametrize("mass", [0.2, 2.0, 5.0])
def test_fgw_exact_with_weights_of_any_total_mass(rng, mass):
    # POT's conditional gradient takes probability weights: with a mass of 2 it
    # had returned a b^T (marginals twice a and b), reported converged
    C = np.array([[0.0, 1.0], [1.0, 0.0]])
    res = so.solve_gromov(C, C, C, np.full(2, mass / 2), np.full(2, mass / 2))
    np.testing.assert_allclose(res.plan, np.eye(2) * mass / 2, atol=1e-12)
    assert res.converged and res.value == pytest.approx(0.0, abs=1e-12)
    # rectangular, every alpha: the marginals are a and b, and the plan is
    # mass times the plan of the problem on a / mass, b / mass with the
    # structure weight alpha mass / (1 - alpha + alpha mass) (P = mass P'
    # scales the linear term by mass and the quadratic one by mass^2)
    Ca, Cb, M = _graphs(rng, n=6, m=5)
    a, b = rng.random(6) + 0.1, rng.random(5) + 0.1
    a, b = a / a.sum() * mass, b / b.sum() * mass
    for alpha in (0.0, 0.4, 1.0):
        res = so.solve_gromov(Ca, Cb, M, a, b, alpha=alpha)
        assert res.converged
        np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-12)
        np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-12)
        scaled = alpha * mass / (1 - alpha + alpha * mass)
        ref = ot.gromov.fused_gromov_wasserstein(M, Ca, Cb, a / mass, b / mass,
                                                 alpha=scaled)
        np.testing.assert_allclose(res.plan, mass * ref, atol=1e-9)
    # alpha = 0 is linear OT at any mass
    res = so.solve_gromov(Ca, Cb, M, a, b, alpha=0.0)
    assert res.value == pytest.approx(ot.emd2(a / mass, b / mass, M) * mass, rel=1e-9)


def test_unbalanced_fgw_float32_inner_solves_at_the_rounding_are_fine():
    # with masses 1 and 2 (rho 10, reg 0.05) half of the float32 inner solves
    # end with every update rounded away ("tol below rounding") at the default
    # inner tol: what the dtype resolves, so the outer solve converges
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 8, generator=g, dtype=torch.float64)
    Y = torch.randn(50, 8, generator=g, dtype=torch.float64)
    X, Y = X / X.norm(dim=1, keepdim=True), Y / Y.norm(dim=1, keepdim=True)
    Ca, Cb, M = ((1 - A @ B.T).float() for A, B in ((X, X), (Y, Y), (X, Y)))
    a, b = torch.full((60,), 1 / 60), torch.full((50,), 2 / 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = so.solve_gromov(Ca, Cb, M, a, b, alpha=0.5, reg=0.05, unbalanced=10.0)
    assert res.converged and res.status == "converged"


def test_estimator_reg_unused_beside_an_ot_solver_warns():
    # an OTSolver's own settings win (get_solver): a grid over the estimator's
    # reg with an OTSolver scored identical fits, silently. A reg changed from
    # the estimator's default, other than the solver's, now warns at fit
    import skot

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = rng.normal(size=(60, 3)) + 3 * np.eye(3)[y]
    T = np.eye(3)
    sd = np.r_[np.ones(30), -np.ones(30)]
    fits = {
        "FGWZeroShotClassifier": lambda **kw: skot.FGWZeroShotClassifier(
            class_embeddings=T, class_prior="uniform", **kw).fit(X),
        "SelectiveOTClassifier": lambda **kw: skot.SelectiveOTClassifier(
            class_embeddings=T, **kw).fit(X),
        "InfoOTAligner": lambda **kw: skot.InfoOTAligner(**kw).fit(X, sample_domain=sd),
        "WassersteinCoresetSelector": lambda **kw: skot.WassersteinCoresetSelector(
            10, **kw).fit(X, y),
    }
    for name, fit in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.warns(UserWarning, match=r"reg=0.5 is not used: "
                              r"solver=OTSolver\(reg=0.05\)"):
                fit(solver=so.OTSolver("sinkhorn", reg=0.05), reg=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("error", message="reg=.* is not used")
            fit(solver=so.OTSolver("sinkhorn", reg=0.05))  # the default reg
            fit(solver=so.OTSolver("sinkhorn", reg=0.5), reg=0.5)  # the same


def test_exact_fgw_with_feature_costs_all_below_minus_one(rng):
    # POT's inner network simplex found costs all below -1 "infeasible": its
    # conditional gradient kept a b^T and skot reported it converged after
    # one iteration; M + c moves every objective by (1 - alpha) c
    Ca, Cb, M = _graphs(rng)
    M = -5.0 - M
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = so.solve_gromov(Ca, Cb, M, alpha=0.3)
    shifted = so.solve_gromov(Ca, Cb, M + 10, alpha=0.3)
    np.testing.assert_allclose(res.plan, shifted.plan, atol=1e-12)
    assert res.value == pytest.approx(shifted.value - 0.7 * 10, abs=1e-10)
    start = so.fgw_objective(*(torch.as_tensor(x) for x in (
        M, Ca, Cb, np.outer(ot.unif(12), ot.unif(9)))), 0.3)[0]
    assert res.value < float(start) - 1e-3  # not the starting plan a b^T


@pytest.mark.parametrize("method, kw", [
    ("partial", {"mass": 0.5}), ("dbot", {}), ("total", {}), ("rows", {}),
    ("cols", {}), ("sparse", {}), ("partial", {"reg": None, "mass": 0.5}),
])
def test_solver_without_gromov_counterpart_is_refused(rng, method, kw):
    # the constraint (partial mass, the box, a free side, ...) had been dropped
    # silently: OTSolver("partial", mass=0.5).solve_gromov solved balanced fgw
    Ca, Cb, M = _graphs(rng)
    solver = so.OTSolver(method, **{"reg": 0.1, **kw})
    with pytest.raises(ValueError, match=f"method='{method}' has no fused Gromov"):
        solver.solve_gromov(Ca, Cb, M)
    with pytest.raises(ValueError, match="has no fused Gromov"):
        so.OTSolver("sinkhorn", reg=0.1).solve_gromov(Ca, Cb, M, method=method)


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "exact", None])
def test_solver_linear_methods_with_a_gromov_counterpart(rng, method):
    Ca, Cb, M = _graphs(rng)
    kw = {"unbalanced": 1.0} if method == "unbalanced" else {}
    res = so.OTSolver(method, reg=0.1, **kw).solve_gromov(Ca, Cb, M)
    ref = so.solve_gromov(Ca, Cb, M, reg=None if method == "exact" else 0.1,
                          method="fgw_exact" if method == "exact" else "fgw", **kw)
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-12)
