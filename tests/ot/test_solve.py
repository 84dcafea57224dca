"""skot.ot.solve against independent references (POT, scipy, closed forms)."""

import math
import sys
import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

import skot.ot as so


def _problem(rng, n=7, m=5):
    M = rng.random((n, m))
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    return M, a / a.sum(), b / b.sum()


def _cosine_cost(rng, n, m, d=16):
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(m, d)) + 0.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return 1 - X @ Y.T  # in [0, 2]


# ------------------------------------------------------------------ exact
def test_exact_matches_pot_and_hungarian(rng):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b)
    ref = ot.emd2(a, b, M)
    assert res.value == pytest.approx(ref, rel=1e-6)
    assert res.method == "exact"
    # uniform square problem: the optimum is a permutation (scipy reference)
    C = rng.random((6, 6))
    rows, cols = linear_sum_assignment(C)
    res = so.solve(C)
    assert res.value == pytest.approx(C[rows, cols].mean(), rel=1e-6)
    np.testing.assert_allclose(res.plan[rows, cols], 1 / 6, atol=1e-12)


def test_exact_default_budget_solves_a_large_problem(rng):
    # 500 x 400 needs more than 1000 network-simplex iterations: the default
    # budget is POT's order (it was the entropic 1000, which stopped early)
    M = rng.random((500, 400))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = so.solve(M)
    assert res.converged
    assert res.value == pytest.approx(ot.emd2(np.full(500, 1 / 500),
                                              np.full(400, 1 / 400), M), rel=1e-9)
    with pytest.warns(ConvergenceWarning, match="max_iter=10 "):
        res = so.solve(M, max_iter=10)
    assert not res.converged


def test_exact_envelope_gradient_is_plan(rng):
    M, a, b = _problem(rng)
    Mt = torch.tensor(M, requires_grad=True)
    res = so.solve(Mt, torch.tensor(a), torch.tensor(b))
    res.value.backward()
    torch.testing.assert_close(Mt.grad, res.plan)


# ------------------------------------------------------------------ entropic
@pytest.mark.parametrize("reg", [0.5, 0.05])
def test_sinkhorn_plan_matches_pot(rng, reg):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=reg)
    ref = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=1e-14,
                      numItermax=100000)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)
    pot = ot.solve(M, a, b, reg=reg, tol=1e-14, max_iter=100000)
    assert res.value == pytest.approx(float(pot.value), rel=1e-8)
    assert res.value_linear == pytest.approx(float(pot.value_linear), rel=1e-8)
    assert res.converged


@pytest.mark.parametrize("reg", [0.5, 0.05])
def test_sinkhorn_log_and_kernel_geometries_agree(rng, reg):
    M, a, b = _problem(rng, 12, 9)
    p1 = so.solve(M, a, b, reg=reg, geometry="kernel").plan
    p2 = so.solve(M, a, b, reg=reg, geometry="log").plan
    np.testing.assert_allclose(p1, p2, atol=1e-10)


@pytest.mark.parametrize("reg", [0.5, 0.05])
def test_entropy_reg_type_matches_pot(rng, reg):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=reg, reg_type="entropy")
    pot = ot.solve(M, a, b, reg=reg, reg_type="entropy", tol=1e-14, max_iter=100000)
    np.testing.assert_allclose(res.plan, pot.plan, atol=1e-7)
    assert res.value == pytest.approx(float(pot.value), rel=1e-7)


@pytest.mark.parametrize("reg", [0.5, 0.05])
@pytest.mark.parametrize("rho", [1.0, (0.5, 2.0)])
def test_unbalanced_plan_matches_pot(rng, reg, rho):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=reg, unbalanced=rho)
    assert res.method == "unbalanced"
    reg_m = rho if np.isscalar(rho) else rho
    ref = ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, stopThr=1e-15,
                                            numItermax=100000)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)
    # value: the objective with generalised KLs, KL(p|q) = <p, log p/q> - |p| +
    # |q| (POT 0.9's sinkhorn_unbalanced total_cost drops the mass terms and is
    # then identically 0 at the optimum)
    P = res.plan
    ra, rb = (rho, rho) if np.isscalar(rho) else rho

    def kl(p, q):
        return (p * np.log(p / q)).sum() - p.sum() + q.sum()

    objective = ((P * M).sum() + reg * kl(P, np.outer(a, b))
                 + ra * kl(P.sum(1), a) + rb * kl(P.sum(0), b))
    assert res.value == pytest.approx(objective, rel=1e-8)
    # POT's reg_type="entropy" value keeps them: same convention
    res = so.solve(M, a, b, reg=reg, unbalanced=rho, reg_type="entropy")
    pot = ot.solve(M, a, b, reg=reg, unbalanced=rho, reg_type="entropy", tol=1e-15,
                   max_iter=100000)
    assert res.value == pytest.approx(float(pot.value), abs=1e-7)


@pytest.mark.parametrize("reg_type", ["KL", "entropy"])
@pytest.mark.parametrize("rho", [1.0, (0.5, 2.0), (np.inf, 1.0)])
@pytest.mark.parametrize("grad", ["envelope", "autodiff"])
def test_unbalanced_value_gradient_is_the_plan(rng, reg_type, rho, grad):
    M, a, b = _problem(rng)
    D = rng.normal(size=M.shape)
    kw = dict(reg=0.1, unbalanced=rho, reg_type=reg_type, tol=1e-14, max_iter=100000)
    h = 1e-6
    fd = (so.solve(M + h * D, a, b, **kw).value
          - so.solve(M - h * D, a, b, **kw).value) / (2 * h)
    Mt = torch.tensor(M, requires_grad=True)
    res = so.solve(Mt, torch.tensor(a), torch.tensor(b), grad=grad, **kw)
    (gM,) = torch.autograd.grad(res.value, Mt)
    torch.testing.assert_close(gM, res.plan.detach(), rtol=1e-8, atol=1e-10)
    assert (gM.numpy() * D).sum() == pytest.approx(fd, rel=1e-6)


def test_semi_relaxed_inf_side_keeps_that_marginal(rng):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=0.1, unbalanced=(np.inf, 1.0))
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-8)
    assert not np.allclose(res.plan.sum(0), b, atol=1e-4)


@pytest.mark.parametrize("reg", [0.5, 0.05])
def test_entropic_partial_matches_pot(rng, reg):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=reg, mass=0.6, reg_type="entropy")
    ref = ot.partial.entropic_partial_wasserstein(a, b, M, reg, m=0.6,
                                                  stopThr=1e-15, numItermax=100000)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)
    assert res.mass == pytest.approx(0.6, abs=1e-8)
    assert (res.plan.sum(1) <= a + 1e-9).all() and (res.plan.sum(0) <= b + 1e-9).all()


def test_exact_partial_matches_pot(rng):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, mass=0.5)
    ref = ot.partial.partial_wasserstein2(a, b, M, m=0.5)
    assert res.value == pytest.approx(ref, rel=1e-6)
    assert res.mass == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_exact_partial_budget_and_costs_of_any_sign(rng, sign):
    M, a, b = _problem(rng, 30, 20)
    M = sign * M
    res = so.solve(M, a, b, mass=0.6)
    # the plan of fixed-mass partial OT is that of the cost shifted by a constant
    ref = ot.partial.partial_wasserstein(a, b, M - M.min(), m=0.6)
    assert res.converged
    assert res.value == pytest.approx((ref * M).sum(), rel=1e-9)
    assert res.plan.sum() == pytest.approx(0.6, rel=1e-9)
    # running out of max_iter warns (POT's partial_wasserstein raises a ValueError)
    with pytest.warns(ConvergenceWarning, match="method='partial'"):
        res = so.solve(rng.random((200, 200)), mass=0.5, max_iter=10)
    assert not res.converged


def test_batched_equals_loop(rng):
    Ms = rng.random((4, 6, 5))
    res = so.solve(Ms, reg=0.1)
    assert res.plan.shape == (4, 6, 5) and res.value.shape == (4,)
    for k in range(4):
        single = so.solve(Ms[k], reg=0.1)
        np.testing.assert_allclose(res.plan[k], single.plan, atol=1e-9)
        assert res.value[k] == pytest.approx(single.value, rel=1e-9)
    exact = so.solve(Ms)
    np.testing.assert_allclose(exact.value, [so.solve(m).value for m in Ms], rtol=1e-9)


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced"])
def test_envelope_gradient_is_plan(rng, method):
    M, a, b = _problem(rng)
    Mt = torch.tensor(M, requires_grad=True)
    kw = {"unbalanced": 1.0} if method == "unbalanced" else {}
    res = so.solve(Mt, torch.tensor(a), torch.tensor(b), reg=0.1, grad="envelope", **kw)
    res.value.backward()
    torch.testing.assert_close(Mt.grad, res.plan.detach())


