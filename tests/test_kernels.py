"""Fused Numba CPU kernels against the Array API reference: values, signatures and side effects."""
import inspect
import math

import array_api_compat.numpy as xp
import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend import kernels
from mlp_backend.kernels import cpu as cpu_module
from mlp_backend.kernels import hyper, reference
from mlp_backend.kernels.activations import TABLE

cpu = kernels.kernel_set("numpy", "numba")  # the fused ops as training calls them (reference where they decline)

DTYPES = [np.float32, np.float64]


def close(a, b, dtype):
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-5, 1e-6)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def signature(fn):
    """Names, kinds and defaults of the parameters (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_fused_kernel_has_the_reference_signature():
    import importlib

    for module in kernels.FUSED_MODULES.values():
        if module != "cpu" and importlib.util.find_spec({"torch_cpu": "torch", "cuda": "numba.cuda"}[module]) is None:
            continue
        impl = importlib.import_module(f"mlp_backend.kernels.{module}")
        overridden = [op for op in kernels.OPS if hasattr(impl, op)]
        assert overridden, module
        for op in overridden:
            assert signature(getattr(impl, op)) == signature(getattr(reference, op)), (module, op)


def test_an_op_a_module_does_not_override_is_the_reference(monkeypatch):
    monkeypatch.delattr(cpu_module, "optimizer_update")
    assert kernels.resolve("optimizer_update", "numpy", "auto") is reference.optimizer_update


def record(opt, step=1, grad_scale=1.0, dtype=np.float64):
    """The scalar record an optimizer hands its kernel at ``step``."""
    return np.array(hyper.pack(opt.rule, {**opt.scalars(opt.lr, step), "grad_scale": grad_scale, "skip": 0.0}), dtype)


def saved_for(act, z, y):
    """What the activation's backward reads: its output, or its input."""
    return y if TABLE[act].saves == "output" else z


def test_torch_cpu_tensors_go_through_the_numba_kernels_in_place():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as txp

    from mlp_backend.kernels import torch_cpu

    rng = np.random.default_rng(9)
    p0, g = rng.normal(size=1000).astype(np.float32), rng.normal(size=1000).astype(np.float32)
    tp, tm, tv = torch.tensor(p0), torch.zeros(1000), torch.zeros(1000)
    hp = record(mlp.Adam(1e-2), dtype=np.float32)
    assert torch_cpu.optimizer_update(txp, "adam", tp, torch.tensor(g), tm, tv, torch.tensor(hp)) is None  # fused
    p, m, v = p0.copy(), np.zeros(1000, np.float32), np.zeros(1000, np.float32)
    reference.optimizer_update(xp, "adam", p, g, m, v, hp)
    close(tp.numpy(), p, np.float32)
    close(tv.numpy(), v, np.float32)
    z = torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 4, 6))
    loss, grad = torch_cpu.softmax_cross_entropy(txp, z, y, 0.1)
    rloss, rgrad = reference.softmax_cross_entropy(xp, z.numpy(), y.numpy(), 0.1)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and isinstance(grad, torch.Tensor)
    close(loss.numpy(), rloss, np.float32)
    close(grad.numpy(), rgrad, np.float32)
    dy, yv = torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float32), torch.rand(6, 4)
    db = torch.empty(4)
    dz = torch_cpu.act_backward(txp, dy, yv, "sigmoid", bias_grad=db)
    rdb = np.empty(4, np.float32)
    close(dz.numpy(), reference.act_backward(xp, dy.numpy(), yv.numpy(), "sigmoid", bias_grad=rdb), np.float32)
    close(db.numpy(), rdb, np.float32)  # written through the tensor's NumPy view
    w, tg, squares = torch.tensor(rng.normal(size=(5, 3)), dtype=torch.float32), torch.ones(5, 3), torch.empty(5, 3)
    assert torch_cpu.l2_penalty(txp, w, tg, 0.5, squares) is squares  # the caller's tensor, written in place
    close(tg.numpy(), 1 + 0.5 * w.numpy(), np.float32)
    close(squares.numpy(), w.numpy() ** 2, np.float32)
    needs_grad = torch.zeros(3, requires_grad=True)  # no NumPy view: declined, and the reference handles it
    assert torch_cpu.bias_act(txp, needs_grad * 1.0, None, "relu") is NotImplemented
    out = kernels.resolve("bias_act", "torch", "auto")(txp, needs_grad * 1.0, None, "relu")
    assert isinstance(out, torch.Tensor) and out.requires_grad


