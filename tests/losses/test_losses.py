"""Loss identities and references."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning

import skot.losses as L


def _pair(n=12, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    y = F.normalize(x + 0.5 * torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    return x, y


def _open_clip_loss(x, y, logit_scale):
    # open_clip.ClipLoss, written out: symmetric CE on logit_scale * x @ y.T
    logits = logit_scale * x @ y.T
    labels = torch.arange(len(x))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_infonce_equals_open_clip_clip_loss():
    x, y = _pair()
    for reg in (0.01, 0.07, 0.5):
        torch.testing.assert_close(L.infonce_loss(x, y, reg=reg),
                                   _open_clip_loss(x, y, 1 / reg))


@pytest.mark.parametrize("method", ["rows", "cols"])
@pytest.mark.parametrize("grad", ["envelope", "autodiff"])
def test_rows_only_iot_equals_infonce(method, grad):
    # value and gradient: with grad="envelope" the one-sided plan used to carry
    # the fixed-potential gradient, which keeps only the positives' pull
    x, y = _pair()
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    la = L.iot_loss(xa, y, reg=0.1, method=method, grad=grad)
    lb = L.infonce_loss(xb, y, reg=0.1)
    torch.testing.assert_close(la, lb)
    la.backward()
    lb.backward()
    torch.testing.assert_close(xa.grad, xb.grad)


@pytest.mark.parametrize("method", ["sinkhorn", "total", "unbalanced", "dbot", "rows"])
def test_float32_loss_values_match_float64_at_clip_temperature(method):
    # reg 0.01: plan entries below float32's range used to count as -log(tiny)
    # = 87 each; -log P of the positives now comes from the potentials
    g = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    v64 = L.iot_loss(x, y, reg=0.01, method=method)
    v32 = L.iot_loss(x.float(), y.float(), reg=0.01, method=method)
    assert float(v32) == pytest.approx(float(v64), rel=1e-4)


@pytest.mark.parametrize("loss", ["infonce", "iot", "fgw", "ncu"])
def test_bad_batches_are_clear_errors(loss):
    fn = {"infonce": L.infonce_loss, "iot": L.iot_loss, "fgw": L.fgw_loss,
          "ncu": L.ncu_loss}[loss]
    x, y = _pair(n=5)
    with pytest.raises(ValueError, match="same shape"):
        fn(x, y[:4])
    with pytest.raises(ValueError, match="reg must be a finite float > 0"):
        fn(x, y, reg=0.0)
    with pytest.raises(ValueError, match="reg must be a finite float > 0"):
        fn(x, y, reg=-0.1)
    xn = x.clone()
    xn[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(xn, y)
    with pytest.raises(ValueError, match=r"target must have shape \(5, 5\)"):
        fn(x, y, target=torch.eye(4, dtype=x.dtype) / 4)
    with pytest.raises(ValueError, match="coupling"):
        fn(x, y, target=torch.eye(5, dtype=x.dtype))  # sums to 5, not 1
    with pytest.raises(ValueError, match="coupling"):
        fn(x, y, target=(torch.eye(5, dtype=x.dtype) - 0.05) / 4)  # negative
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        fn(x[0], y[0])


def test_ncu_options_and_batch_size():
    x, y = _pair(n=5)
    with pytest.raises(ValueError, match="at least 2"):
        L.ncu_loss(x[:1], y[:1])
    with pytest.raises(ValueError, match="gamma"):
        L.ncu_loss(x, y, gamma=2.0)
    with pytest.raises(ValueError, match="noise_ratio"):
        L.ncu_loss(x, y, noise_ratio=1.5)
    with pytest.raises(ValueError, match="noise_ratio"):
        L.ncu_loss(x, y, noise_ratio=-0.1)
    with pytest.raises(ValueError, match="ot_reg"):
        L.ncu_loss(x, y, ot_reg=0.0)
    # a string failed in a comparison ("'<=' not supported between ..."),
    # naming neither the parameter nor the value
    with pytest.raises(TypeError, match="gamma must be a float, got '0.3'"):
        L.ncu_loss(x, y, gamma="0.3")
    with pytest.raises(TypeError, match="noise_ratio"):
        L.ncu_loss(x, y, noise_ratio=None)


def test_envelope_iot_equals_unrolled_kl_and_has_plan_gradient():
    x, y = _pair()
    xe = x.clone().requires_grad_(True)
    le = L.iot_loss(xe, y, reg=0.1)
    xa = x.clone().requires_grad_(True)
    la = L.iot_loss(xa, y, reg=0.1, grad="autodiff")
    torch.testing.assert_close(le, la, atol=1e-4, rtol=1e-4)  # loss tol: 1e-5 L1
    le.backward()
    la.backward()
    torch.testing.assert_close(xe.grad, xa.grad, atol=1e-3, rtol=1e-3)


def test_iot_at_huge_reg_is_uniform_plan():
    x, y = _pair()
    n = len(x)
    # plan -> a b^T: KL(I/n || 1/n^2) = log n
    assert float(L.iot_loss(x, y, reg=1e6)) == pytest.approx(math.log(n), rel=1e-5)


def test_total_mass_loss_is_global_softmax():
    x, y = _pair()
    n, reg = len(x), 0.2
    logits = (x @ y.T) / reg
    ref = -(torch.diagonal(logits) - torch.logsumexp(logits.flatten(), 0)).mean() \
        - math.log(n)
    torch.testing.assert_close(L.iot_loss(x, y, reg=reg, method="total"), ref)


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_every_loss_is_finite_and_differentiable(name):
    x, y = _pair(dtype=torch.float32)
    x = x.clone().requires_grad_(True)
    loss = L.OTContrastiveLoss(name, reg=0.1, uniformity=0.1)(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_loss_prefers_aligned_pairs():
    x, y = _pair()
    for name in ("infonce", "iot", "dbot", "fgw", "ncu"):
        good = L.OTContrastiveLoss(name, reg=0.1)(x, x)
        bad = L.OTContrastiveLoss(name, reg=0.1)(x, y.flip(0))
        assert float(good) < float(bad), name


def test_target_plan_groups_duplicates():
    y = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0]])
    T = L.target_plan(y_raw=y)
    np.testing.assert_allclose(T.sum(1).numpy(), 1 / 3)
    np.testing.assert_allclose(T.sum(0).numpy(), 1 / 3)
    assert T[0, 1] > 0 and T[0, 2] == 0


def test_alignment_regulariser_is_zero_for_identical_clouds_shifted_otherwise():
    x, y = _pair()
    same = L.alignment_regulariser(x, x, reg=0.05)
    diff = L.alignment_regulariser(x, -x, reg=0.05)
    assert float(diff) > float(same)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="loss='nope'"):
        L.OTContrastiveLoss("nope")


@pytest.mark.parametrize("name", ["iot", "infonce", "ncu"])
def test_module_backward_on_a_batch_too_small_for_the_loss(name):
    # a training loop's last batch of one pair: the module's 0 was a constant
    # and backward() failed ("element 0 of tensors does not require grad")
    x, y = _pair()
    xg, yg = x[:1].clone().requires_grad_(True), y[:1].clone().requires_grad_(True)
    loss = L.OTContrastiveLoss(name)(xg, yg)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(xg.grad, torch.zeros_like(xg))
    assert torch.equal(yg.grad, torch.zeros_like(yg))
    with torch.no_grad():
        assert not L.OTContrastiveLoss(name)(xg, yg).requires_grad


@pytest.mark.parametrize("kwargs, match", [
    ({"align_weight": -1.0}, "align_weight"),
    ({"align_weight": float("nan")}, "align_weight"),
    ({"uniformity": -0.5}, "uniformity"),
    ({"reg": 0.0}, "reg"),
    ({"align_form": "nope", "align_weight": 0.0}, "align_form"),
])
def test_module_hyperparameters_are_checked(kwargs, match):
    # a negative or NaN align_weight was skipped silently (the term is added
    # when align_weight > 0), and reg=0 passed on batches of one pair
    x, y = _pair()
    with pytest.raises(ValueError, match=match):
        L.OTContrastiveLoss("iot", **kwargs)


@pytest.mark.parametrize("loss, options, exc, match", [
    ("iot", {"max_iter": 0}, ValueError, "max_iter"),
    ("unbalanced", {"unbalanced": -1.0}, ValueError, "unbalanced"),
    ("iot", {"grad": "detach"}, ValueError, "grad"),
    ("fgw", {"alpha": 2.0}, ValueError, "alpha"),
    ("ncu", {"noise_ratio": 1.5}, ValueError, "noise_ratio"),
    ("ncu", {"gamma": "0.3"}, TypeError, "gamma"),
    ("iot", {"bogus": 1}, TypeError, "bogus"),
])
def test_module_options_are_checked_at_construction(loss, options, exc, match):
    # they were read, and refused, only in the first training step
    with pytest.raises(exc, match=match):
        L.OTContrastiveLoss(loss, options=options)


def test_module_construction_leaves_the_global_random_state():
    state = torch.random.get_rng_state()
    for loss in L.LOSSES:
        L.OTContrastiveLoss(loss, uniformity=0.1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_target_plan_refuses_non_finite_embeddings():
    # a NaN row had been nobody's duplicate: its positives silently itself alone
    y = torch.tensor([[1.0, 0.0], [float("nan"), 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="y_raw contains NaN"):
        L.target_plan(y_raw=y)
    with pytest.raises(ValueError, match="x_raw contains NaN or inf"):
        L.target_plan(x_raw=torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]))


def test_envelope_gradient_matches_finite_differences():
    # d/dx of the envelope-based IOT loss vs central differences of the loss value
    x, y = _pair(n=8, d=4)
    xg = x.clone().requires_grad_(True)
    L.iot_loss(xg, y, reg=0.2).backward()
    g = torch.Generator().manual_seed(1)
    h = 1e-5
    for _ in range(3):
        v = torch.randn(x.shape, generator=g, dtype=x.dtype)
        fd = (L.iot_loss(x + h * v, y, reg=0.2) - L.iot_loss(x - h * v, y, reg=0.2)) / (2 * h)
        assert float((xg.grad * v).sum()) == pytest.approx(float(fd), rel=1e-3, abs=1e-6)


def test_iot_plan_is_uniform_at_huge_reg():
    # the inner plan itself (not only the loss value) tends to a b^T
    from skot.ot import solve

    x, y = _pair()
    n = len(x)
    res = solve(1 - x @ y.T, reg=1e6, grad="envelope")
    torch.testing.assert_close(res.plan, torch.full((n, n), 1 / n**2, dtype=x.dtype),
                               atol=1e-8, rtol=1e-5)


def test_barycenter_alignment_regulariser():
    x, _ = _pair(n=10)
    same = L.alignment_regulariser(x, x, reg=0.2, form="barycenter")
    g = torch.Generator().manual_seed(3)
    far = F.normalize(torch.randn(10, 6, generator=g, dtype=x.dtype) + 3, dim=1)
    xr = x.clone().requires_grad_(True)
    shifted = L.alignment_regulariser(xr, far, reg=0.2, form="barycenter")
    assert float(shifted.detach()) > float(same)
    shifted.backward()
    assert torch.isfinite(xr.grad).all() and xr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="form"):
        L.alignment_regulariser(x, x, form="nope")


def test_relaxed_losses_have_envelope_gradient_with_negatives():
    # d loss / d C = (T - P) / eps: with the total-mass set P = global softmax
    x, y = _pair()
    n, reg = len(x), 0.1
    C = (1 - x @ y.T).detach().requires_grad_(True)
    xs = x.clone().requires_grad_(True)
    loss = L.iot_loss(xs, y, reg=reg, method="total")
    (gx,) = torch.autograd.grad(loss, xs)
    P = torch.softmax(-C.detach().flatten() / reg, 0).reshape(n, n)
    T = torch.eye(n, dtype=x.dtype) / n
    # C = 1 - x y^T  ->  dL/dx = -(dL/dC) y
    torch.testing.assert_close(gx, -((T - P) / reg) @ y, atol=1e-6, rtol=1e-5)
    grads = {}
    for method in ("total", "unbalanced", "dbot"):
        xs = x.clone().requires_grad_(True)
        (grads[method],) = torch.autograd.grad(
            L.iot_loss(xs, y, reg=reg, method=method), xs)
    # different constraint sets -> different gradients (not only the T/eps pull)
    assert not torch.allclose(grads["total"], grads["unbalanced"], atol=1e-4)
    assert not torch.allclose(grads["total"], grads["dbot"], atol=1e-4)


@pytest.mark.parametrize("method", ["sinkhorn", "total", "unbalanced", "dbot"])
@pytest.mark.parametrize("dense_target", [False, True])
def test_envelope_losses_equal_their_plans_written_out(method, dense_target):
    # value -sum T log P + sum T log T (averaged over C and C^T for DBOT) and
    # gradient (T - P) / eps in C, from the solver's plans; the backward
    # scales by the incoming gradient (here 3)
    from skot.ot import solve

    x, y = _pair(n=10, d=5)
    T = L.target_plan(n=10, dtype=x.dtype)
    if dense_target:  # rows 0 and 1 share their caption
        y = y.clone()
        y[1] = y[0]
        T = L.target_plan(y_raw=y)
    reg = 0.1
    xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = L.iot_loss(xs, ys, reg=reg, method=method, target=T if dense_target else None)
    (3 * loss).backward()
    C = 1 - x @ y.T
    kw = {"unbalanced": 1.0} if method == "unbalanced" else {}
    dirs = [(C, T)] + ([(C.T, T.T)] if method == "dbot" else [])
    value, W = 0.0, torch.zeros_like(C)
    for k, (M, Tm) in enumerate(dirs):
        # the loss's own solves: tolerance 1e-5 in float64
        res = solve(M, reg=reg, method=method, tol=1e-5,
                    max_iter=2000 if method == "sinkhorn" else None, **kw)
        P = res.plan
        if method == "sinkhorn":  # balanced: the envelope identity
            nll = ((M * Tm).sum() - res.value) / reg + 2 * math.log(len(M))
        else:
            nll = -(Tm * P.log()).sum()
        value = value + (nll + (Tm * Tm.clamp_min(1e-300).log()).sum()) / len(dirs)
        Wk = (Tm - P) / (reg * len(dirs))
        W = W + (Wk if k == 0 else Wk.T)
    torch.testing.assert_close(loss.detach(), value, rtol=1e-7, atol=1e-9)
    # C = 1 - x y^T: dL/dx = -W y, dL/dy = -W^T x
    torch.testing.assert_close(xs.grad, -3 * W @ y, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ys.grad, -3 * W.T @ x, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("d", [5, 8])
@pytest.mark.parametrize("unbalanced", [None, 1.0])
def test_fgw_loss_low_rank_graphs_match_dense(unbalanced, d):
    # d <= n: factored graphs in the solver and the written-out gradient
    # (_fgw_cosine_grad; unbalanced with n < 4 d, the graphs kept dense for
    # the marginal terms); zero-padding the features to d + 20 > n takes the
    # dense path (dense graphs, autograd through the pairing)
    x, y = _pair(n=20, d=d)
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    la = L.fgw_loss(xa, ya, reg=0.1, alpha=0.3, unbalanced=unbalanced)
    la.backward()
    pad = torch.zeros(20, 20, dtype=x.dtype)
    xb = torch.cat([x, pad], 1).requires_grad_(True)
    yb = torch.cat([y, pad], 1).requires_grad_(True)
    lb = L.fgw_loss(xb, yb, reg=0.1, alpha=0.3, unbalanced=unbalanced)
    lb.backward()
    torch.testing.assert_close(la, lb)
    # balanced: the factored pairing leaves out terms whose pairing with
    # W = (T - P) / eps is zero up to the plan's marginal error (1e-5)
    tol = dict(atol=1e-5, rtol=1e-4) if unbalanced is None else {}
    torch.testing.assert_close(xa.grad, xb.grad[:, :d], **tol)
    torch.testing.assert_close(ya.grad, yb.grad[:, :d], **tol)


@pytest.mark.parametrize("d", [4, 6])
@pytest.mark.parametrize("unbalanced", [None, 0.5])
@pytest.mark.parametrize("soft", [False, True])
def test_fgw_loss_gradient_is_the_envelope_gradient_through_both_graphs(soft, unbalanced,
                                                                      d):
    # reference: the solved plan P, W = (T - P) / eps and autograd through the
    # full linearised cost G = (1 - alpha) C + 2 alpha L(Ca, Cb) (x) P, dense
    # (its marginal terms from P's own marginals); the loss writes this
    # gradient out for cosine graphs (d < n), with the default target I / n or
    # a given one (here with uniform marginals), balanced or not (then P's
    # marginals differ from T's and the marginal terms count: from factored
    # graphs at n = 4 d, from graphs kept dense at n < 4 d)
    from skot.ot import solve_gromov
    from skot.ot._gromov import _gw_tensor

    x, y = _pair(n=16, d=d, seed=3)
    alpha, reg, n = 0.4, 0.1, 16
    T = None
    if soft:
        T = (torch.eye(n, dtype=x.dtype) + torch.roll(torch.eye(n, dtype=x.dtype), 1, 1)
             ) / (2 * n)
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = L.fgw_loss(xa, ya, reg=reg, alpha=alpha, max_iter=50, target=T,
                      unbalanced=unbalanced)
    loss.backward()
    res = solve_gromov(1 - x @ x.T, 1 - y @ y.T, 1 - x @ y.T, alpha=alpha, reg=reg,
                       max_iter=50, inner_tol=1e-5, tol=1e-5 / n**0.5,
                       unbalanced=unbalanced)
    P = res.plan.detach()
    if unbalanced is not None:
        assert (P.sum(1) - 1 / n).abs().max() > 1e-3  # the marginal terms matter
    T = torch.eye(n, dtype=x.dtype) / n if T is None else T
    torch.testing.assert_close(loss.detach(),
                               (T * torch.log(T.clamp_min(1e-300) / P)).sum())
    W = (T - P) / reg
    xb, yb = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    G = (1 - alpha) * (1 - xb @ yb.T) + 2 * alpha * _gw_tensor(
        (1 - xb @ xb.T)[None], (1 - yb @ yb.T)[None], P[None])[0]
    (W * G).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ya.grad, yb.grad, atol=1e-5, rtol=1e-4)
    # the graphs matter: alpha = 0 gives another gradient
    x0 = x.clone().requires_grad_(True)
    L.fgw_loss(x0, y, reg=reg, alpha=0.0, max_iter=50).backward()
    assert not torch.allclose(x0.grad, xa.grad, atol=1e-3)


def test_default_target_closed_forms_equal_explicit_identity():
    x, y = _pair()
    T = torch.eye(len(x), dtype=x.dtype) / len(x)
    for name in ("infonce", "iot", "iot_total", "unbalanced", "dbot", "fgw", "ncu"):
        func, kw = L.LOSSES[name]
        torch.testing.assert_close(func(x, y, reg=0.1, **kw),
                                   func(x, y, reg=0.1, target=T, **kw))


def test_ncu_flags_noisy_pairs_and_sends_them_to_the_dustbin(monkeypatch):
    # 3 of 12 pairs swapped: with noise_ratio=0.25 exactly those are flagged
    # (lowest image->text confidence), and their soft target lives on the
    # dustbin and on other captions, never on their own caption
    x, _ = _pair(n=12, d=12, seed=3)
    y = x.clone()
    y[[0, 1, 2]] = y[[1, 2, 0]]
    # (with the diagonal target the forbidden pairs are +inf in the cost
    # handed to the solver, instead of a mask)
    seen = []
    import skot.losses._functional as LF

    real = LF._solve_inf_cost

    def spy(cost, a, b, **kw):
        seen.append(torch.isfinite(cost))
        return real(cost, a, b, **kw)

    monkeypatch.setattr(LF, "_solve_inf_cost", spy)
    L.ncu_loss(x, y, reg=0.1, noise_ratio=0.25)
    img_mask, txt_mask = seen
    assert img_mask[:, 12].tolist() == [True] * 3 + [False] * 9
    assert not img_mask[[0, 1, 2], [0, 1, 2]].any()
    assert img_mask[3:, :12].all()
    # caption side (one caption per image): the same pairs use the dustbin
    assert txt_mask[:, 12].tolist() == [True] * 3 + [False] * 9


def test_ncu_caption_side_solve_is_warm_started_from_the_image_side(monkeypatch):
    # the caption side's masked problem is the image side's transposed but for
    # the dustbin column: started from the image side's potentials (swapped)
    # it takes fewer iterations and lands within the solve's tolerance of the
    # cold-started plan (float64: tol 1e-5, an L1 marginal error)
    import skot.losses._functional as LF

    x, y = _pair(n=128, d=16, seed=2)
    real, calls = LF._solve_inf_cost, []  # the diagonal target's solve

    def spy(cost, a, b, **kw):
        res = real(cost, a, b, **kw)
        calls.append((cost.clone(), a, b, dict(kw), res.n_iter, res.plan.clone()))
        return res

    monkeypatch.setattr(LF, "_solve_inf_cost", spy)
    L.ncu_loss(x, y, reg=0.05, ot_reg=0.05, noise_ratio=0.25)
    (cost0, _, _, kw0, _, _), (cost, a, b, kw1, warm_iter, warm_plan) = calls
    # the image side's: the solver's own cold start (row minima of the cost,
    # 0), given in O(n)
    f0, g0 = kw0["potentials_init"]
    torch.testing.assert_close(f0, cost0.amin(1), rtol=1e-15, atol=0)
    assert not g0.any()
    f, g = kw1["potentials_init"]
    assert f.shape == (128,) and g.shape == (129,)
    cold = real(cost, a, b, **dict(kw1, potentials_init=None))
    assert warm_iter < cold.n_iter
    assert float((warm_plan - cold.plan).abs().sum()) < 4e-5


def test_ncu_with_duplicate_captions_and_no_dustbin_row_is_feasible():
    # every row shares one caption: text-side rows all keep clean images, so
    # nobody uses the dustbin there; the solve drops that column instead of
    # failing on an infeasible mask
    x, _ = _pair(n=10, d=4)
    y = torch.ones(10, 4, dtype=x.dtype) / 2
    T = L.target_plan(y_raw=y)
    out = L.ncu_loss(x, y, reg=0.1, noise_ratio=0.2, target=T)
    assert torch.isfinite(out)


@pytest.mark.parametrize("duplicates", [False, True])
def test_ncu_gradient_equals_autograd_through_the_augmented_logits(duplicates):
    # ncu_loss assembles d loss / dS by hand (softmax - Y) / reg, with the
    # dustbin column's share sent to each row's hardest negative; reference:
    # autograd through [S, hardest negative] / reg and log_softmax, Y fixed
    from skot.losses._functional import _ncu_soft_target

    x, y = _pair(n=24, d=5, seed=4)
    perm = torch.arange(24)
    perm[:6] = perm[:6].flip(0)  # some wrong pairs
    y = y[perm]
    T = None
    if duplicates:
        y = y[torch.arange(24) % 8]  # 8 captions, 3 images each
        T = L.target_plan(None, y)
    reg, kw = 0.05, dict(noise_ratio=0.25, gamma=0.3, ot_reg=0.05)
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss = L.ncu_loss(xa, ya, reg=reg, target=T, **kw)
    loss.backward()

    xb, yb = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    S = xb @ yb.T
    n = 24
    pos = T > 0 if T is not None else torch.eye(n, dtype=torch.bool)
    p_pos = (torch.softmax(S.detach() / reg, 1) * pos).sum(1)
    noisy = torch.zeros(n, dtype=torch.bool)
    noisy[torch.argsort(p_pos)[:6]] = True
    ref, pots = 0.0, None
    for s, pos_s, flag in ((S, pos, noisy[:, None]), (S.T, pos.T, noisy[None, :])):
        forbid, good = pos_s & flag, pos_s & ~flag
        dust = ~good.any(1)
        hard = s.masked_fill(pos_s, -math.inf).max(1, keepdim=True).values
        with torch.no_grad():
            aug = torch.cat([s, hard], 1).detach() / reg
            # the caption side warm-started from the image side, as in the loss
            Y, _, pots = _ncu_soft_target(aug, reg, forbid, good, dust, noisy, False,
                                          6, gamma=0.3, ot_reg=0.05, init=pots)
        logp = torch.log_softmax(torch.cat([s, hard], 1) / reg, 1)
        ref = ref + 0.5 * (torch.xlogy(Y, Y).sum(1) - (Y * logp).sum(1)).mean()
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ya.grad, yb.grad)


@pytest.mark.gpu
def test_cuda_unbalanced_fgw_with_kept_graphs_matches_cpu(device="cuda"):
    # n < 4 d: the batch graphs are formed once and kept (their own route in
    # the solver and in the gradient); the test below has n = 8 d (factored)
    x, y = _pair(n=64, d=32, seed=1, dtype=torch.float32)
    out = []
    for dev in ("cpu", device):
        xd = x.to(dev, copy=True).requires_grad_(True)
        yd = y.to(dev, copy=True).requires_grad_(True)
        loss = L.fgw_loss(xd, yd, reg=0.05, unbalanced=1.0)
        loss.backward()
        out.append((loss.detach().cpu(), xd.grad.cpu(), yd.grad.cpu()))
    for a, b in zip(*out):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_cuda_value_and_gradient_match_cpu(name, device="cuda"):
    # a batch large enough for the factored fgw graphs (d < n)
    x, y = _pair(n=256, d=32, seed=1, dtype=torch.float32)
    out = {}
    for dev in ("cpu", device):
        # copies: x.to("cpu") would be x itself, and a leaf with a gradient
        xd = x.to(dev, copy=True).requires_grad_(True)
        yd = y.to(dev, copy=True).requires_grad_(True)
        loss = L.OTContrastiveLoss(name, reg=0.05, uniformity=0.1)(xd, yd)
        loss.backward()
        assert loss.device.type == torch.device(dev).type
        assert loss.dtype == torch.float32 and xd.grad.dtype == torch.float32
        out[dev] = (loss.detach().cpu(), xd.grad.cpu(), yd.grad.cpu())
    for a, b in zip(out["cpu"], out[device]):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def test_fgw_loss_skips_a_linearisation_the_contraction_makes_negligible(monkeypatch):
    # reg 0.01 (the embedder's default): the plan changes by 5.8e-3, then
    # 1.3e-4 (times sqrt(n)); the first rule alone (change below tau = 1e-3)
    # needs the third linearisation, the extrapolated one (successive changes
    # contract 170x) stops after two, and the loss and its gradient barely move
    import skot.losses._functional as LF
    import skot.ot._gromov as G
    from skot.ot._solve import _solve_gromov

    torch.manual_seed(0)
    n, d = 256, 32
    x = F.normalize(torch.randn(n, d), dim=1)
    y = F.normalize(x + 1.3 * torch.randn(n, d) / math.sqrt(d), dim=1)
    changes = []
    change = G._change
    monkeypatch.setattr(G, "_change", lambda *a: changes.append(change(*a)) or changes[-1])
    out = {}
    for extrapolate in (True, False):
        if not extrapolate:
            monkeypatch.setattr(LF, "_solve_gromov",
                                lambda *a, **k: _solve_gromov(*a, **{**k, "extrapolate": None}))
        changes.clear()
        xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        loss = L.fgw_loss(xa, ya, reg=0.01)
        loss.backward()
        out[extrapolate] = (len(changes), loss.detach(), xa.grad, ya.grad)
    assert out[True][0] == 2 and out[False][0] == 3
    assert changes[-1] * math.sqrt(n) < 1e-3 < changes[-2] * math.sqrt(n)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=2e-3, atol=0)
    for a, b in zip(out[True][2:], out[False][2:]):
        assert float((a - b).norm() / b.norm()) < 5e-3  # measured 8e-4


@pytest.mark.parametrize("unbalanced", [None, 1.0])
@pytest.mark.parametrize("d", [8, 32])  # factored (d <= n) and dense graphs
def test_fgw_float32_loss_value_matches_float64(unbalanced, d):
    # -log P of the positives from the last inner solve's potentials and cost:
    # from the plan, float32 gave 50.9 against 44.3 at reg 0.01
    g = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(16, d, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(torch.randn(16, d, generator=g, dtype=torch.float64), dim=1)
    y[1] = y[0]
    for T in (None, L.target_plan(y_raw=y)):
        v64 = L.fgw_loss(x, y, reg=0.01, unbalanced=unbalanced, target=T)
        v32 = L.fgw_loss(x.float(), y.float(), reg=0.01, unbalanced=unbalanced,
                         target=None if T is None else T.float())
        assert float(v32) == pytest.approx(float(v64), rel=1e-4)
    # the solver's by-product equals -sum T log P of its plan where nothing
    # underflows (float64, reg 0.5), for the diagonal and a general target
    from skot.ot._solve import _solve_gromov

    C, Ca, Cb = 1 - x @ y.T, 1 - x @ x.T, 1 - y @ y.T
    for T in ("diag", L.target_plan(y_raw=y)):
        res = _solve_gromov(Ca, Cb, C, None, None, alpha=0.1, reg=0.5, reg_type="KL",
                            loss="L2", unbalanced=unbalanced, unbalanced_type="KL",
                            method=None, max_iter=5, tol=1e-9, grad="detach",
                            inner_max_iter=None, inner_tol=1e-12, nll_target=T)
        P = res.plan
        ref = (-torch.log(torch.diagonal(P)).mean() if isinstance(T, str)
               else -(T * torch.log(P)).sum())
        torch.testing.assert_close(res._extra["nll"], ref, rtol=1e-9, atol=1e-9)


def test_loss_options_are_checked():
    x, y = _pair()
    with pytest.raises(ValueError, match="grad must be 'envelope' or 'autodiff'"):
        L.iot_loss(x, y, grad="detach")
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="uniformity must be"):
            L.iot_loss(x, y, uniformity=bad)
    with pytest.raises(ValueError, match="n_atoms must be an integer >= 1"):
        L.alignment_regulariser(x, y, form="barycenter", n_atoms=0)
    with pytest.raises(ValueError, match="n_iter must be an integer >= 0"):
        L.alignment_regulariser(x, y, form="barycenter", n_iter=-1)
    with pytest.raises(ValueError, match="share their dimension"):
        L.alignment_regulariser(x, y[:, :3])


_PAIR_LOSSES = {"infonce": L.infonce_loss, "iot": L.iot_loss, "fgw": L.fgw_loss,
                "ncu": L.ncu_loss}


@pytest.mark.parametrize("loss", sorted(_PAIR_LOSSES))
def test_mixed_dtypes_and_devices_are_refused(loss):
    # float32 with float64 used to fail inside torch (matmul, the solver) or,
    # for fgw, to give a silently downcast float32 loss
    fn = _PAIR_LOSSES[loss]
    x, y = _pair(n=6, d=4, dtype=torch.float32)
    with pytest.raises(TypeError, match="x and y must have the same dtype, got "
                                        "torch.float32 and torch.float64"):
        fn(x, y.double())
    with pytest.raises(TypeError, match="x and target must have the same dtype"):
        fn(x, y, target=torch.eye(6, dtype=torch.float64) / 6)
    # another device (meta: no data, so nothing runs before the check)
    with pytest.raises(ValueError, match="x and y must be on the same device"):
        fn(x, torch.empty(6, 4, device="meta"))
    with pytest.raises(ValueError, match="x and target must be on the same device"):
        fn(x, y, target=torch.empty(6, 6, device="meta"))
    with pytest.raises(TypeError, match="x and y must have the same dtype"):
        L.OTContrastiveLoss(loss)(x, y.double())
    with pytest.raises(TypeError, match="x and y must have the same dtype"):
        L.OTContrastiveLoss(loss)(x[:1], y[:1].double())  # too small for the loss


@pytest.mark.parametrize("loss", sorted(_PAIR_LOSSES))
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_floating_batches_are_refused(loss, dtype):
    # integer batches used to fail in mean() (iot), overflow (ncu), or run
    # (infonce; fgw in float64)
    fn = _PAIR_LOSSES[loss]
    x, y = torch.ones(4, 3, dtype=dtype), torch.eye(4, 3, dtype=dtype)
    with pytest.raises(TypeError, match=f"x must have a floating dtype.*{dtype}"):
        fn(x, y)
    with pytest.raises(TypeError, match=f"y must have a floating dtype.*{dtype}"):
        fn(x.float(), y)


@pytest.mark.parametrize("loss", sorted(_PAIR_LOSSES))
def test_numpy_inputs_are_refused_with_a_type_error(loss):
    # x and y must be torch tensors; a numpy target used to fail in isfinite()
    fn = _PAIR_LOSSES[loss]
    x, y = _pair(n=6, d=4)
    with pytest.raises(TypeError, match="target must be a torch tensor, got ndarray"):
        fn(x, y, target=np.eye(6) / 6)
    with pytest.raises(TypeError, match="x must be a torch tensor, got ndarray"):
        L.OTContrastiveLoss(loss)(x.numpy(), y.numpy())


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_iot_max_iter_is_checked(bad):
    # max_iter=0 used to run the default 2000 iterations (max_iter or 2000)
    x, y = _pair(n=6, d=4)
    for method in ("sinkhorn", "dbot"):
        for grad in ("envelope", "autodiff"):
            with pytest.raises(ValueError, match=f"max_iter must be an integer >= 1 "
                                                 rf"\(or None\), got {bad!r}"):
                L.iot_loss(x, y, method=method, grad=grad, max_iter=bad)


def test_iot_max_iter_is_the_balanced_solves_budget(monkeypatch):
    import skot.losses._functional as LF

    x, y = _pair(n=6, d=4)
    seen, real = [], LF.solve
    monkeypatch.setattr(LF, "solve", lambda *a, **k: seen.append(k["max_iter"])
                        or real(*a, **k))
    with pytest.warns(ConvergenceWarning):  # one iteration does not converge
        L.iot_loss(x, y, reg=0.5, max_iter=1)
    L.iot_loss(x, y, reg=0.5)
    assert seen == [1, 2000]


def test_uniformity_penalty_checks_its_plan():
    with pytest.raises(TypeError, match="P must be a torch tensor, got ndarray"):
        L.uniformity_penalty(np.eye(3))
    with pytest.raises(TypeError, match="P must have a floating dtype"):
        L.uniformity_penalty(torch.eye(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"P must be a square plan .* got \(3, 4\)"):
        L.uniformity_penalty(torch.rand(3, 4))
    with pytest.raises(ValueError, match=r"got \(0, 0\)"):
        L.uniformity_penalty(torch.zeros(0, 0))
    # all zero: used to give NaN
    with pytest.raises(ValueError, match="every row of P must have mass > 0"):
        L.uniformity_penalty(torch.zeros(3, 3))
    P = torch.rand(3, 3, dtype=torch.float64)
    P[1] = 0
    with pytest.raises(ValueError, match="got row 1 summing to 0"):
        L.uniformity_penalty(P)
    with pytest.raises(ValueError, match="nonnegative"):
        L.uniformity_penalty(torch.eye(3) - 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        L.uniformity_penalty(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="overflows"):
        L.uniformity_penalty(torch.full((3, 3), 3e38))
    # valid plans: as before (0 for equal off-diagonal entries, scale-free)
    U = torch.full((4, 4), 1 / 16, dtype=torch.float64)
    assert float(L.uniformity_penalty(U)) == 0.0
    torch.testing.assert_close(L.uniformity_penalty(P.abs() + 0.1),
                               L.uniformity_penalty(5 * (P.abs() + 0.1)))


def test_target_plan_checks_its_arguments():
    # no argument used to fail in torch.eye(None), numpy in .detach()
    with pytest.raises(ValueError, match="target_plan needs the batch"):
        L.target_plan()
    with pytest.raises(TypeError, match="y_raw must be a torch tensor, got ndarray"):
        L.target_plan(y_raw=np.eye(3))
    with pytest.raises(TypeError, match="x_raw must be a torch tensor, got ndarray"):
        L.target_plan(x_raw=np.eye(3))
    with pytest.raises(TypeError, match="y_raw must have a floating dtype"):
        L.target_plan(y_raw=torch.eye(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"y_raw must have shape \(n, d\)"):
        L.target_plan(y_raw=torch.ones(3))
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            L.target_plan(n=bad)
    with pytest.raises(ValueError, match="n=4 does not match the 3 rows of y_raw"):
        L.target_plan(y_raw=torch.eye(3), n=4)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        L.target_plan(n=3, dtype=torch.int64)
    with pytest.raises(ValueError, match="atol must be >= 0"):
        L.target_plan(y_raw=torch.eye(3), atol=-1.0)
    torch.testing.assert_close(L.target_plan(n=3, dtype=torch.float64),
                               torch.eye(3, dtype=torch.float64) / 3)
    torch.testing.assert_close(L.target_plan(y_raw=torch.eye(3), n=3), torch.eye(3) / 3)


def test_alignment_regulariser_and_module_refuse_mixed_or_integer_clouds():
    x, y = _pair(n=6, d=4, dtype=torch.float32)
    with pytest.raises(TypeError, match="x_all and y_all must have the same dtype, "
                                        "got torch.float32 and torch.float64"):
        L.alignment_regulariser(x, y.double())
    with pytest.raises(ValueError, match="x_all and y_all must be on the same device"):
        L.alignment_regulariser(x, torch.empty(6, 4, device="meta"))
    with pytest.raises(TypeError, match="x_all must have a floating dtype"):
        L.alignment_regulariser(torch.ones(4, 3, dtype=torch.int64), y[:, :3])
    # the module's sum with the regulariser used to be promoted to float64
    loss = L.OTContrastiveLoss("infonce", align_weight=1.0)
    with pytest.raises(TypeError, match="zx and x_all must have the same dtype"):
        loss(x, y, x_all=x.double(), y_all=y.double())
    assert loss(x, y, x_all=x, y_all=y).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["default", "no_noise", "ncu_paper", "two_rows",
                                  "confident"])
def test_ncu_default_target_equals_the_explicit_identity(dtype, case):
    # the default (diagonal) target takes its own path: forbidden pairs as +inf
    # costs (no n x (n + 1) mask), row minima and scale from quantities at
    # hand. An explicit I / n target goes through skot.ot.solve(mask=...): the
    # same loss and gradient up to rounding. "confident": pairs so confident
    # that log p_ii rounds to 0; the flag went to the most confident pair on
    # the default path (a positive log-probability from rounding) and by a tie
    # on the explicit one
    n, kw = 96, {}
    if case == "no_noise":
        kw = dict(noise_ratio=0.0)
    elif case == "ncu_paper":
        kw = dict(gamma=0.7, ot_reg=0.03, noise_ratio=0.3, reg=0.05)
    elif case == "two_rows":
        n, kw = 2, dict(noise_ratio=0.5, reg=0.1)
    x, y = _pair(n=n, d=16, seed=7, dtype=dtype)
    if n > 2:
        y[: n // 8] = y[: n // 8].roll(1, 0)  # some wrong pairs
    if case == "confident":
        # margins 75.9 and 83.4 in units of reg: both positives' probabilities
        # are 1 in float64; the first pair is the less confident one
        n, kw = 2, dict(noise_ratio=0.1)
        x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype)
        y = torch.tensor([[0.7296, -0.2722], [-0.0289, 0.5614]], dtype=dtype)
    T = torch.eye(n, dtype=dtype) / n
    out = []
    for target in (None, T):
        xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        value = L.ncu_loss(xa, ya, target=target, **kw)
        value.backward()
        out.append((value.detach(), xa.grad, ya.grad))
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    for new, old in zip(out[0], out[1]):
        assert float((new - old).abs().max()) <= rtol * float(old.abs().max())
    if case == "confident":
        import skot.losses._functional as F

        flagged = []
        orig = F._ncu_soft_target

        def spy(aug, reg, forbid, good, dust, noisy, *args, **kwargs):
            flagged.append(noisy.tolist())
            return orig(aug, reg, forbid, good, dust, noisy, *args, **kwargs)

        F._ncu_soft_target = spy
        try:
            L.ncu_loss(x, y, **kw)
        finally:
            F._ncu_soft_target = orig
        assert flagged[0] == [True, False]