def test_autodiff_gradient_matches_envelope_at_convergence(rng):
    M, a, b = _problem(rng)
    M1 = torch.tensor(M, requires_grad=True)
    so.solve(M1, reg=0.2, grad="autodiff").value.backward()
    M2 = torch.tensor(M, requires_grad=True)
    so.solve(M2, reg=0.2, grad="envelope").value.backward()
    torch.testing.assert_close(M1.grad, M2.grad, atol=1e-7, rtol=1e-6)


def test_envelope_gradient_wrt_weights_matches_finite_differences(rng):
    M, a, b = _problem(rng, 5, 4)
    at = torch.tensor(a, requires_grad=True)
    res = so.solve(torch.tensor(M), at, torch.tensor(b), reg=0.3, grad="envelope")
    res.value.backward()
    d = np.zeros(5)
    d[0], d[1] = 1e-6, -1e-6  # stay on the simplex
    fd = (so.solve(M, a + d, b, reg=0.3).value - so.solve(M, a - d, b, reg=0.3).value)
    assert float(at.grad @ torch.tensor(2 * d)) == pytest.approx(fd, rel=1e-4)


def test_detach_gives_constants(rng):
    M, a, b = _problem(rng)
    Mt = torch.tensor(M, requires_grad=True)
    res = so.solve(Mt, reg=0.1, grad="detach")
    assert not res.plan.requires_grad and not res.value.requires_grad


def test_torch_in_torch_out_same_dtype(rng):
    M = torch.tensor(rng.random((5, 4)), dtype=torch.float32)
    res = so.solve(M, reg=0.1)
    assert isinstance(res.plan, torch.Tensor) and res.plan.dtype == torch.float32
    assert res.plan.device == M.device
    res_np = so.solve(M.numpy(), reg=0.1)
    assert isinstance(res_np.plan, np.ndarray) and isinstance(res_np.value, float)