def test_registry_modes(monkeypatch):
    assert kernels.resolve("optimizer_update", "numpy", "auto").fused is cpu_module.optimizer_update
    assert kernels.resolve("optimizer_update", "numpy", "reference") is reference.optimizer_update
    assert kernels.resolve("optimizer_update", "array_api_strict", "auto") is reference.optimizer_update
    with pytest.raises(ValueError, match="no Numba kernels for 'array_api_strict'"):
        kernels.resolve("optimizer_update", "array_api_strict", "numba")
    with pytest.raises(ValueError, match="kernel mode must be one of"):
        kernels.resolve("optimizer_update", "numpy", "fast")
    monkeypatch.setenv("MLP_KERNELS", "reference")
    assert kernels.kernel_set("numpy").optimizer_update is reference.optimizer_update


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 5), (7, 1), (64, 10), (300, 600)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy(dtype, shape, smoothing):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=shape) * 4).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    loss, grad = cpu.softmax_cross_entropy(xp, z, y, smoothing)
    rloss, rgrad = reference.softmax_cross_entropy(xp, z, y, smoothing)
    assert loss.dtype == rloss.dtype and grad.dtype == rgrad.dtype
    close(loss, rloss, dtype)
    close(grad, rgrad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_extremes_and_aliasing(dtype):
    z = np.array([[1e30, 0.0, -1e30], [-np.inf, 3.0, -np.inf], [88.0, 89.0, -200.0]], dtype=dtype)
    y = np.array([0, 1, 2])
    rloss, rgrad = reference.softmax_cross_entropy(xp, z.copy(), y)
    work = z.copy()
    loss, grad = cpu.softmax_cross_entropy(xp, work, y, out=work)
    assert grad is work  # written over the logits when asked
    close(loss, rloss, dtype)
    close(grad, rgrad, dtype)
    loss, _ = cpu.softmax_cross_entropy(xp, np.array([[-np.inf, 0.0]], dtype=dtype), np.array([0]))
    assert float(loss) == math.inf  # the labelled class has probability 0, as in the reference


def test_non_contiguous_and_unsupported_inputs_fall_back_to_the_reference():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 8))[:, ::2]
    y = rng.integers(0, 4, 10)
    close(cpu.softmax_cross_entropy(xp, z, y)[1], reference.softmax_cross_entropy(xp, z, y)[1], np.float64)
    z16 = z.astype(np.float16)  # unsupported dtype: reference result, not a wrong one
    np.testing.assert_array_equal(cpu.act_backward(xp, z16, z16, "relu"), reference.act_backward(xp, z16, z16, "relu"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_binary_cross_entropy(dtype):
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(33, 3)) * 30).astype(dtype)
    t = rng.integers(0, 2, z.shape).astype(dtype)
    loss, grad = cpu.sigmoid_binary_cross_entropy(xp, z, t)
    rloss, rgrad = reference.sigmoid_binary_cross_entropy(xp, z, t)
    close(loss, rloss, dtype)
    close(grad, rgrad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", reference.ACTIVATIONS)
@pytest.mark.parametrize("rows", [1, 512])
def test_bias_act_and_backward(dtype, act, rows):
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(rows, 300)) * 3).astype(dtype)
    b = rng.normal(size=300).astype(dtype)
    dy = rng.normal(size=z.shape).astype(dtype)
    ours, ref = z.copy(), z.copy()
    assert cpu.bias_act(xp, ours, b, act, 0.3) is ours  # in place, like the reference
    reference.bias_act(xp, ref, b, act, 0.3)
    close(ours, ref, dtype)
    # the backward from the same y (near saturation, 1 - y*y magnifies a last-bit difference in y)
    saved = saved_for(act, z + b, ref)
    close(cpu.act_backward(xp, dy, saved, act, 0.3), reference.act_backward(xp, dy, saved, act, 0.3), dtype)
    out = dy.copy()
    assert cpu.act_backward(xp, out, saved, act, 0.3, out=out) is out  # aliasing dy and out
    close(out, reference.act_backward(xp, dy, saved, act, 0.3), dtype)
    no_bias = z.copy()
    cpu.bias_act(xp, no_bias, None, act, 0.3)
    close(no_bias, reference.activation(xp, z, act, 0.3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", reference.ACTIVATIONS)
@pytest.mark.parametrize("parallel", [False, True])
def test_act_backward_writes_the_bias_gradient_from_the_same_pass(dtype, act, parallel, monkeypatch):
    if parallel:
        monkeypatch.setattr(cpu_module, "PARALLEL_MIN_ELEMENTS", 1)
    rng = np.random.default_rng(4)
    z = (rng.normal(size=(777, 40)) * 3).astype(dtype)
    y = saved_for(act, z, reference.activation(xp, z, act, 0.3))
    dy = rng.normal(size=y.shape).astype(dtype)
    dz = reference.act_backward(xp, dy, y, act, 0.3)
    # the kernel's sums end in float64, the reference's in dtype: compare with float64 maths on the same inputs
    exact = reference.act_backward(xp, dy.astype(np.float64), y.astype(np.float64), act, 0.3).sum(axis=0)
    for out in (None, dy.copy()):  # a new array, or written over dy
        db = np.full(40, np.nan, dtype)
        result = cpu.act_backward(xp, dy if out is None else out, y, act, 0.3, out=out, bias_grad=db)
        close(result, dz, dtype)
        np.testing.assert_allclose(db, exact, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-5)
    ref_db = np.empty(40, dtype)
    reference.act_backward(xp, dy, y, act, 0.3, bias_grad=ref_db)
    np.testing.assert_allclose(ref_db, exact, rtol=1e-4, atol=1e-4)  # the reference's own float32 sum
    # a bias gradient of the wrong shape, or a 1-D dy, goes to the reference and gets its error / result
    with pytest.raises(ValueError):
        cpu.act_backward(xp, dy, y, act, 0.3, bias_grad=np.empty(39, dtype))
    flat_db = np.empty((), dtype)
    cpu.act_backward(xp, dy[0], y[0], act, 0.3, bias_grad=flat_db)
    close(flat_db, dz[0].sum(), dtype)


OPTIMIZER_CASES = [  # (optimizer, global-norm clipping factor)
    (lambda: mlp.SGD(0.1, weight_decay=0.01), 1.0),
    (lambda: mlp.Momentum(0.1, 0.9), 1.0),
    (lambda: mlp.Nesterov(0.1, 0.9, weight_decay=0.01, clip_value=0.7), 0.5),
    (lambda: mlp.RMSProp(0.01, rho=0.9, eps=1e-8, weight_decay=0.01, clip_value=1.0), 1.0),
    (lambda: mlp.Adam(0.01, weight_decay=0.01), 0.3),
    (lambda: mlp.AdamW(0.01, weight_decay=0.1, clip_value=0.5), 1.0),
    (lambda: mlp.Adagrad(0.05, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.1), 0.5),
    (lambda: mlp.Lion(0.01, weight_decay=0.1, clip_value=0.5), 1.0),
]


def test_every_rule_of_the_optimizer_table_is_tested_and_its_element_matches_its_array_form():
    from mlp_backend.kernels.optimizers import RULES

    assert {make().rule for make, _ in OPTIMIZER_CASES} == set(RULES)
    rng = np.random.default_rng(11)
    for make, _ in OPTIMIZER_CASES:
        opt = make()
        rule = RULES[opt.rule]
        hp = record(opt, 3, 0.8)
        p, g, s0, s1 = (rng.normal(size=40) for _ in range(4))
        s0, s1 = s0 ** 2, s1 ** 2  # second moments are non-negative
        expected = rule.xp_update(xp, p, g, s0, s1, hp)
        got = np.array([rule.element(p[i], g[i], s0[i], s1[i], hp) for i in range(40)]).T
        for k in range(1 + len(rule.state)):
            close(got[k], expected[k], np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 1000, 300_000])
@pytest.mark.parametrize("make,grad_scale", OPTIMIZER_CASES)
def test_optimizer_kernels_match_reference_over_steps(dtype, size, make, grad_scale, monkeypatch):
    """N steps both ways: parameters and every state array agree; gradients are left untouched."""
    if size == 300_000:
        monkeypatch.setattr(cpu_module, "PARALLEL_MIN_ELEMENTS", 1)  # the parallel kernels too
    rng = np.random.default_rng(4)
    p0 = rng.normal(size=size).astype(dtype)
    runs = []
    for ops in (cpu, kernels.kernel_set("numpy", "reference")):
        opt = make()
        p = p0.copy()
        opt.state = {name: np.zeros_like(p) for name in opt.state_names}
        gen = np.random.default_rng(5)
        for step in range(1, 6):
            g = gen.normal(size=size).astype(dtype)
            g_before = g.copy()
            opt.apply(ops, xp, p, g, record(opt, step, grad_scale, dtype))
            np.testing.assert_array_equal(g, g_before)
        state = [opt.state[name] for name in opt.state_names]
        runs.append((p, state))
    (p1, s1), (p2, s2) = runs
    close(p1, p2, dtype)
    for a, b in zip(s1, s2):
        close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [lambda: mlp.Momentum(0.1, 0.9), lambda: mlp.Nesterov(0.1, 0.9),
                                  lambda: mlp.RMSProp(0.01, rho=0.9), lambda: mlp.Adam(0.01), lambda: mlp.Lion(0.01)])
