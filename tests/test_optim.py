
import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import get_backend, to_numpy
from mlp_backend.kernels import kernel_set

from conftest import AVAILABLE, backend_matrix, tol

class PaperLion:
    """The Lion paper's update (Chen et al. 2023, Algorithm 2) in torch: the oracle where torch has no Lion."""

    def __init__(self, params, lr, betas=(0.9, 0.99), weight_decay=0.0):
        import torch

        self.params, self.lr, self.betas, self.wd = list(params), lr, betas, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]

    def step(self):
        import torch

        b1, b2 = self.betas
        with torch.no_grad():
            for p, m in zip(self.params, self.m):
                update = torch.sign(b1 * m + (1 - b1) * p.grad)
                p -= self.lr * (update + self.wd * p)
                m.mul_(b2).add_((1 - b2) * p.grad)


OPTIMIZER_CASES = {
    "sgd": (lambda: mlp.SGD(0.1, weight_decay=0.01), lambda p: __import__("torch").optim.SGD(p, 0.1, weight_decay=0.01)),
    "momentum": (lambda: mlp.Momentum(0.1, 0.9), lambda p: __import__("torch").optim.SGD(p, 0.1, momentum=0.9)),
    "nesterov": (lambda: mlp.Nesterov(0.1, 0.9, weight_decay=0.01),
                 lambda p: __import__("torch").optim.SGD(p, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "rmsprop": (lambda: mlp.RMSProp(0.01, rho=0.9, eps=1e-8, weight_decay=0.01),
                lambda p: __import__("torch").optim.RMSprop(p, 0.01, alpha=0.9, eps=1e-8, weight_decay=0.01)),
    "adam": (lambda: mlp.Adam(0.01, weight_decay=0.01), lambda p: __import__("torch").optim.Adam(p, 0.01, weight_decay=0.01)),
    "adamw": (lambda: mlp.AdamW(0.01, weight_decay=0.1), lambda p: __import__("torch").optim.AdamW(p, 0.01, weight_decay=0.1)),
    "adagrad": (lambda: mlp.Adagrad(0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
                lambda p: __import__("torch").optim.Adagrad(p, 0.05, lr_decay=0.01, weight_decay=0.01,
                                                            initial_accumulator_value=0.1)),
    "lion": (lambda: mlp.Lion(0.01, beta1=0.9, beta2=0.99, weight_decay=0.1),
             lambda p: PaperLion(p, 0.01, betas=(0.9, 0.99), weight_decay=0.1)),
}


def test_every_optimizer_is_covered():
    assert set(mlp.optim.OPTIMIZERS) == set(OPTIMIZER_CASES)


def _run(case, opt, steps, grads, p0):
    name, device, dtype, mode = case
    be = get_backend(name, device=device, dtype=dtype)
    p = be.asarray(p0.copy())
    opt.init(be, p)
    ops = kernel_set(name, mode)
    for g in grads[:steps]:
        opt.step(p, be.asarray(g), ops)
    return to_numpy(p), opt


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("case", backend_matrix())
@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
@pytest.mark.parametrize("steps", [1, 10])
def test_optimizer_steps_match_torch(case, name, steps):
    import torch

    rng = np.random.default_rng(2)
    p0 = rng.normal(size=50)
    grads = [rng.normal(size=50) for _ in range(steps)]
    ours, make_torch = OPTIMIZER_CASES[name]
    got, _ = _run(case, ours(), steps, grads, p0)
    tp = torch.tensor(p0, dtype=getattr(torch, case[2]), requires_grad=True)
    topt = make_torch([tp])
    for g in grads:
        tp.grad = torch.tensor(g, dtype=tp.dtype)
        topt.step()
    rtol, atol = tol(case[2])
    np.testing.assert_allclose(got, tp.detach().numpy(), rtol=rtol * 50, atol=atol * 50)


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("case", backend_matrix(dtypes=("float64",)))
def test_global_norm_and_value_clipping_match_torch(case):
    import torch

    rng = np.random.default_rng(4)
    p0, g = rng.normal(size=30), rng.normal(size=30) * 10
    got, _ = _run(case, mlp.SGD(0.1, clip_norm=1.0), 1, [g], p0)
    tp = torch.tensor(p0, requires_grad=True)
    tp.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([tp], 1.0)
    torch.optim.SGD([tp], 0.1).step()
    np.testing.assert_allclose(got, tp.detach().numpy(), rtol=1e-9)
    got, _ = _run(case, mlp.SGD(0.1, clip_value=0.5), 1, [g], p0)
    np.testing.assert_allclose(got, p0 - 0.1 * np.clip(g, -0.5, 0.5), rtol=1e-12)


def test_schedules():
    assert mlp.StepDecay(0.5, every=10)(1.0, 25) == 0.25
    assert mlp.ExponentialDecay(0.5, decay_steps=10)(1.0, 5) == pytest.approx(0.5**0.5)
    cos = mlp.CosineDecay(total_steps=100, min_lr=0.1)
    assert cos(1.0, 0) == 1.0 and cos(1.0, 50) == pytest.approx(0.55) and cos(1.0, 500) == pytest.approx(0.1)
    opt = mlp.SGD(1.0, schedule=mlp.StepDecay(0.1, every=2))
    be = get_backend("numpy", dtype="float64")
    p = be.asarray(np.zeros(3))
    opt.init(be, p)
    lrs = []
    for _ in range(5):
        lrs.append(opt.current_lr())
        opt.step(p, be.asarray(np.ones(3)), kernel_set("numpy"))
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    np.testing.assert_allclose(p, -np.full(3, 2.21))


def test_optimizer_state_saves_and_restores_exactly():
    rng = np.random.default_rng(0)
    be = get_backend("numpy", dtype="float64")
    grads = [rng.normal(size=20) for _ in range(6)]
    p_full = be.asarray(np.ones(20))
    full = mlp.Adam(0.01)
    full.init(be, p_full)
    for g in grads:
        full.step(p_full, g, kernel_set("numpy"))
    p_half = be.asarray(np.ones(20))
    first = mlp.Adam(0.01)
    first.init(be, p_half)
    for g in grads[:3]:
        first.step(p_half, g, kernel_set("numpy"))
    saved = first.state_dict()
    assert saved["step_count"] == 3 and set(saved) >= {"exp_avg", "exp_avg_sq"}
    second = mlp.Adam(0.01)
    second.load_state_dict(saved)
    second.init(be, p_half)
    for g in grads[3:]:
        second.step(p_half, g, kernel_set("numpy"))
    np.testing.assert_array_equal(p_half, p_full)
    with pytest.raises(ValueError, match="does not match"):
        third = mlp.Adam(0.01)
        third.load_state_dict(saved)
        third.init(be, be.asarray(np.ones(5)))


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="learning rate lr must be a positive number"):
        mlp.Adam(lr=0)
    with pytest.raises(ValueError, match="learning rate lr must be a positive number"):
        mlp.SGD(lr=-1)
    with pytest.raises(ValueError, match="momentum must be in"):
        mlp.SGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adadelta'"):
        mlp.get_optimizer("adadelta")
    with pytest.raises(RuntimeError, match="not initialised"):
        mlp.Adam().step(np.zeros(3), np.zeros(3), kernel_set("numpy"))


def test_adagrad_and_lion_known_values():
    """One step by hand: Adagrad s = 4, p = 1 - 0.1 * 2 / sqrt(4); Lion c = 0.1 * 0.5 > 0, p = 1 - 0.1 (1 + 0.1),
    m = 0.01 * 0.5."""
    be = get_backend("numpy", dtype="float64")
    ops = kernel_set("numpy", "numba")
    for opt, p_after, state_after in ((mlp.Adagrad(0.1), 0.9, ("sum", 4.0)),
                                      (mlp.Lion(0.1, weight_decay=0.1), 0.89, ("exp_avg", 0.005))):
        p = np.ones(3)
        opt.init(be, p)
        opt.step(p, np.full(3, 2.0 if isinstance(opt, mlp.Adagrad) else 0.5), ops)
        np.testing.assert_allclose(p, p_after, rtol=1e-10)  # Adagrad's eps (1e-10) is in the divisor
        np.testing.assert_allclose(opt.state[state_after[0]], state_after[1], rtol=1e-12)
    lion = mlp.Lion(0.1)  # sign(0) is 0: a zero gradient on zero momentum leaves p alone
    p = np.ones(2)
    lion.init(be, p)
    lion.step(p, np.zeros(2), ops)
    np.testing.assert_array_equal(p, 1.0)