@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_float32_small_reg_is_stable(rng, reg):
    C = torch.tensor(_cosine_cost(rng, 200, 150), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = so.solve(C, reg=reg, max_iter=3000)
    P = res.plan
    assert torch.isfinite(P).all() and (P >= 0).all()
    # rows are enforced exactly by the last half step up to float32 rounding
    assert torch.allclose(P.sum(0), torch.full((150,), 1 / 150), atol=1e-5)
    assert abs(float(P.sum()) - 1.0) < 1e-4
    # and it agrees with a float64 solve
    ref = so.solve(C.double(), reg=reg, max_iter=3000, tol=1e-6)
    assert float((P.double() - ref.plan).abs().sum()) < 0.05


def test_nonconvergence_warns_and_never_nan(rng):
    C = _cosine_cost(rng, 50, 40)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = so.solve(C, reg=1e-3, max_iter=3)
    assert not res.converged and res.n_iter == 3
    assert np.isfinite(res.plan).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reg_below_the_rounding_of_the_cost_is_refused(rng, dtype):
    # the exponents (f + g - C) / reg are wrong by more than 1: the plans had
    # total masses 0.96-2.6 (float64) or inf (float32 kernel), with a warning
    M = rng.random((4, 5)).astype(dtype)
    floor = np.finfo(dtype).eps * M.max()
    for geometry in ("kernel", "log"):
        with pytest.raises(ValueError, match="below the rounding of the cost"):
            so.solve(M, reg=floor / 10, geometry=geometry, max_iter=200)
    with pytest.raises(ValueError, match="below the rounding"):
        so.solve(M, reg=floor / 10, method="dbot", max_iter=200)
    # just above the rounding: a warning and a plan of the right mass
    with pytest.warns(ConvergenceWarning):
        res = so.solve(M, reg=floor * 10, max_iter=200)
    assert abs(res.plan.sum() - 1.0) < 0.05
    # a converged solve is not checked (no pass over the cost)
    assert so.solve(M, reg=0.1).converged


@pytest.mark.parametrize("method, kw", [("sinkhorn", {}), ("unbalanced", {"unbalanced": (50.0, 5.0)}),
                                        ("dbot", {"box": 0.2})])
def test_float32_kernel_floor_never_drops_a_plan_entry(method, kw):
    # float32 kernels flush entries below tiny e^40 = e^-47 to 0; scalings
    # summing to 48 (each below the absorption bound 30) made one worth 3.3e-3
    # (9x a uniform entry): plan 2.5e-2 (L1) off the float64 one, reported
    # converged. The scalings are now absorbed before that: as the log domain
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(60, 8)), rng.normal(size=(45, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    M = 1 - X @ Y.T
    ref = so.solve(M, reg=0.01, method=method, tol=1e-12, max_iter=100_000, **kw)
    for geometry in ("kernel", "log"):
        res = so.solve(M.astype(np.float32), reg=0.01, method=method,
                       geometry=geometry, max_iter=10_000, **kw)
        assert res.converged
        assert np.abs(res.plan - ref.plan).sum() < 5e-4, geometry


@pytest.mark.parametrize("kw", [{}, {"unbalanced": 1.0}, {"mass": 0.5}])
def test_entropy_autodiff_gradient_in_the_weights(rng, kw):
    # reg_type="entropy": the kernel has no graph, but the products of the
    # scalings (through log a, log b) saved it; scaling it in place for the
    # plan broke the backward pass ("modified by an inplace operation")
    M = torch.tensor(rng.random((4, 3)))
    grads = {}
    for geometry in ("kernel", "log"):
        a = torch.full((4,), 0.25, dtype=torch.float64, requires_grad=True)
        b = torch.full((3,), 1 / 3, dtype=torch.float64, requires_grad=True)
        res = so.solve(M, a, b, reg=0.5, reg_type="entropy", geometry=geometry, **kw)
        grads[geometry] = torch.autograd.grad(res.value, (a, b))
    for gk, gl in zip(grads["kernel"], grads["log"]):
        torch.testing.assert_close(gk, gl, atol=1e-8, rtol=1e-6)


def _unequal_masses(dtype):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(40, 8)), rng.normal(size=(30, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    r = np.random.default_rng(0)
    a, b = r.random(40) + 0.1, r.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum() * 1.3
    return (1 - X @ Y.T).astype(dtype), a.astype(dtype), b.astype(dtype)


def test_float32_potentials_too_large_for_tol_are_not_converged():
    # rho / reg 5e5 with masses 1 and 1.3: potentials ~650, whose rounding in
    # float32 moves ~9e-3 of mass; the updates rounded away, the change read
    # 0.0 and the solve said converged, 6e-3 (L1) off the float64 plan
    M, a, b = _unequal_masses(np.float32)
    with pytest.warns(ConvergenceWarning, match="rounding step of its potentials"):
        res = so.solve(M, a, b, reg=0.01, unbalanced=5000.0, geometry="log")
    assert not res.converged and res.status == "tol below rounding"
    assert res.err > 1e-3 and res.n_iter < 1000
    M, a, b = _unequal_masses(np.float64)
    assert so.solve(M, a, b, reg=0.01, unbalanced=5000.0, max_iter=100_000).converged
    # moderate rho: float32 meets its tol as before
    M, a, b = _unequal_masses(np.float32)
    assert so.solve(M, a, b, reg=0.05, unbalanced=1.0).converged


@pytest.mark.parametrize("method, kw, shift, masses", [
    ("unbalanced", {"unbalanced": 10.0, "reg": 0.05}, 0.0, (1.0, 2.0)),
    ("dbot", {"reg": 0.02}, 3.0, (2.0, 2.0)),
    ("partial", {"mass": 2.5, "reg": 0.05}, 3.0, (3.0, 3.0)),
])
def test_float32_masses_above_one_still_converge(rng, method, kw, shift, masses):
    # a first rounding-floor rule (one rounding step of the potentials times
    # the plan's mass, against tol) flagged these as "tol below rounding";
    # their plans are as close to float64's as ever
    C = _cosine_cost(rng, 200, 150) + shift
    a, b = rng.random(200) + 0.5, rng.random(150) + 0.5
    a, b = a / a.sum() * masses[0], b / b.sum() * masses[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        r32 = so.solve(*(z.astype(np.float32) for z in (C, a, b)), method=method, **kw)
    r64 = so.solve(C, a, b, method=method, tol=1e-12, max_iter=100_000, **kw)
    assert r32.converged and r32.status == "converged"
    assert np.abs(r32.plan - r64.plan).sum() < 2e-4


def test_placeholder_costs_on_forbidden_pairs_are_not_a_resolution_error(rng):
    # a cost of 1e6 on forbidden pairs (POT's way) carries no mass: an
    # unconverged solve warns as before (the resolution check had raised)
    C = _cosine_cost(rng, 60, 50).astype(np.float32)
    forbid = rng.random(C.shape) < 0.2
    big = np.where(forbid, np.float32(1e6), C)
    with pytest.warns(ConvergenceWarning):
        res = so.solve(big, reg=0.05, unbalanced=1.0, max_iter=10)
    ref = so.solve(C, reg=0.05, unbalanced=1.0, max_iter=10, mask=~forbid)
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-7)


def _host_syncs(monkeypatch):
    """Count tensor -> Python conversions (each one a host synchronisation on a
    GPU) from now on."""
    calls = []
    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *args, _orig=orig, _name=name):
            calls.append(_name)
            return _orig(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return calls


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "dbot", "partial"])
def test_kernel_iterations_synchronise_only_to_measure(rng, monkeypatch, method):
    # the kernel sums' overflow check rides on the error measurement (at most
    # every 10th iteration): 100 iterations take a few dozen conversions, where
    # a check per half-iteration took more than 200
    C = torch.tensor(_cosine_cost(rng, 60, 50))
    kw = {"unbalanced": 1.0} if method == "unbalanced" else {"mass": 0.5} if (
        method == "partial") else {}
    calls = _host_syncs(monkeypatch)
    with pytest.warns(ConvergenceWarning):
        res = so.solve(C, reg=0.01, method=method, max_iter=100, tol=1e-300, **kw)
    assert res.n_iter == 100 and not res.converged
    assert len(calls) <= 40


def test_kernel_overflow_between_measurements_is_redone_carefully(rng, monkeypatch):
    # every row's minimum in column 0 and reg 1e-3 in float32: the scalings
    # leave the kernel's range a few iterations after a measurement. The solve
    # rolls back to that measurement and redoes the iterations with a check
    # per half-iteration (a log-domain step where a sum overflowed): the
    # result is the log domain's, with no NaN
    from skot.ot import _sinkhorn

    monkeypatch.setattr(_sinkhorn, "_next_check", lambda *a, **k: 10)
    redone = []
    lse_rows = _sinkhorn._lse_rows

    def spy(*args):
        frame = sys._getframe(1)
        if frame.f_locals.get("use_kernel"):  # a log-domain step of the kernel path
            redone.append(frame.f_locals["it"] - frame.f_locals["saved"][3])
        return lse_rows(*args)

    monkeypatch.setattr(_sinkhorn, "_lse_rows", spy)
    M = rng.random((30, 40)).astype(np.float32)
    M[:, 0] -= 1.0
    M[:, 1:] += 0.5
    a, b = np.full(30, 1 / 30, np.float32), np.full(40, 1 / 40, np.float32)
    found = False
    for method, kw in [("partial", {"mass": 0.5}), ("dbot", {})]:
        redone.clear()
        res = so.solve(M, a, b, reg=1e-3, method=method, max_iter=3000, **kw)
        ref = so.solve(M, a, b, reg=1e-3, method=method, max_iter=3000,
                       geometry="log", **kw)
        assert np.isfinite(res.plan).all() and res.converged and ref.converged
        assert np.abs(res.plan - ref.plan).sum() < 1e-4
        # a rollback over more than one iteration happened somewhere
        found = found or any(k > 1 for k in redone)
    assert found


# ------------------------------------------------------------------ other sets
def test_rows_only_closed_form(rng):
    M, a, _ = _problem(rng)
    res = so.solve(M, a, reg=0.1, method="rows")
    sm = np.exp(-M / 0.1)
    ref = a[:, None] * sm / sm.sum(1, keepdims=True)
    np.testing.assert_allclose(res.plan, ref, atol=1e-12)
    assert res.n_iter <= 2


def test_cols_only_closed_form(rng):
    M, _, b = _problem(rng)
    res = so.solve(M, None, b, reg=0.1, method="cols")
    sm = np.exp(-M / 0.1)
    np.testing.assert_allclose(res.plan, b[None] * sm / sm.sum(0, keepdims=True),
                               atol=1e-12)


def test_total_mass_closed_form(rng):
    M, _, _ = _problem(rng)
    res = so.solve(M, reg=0.2, method="total", reg_type="entropy")
    sm = np.exp(-M / 0.2)
    np.testing.assert_allclose(res.plan, sm / sm.sum(), atol=1e-12)


@pytest.mark.parametrize("method", ["rows", "cols", "total"])
@pytest.mark.parametrize("reg_type", ["KL", "entropy"])
def test_one_sided_methods_are_softmaxes_in_float32_at_small_reg(rng, method, reg_type):
    # rows / cols / total mass are solved in closed form: float32 at reg 0.01 on
    # a cosine cost (whose scaling loop once rebuilt its kernel there) agrees
    # with the float64 softmax, on a batch and with masked entries
    B, n, m, reg = 2, 40, 30, 0.01
    M = np.stack([_cosine_cost(rng, n, m) for _ in range(B)])
    a = rng.random((B, n)) + 0.1
    a /= a.sum(-1, keepdims=True)
    b = rng.random((B, m)) + 0.1
    b /= b.sum(-1, keepdims=True)
    mask = rng.random((B, n, m)) > 0.2
    mask[:, np.arange(min(n, m)), np.arange(min(n, m))] = True
    mask[:, :, 0] = True
    mask[:, 0, :] = True
    logK = -M / reg
    if reg_type == "KL":
        logK = logK + np.log(a)[:, :, None] + np.log(b)[:, None, :]
    logK = np.where(mask, logK, -np.inf)
    axis = {"rows": (2,), "cols": (1,), "total": (1, 2)}[method]
    P = np.exp(logK - logK.max(axis, keepdims=True))
    P /= P.sum(axis, keepdims=True)
    if method == "rows":
        P *= a[:, :, None]
    elif method == "cols":
        P *= b[:, None, :]
    kw = {"mass": 0.8} if method == "total" else {}
    if method == "total":
        P *= 0.8
    res = so.solve(torch.tensor(M, dtype=torch.float32), torch.tensor(a, dtype=torch.float32),
                   torch.tensor(b, dtype=torch.float32), reg=reg, method=method,
                   reg_type=reg_type, mask=torch.tensor(mask), **kw)
    assert res.plan.dtype == torch.float32 and res.converged and res.n_iter == 1
    np.testing.assert_allclose(res.plan.numpy(), P, rtol=2e-4, atol=1e-9)
    assert float(res.plan[torch.tensor(~mask)].abs().max()) == 0.0
    assert res.err < 1e-5
    # the returned potentials give the plan's Gibbs form on the allowed entries
    f, g = (t.double().numpy() for t in res.potentials)
    G = (f[:, :, None] + g[:, None, :] - M) / reg
    if reg_type == "KL":
        G = G + np.log(a)[:, :, None] + np.log(b)[:, None, :]
    np.testing.assert_allclose(np.where(mask, np.exp(G), 0.0), P, rtol=2e-3, atol=1e-9)


@pytest.mark.parametrize("method", ["rows", "total"])
def test_one_sided_closed_form_gradient_matches_finite_differences(rng, method):
    # autodiff through the closed form: d value / d M against finite differences
    M = torch.tensor(rng.random((6, 5)), requires_grad=True)
    kw = {"mass": 1.0} if method == "total" else {}

    def value(M):
        return so.solve(M, reg=0.3, method=method, grad="autodiff", **kw).value

    torch.autograd.gradcheck(value, (M,))
    # the plan is the envelope gradient of the value
    grad, = torch.autograd.grad(value(M), M)
    plan = so.solve(M.detach(), reg=0.3, method=method, **kw).plan
    torch.testing.assert_close(grad, plan)


@pytest.mark.parametrize("method", ["rows", "cols", "total"])
def test_closed_form_reports_a_tol_below_rounding_as_not_converged(rng, method):
    # converged iff err < tol, as for every other method (a float32 softmax
    # meets its marginal to about 6e-8)
    M = torch.tensor(rng.random((30, 20)), dtype=torch.float32)
    with pytest.warns(ConvergenceWarning, match="closed form .* loosen tol"):
        res = so.solve(M, reg=0.1, method=method, tol=1e-9)
    assert not res.converged and res.err >= 1e-9 and res.status == "tol below rounding"
    res = so.solve(M, reg=0.1, method=method, tol=1e-5)
    assert res.converged and res.err < 1e-5


def test_total_mass_refuses_a_mask_that_forbids_everything():
    M = torch.rand(3, 4)
    with pytest.raises(ValueError, match="forbids every entry"):
        so.solve(M, reg=0.1, method="total", mask=torch.zeros(3, 4, dtype=torch.bool))


@pytest.mark.parametrize("method, kw, most", [("dbot", {"box": 0.5}, 1.2),
                                              ("partial", {"mass": 0.7}, 3.0)])
def test_box_and_inequality_sides_stop_on_the_mass_their_updates_move(rng, method, kw,
                                                                      most):
    # the box (DBOT) and inequality (partial) sides stop, like KL-relaxed ones,
    # on the L1 change of the marginals an iteration makes, not on the largest
    # potential change in units of reg, which waited on columns of negligible
    # mass: at reg 0.01 DBOT took 1.5-1.8x and partial 14-22x the iterations
    # of balanced Sinkhorn on the same cost (now 0.8x and 1.7-1.9x). Their
    # plans are as close to the converged ones as balanced Sinkhorn's (a few
    # tol, L1).
    for n, d in [(300, 64), (500, 128)]:
        M = _cosine_cost(rng, n, n, d)
        tol, reg = 1e-3, 0.01
        ref = so.solve(M, reg=reg, method=method, tol=1e-7, max_iter=50000, **kw)
        res = so.solve(M, reg=reg, method=method, tol=tol, max_iter=5000, **kw)
        bal = so.solve(M, reg=reg, tol=tol, max_iter=5000)
        assert res.converged and res.err < tol
        assert res.n_iter <= most * bal.n_iter, (res.n_iter, bal.n_iter)
        assert np.abs(res.plan - ref.plan).sum() < 5 * tol


def test_error_measurements_are_scheduled_by_the_predicted_crossing():
    from skot.ot._sinkhorn import _next_check

    # a linear fall 1e-1 -> 1e-2 over 2 iterations (rate 10^-0.5): 1e-3 in 2 more
    assert _next_check(1e-2, 1e-1, 2, 1e-3, it=5) == 2
    # a slow fall: at most every 10th iteration
    assert _next_check(0.99e-2, 1e-2, 1, 1e-3, it=5) == 10
    # not falling (or a first measurement): the next iteration, every 10th
    # after the 10th
    assert _next_check(1e-2, 1e-3, 1, 1e-4, it=3) == 1
    assert _next_check(1e-2, math.inf, 3, 1e-4, it=3) == 1
    assert _next_check(1e-2, 1e-3, 1, 1e-4, it=12) == 10
    # a fall whose rate per iteration rounds to 1
    assert _next_check(1.0, math.nextafter(1.0, 2.0), 10, 1e-4, it=3) == 10
    # a tol whose ratio to the error underflows, and tol 0
    assert _next_check(3.0, 4.0, 1, 5e-324, it=5) == 10
    assert _next_check(3.0, 4.0, 1, 0.0, it=5) == 1


@pytest.mark.parametrize("geometry", ["kernel", "log"])
def test_dbot_column_the_mask_empties(rng, geometry):
    # a column with no allowed entry: infeasible while its box lower bound is
    # above 0 (ValueError), else served with no mass. Its potential had gone to
    # +inf, its error term to NaN, which max() dropped: converged=True with a
    # NaN plan
    M = torch.tensor(rng.random((6, 5)))
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[:, 2] = False
    with pytest.raises(ValueError, match="box lower bound"):
        so.solve(M, reg=0.05, method="dbot", box=0.5, mask=mask, geometry=geometry)
    res = so.solve(M, reg=0.05, method="dbot", box=1.0, mask=mask, geometry=geometry,
                   tol=1e-12, max_iter=10000)
    assert res.converged and bool(torch.isfinite(res.plan).all())
    assert float(res.plan[:, 2].abs().max()) == 0.0
    # the problem without that column (box bounds [0, 2 b_j] of the others)
    keep = [0, 1, 3, 4]
    b = torch.full((4,), 0.25, dtype=torch.float64)
    ref = so.solve(M[:, keep], None, b, reg=0.05, method="dbot",
                   box=(torch.zeros(4, dtype=torch.float64), torch.full((4,), 0.4,
                                                                         dtype=torch.float64)),
                   tol=1e-12, max_iter=10000)
    torch.testing.assert_close(res.plan[:, keep], ref.plan, atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["rows", "cols", "total"])
def test_closed_form_refuses_a_cost_that_overflows_in_units_of_reg(method, rng):
    # every entry of M / reg beyond float32: the softmax is 0 / 0 (it was NaN
    # reported as converged)
    M = torch.tensor(1 + rng.random((4, 3)), dtype=torch.float32) * 1e30
    with pytest.raises(FloatingPointError, match="overflows this dtype"):
        so.solve(M, reg=1e-9, method=method)


def test_dbot_respects_box(rng):
    M, a, b = _problem(rng, 10, 6)
    lo, hi = 0.7 * b, 1.2 * b
    res = so.solve(M, a, b, reg=0.05, method="dbot", box=(lo, hi))
    col = res.plan.sum(0)
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-8)
    assert (col >= lo - 1e-8).all() and (col <= hi + 1e-8).all()
    # box = [0, inf) recovers the rows-only closed form; box = 0 the balanced plan
    free = so.solve(M, a, b, reg=0.05, method="dbot", box=(0 * b, b + 10))
    rows = so.solve(M, a, b, reg=0.05, method="rows")  # b is the prior of KL(P|ab^T)
    np.testing.assert_allclose(free.plan, rows.plan, atol=1e-9)
    tight = so.solve(M, a, b, reg=0.05, method="dbot", box=0.0)
    np.testing.assert_allclose(tight.plan, so.solve(M, a, b, reg=0.05).plan, atol=1e-7)