def test_a_decaying_state_is_stored_as_zero_below_the_smallest_normal_number(dtype, make):
    """States that decay under a zero gradient (a dead unit's weights) would become subnormal, which an x86 core
    computes with at about a third of the speed: the fused update stores them as zero where the rule's step is
    proportional to the state (the parameters are the reference's), not Lion's (it steps by the state's sign); a NaN
    state stays NaN."""
    tiny = np.finfo(dtype).tiny
    opt = make()
    first = np.array([tiny * 1.01, -tiny * 1.01, 3e-3, 0.0, np.nan], dtype)  # below tiny after three decays
    if opt.rule == "rmsprop":
        first = np.abs(first)  # a mean of squares
    p0, g = np.array([0.5, -0.25, 1.0, 2.0, 0.75], dtype), np.zeros(5, dtype)
    runs = []
    for ops in (cpu, kernels.kernel_set("numpy", "reference")):
        opt.state = {name: first.copy() if k == 0 else np.full(5, 1e-6, dtype)
                     for k, name in enumerate(opt.state_names)}
        p = p0.copy()
        for step in range(1, 4):
            opt.apply(ops, xp, p, g, record(opt, step, 1.0, dtype))
        runs.append((p, opt.state[opt.state_names[0]]))
    (fused_p, fused), (reference_p, reference) = runs
    close(fused_p[:4], reference_p[:4], dtype)
    subnormal = (reference != 0) & (np.abs(reference) < tiny)
    assert subnormal[:2].all() and not subnormal[2:].any()  # the case's first two states decayed below tiny
    np.testing.assert_array_equal(fused[:2], reference[:2] if opt.rule == "lion" else 0)
    close(fused[2:4], reference[2:4], dtype)
    assert np.isnan(fused[4])


