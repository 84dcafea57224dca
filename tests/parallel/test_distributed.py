"""gather_with_grad / global_loss: 2 gloo processes equal the single-process loss."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skot.parallel import gather_with_grad, global_loss

WORLD = 2
SIZES = (5, 3)  # unequal local batches


def _ot_loss(x, y, reg=0.1):
    """Entropic OT contrastive loss written directly on skot.ot.solve."""
    from skot.ot import solve

    n = x.shape[0]
    C = 1.0 - x @ y.T
    res = solve(C, reg=reg, grad="envelope", tol=1e-10, max_iter=5000)
    # -sum_i log P_ii n (inverse OT with the identity target)
    return ((C.diagonal().sum() / n) - res.value) / reg


def _losses():
    from skot import losses

    out = {"ot": _ot_loss, "infonce": lambda x, y: losses.infonce_loss(x, y, reg=0.1)}
    if hasattr(losses, "iot_loss"):
        out["iot"] = lambda x, y: losses.iot_loss(x, y, reg=0.1)
    return out


def _data():
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    norm = torch.nn.functional.normalize
    x = norm(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    y = norm(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    W = torch.randn(4, 4, generator=g, dtype=torch.float64)
    return x, y, W


def _slices():
    starts = [sum(SIZES[:r]) for r in range(WORLD)]
    return [slice(s, s + k) for s, k in zip(starts, SIZES)]


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x, y, W = _data()
        sl = _slices()[rank]
        res = {}
        # feature level, exact global gradient (ddp=False)
        for name, fn in _losses().items():
            xl = x[sl].clone().requires_grad_()
            yl = y[sl].clone().requires_grad_()
            loss = global_loss(fn, xl, yl, ddp=False)
            loss.backward()
            res[name] = (loss.detach(), xl.grad, yl.grad)
        # DDP-wrapped linear head: parameter gradients of the global loss
        model = torch.nn.Linear(4, 4, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(W)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        zx = torch.nn.functional.normalize(ddp(x[sl]), dim=1)
        loss = global_loss(_ot_loss, zx, y[sl])
        loss.backward()
        res["ddp"] = (loss.detach(), model.weight.grad.clone())
        # the gather itself
        xg = gather_with_grad(x[sl])
        res["gathered"] = xg
        # a different feature dimension on one rank: a clear error on every
        # rank (gloo aborted the process)
        try:
            gather_with_grad(torch.zeros(2, 4 + rank))
            res["mismatch"] = None
        except ValueError as err:
            res["mismatch"] = str(err)
        # two dtypes that the check did not tell apart (both "other")
        try:
            dtype = (torch.complex64, torch.complex128)[rank]
            gather_with_grad(torch.zeros(2, 3, dtype=dtype))
            res["dtype_mismatch"] = None
        except ValueError as err:
            res["dtype_mismatch"] = str(err)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", ["ot", "infonce", "iot"])
def test_feature_gradients_equal_single_process(results, name):
    if name not in results[0]:
        pytest.skip(f"skot.losses has no {name} loss yet")
    x, y, _ = _data()
    xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
    loss = _losses()[name](xs, ys)
    loss.backward()
    for rank, sl in enumerate(_slices()):
        l_r, gx, gy = results[rank][name]
        torch.testing.assert_close(l_r, loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gx, xs.grad[sl], rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(gy, ys.grad[sl], rtol=1e-9, atol=1e-10)


def test_ddp_parameter_gradients_equal_single_process(results):
    x, y, W = _data()
    model = torch.nn.Linear(4, 4, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(W)
    loss = _ot_loss(torch.nn.functional.normalize(model(x), dim=1), y)
    loss.backward()
    for rank in range(WORLD):
        l_r, gW = results[rank]["ddp"]
        torch.testing.assert_close(l_r, loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gW, model.weight.grad, rtol=1e-9, atol=1e-10)


def test_gather_order_and_sizes(results):
    x, _, _ = _data()
    for rank in range(WORLD):
        torch.testing.assert_close(results[rank]["gathered"], x)


def test_mismatched_shapes_raise_on_every_rank(results):
    for rank in range(WORLD):
        msg = results[rank]["mismatch"]
        assert msg is not None and "same trailing shape and dtype" in msg
        assert "(2, 4) torch.float32" in msg and "(2, 5) torch.float32" in msg
        msg = results[rank]["dtype_mismatch"]
        assert msg is not None and "torch.complex64" in msg
        assert "torch.complex128" in msg


def test_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    loss = global_loss(lambda u: (u**2).sum(), x, ddp=False)
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())


def test_bad_input():
    with pytest.raises(TypeError, match="x must be"):
        gather_with_grad([1, 2])
    with pytest.raises(ValueError, match="1 to 6 dimensions"):
        gather_with_grad(torch.tensor(1.0))
    with pytest.raises(TypeError, match="loss_fn"):
        global_loss(3, torch.ones(2))
    with pytest.raises(ValueError, match="at least one"):
        global_loss(lambda: 0)
    with pytest.raises(TypeError, match="ddp"):
        global_loss(lambda u: u.sum(), torch.ones(2), ddp="yes")