def test_mask_forbids_pairs(rng):
    M, a, b = _problem(rng, 6, 6)
    mask = np.ones((6, 6), bool)
    mask[0, :3] = False
    mask[2, 4] = False
    res = so.solve(M, a, b, reg=0.1, mask=mask)
    assert (res.plan[~mask] == 0).all()
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-8)
    # same as an (almost) infinite cost on those pairs, solved by POT
    big = np.where(mask, M, 1e3)
    ref = ot.sinkhorn(a, b, big, 0.1, method="sinkhorn_log", stopThr=1e-14,
                      numItermax=100000)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)


def test_sparse_has_at_most_max_nz_per_column(rng):
    M, a, b = _problem(rng, 8, 5)
    a, b = np.full(8, 1 / 8), np.full(5, 1 / 5)
    # POT solves a convex relaxation (smoothed dual): where max_nz binds (10
    # slots for 8 rows) its plan misses the marginals, and says so
    with pytest.warns(ConvergenceWarning, match="marginals are off by"):
        res = so.solve(M, a, b, reg=0.5, method="sparse", max_nz=2)
    assert ((res.plan > 1e-12).sum(0) <= 2).all()
    err = np.abs(res.plan.sum(1) - a).sum() + np.abs(res.plan.sum(0) - b).sum()
    assert not res.converged and res.status == "marginals not met"
    assert res.err == pytest.approx(err) and err > 1e-3
    np.testing.assert_allclose(res.plan.sum(0), b, atol=2e-2)
    # max_nz = n recovers quadratically regularised OT (POT reg_type="L2")
    full = so.solve(M, a, b, reg=0.5, method="sparse", max_nz=8)
    ref = ot.smooth.smooth_ot_dual(a, b, M, 0.5, reg_type="l2")
    np.testing.assert_allclose(full.plan, ref, atol=1e-6)
    assert full.converged and full.n_iter > 0