@pytest.mark.parametrize("make,grad_scale", OPTIMIZER_CASES)
@pytest.mark.parametrize("mode", ["numba", "reference"])
def test_a_set_skip_slot_writes_nothing(make, grad_scale, mode):
    """The step program's device flag: with skip set, parameters and state stay bit for bit as they were."""
    rng = np.random.default_rng(7)
    opt = make()
    p = rng.normal(size=100)
    opt.state = {name: rng.normal(size=100) ** 2 for name in opt.state_names}
    before = [p.copy(), *(v.copy() for v in opt.state.values())]
    hp = record(opt, 3, grad_scale)
    hp[hyper.SKIP] = 1.0
    opt.apply(kernels.kernel_set("numpy", mode), xp, p, np.full(100, np.nan), hp)
    for a, b in zip([p, *opt.state.values()], before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 3), (1100, 1000)])  # serial, and past the parallel cut-over
@pytest.mark.parametrize("given", [True, False])
def test_l2_penalty_in_one_pass_has_the_separate_passes_bits(dtype, shape, given):
    """``g += w * lam`` and ``w * w`` in one compiled pass, each product rounded before its sum (no fused
    multiply-add): the bits of the reference's NumPy passes, which are the penalty's grad and value before."""
    rng = np.random.default_rng(11)
    w, g = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    lam = 1e-4 / 3
    fused_g, reference_g = g.copy(), g.copy()
    scratch = np.full(shape, np.nan, dtype) if given else None
    squares = cpu_module.l2_penalty(xp, w, fused_g, lam, scratch)
    assert squares is not NotImplemented and (squares is scratch if given else squares.shape == shape)
    expected = reference.l2_penalty(xp, w, reference_g, lam, None)
    np.testing.assert_array_equal(fused_g, reference_g)
    np.testing.assert_array_equal(squares, expected)
    np.testing.assert_array_equal(fused_g, g + np.multiply(w, lam))  # as L2.grad's product, then the sum
    value = mlp.L2(lam).step(mlp.backend.get_backend("numpy", dtype=np.dtype(dtype).name), cpu, w, g.copy(), None)
    assert value == 0.5 * lam * np.sum(np.multiply(w, w))  # as L2.value
    assert cpu_module.l2_penalty(xp, w, g[:, :1], lam) is NotImplemented  # shapes that differ: the reference's


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(2, 1), (64, 500), (7, 3)])
def test_norm_forward_and_backward_in_few_passes_match_the_reference(dtype, axis, shape):
    """BatchNorm's (axis 0, with running statistics) and LayerNorm's (axis 1) normalisation and its backward, summed in
    float64: the reference's numbers to rounding, into the caller's arrays; what they cannot take goes to the
    reference."""
    rng = np.random.default_rng(12)
    x, dy = (rng.normal(size=shape).astype(dtype) * 3 + 1 for _ in range(2))
    gamma, beta = rng.normal(size=shape[1]).astype(dtype), rng.normal(size=shape[1]).astype(dtype)
    running = [(np.full(shape[1], 0.5, dtype), np.full(shape[1], 2.0, dtype), 0.1) if axis == 0 else None
               for _ in range(2)]
    inv_shape = (shape[1],) if axis == 0 else (shape[0], 1)
    out = (np.empty_like(x), np.empty_like(x), np.empty(inv_shape, dtype))
    fused = cpu_module.norm_forward(xp, x, gamma, beta, 1e-5, axis, running[0], out=out)
    expected = reference.norm_forward(xp, x, gamma, beta, 1e-5, axis, running[1])
    assert all(a is b for a, b in zip(fused, out))

    def near(a, b, scale):
        """Equal to the rounding of sums whose terms reach ``scale`` (the reference sums in the data's dtype)."""
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)

    for a, b in zip(fused, expected):
        near(a, b, np.abs(b).max())
    if axis == 0:
        for a, b in zip(running[0][:2], running[1][:2]):
            near(a, b, np.abs(b).max())
    grads = [np.full(shape[1], np.nan, dtype) for _ in range(4)]
    into = np.empty_like(x)
    dx = cpu_module.norm_backward(xp, dy, fused[1], fused[2], gamma, axis, grads[0], grads[1], out=into)
    expected_dx = reference.norm_backward(xp, dy, expected[1], expected[2], gamma, axis, grads[2], grads[3])
    assert dx is into
    xhat = expected[1].astype(np.float64)
    near(dx, expected_dx, np.abs(expected[2]).max() * np.abs(dy * gamma).max() * (2 + np.abs(xhat).max() ** 2))
    near(grads[0], grads[2], np.abs(dy * xhat).sum(axis=0).max())
    near(grads[1], grads[3], np.abs(dy).sum(axis=0).max())
    assert cpu_module.norm_backward(xp, dy, fused[1], fused[2], gamma, axis, *grads[:2], input_grad=False) is None
    if axis == 0:  # not this module's: running statistics of another dtype
        other = (running[0][0].astype(np.float16), running[0][1], 0.1)
        assert cpu_module.norm_forward(xp, x, gamma, beta, 1e-5, axis, other) is NotImplemented
    if shape[1] > 1:  # nor a gamma of another width
        assert cpu_module.norm_forward(xp, x, gamma[:1], beta[:1], 1e-5, axis, None) is NotImplemented


