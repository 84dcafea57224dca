"""Online (tiled) entropic OT from features: equal to skot.ot.solve on the cost."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skot.ot import solve, solve_sample
from skot.ot._online import sample_cost

REG = {"sqeuclidean": 1.0, "euclidean": 0.5, "cosine": 0.1}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    Xa, Xb = rng.normal(size=(70, 5)), rng.normal(size=(50, 5))
    a = rng.random(70) + 0.1
    b = rng.random(50) + 0.1
    return Xa, Xb, a / a.sum(), b / b.sum()


def _dense(Xa, Xb, metric):
    return sample_cost(torch.as_tensor(Xa), torch.as_tensor(Xb), metric).numpy()


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("unbalanced", [None, 1.0, (0.5, np.inf)])
def test_equals_dense_solve(data, metric, unbalanced):
    Xa, Xb, a, b = data
    reg = REG[metric]
    kw = dict(reg=reg, tol=1e-11, max_iter=5000, unbalanced=unbalanced)
    ref = solve(_dense(Xa, Xb, metric), a, b, geometry="log", **kw)
    res = solve_sample(Xa, Xb, a, b, metric=metric, batch_size=16, **kw)
    assert res.converged and ref.converged
    assert isinstance(res.value, float)
    np.testing.assert_allclose(res.value, ref.value, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.value_linear, ref.value_linear, rtol=0, atol=1e-8)
    for p, q in zip(res.potentials, ref.potentials):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.plan, ref.plan, rtol=0, atol=1e-8)
    r, c = res.marginals
    np.testing.assert_allclose(r, ref.plan.sum(1), atol=1e-12)
    np.testing.assert_allclose(c, ref.plan.sum(0), atol=1e-12)


def test_plan_is_lazy_and_apply_plan(data):
    Xa, Xb, a, b = data
    res = solve_sample(Xa, Xb, a, b, reg=0.5, batch_size=7, tol=1e-12, max_iter=5000)
    assert res._plan is None  # nothing n x m built yet
    rng = np.random.default_rng(1)
    V = rng.normal(size=(50, 3))
    U = rng.normal(size=70)
    PV, PtU = res.apply_plan(V), res.apply_plan(U, transpose=True)
    res.marginals
    assert res._plan is None
    P = res.plan
    np.testing.assert_allclose(PV, P @ V, atol=1e-14)
    np.testing.assert_allclose(PtU, P.T @ U, atol=1e-14)
    np.testing.assert_allclose(res.apply_plan(np.ones(50)), a, atol=1e-11)
    with pytest.raises(ValueError, match="rows"):
        res.apply_plan(np.ones(70))


@pytest.mark.parametrize("batch_size", [1, 13, None, 1000])
def test_tile_size_does_not_change_result(data, batch_size):
    Xa, Xb, a, b = data
    ref = solve_sample(Xa, Xb, a, b, reg=4.0, batch_size=70, tol=1e-10)
    res = solve_sample(Xa, Xb, a, b, reg=4.0, batch_size=batch_size, tol=1e-10)
    np.testing.assert_allclose(res.potentials[0], ref.potentials[0], atol=1e-12)
    assert res.n_iter == ref.n_iter


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_envelope_gradient_matches_dense_autograd(data, metric):
    Xa, Xb, a, b = data
    reg = REG[metric]
    xa = torch.tensor(Xa, requires_grad=True)
    xb = torch.tensor(Xb, requires_grad=True)
    at, bt = torch.tensor(a), torch.tensor(b)
    ref = solve(sample_cost(xa, xb, metric), at, bt, reg=reg, tol=1e-11,
                max_iter=5000, grad="envelope")
    ga, gb = torch.autograd.grad(ref.value, [xa, xb])
    xa2 = xa.detach().clone().requires_grad_()
    xb2 = xb.detach().clone().requires_grad_()
    res = solve_sample(xa2, xb2, at, bt, metric=metric, reg=reg, tol=1e-11,
                       max_iter=5000, grad="envelope", batch_size=16)
    assert res.value.requires_grad
    (2.0 * res.value).backward()
    torch.testing.assert_close(xa2.grad, 2 * ga, rtol=0, atol=1e-9)
    torch.testing.assert_close(xb2.grad, 2 * gb, rtol=0, atol=1e-9)


def test_envelope_gradient_matches_autodiff_at_convergence(data):
    # at the optimum the envelope gradient is the true gradient of the value
    Xa, Xb, a, b = data
    xa = torch.tensor(Xa, requires_grad=True)
    ref = solve(sample_cost(xa, torch.tensor(Xb)), torch.tensor(a), torch.tensor(b),
                reg=1.0, tol=1e-13, max_iter=3000, grad="autodiff", geometry="log")
    (g_ref,) = torch.autograd.grad(ref.value, [xa])
    xa2 = xa.detach().clone().requires_grad_()
    res = solve_sample(xa2, torch.tensor(Xb), torch.tensor(a), torch.tensor(b),
                       reg=1.0, tol=1e-13, max_iter=3000, grad="envelope",
                       batch_size=9)
    (g,) = torch.autograd.grad(res.value, [xa2])
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-7)


def test_detach_has_no_graph(data):
    Xa, Xb, a, b = data
    xa = torch.tensor(Xa, requires_grad=True)
    res = solve_sample(xa, torch.tensor(Xb), reg=0.5)
    assert not res.value.requires_grad
    assert isinstance(res.value, torch.Tensor)
    assert res.potentials[0].dtype == torch.float64


def test_float32_and_torch_io(data):
    Xa, Xb, _, _ = data
    xa = torch.tensor(Xa, dtype=torch.float32)
    xb = torch.tensor(Xb, dtype=torch.float32)
    res = solve_sample(xa, xb, metric="cosine", reg=0.02, batch_size=32)
    assert res.converged
    assert res.potentials[0].dtype == torch.float32
    r, c = res.marginals
    assert float((r - 1 / 70).abs().sum()) < 1e-4
    # against the float64 solution (not the float32 dense solve, whose value
    # carries its own rounding)
    ref = solve(_dense(Xa, Xb, "cosine"), reg=0.02, tol=1e-10, max_iter=5000)
    np.testing.assert_allclose(float(res.value), ref.value, rtol=1e-5)


def test_warm_start_and_convergence_warning(data):
    Xa, Xb, a, b = data
    res = solve_sample(Xa, Xb, a, b, reg=0.5, tol=1e-12, max_iter=5000)
    warm = solve_sample(Xa, Xb, a, b, reg=0.5, tol=1e-12, max_iter=5000,
                        potentials_init=res.potentials)
    assert warm.n_iter <= 2
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        bad = solve_sample(Xa, Xb, a, b, metric="cosine", reg=0.01, max_iter=2)
    assert not bad.converged and np.isfinite(bad.value)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(reg=None), "reg"),
        (dict(reg=-1.0), "reg"),
        (dict(reg=1.0, metric="hamming"), "metric"),
        (dict(reg=1.0, grad="autodiff"), "grad"),
        (dict(reg=1.0, batch_size=0), "batch_size"),
        (dict(reg=1.0, max_iter=0), "max_iter"),
        (dict(reg=1.0, b=np.ones(50)), "a.sum"),
    ],
)
def test_bad_input(data, kw, match):
    Xa, Xb, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match=match):
            solve_sample(Xa, Xb, **kw)


def test_inputs_checked_as_solve_checks_them(data):
    Xa, Xb, _, _ = data
    # a numpy X_a with a torch X_b gave numpy out and dropped X_b's graph
    Xt = torch.tensor(Xb, requires_grad=True)
    with pytest.raises(TypeError, match="X_a is a ndarray but X_b is a torch"):
        solve_sample(Xa, Xt, reg=1.0, grad="envelope")
    with pytest.raises(ValueError, match=r"potentials_init f has shape \(2,\)"):
        solve_sample(Xa, Xb, reg=1.0, potentials_init=(np.zeros(2), np.zeros(50)))
    with pytest.raises(ValueError, match="potentials_init g contains NaN"):
        solve_sample(Xa, Xb, reg=1.0,
                     potentials_init=(np.zeros(70), np.full(50, np.nan)))
    with pytest.raises(TypeError, match="float16"):
        solve_sample(torch.tensor(Xa).half(), torch.tensor(Xb).half(), reg=1.0)
    # rho far above reg with unequal masses: refused, not solved as hard
    one, two = np.ones(1, np.float32), np.full(1, 2.0, np.float32)
    x = Xa[:1].astype(np.float32)
    ok = solve_sample(x, x, one, two, reg=0.1, unbalanced=1e3)
    ref = solve_sample(x.astype(float), x.astype(float), one.astype(float),
                       two.astype(float), reg=0.1, unbalanced=1e3)
    assert ok.plan.sum() == pytest.approx(ref.plan.sum(), rel=1e-3)
    with pytest.raises(ValueError, match="different total mass"):
        solve_sample(x, x, one, two, reg=0.1, unbalanced=1e7)
    # float32 masses equal to rounding: solved as hard, as solve does (the
    # balance check was float64's and said "set unbalanced=rho")
    near = np.full(1, 1.00003, np.float32)
    res = solve_sample(x, x, one, near, reg=0.1, unbalanced=1e12)
    assert res.plan.sum() == pytest.approx(1.0, rel=1e-4)


def test_bad_shapes(data):
    Xa, Xb, _, _ = data
    with pytest.raises(ValueError, match="features"):
        solve_sample(Xa, Xb[:, :3], reg=1.0)
    with pytest.raises(ValueError, match="X_a"):
        solve_sample(Xa[0], Xb, reg=1.0)
    with pytest.raises(ValueError, match="NaN"):
        solve_sample(np.full((3, 5), np.nan), Xb, reg=1.0)


@pytest.mark.gpu
def test_cuda_matches_cpu(data):
    Xa, Xb, a, b = data
    cpu = solve_sample(torch.tensor(Xa), torch.tensor(Xb), reg=0.5, batch_size=16)
    gpu = solve_sample(torch.tensor(Xa, device="cuda"), torch.tensor(Xb, device="cuda"),
                       reg=0.5, batch_size=16)
    assert gpu.potentials[0].device.type == "cuda"
    torch.testing.assert_close(gpu.potentials[0].cpu(), cpu.potentials[0], atol=1e-9,
                               rtol=0)


def test_online_iot_contrastive_loss_matches_skot_losses():
    # inverse-OT contrastive loss with O(batch x tile) memory:
    # KL(I/n || P) = (mean_i C_ii - OT_eps(C)) / eps + log n
    losses = pytest.importorskip("skot.losses")
    if not hasattr(losses, "iot_loss"):
        pytest.skip("skot.losses.iot_loss is not available yet")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(40, 8, generator=g, dtype=torch.float64)
    y0 = torch.randn(40, 8, generator=g, dtype=torch.float64)
    reg = 0.1
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    nx, ny = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(
        y, dim=1)
    ref = losses.iot_loss(nx, ny, reg=reg)
    gx_ref, gy_ref = torch.autograd.grad(ref, [x, y])
    x2, y2 = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    res = solve_sample(x2, y2, metric="cosine", reg=reg, grad="envelope",
                       batch_size=8, tol=1e-10)
    diag = 1.0 - torch.nn.functional.cosine_similarity(x2, y2, dim=1)
    loss = (diag.mean() - res.value) / reg + np.log(40)
    gx, gy = torch.autograd.grad(loss, [x2, y2])
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(gy, gy_ref, rtol=0, atol=1e-5)


def test_cosine_cost_of_huge_and_tiny_float32_rows():
    # cosine costs normalise rows through skot._backend.unit_rows: float32 rows
    # at 1e20 had a squared norm of inf and came out zero (cost 1 everywhere)
    g = torch.Generator().manual_seed(0)
    Xa, Xb = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g)
    ref = sample_cost(Xa, Xb, "cosine")
    for scale in (1e20, 1e-25):
        torch.testing.assert_close(sample_cost(Xa * scale, Xb, "cosine"), ref)
    res = solve_sample(Xa * 1e20, Xb, metric="cosine", reg=0.1, batch_size=4)
    torch.testing.assert_close(res.plan, solve_sample(Xa, Xb, metric="cosine", reg=0.1,
                                                      batch_size=4).plan)


def test_costs_that_overflow_are_refused_by_name(data):
    Xa, Xb, a, b = data
    # squared norms beyond the dtype: had raised "non-finite potentials ...
    # please report"
    with pytest.raises(ValueError, match="costs between X_a and X_b overflow "
                                         "torch.float64"):
        solve_sample(Xa * 1e200, Xb, reg=0.5)
    with pytest.raises(ValueError, match="overflow torch.float32"):
        solve_sample(Xa.astype(np.float32) * 1e20, Xb.astype(np.float32), reg=0.5)
    with pytest.raises(ValueError, match="in units of reg overflow"):
        solve_sample(Xa * 1e100, Xb, reg=1e-300)
    # float32's own range (the bounds are Python floats, which did not overflow)
    f32 = Xa.astype(np.float32)
    with pytest.raises(ValueError, match="in units of reg overflow torch.float32"):
        solve_sample(f32 * 1e15, Xb.astype(np.float32), reg=1e-9)
    # a reg below the costs' rounding: refused once the solve has not converged
    with pytest.raises(ValueError, match="reg=1e-17 is below the rounding"):
        solve_sample(Xa, Xb, reg=1e-17, max_iter=20)


def test_float32_potentials_too_large_for_tol_are_not_converged():
    # as skot.ot.solve: at rho / reg 5e4 with masses 1 and 1.3 the float32
    # updates rounded away, err 0.0, "converged", 7.5e-4 (L1) off float64
    rng = np.random.default_rng(3)
    Xa, Xb = rng.normal(size=(40, 8)), rng.normal(size=(30, 8))
    r = np.random.default_rng(0)
    a, b = r.random(40) + 0.1, r.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum() * 1.3
    f32 = [z.astype(np.float32) for z in (Xa, Xb, a, b)]
    with pytest.warns(ConvergenceWarning, match="rounding step of its potentials"):
        res = solve_sample(*f32, metric="cosine", reg=0.01, unbalanced=500.0)
    assert not res.converged and res.status == "tol below rounding"
    assert solve_sample(Xa, Xb, a, b, metric="cosine", reg=0.01, unbalanced=500.0,
                        max_iter=100_000).converged


def test_result_pickles_with_its_plan_still_lazy():
    # the plan builder and apply_plan were closures: "Can't pickle local object"
    import pickle

    rng = np.random.default_rng(0)
    Xa, Xb = rng.random((20, 3)), rng.random((15, 3))
    res = solve_sample(Xa, Xb, reg=0.1)
    back = pickle.loads(pickle.dumps(res))
    assert object.__getattribute__(back, "_plan") is None  # not built to pickle
    V = rng.random((15, 2))
    np.testing.assert_allclose(back.apply_plan(V), res.apply_plan(V), rtol=1e-12)
    np.testing.assert_allclose(back.plan, res.plan, rtol=1e-12)
    assert back.value == res.value and back.n_iter == res.n_iter
    np.testing.assert_allclose(back.marginals[0], res.marginals[0])