def test_sparse_meets_the_marginals_where_max_nz_leaves_room(rng):
    M = rng.random((50, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = so.solve(M, reg=0.5, method="sparse", max_nz=5)
    assert res.converged and res.status == "converged" and res.err < 1e-3
    assert ((res.plan > 0).sum(0) <= 5).all()


def test_sparse_refuses_an_infeasible_max_nz(rng):
    # 10 rows need 10 non-zeros; 2 columns of at most 2 hold 4
    with pytest.raises(ValueError, match=r"max_nz=2 is infeasible.*at least 5"):
        so.solve(rng.random((10, 2)), reg=0.5, method="sparse", max_nz=2)
    so.solve(rng.random((10, 2)), reg=0.5, method="sparse", max_nz=5)  # feasible


def test_sparse_reports_its_budget(rng):
    M = rng.random((60, 50))
    with pytest.warns(ConvergenceWarning, match="method='sparse'"):
        res = so.solve(M, reg=0.1, method="sparse", max_nz=3, max_iter=3)
    assert not res.converged and res.n_iter == 3 and res.err > 1e-3


# ------------------------------------------------------------------ properties
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 8),
    m=st.integers(1, 8),
    reg=st.sampled_from([1e-3, 0.01, 0.1, 1.0]),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(["sinkhorn", "rows", "partial", "dbot", "exact"]),
)
def test_plans_are_valid(n, m, reg, seed, method):
    rng = np.random.default_rng(seed)
    M = rng.random((n, m)) * 2
    a = rng.random(n) + 0.05
    b = rng.random(m) + 0.05
    a, b = a / a.sum(), b / b.sum()
    kw = {}
    if method == "partial":
        kw["mass"] = 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = so.solve(M, a, b, reg=None if method == "exact" else reg, method=method,
                       max_iter=20000, **kw)
    P = res.plan
    assert np.isfinite(P).all() and (P >= 0).all()
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert warned == (not res.converged)
    if not res.converged:
        # e.g. dbot, one row, reg 1e-3 (M / reg up to 2000): the box projections
        # crawl and the row sum is still 0.017 off after 20000 iterations; the
        # result says so, which is all that can be asserted of it
        return
    tol = 1e-6
    if method in ("sinkhorn", "exact", "rows", "dbot"):
        np.testing.assert_allclose(P.sum(1), a, atol=tol)
    if method in ("sinkhorn", "exact"):
        np.testing.assert_allclose(P.sum(0), b, atol=tol)
    if method == "partial":
        assert P.sum() == pytest.approx(0.5, abs=tol)
        assert (P.sum(1) <= a + tol).all() and (P.sum(0) <= b + tol).all()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reg=-1.0), "reg"),
        (dict(reg=0.0), "reg"),
        (dict(reg=0.1, method="nope"), "nope"),
        (dict(reg=0.1, grad="unrolled"), "grad"),
        (dict(reg=0.1, reg_type="L3"), "reg_type"),
        (dict(reg=0.1, max_iter=0), "max_iter"),
        (dict(method="sinkhorn"), "reg"),
        (dict(method="partial", reg=0.1), "mass"),
        (dict(mass=5.0, reg=0.1), "mass"),
        (dict(reg=0.1, method="sparse"), "max_nz"),
        (dict(reg=0.1, unbalanced=-1.0), "unbalanced"),
        (dict(reg=0.1, unbalanced=1.0, unbalanced_type="TV"), "unbalanced_type"),
        (dict(reg=0.1, mass=0.3, unbalanced=1.0), "mass=0.3"),
        (dict(mass=0.3, method="exact"), "mass=0.3"),
        (dict(reg=0.1, geometry="foo"), "geometry"),
        (dict(reg=0.1, potentials_init=(np.zeros(4), np.zeros(5))), "potentials_init f"),
        (dict(reg=0.1, potentials_init=(np.full(5, np.nan), np.zeros(4))), "NaN"),
        (dict(reg=0.1, potentials_init=np.zeros(5)), "pair"),
    ],
)
def test_bad_options_raise(rng, kwargs, match):
    M = rng.random((5, 4))
    with pytest.raises((ValueError, TypeError), match=match):
        so.solve(M, **kwargs)


def test_bad_arrays_raise(rng):
    M = rng.random((5, 4))
    with pytest.raises(ValueError, match="NaN"):
        so.solve(np.where(M > 0.5, np.nan, M), reg=0.1)
    with pytest.raises(ValueError, match="inf"):
        so.solve(np.where(M > 0.5, np.inf, M), reg=0.1)
    with pytest.raises(ValueError, match="length 5"):
        so.solve(M, np.ones(3) / 3, reg=0.1)
    with pytest.raises(ValueError, match="negative"):
        so.solve(M, np.array([0.5, 0.5, 0.5, -0.5, 0]), reg=0.1)
    with pytest.raises(ValueError, match="different total mass"):
        so.solve(M, np.ones(5) / 5, np.ones(4), reg=0.1)
    with pytest.raises(ValueError, match="shape"):
        so.solve(np.ones(5), reg=0.1)
    with pytest.raises(ValueError, match="empty"):
        so.solve(np.ones((0, 3)), reg=0.1)
    with pytest.raises(ValueError, match="row"):
        so.solve(M, reg=0.1, mask=np.zeros((5, 4), bool))
    with pytest.raises(TypeError, match="complex"):
        so.solve(M + 1j, reg=0.1)
    # half precision: the kernel underflows (all-zero plans reported converged)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="float32 or float64"):
            so.solve(torch.tensor(M, dtype=dtype), reg=0.1)


def test_numpy_cost_with_torch_weights_is_refused(rng):
    # numpy M decides numpy out: a torch a (with its graph) would be dropped
    M = rng.random((5, 4))
    a = torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="M is a ndarray but a is a torch tensor"):
        so.solve(M, a, reg=0.1)
    with pytest.raises(TypeError, match="Ca is a ndarray but M is a torch tensor"):
        so.solve_gromov(np.eye(5), np.eye(4), torch.tensor(M), reg=0.1)
    # torch M takes numpy weights (converted to its dtype and device)
    res = so.solve(torch.tensor(M), np.full(5, 0.2), reg=0.1)
    assert isinstance(res.plan, torch.Tensor)


def test_float32_beyond_its_precision_warns_instead_of_stopping(rng):
    # max|M| / reg = 1e6: float32 cannot hold the marginals; the default tol
    # (capped at 1e-3) is not met and the solve says so, with a finite plan
    M = torch.tensor(rng.random((6, 5)), dtype=torch.float32)
    with pytest.warns(ConvergenceWarning):
        res = so.solve(M, reg=1e-6, max_iter=50)
    assert not res.converged and torch.isfinite(res.plan).all()
    # 1e8: reg is below the rounding of the cost (1.2e-7), refused
    with pytest.raises(ValueError, match="below the rounding"):
        so.solve(M, reg=1e-8, max_iter=50)
    # a cost that overflows in units of reg: a clear error, not NaN
    with pytest.raises(FloatingPointError, match="overflows"):
        so.solve(M * 3e38, reg=1e-3, tol=1e-3)


def test_huge_rho_is_finite(rng):
    M, a, b = _problem(rng)
    res = so.solve(M, a, b, reg=0.1, unbalanced=1e160)
    ref = so.solve(M, a, b, reg=0.1)
    assert res.converged
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-6)


@pytest.mark.parametrize("dtype, limit", [(np.float64, 1e10), (np.float32, 1e6)])
def test_huge_rho_with_unequal_masses_is_refused(rng, dtype, limit):
    # past rho / reg = limit the marginals are solved as hard constraints, which
    # unequal masses cannot meet: 1 x 1, masses 1 and 2 gave mass 2 (float64,
    # rho 1e10) or 1 (float32, rho 1e7) instead of the relaxed sqrt(2)
    M, one, two = (np.zeros((1, 1), dtype), np.ones(1, dtype), np.full(1, 2.0, dtype))
    below = so.solve(M, one, two, reg=0.1, unbalanced=1e-3 * limit)
    ref = so.solve(M.astype(float), one.astype(float), two.astype(float), reg=0.1,
                   unbalanced=1e-3 * limit)
    assert below.plan.sum() == pytest.approx(ref.plan.sum(), rel=1e-3)
    assert ref.plan.sum() == pytest.approx(np.sqrt(2), rel=1e-3)
    with pytest.raises(ValueError, match=r"unbalanced=.*different total mass"):
        so.solve(M, one, two, reg=0.1, unbalanced=10 * limit)
    with pytest.raises(ValueError, match="different total mass"):
        so.solve(M, one, two, reg=0.1, unbalanced=np.inf)
    # equal masses: the hard constraint is the limit, and it is taken
    C = rng.random((5, 4)).astype(dtype)
    res = so.solve(C, reg=0.1, unbalanced=10 * limit)
    assert res.converged
    np.testing.assert_allclose(res.plan, so.solve(C, reg=0.1).plan, atol=1e-6)
    # one side relaxed: feasible at any weight on the other
    semi = so.solve(M, one, two, reg=0.1, unbalanced=(np.inf, 1.0))
    assert semi.plan.sum() == pytest.approx(1.0, rel=1e-5)


def test_options_of_other_methods_are_refused(rng):
    # box= and max_nz= were silently ignored by the methods that do not use them
    M = rng.random((6, 5))
    with pytest.raises(ValueError, match="box=0.3 is only used by method='dbot'"):
        so.solve(M, reg=0.1, box=0.3)
    with pytest.raises(ValueError, match="max_nz=3 is only used by method='sparse'"):
        so.solve(M, reg=0.1, method="unbalanced", unbalanced=1.0, max_nz=3)


def test_exact_budget_warns_once(rng):
    # POT's own "numItermax reached" UserWarning came on top of skot's, and the
    # result said err=0.0, n_iter=0 for a plan 0.79 (L1) off its marginals
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = so.solve(rng.random((60, 50)), max_iter=5)
    assert not res.converged
    assert [w.category for w in caught] == [ConvergenceWarning]
    P = res.plan
    err = np.abs(P.sum(1) - 1 / 60).sum() + np.abs(P.sum(0) - 1 / 50).sum()
    assert res.err == pytest.approx(err) and err > 0.1 and res.n_iter == 5
    ok = so.solve(rng.random((60, 50)))
    assert ok.converged and ok.err < 1e-12