def test_parallel_kernels_are_deterministic(monkeypatch):
    monkeypatch.setattr(cpu_module, "PARALLEL_MIN_ELEMENTS", 1)
    assert cpu_module._pick(cpu_module._XENT, 4096 * 100) is cpu_module._XENT[1]  # the parallel kernel runs
    rng = np.random.default_rng(6)
    z = rng.normal(size=(4096, 100)).astype(np.float32)
    y = rng.integers(0, 100, 4096)
    results = [cpu.softmax_cross_entropy(xp, z, y) for _ in range(3)]
    for loss, grad in results[1:]:
        assert float(loss) == float(results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])


def test_labels_out_of_range_are_an_error_not_a_wrong_loss():
    z = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        cpu.softmax_cross_entropy(xp, z, np.array([0, 4, 1]))


def test_a_fused_module_that_cannot_load_warns_once_and_the_reference_runs(monkeypatch):
    """numba-cuda against NumPy 2.5 died on import and took training down; now it is one warning."""
    import sys

    monkeypatch.setattr(kernels, "_UNAVAILABLE", {})
    monkeypatch.setitem(kernels.FUSED_MODULES, "numpy", "broken_for_test")
    monkeypatch.setitem(sys.modules, "mlp_backend.kernels.broken_for_test", None)  # its import raises
    with pytest.warns(RuntimeWarning, match=r"Numba kernels for numpy arrays \(kernels/broken_for_test.py\) cannot "
                                            r"load \(ModuleNotFoundError.*using the reference kernels. Fix: "):
        ops = kernels.kernel_set("numpy", "auto")
    assert ops.optimizer_update is reference.optimizer_update and ops.used == "reference (Numba kernels unavailable)"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second model does not warn again
        model = mlp.build_mlp([4, 3], "relu", seed=0)
        model.fit(np.random.default_rng(0).normal(size=(8, 4)), np.arange(8) % 3, epochs=1)
    assert "Numba kernels unavailable" in model.summary()
    with pytest.raises(ValueError, match="cannot load"):  # asked for explicitly: an error, not a silent fallback
        kernels.kernel_set("numpy", "numba")