def test_sparse_float32_keeps_pots_threshold(rng):
    # POT's L-BFGS runs in float64: float32's default tol (1e-6) stopped it at
    # a 5e-3 marginal error, reported as max_nz binding
    M = rng.random((6, 5)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = so.solve(M, reg=0.1, method="sparse", max_nz=3)
    assert res.converged and res.err < 1e-4 and res.plan.dtype == np.float32


def test_bad_box_and_graphs_raise_clearly(rng):
    with pytest.raises(ValueError, match=r"box=\(lo, hi\): lo has shape \(5,\)"):
        so.solve(np.ones((4, 3)), reg=0.1, method="dbot",
                 box=(np.zeros(5), np.ones(5)))
    with pytest.raises(TypeError, match="Ca is required"):
        so.solve_gromov(None, np.eye(3))
    with pytest.raises(ValueError, match="different batches"):
        so.solve_gromov(np.ones((2, 4, 4)), np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="Cb must have shape"):
        so.solve_gromov(np.eye(3), np.ones(3))


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "partial", "dbot"])
def test_cuda_matches_cpu(rng, method):
    C = torch.tensor(_cosine_cost(rng, 300, 200), dtype=torch.float32)
    kw = {"unbalanced": 1.0} if method == "unbalanced" else {}
    if method == "partial":
        kw["mass"] = 0.5
    res_gpu = so.solve(C.cuda(), reg=0.01, method=method, max_iter=5000, **kw)
    res_cpu = so.solve(C, reg=0.01, method=method, max_iter=5000, **kw)
    assert res_gpu.plan.is_cuda and res_gpu.plan.dtype == torch.float32
    torch.testing.assert_close(res_gpu.plan.cpu(), res_cpu.plan, atol=1e-5, rtol=1e-3)


def test_verbose_shows_a_progress_bar(rng, capsys):
    M = rng.random((20, 15))
    quiet = so.solve(M, reg=0.05)
    loud = so.solve(M, reg=0.05, verbose=True)
    np.testing.assert_array_equal(quiet.plan, loud.plan)
    assert "sinkhorn" in capsys.readouterr().err


@pytest.mark.parametrize("geometry", ["kernel", "log"])
def test_warm_start_gives_the_same_plan(rng, geometry):
    M, a, b = _problem(rng, 30, 20)
    cold = so.solve(M, a, b, reg=0.1, geometry=geometry)
    near = so.solve(M, a, b, reg=0.2)  # potentials of a nearby problem
    warm = so.solve(M, a, b, reg=0.1, geometry=geometry, potentials_init=near.potentials)
    np.testing.assert_allclose(warm.plan, cold.plan, atol=1e-9)
    np.testing.assert_allclose(warm.plan.sum(1), a, atol=1e-9)


def test_float32_plan_marginals_match_the_reported_error(rng):
    C = torch.tensor(_cosine_cost(rng, 70, 50), dtype=torch.float32)
    res = so.solve(C, reg=0.01, max_iter=5000)
    P = res.plan.double()
    err = float((P.sum(1) - 1 / 70).abs().sum() + (P.sum(0) - 1 / 50).abs().sum())
    assert res.converged and err < 5 * max(res.err, 1e-6)


# ------------------------------------------------- speed-ups keep the answers
def test_unbalanced_translation_step_converges_fast_to_pot(rng):
    # small reg, large rho: plain unbalanced Sinkhorn contracts at rate
    # rho / (rho + reg) ~ 0.999 per iteration (over 10 000 iterations here); the
    # translation-invariant step removes that slow direction
    X, Y = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 0.3
    M = ot.dist(X, Y)
    M /= M.max()
    a, b = np.full(60, 1 / 60), np.full(50, 1.3 / 50)
    res = so.solve(M, a, b, reg=0.01, unbalanced=10.0, tol=1e-10, max_iter=5000)
    assert res.converged and res.n_iter < 1000
    ref = ot.solve(M, a, b, reg=0.01, unbalanced=10.0, tol=1e-14, max_iter=200000)
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-8)


@pytest.mark.parametrize("reg, rho", [(0.01, 1.0), (0.05, 1.0), (0.01, 0.1)])
def test_unbalanced_tol_is_the_plans_l1_accuracy(reg, rho):
    # KL-relaxed solves stop on the L1 change of the marginals that an
    # iteration's potential updates make (the balanced solves' L1 marginal
    # error, relaxed): stopped at tol, the plan is within tol (L1) of the
    # converged one (measured 0.07-0.9 tol), and no more iterations are spent
    # on potentials of rows that carry no mass (the largest potential change,
    # the former rule, took 1.3-2.5x as many iterations at tol 1e-3 here: 250
    # instead of 100 at reg 0.01, rho 1)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(300, 16, generator=g,
                                                  dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(
        x + 0.7 * torch.randn(300, 16, generator=g, dtype=torch.float64), dim=1)
    C = 1 - x @ y.T
    ref = so.solve(C, reg=reg, unbalanced=rho, tol=1e-14, max_iter=20000)
    for tol in (1e-3, 1e-4, 1e-6):
        res = so.solve(C, reg=reg, unbalanced=rho, tol=tol, max_iter=20000)
        assert res.converged and res.err < tol
        assert float((res.plan - ref.plan).abs().sum()) < tol
        assert res.n_iter < ref.n_iter
        if tol == 1e-3 and (reg, rho) == (0.01, 1.0):
            assert res.n_iter <= 150


def test_envelope_plan_gradient_is_fixed_potential_derivative(rng):
    # the envelope plan is differentiable with the potentials held fixed:
    # dP/dM = -P / reg entrywise, and <M, P> gets the gradient P
    M, a, b = _problem(rng)
    Mt = torch.tensor(M, requires_grad=True)
    res = so.solve(Mt, reg=0.2, grad="envelope")
    W = torch.tensor(rng.random(M.shape))
    (res.plan * W).sum().backward()
    P = res.plan.detach()
    torch.testing.assert_close(Mt.grad, -P * W / 0.2)
    Mt.grad = None
    so.solve(Mt, reg=0.2, grad="envelope").value_linear.backward()
    torch.testing.assert_close(Mt.grad, P)


def test_masked_plan_is_exactly_zero_and_value_linear_finite(rng):
    M, a, b = _problem(rng, 6, 6)
    mask = np.ones((6, 6), dtype=bool)
    mask[0, :3] = False
    mask[2, 4] = False
    res = so.solve(torch.tensor(M), reg=0.1, mask=torch.tensor(mask), grad="detach")
    assert float(res.plan[~torch.tensor(mask)].abs().max()) == 0.0
    assert res.value_linear == pytest.approx(float((res.plan * torch.tensor(M)).sum()))


def test_cost_with_nan_or_inf_is_rejected_after_the_fast_check():
    for bad in (np.nan, np.inf):
        M = np.ones((3, 3))
        M[1, 2] = bad
        with pytest.raises(ValueError, match="NaN|inf"):
            so.solve(M, reg=0.1)
    # a finite cost whose sum overflows float32 is still accepted
    M = torch.full((4, 4), 3e38, dtype=torch.float32)
    assert bool(torch.isfinite(so.solve(M, reg=1e38, max_iter=5).plan).all())


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "rows", "cols", "total",
                                    "dbot", "partial"])
def test_gibbs_flag_matches_the_plan(rng, method):
    # what the registry says about the plan's form holds at the returned potentials
    from skot.ot._registry import is_gibbs

    assert is_gibbs(method)
    M, a, b = _problem(rng)
    kw = {"unbalanced": {"unbalanced": 0.7}, "partial": {"mass": 0.6}}.get(method, {})
    res = so.solve(M, a, b, reg=0.3, method=method, tol=1e-12, max_iter=20000, **kw)
    f, g = res.potentials
    gibbs = np.exp((f[:, None] + g[None, :] - M) / 0.3) * a[:, None] * b[None, :]
    np.testing.assert_allclose(res.plan, gibbs, rtol=1e-6, atol=1e-12)
    assert not is_gibbs("exact") and not is_gibbs("sparse")


def test_row_minima_over_allowed_entries():
    # the Sinkhorn start: row minima over allowed entries without a masked copy
    from skot.ot._sinkhorn import _row_min

    g = torch.Generator().manual_seed(0)
    C = torch.rand(2, 30, 20, generator=g)
    forbid = torch.rand(2, 30, 20, generator=g) < 0.3
    forbid[0, 3] = True  # a row with nothing allowed
    forbid[1, 5] = False
    forbid[1, 5, C[1, 5].argmin()] = True  # a row whose minimum is forbidden
    ref = C.masked_fill(forbid, float("inf")).amin(-1)
    torch.testing.assert_close(_row_min(C, forbid), ref)
    assert torch.isinf(_row_min(C, forbid)[0, 3])
    torch.testing.assert_close(_row_min(C), C.amin(-1))


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "partial"])
def test_detached_value_is_computed_on_access_and_matches_eager(rng, method):
    M, a, b = _problem(rng)
    kw = {"unbalanced": {"unbalanced": 0.7}, "partial": {"mass": 0.6}}.get(method, {})
    Mt, at, bt = (torch.tensor(v) for v in (M, a, b))
    lazy = so.solve(Mt, at, bt, reg=0.3, method=method, grad="detach", **kw)
    eager = so.solve(Mt, at, bt, reg=0.3, method=method, grad="envelope", **kw)
    assert lazy._lazy_values is not None
    torch.testing.assert_close(lazy.value, eager.value)
    torch.testing.assert_close(lazy.value_linear, eager.value_linear)
    assert lazy._lazy_values is None
    res = so.solve(M, a, b, reg=0.3, method=method, grad="detach", **kw)
    assert res.value == pytest.approx(float(eager.value))


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "mixed"])
def test_flat_dot_in_chunks_equals_the_sum_of_products(monkeypatch, layout):
    # cuBLAS's dot takes a 32-bit length: longer inputs go in chunks (the
    # limit lowered here so that a small input takes that path)
    import skot.ot._linear as lin

    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(2, 37, 29, generator=g, dtype=torch.float64)
    if layout != "contiguous":
        A = A.T.contiguous().T
        B = B.T.contiguous().T if layout == "transposed" else B
    ref = (A * B).sum()
    torch.testing.assert_close(lin.flat_dot(A, B), ref)
    monkeypatch.setattr(lin, "_DOT_MAX", 100)
    torch.testing.assert_close(lin.flat_dot(A, B), ref)


@pytest.mark.parametrize("scale", [1e-12, 1e-25, 1e20])
def test_exact_plans_do_not_depend_on_the_cost_scale(rng, scale):
    # POT's network simplex compares reduced costs with an absolute epsilon:
    # costs at 1e-12 gave plans 14% above the optimum (7x at 1e-15), reported
    # as converged; skot scales the cost by a power of two first
    from scipy.optimize import linear_sum_assignment

    M = rng.random((30, 30))
    rows, cols = linear_sum_assignment(M)
    opt = M[rows, cols].mean()
    res = so.solve(M * scale)
    assert res.converged
    assert (res.plan * M).sum() == pytest.approx(opt, rel=1e-12)
    assert res.value == pytest.approx(opt * scale, rel=1e-12)
    f, g = res.potentials  # the duals are scaled back: f_i + g_j <= M_ij
    assert (f[:, None] + g[None, :] <= M * scale * (1 + 1e-9)).all()
    # a forbidden pair priced at 1e13 (what the exact method's mask error
    # advises) beside costs of order 1: scaling the cost down to max 1 had put
    # those under the simplex's epsilon (15% above the optimum)
    P = M.copy()
    P[rng.random(M.shape) < 0.3] = 1e13
    r, c = linear_sum_assignment(P)
    assert so.solve(P).value == pytest.approx(P[r, c].mean(), rel=1e-12)
    part = so.solve(M * scale, mass=0.5)
    ref = ot.partial.partial_wasserstein(ot.unif(30), ot.unif(30), M, m=0.5)
    assert (part.plan * M).sum() == pytest.approx((ref * M).sum(), rel=1e-9)


def test_result_repr_is_a_summary(rng):
    # the dataclass repr printed the whole plan and ran the lazy values
    M = rng.random((40, 30))
    res = so.solve(M, reg=0.1, grad="detach")
    text = repr(res)
    assert text.startswith("OTResult(method='sinkhorn'") and "status='converged'" in text
    assert len(text) < 200 and object.__getattribute__(res, "value") is None
    online = so.solve_sample(rng.normal(size=(5, 2)), rng.normal(size=(4, 2)), reg=0.5)
    assert repr(online).startswith("OnlineOTResult(method='sinkhorn', value=")
    assert object.__getattribute__(online, "_plan") is None  # never built


def _zero_weight_problem(rng, dtype, n=40, m=30):
    M = torch.tensor(_cosine_cost(rng, n, m), dtype=dtype)
    a = torch.tensor(rng.random(n), dtype=dtype)
    b = torch.tensor(rng.random(m), dtype=dtype)
    a[::4], b[1::5] = 0, 0  # every 4th row and every 5th column: weight 0
    return M, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", [{}, {"reg_type": "entropy"}, {"unbalanced": 1.0},
                                {"unbalanced": (1.0, math.inf)}, {"mass": 0.5},
                                {"method": "dbot"}])
def test_zero_weights_are_dead_rows_not_log_domain_steps(rng, monkeypatch, dtype, kw):
    # a zero weight's kernel row underflowed to 0, its log-sum was -inf, and
    # every half-iteration absorbed and took a log-domain step: the same
    # result 10-50x slower (400 x 400, reg 0.01: 0.76 s against 0.014 s with
    # the zeros at 1e-13). The rows and columns of weight 0 are now dead:
    # their kernel entries are 0 and their scalings held, so the kernel-domain
    # solve takes no log-domain step, and its plan and potentials are the
    # log domain's (whose potentials for weight 0 are the limit of a
    # vanishing weight)
    from skot.ot import _sinkhorn

    M, a, b = _zero_weight_problem(rng, dtype)
    steps = []
    lse_rows = _sinkhorn._lse_rows

    def spy(*args):
        steps.append(1)
        return lse_rows(*args)

    monkeypatch.setattr(_sinkhorn, "_lse_rows", spy)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    res = so.solve(M, a, b, reg=0.05, tol=tol, **kw)
    assert res.converged
    assert len(steps) <= 1  # the final potentials of the dead rows only
    monkeypatch.setattr(_sinkhorn, "_lse_rows", lse_rows)
    ref = so.solve(M, a, b, reg=0.05, tol=tol, geometry="log", **kw)
    assert float(res.plan[::4].abs().max()) == 0.0
    assert float(res.plan[:, 1::5].abs().max()) == 0.0
    atol = 1e-7 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(res.plan, ref.plan, atol=atol, rtol=0)
    f, g = res.potentials
    fr, gr = ref.potentials
    # balanced problems: potentials up to a constant (f + c, g - c)
    c = (f - fr)[1].item() if not (kw.get("unbalanced") or kw.get("mass")
                                   or kw.get("method")) else 0.0
    scale = 1e-6 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(f - c, fr, atol=scale, rtol=scale)
    torch.testing.assert_close(g + c, gr, atol=scale, rtol=scale)
    assert torch.isfinite(f).all() and torch.isfinite(g).all()


def test_zero_weights_autodiff_gradient_is_finite_and_the_log_domains(rng):
    # dead rows' zero kernel sums are replaced before the log, so no 0 / 0
    # reaches the backward pass
    M, a, b = _zero_weight_problem(rng, torch.float64)
    grads = []
    for geometry in ("kernel", "log"):
        Mg = M.clone().requires_grad_(True)
        with pytest.warns(ConvergenceWarning):  # a budget of 30 iterations
            res = so.solve(Mg, a, b, reg=0.1, max_iter=30, tol=1e-300,
                           geometry=geometry)
        (res.plan * torch.cos(3 * M)).sum().backward()
        grads.append(Mg.grad)
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=1e-6)


def test_zero_weights_keep_fgw_and_its_potentials(rng):
    # entropic FGW's inner solves get the zero weights' flag from the outer
    # problem's weight checks: same plan as with the log-domain inner solves
    Ca = torch.tensor(_cosine_cost(rng, 20, 20))
    Cb = torch.tensor(_cosine_cost(rng, 15, 15))
    Ca, Cb = (Ca + Ca.T) / 2, (Cb + Cb.T) / 2
    M = torch.tensor(_cosine_cost(rng, 20, 15))
    a, b = torch.rand(20, dtype=torch.float64), torch.rand(15, dtype=torch.float64)
    a[::3], b[::4] = 0, 0
    a, b = a / a.sum(), b / b.sum()
    res = so.solve_gromov(Ca, Cb, M, a, b, alpha=0.5, reg=0.05)
    assert res.converged and float(res.plan[::3].abs().max()) == 0.0
    # against the flag unknown (read in the inner solves) and every zero
    # replaced by 1e-300 (no dead rows: the former path)
    ref = so.solve_gromov(Ca, Cb, M, a.clamp_min(1e-300), b.clamp_min(1e-300),
                          alpha=0.5, reg=0.05)
    torch.testing.assert_close(res.plan, ref.plan, atol=1e-9, rtol=0)