def test_the_numpy_2_5_failure_names_its_fix():
    message = kernels._explain("cupy", "cuda", AttributeError("module 'numpy' has no attribute 'row_stack'"))
    assert "numba-cuda fails with NumPy" in message and "numpy<2.5" in message


def test_numba_cuda_loads_with_numpys_old_row_stack_alias_and_numpy_is_left_as_found(monkeypatch):
    """numba-cuda <= 0.30 registers np.row_stack as it loads, which NumPy 2.5 removed: for that load alone NumPy
    has the alias it had (row_stack was vstack)."""
    from mlp_backend.kernels import numba_cuda

    seen = {}

    def import_module(name):
        seen[name] = getattr(np, "row_stack", None) is np.vstack

    monkeypatch.delattr(np, "row_stack", raising=False)  # as NumPy 2.5
    monkeypatch.setattr(numba_cuda.importlib, "import_module", import_module)
    numba_cuda._load()
    assert seen == {"numba.cuda.np.arrayobj": True}
    assert not hasattr(np, "row_stack")


# value, gradients' sum for four steps from step 1: a good step, a finite loss with a non-finite gradient, a
# non-finite loss, a good step again
STEPS = ((1.5, 0.0), (2.0, np.inf), (np.nan, 1.0), (0.5, 0.0))
EXPECTED_FLAGS = {"loss": [0, 0, 0, 1, 0], "all": [0, 0, 2, 1, 0]}


def run_record_step(record_step, dtype, check):
    """Four steps' bookkeeping from step 1 of 5: the arrays it wrote, and each step's record."""
    records = np.arange(30, dtype=dtype).reshape(5, 6)
    records[:, hyper.SKIP] = 0
    counter, losses, flags = np.array([1]), np.zeros(5, dtype), np.zeros(5, np.int8)
    bad, record, seen = np.zeros((), dtype), np.zeros(6, dtype), []
    for value, grad_sum in STEPS:
        record_step(xp, np.asarray(value, dtype), counter, losses, record, records, flags=flags if check else None,
                    bad=bad if check else None, grad_sum=np.asarray(grad_sum, dtype) if check == "all" else None)
        seen.append(record.copy())
    return counter, losses, flags, bad, np.array(seen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", [None, "loss", "all"])
def test_record_step_writes_the_steps_loss_flag_and_record_and_advances_the_counter(dtype, check):
    fused = run_record_step(cpu_module.record_step, dtype, check)
    counter, losses, flags, bad, records = fused
    assert counter.tolist() == [5]
    np.testing.assert_array_equal(losses, np.array([0, 1.5, 2.0, np.nan, 0.5], dtype))
    if check:
        assert flags.tolist() == EXPECTED_FLAGS[check] and bad == 1
        first_bad = EXPECTED_FLAGS[check].index(1 if check == "loss" else 2) - 1  # of the four steps
        assert records[:, hyper.SKIP].tolist() == [0] * first_bad + [1] * (4 - first_bad)  # sticky
    else:
        assert not flags.any() and not records[:, hyper.SKIP].any()
    rows = np.arange(30, dtype=dtype).reshape(5, 6)[1:]
    others = [i for i in range(6) if i != hyper.SKIP]
    np.testing.assert_array_equal(records[:, others], rows[:, others])
    for got, want in zip(fused, run_record_step(reference.record_step, dtype, check)):
        np.testing.assert_array_equal(got, want)


def test_record_step_past_the_epochs_steps_is_an_error():
    losses = np.zeros(3, np.float32)
    with pytest.raises(IndexError, match="step counter \\(3\\) is outside the epoch's 3 steps"):
        cpu_module.record_step(xp, np.asarray(1.0, np.float32), np.array([3]), losses)
    assert not losses.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["labels", "one_hot"])