def test_unbalanced_float32_translation_step_below_rounding_is_dropped():
    # KL-unbalanced float32 with masses 12 and 18 (rho 1, reg 0.2): the
    # translation step, once within a few roundings of the potentials,
    # alternated by one ulp and held the moved mass above tol; 18 of 60 such
    # problems ran to max_iter. Dropping a step below rounding converges all,
    # to the float64 plan
    for seed in range(20):
        rng = np.random.default_rng(seed)
        M = torch.tensor(rng.random((30, 40)) * 3, dtype=torch.float32)
        a = torch.tensor(rng.random(30), dtype=torch.float32)
        b = torch.tensor(rng.random(40), dtype=torch.float32)
        a, b = a / a.sum() * 12, b / b.sum() * 18
        res = so.solve(M, a, b, reg=0.2, unbalanced=1.0, max_iter=300)
        assert res.converged, seed
        ref = so.solve(M.double(), a.double(), b.double(), reg=0.2, unbalanced=1.0,
                       tol=1e-12)
        assert float((res.plan.double() - ref.plan).abs().sum()) < 1e-4 * 18


def test_unbalanced_without_reg_says_what_to_do():
    # POT's ot.solve(M, unbalanced=rho) solves reg=None by majorisation-
    # minimisation (sublinear: its 1000 default iterations left a 50 x 60 plan
    # 0.14 L1 from its limit); skot refuses it with the way out
    M = np.random.default_rng(0).random((5, 6))
    with pytest.raises(ValueError, match=r"reg=None; exact KL-unbalanced OT is not "
                       r"offered .* use a small reg"):
        so.solve(M, unbalanced=1.0)


def test_partial_moving_a_whole_side_converges_as_sinkhorn(rng):
    # mass = sum a: P 1 <= a with total mass sum a is P 1 = a. Solved with
    # both inequalities and the total mass, mass = sum a = sum b = 1 ran to
    # max_iter (1000 iterations, error 3.7e-4 at reg 0.1); with the equality
    # it converges in 25 (853 to tol 1e-11 before), to the same plan
    M = rng.random((40, 50))
    a, b = rng.random(40), rng.random(50)
    a, b = a / a.sum(), b / b.sum()
    for reg in (0.1, 0.02):
        res = so.solve(M, a, b, reg=reg, mass=1.0)
        assert res.converged and res.n_iter < 300
        ref = so.solve(M, a, b, reg=reg, tol=1e-12)
        np.testing.assert_allclose(res.plan, ref.plan, atol=1e-8)
    # one side moved whole (sum b = 1.5): POT's entropic partial (plain
    # entropy), run long
    m = float(a.sum())  # POT refuses a mass above sum a by a rounding
    res = so.solve(M, a, 1.5 * b, reg=0.1, mass=m, reg_type="entropy", tol=1e-11)
    assert res.converged and res.n_iter < 300
    ref = ot.partial.entropic_partial_wasserstein(a, 1.5 * b, M, reg=0.1, m=m,
                                                  numItermax=100000, stopThr=1e-14)
    np.testing.assert_allclose(res.plan, ref, atol=1e-7)
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-10)


def test_float32_default_tol_allows_for_long_sums():
    # the L1 marginal error of a float32 plan levels off near eps n / 120
    # (sums over the n rows round): at 20000 rows the former default,
    # max(1e-6, eps max|M| / reg), was below it and the solve ran to max_iter
    # (the zero-shot classifiers with a class prior: 21 s at 15k rows, 101 s
    # at 30k). The default now includes eps max(n, m) / 50
    rng = np.random.default_rng(0)
    n, m, d = 20000, 100, 64
    T = rng.normal(size=(m, d))
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    X = T[rng.integers(0, m, n)] + 0.7 * rng.normal(size=(n, d)) / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    C = torch.tensor(1 - X @ T.T, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = so.solve(C, reg=0.05, max_iter=2000)
    eps = torch.finfo(torch.float32).eps
    assert res.converged and float(res.err) <= eps * n / 50
    # the plan meets the marginals to that tolerance, in float64 arithmetic
    P = res.plan.double()
    err = (P.sum(1) - 1 / n).abs().sum() + (P.sum(0) - 1 / m).abs().sum()
    assert float(err) < 2 * eps * n / 50


@pytest.mark.parametrize("kwargs", [dict(mass=0.5), dict(reg=0.1, method="sparse",
                                                         max_nz=3)])
def test_mask_refused_where_the_backend_cannot_apply_it(rng, kwargs):
    # exact partial OT (POT's network simplex) and "sparse" (POT's smooth
    # dual) never saw the mask: their plans put mass on forbidden pairs
    M, a, b = _problem(rng, 5, 6)
    mask = np.ones((5, 6), bool)
    mask[1:, 1:] = rng.random((4, 5)) > 0.4
    with pytest.raises(ValueError, match="mask= is not supported"):
        so.solve(M, a, b, mask=mask, **kwargs)


@pytest.mark.parametrize("box", ["hi_below", "lo_above", "delta_vs_b"])
def test_dbot_infeasible_box_is_a_value_error(rng, box):
    # the columns must receive sum a; a box that cannot hold it ran to
    # max_iter and returned rows that missed a, with only a warning
    M, a, b = _problem(rng, 4, 5)
    kw = {"hi_below": dict(box=(0 * b, 0.5 * b)), "lo_above": dict(box=(1.5 * b, 3 * b)),
          "delta_vs_b": dict(b=3 * b, box=0.5)}[box]
    with pytest.raises(ValueError, match="box is infeasible"):
        so.solve(M, a, kw.pop("b", b), reg=0.1, method="dbot", **kw)
    with pytest.raises(ValueError, match="NaN"):
        so.solve(M, a, b, reg=0.1, method="dbot", box=(b * np.nan, b))
    # the limits stay feasible: box=[0, inf) and lo = hi = a's mass spread
    so.solve(M, a, a.sum() * b, reg=0.1, method="dbot", box=(0 * b, b + np.inf))
    so.solve(M, a, b, reg=0.1, method="dbot", box=(b, b))


@pytest.mark.parametrize("reg", [1e-50, 1e39])
def test_reg_outside_float32_range_is_a_value_error(rng, reg):
    # float32 cannot hold reg: 1e-50 raised torch's RuntimeError ("value
    # cannot be converted to type float without overflow"), 1e39 returned a
    # NaN value reported as converged
    M = rng.random((4, 5)).astype(np.float32)
    for call in (lambda: so.solve(M, reg=reg), lambda: so.solve(M, reg=reg, method="rows"),
                 lambda: so.solve_gromov(M @ M.T, np.eye(5, dtype=np.float32), M, reg=reg),
                 lambda: so.solve_sample(M[:, :2], M[:, 2:4], reg=reg)):
        with pytest.raises(ValueError, match=r"reg=.* is outside the range of torch.float32"):
            call()
    # float64 holds it
    assert np.isfinite(so.solve(M.astype(np.float64), reg=1e39).value)


def test_exact_with_costs_all_below_minus_one(rng):
    # POT's network simplex sizes its artificial arcs from the largest cost:
    # every cost below -1 was "infeasible", and skot returned a zero plan
    # with value 0 ("max_iter reached"); a constant shift of M does not
    # change a balanced plan
    M, a, b = _problem(rng, 5, 6)
    M = -5.0 - M
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = so.solve(M, a, b)
        part = so.solve(M, a, b, mass=0.5)
    ref = ot.solve(M + 10, a, b)
    assert res.converged
    assert res.value == pytest.approx(ref.value - 10, abs=1e-12)
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-15)
    # POT's centred duals of the shifted problem, shifted back by half each
    np.testing.assert_allclose(res.potentials[0], ref.potentials[0] - 5, atol=1e-12)
    np.testing.assert_allclose(res.potentials[1], ref.potentials[1] - 5, atol=1e-12)
    assert part.value == pytest.approx(so.solve(M + 10, a, b, mass=0.5).value - 5,
                                       abs=1e-12)
    assert so.solve(np.full((3, 3), -5.0)).value == pytest.approx(-5.0)


def test_result_with_lazy_parts_pickles(rng):
    # grad="detach" values and balanced entropic FGW potentials are computed
    # on first access by closures, which did not pickle (e.g. a result
    # returned by a joblib worker)
    import pickle

    M, a, b = _problem(rng, 4, 5)
    for res in (so.solve(M, a, b, reg=0.1, grad="detach"),
                so.solve(torch.as_tensor(M), reg=0.1, grad="detach"),
                so.solve_gromov(M @ M.T, np.eye(5), M, reg=0.1)):
        back = pickle.loads(pickle.dumps(res))
        assert float(back.value) == float(res.value)
        np.testing.assert_array_equal(np.asarray(back.plan), np.asarray(res.plan))
        for p, q in zip(back.potentials, res.potentials):
            np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


def test_batched_mass_mismatch_names_the_problem_that_mismatches(rng):
    # the message gave the first problem's totals (1 and 1) when another one
    # of the batch was off
    M, a, b = _problem(rng, 4, 5)
    with pytest.raises(ValueError, match=r"sum a = 2, sum b = 1\b"):
        so.solve(np.stack([M, M]), np.stack([a, 2 * a]), np.stack([b, b]), reg=0.1)