def test_gather_batch_takes_the_counters_samples_from_the_order(dtype, targets):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3, 2)).astype(dtype)  # images keep their shape
    labels = rng.integers(0, 4, 40)
    y = labels if targets == "labels" else np.eye(4, dtype=dtype)[labels]
    order, counter = rng.permutation(40), np.array([2])
    outs = [np.zeros(5, np.int64), np.zeros((5, 3, 2), dtype), np.zeros((5, *y.shape[1:]), y.dtype)]
    idx, xb, yb = cpu_module.gather_batch(xp, X, y, order, counter, 8, 3, 5, *outs)  # step 2 of batches of 8, from 3
    assert all(a is b for a, b in zip((idx, xb, yb), outs))
    np.testing.assert_array_equal(idx, order[19:24])
    np.testing.assert_array_equal(xb, X[order[19:24]])
    np.testing.assert_array_equal(yb, y[order[19:24]])
    assert counter.tolist() == [2]  # the step advances it, not the gather
    for got, want in zip((idx, xb, yb), reference.gather_batch(xp, X, y, order, counter, 8, 3, 5)):
        np.testing.assert_array_equal(got, want)


def test_gather_batch_beyond_the_order_or_the_data_is_an_error():
    X, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int64)
    outs = np.zeros(4, np.int64), np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(IndexError, match="outside the epoch's order or the data"):
        cpu_module.gather_batch(xp, X, y, np.arange(10), np.array([2]), 4, 0, 4, *outs)  # positions 8..11 of 10
    with pytest.raises(IndexError, match="outside the epoch's order or the data"):
        cpu_module.gather_batch(xp, X, y, np.array([0, 1, 2, 10]), np.array([0]), 4, 0, 4, *outs)  # row 10 of 10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["labels", "one_hot", "soft"])
def test_count_correct_counts_as_numpys_argmax(dtype, targets):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)).astype(dtype)
    logits[0] = [1, 3, 3, 0]            # a tie: the first largest
    logits[1] = [0, np.nan, 5, np.nan]  # a NaN: the first NaN
    labels = rng.integers(0, 4, 50)
    labels[:2] = [1, 1]
    y = {"labels": labels, "one_hot": np.eye(4, dtype=dtype)[labels],
         "soft": (0.1 + 0.6 * np.eye(4)[labels]).astype(dtype)}[targets]
    correct, counter = np.zeros(3, np.int64), np.array([1])
    cpu_module.count_correct(xp, logits, y, counter, correct)
    assert correct.tolist() == [0, int(np.sum(np.argmax(logits, axis=1) == labels)), 0] and correct[1] >= 2
    again = np.zeros(3, np.int64)
    reference.count_correct(xp, logits, y, counter, again)
    np.testing.assert_array_equal(correct, again)


def test_record_step_with_a_record_too_short_for_its_skip_slot_is_the_references_error():
    """The kernel writes the skip slot unchecked: a shorter record goes to the reference, which raises."""
    records = np.zeros((3, hyper.SKIP), np.float64)  # one slot short
    op = kernels.resolve("record_step", "numpy", "numba")
    with pytest.raises(IndexError):
        op(xp, np.asarray(1.0), np.array([0]), np.zeros(3), np.zeros(hyper.SKIP), records, flags=np.zeros(3, np.int8),
           bad=np.zeros(()))
    assert cpu_module.record_step(xp, np.asarray(1.0), np.array([0]), np.zeros(3), np.zeros(hyper.SKIP), records,
                                  flags=np.zeros(3, np.int8), bad=np.zeros(())) is NotImplemented
