"""CUDA kernels: the simulator suite (own process), PTX compilation for Hopper, and CuPy on a real GPU."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import AVAILABLE

HERE = Path(__file__).parent


@pytest.mark.cudasim
def test_cuda_kernels_pass_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "cudasim")],
                          capture_output=True, text=True, env=env, cwd=HERE.parent)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def _nvvm_available():
    try:
        from numba import cuda

        cuda.compile_ptx(lambda x: None, "void(float32[::1])", cc=(9, 0))
        return True
    except Exception:
        return False


@pytest.mark.cudasim
@pytest.mark.skipif(not _nvvm_available(), reason="NVVM not available for PTX compilation")
def test_cuda_kernels_compile_to_ptx_for_compute_capability_9(monkeypatch):
    from types import SimpleNamespace

    import numba.cuda.dispatcher
    from numba import cuda

    from mlp_backend.kernels import cuda as K

    # Overloads (the element functions, fast_*) compile as device functions for the current device; without a
    # GPU there is none, so present an sm_90 one: the PTX below is built for exactly that.
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=(9, 0)))

    f32, a1, a2, i64 = "float32", "float32[::1]", "float32[:, ::1]", "int64[::1]"
    signatures = {
        K._xent_kernel: f"void({a2}, {i64}, float64, float64, {a2}, float64[::1])",
        K._bce_kernel: f"void({a1}, {a1}, float64, {a1}, {a1})",
        K._dropout_mask_kernel: f"void({a1}, uint64[::1], float64, {f32})",
        K._count_mask_kernel: "void(uint64[::1])",
        K._mean_kernel: f"void(float64[::1], {a1})",
        K._gather_batch_kernel: f"void({a2}, int64[:, ::1], {i64}, {i64}, int64, int64, {i64}, {a2}, int64[:, ::1])",
        K._count_correct_kernel: f"void({a2}, int64[:, ::1], boolean, {i64}, {i64})",
        K._record_step_kernel: f"void({a1}, {i64}, {a1}, {a1}, {a2}, int8[::1], {a1}, {a1}, boolean, boolean, boolean)",
    }
    for kernel in K._UPDATE.values():  # every rule of the optimizer table
        signatures[kernel] = f"void({a1}, {a1}, {a1}, {a1}, {a1})"
    for name in K.CODES:  # every activation of the table, both ways
        signatures[K._BIAS_ACT[name]] = f"void({a2}, {a1}, boolean, {f32})"
        signatures[K._ACT_BACKWARD[name]] = f"void({a1}, {a1}, {f32}, {a1})"
        signatures[K._ACT_BACKWARD_BIAS[name]] = f"void({a2}, {a2}, {f32}, {a2}, {a1})"
    from mlp_backend.kernels import gemm

    a3 = "float32[:, :, ::1]"
    gemm_sig = f"void({a2}, {a2}, {a3}, {a1}, {a2}, boolean, {f32}, boolean, boolean, int64)"
    for act, backward in (("identity", False), ("relu", False), ("gelu", False), ("relu", True), ("gelu", True)):
        for split in (False, True):
            for prefetch in (False, True):
                tile = gemm.Tile(prefetch=prefetch)
                signatures[gemm._kernel(K.CODES[act], backward, False, tile, split)] = gemm_sig
        signatures[gemm._reduce_kernel(K.CODES[act], backward)] = f"void({a3}, {a2}, {a1}, {a2}, boolean, {f32})"
    flags = "boolean, boolean, boolean"
    others = [(K._count_correct_kernel, f"void({a2}, {a2}, boolean, {i64}, {i64})"),  # one-hot targets
              # no checks and no record: the loss stands in for the arrays not given
              (K._record_step_kernel, f"void({a1}, {i64}, {a1}, {a1}, {a2}, {a1}, {a1}, {a1}, {flags})")]
    for kernel, sig in [*signatures.items(), *others]:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert ".target sm_90" in ptx, kernel.py_func.__name__


@pytest.mark.parametrize("a_transposed", [False, True])
@pytest.mark.parametrize("b_transposed", [False, True])
def test_the_cublas_call_gives_the_row_major_product_for_every_transpose(a_transposed, b_transposed):
    """cuBLAS reads a C-contiguous r x c array as the column-major c x r matrix with leading dimension c: the call
    computes C^T = op(B memory) @ op(A memory) there, which read back row-major is A @ B."""
    from mlp_backend.kernels.cublas import column_major_call

    rng = np.random.default_rng(0)
    m, k, n = 5, 7, 3
    a_mem = rng.normal(size=(k, m) if a_transposed else (m, k))
    b_mem = rng.normal(size=(n, k) if b_transposed else (k, n))
    a, b = (a_mem.T if a_transposed else a_mem), (b_mem.T if b_transposed else b_mem)
    op_x, op_y, rows, cols, depth, ldx, ldy, ldc = column_major_call(a.shape, a_transposed, b.shape, b_transposed)

    def operand(memory, ld, op):  # the column-major matrix cuBLAS sees in the memory, then op
        assert memory.shape[1] == ld
        seen = memory.T
        return seen.T if op else seen

    result = operand(b_mem, ldx, op_x) @ operand(a_mem, ldy, op_y)  # column-major, rows x cols
    assert result.shape == (rows, cols) == (n, m) and depth == k and ldc == rows
    np.testing.assert_allclose(result.T, a @ b, rtol=1e-12)


def test_graph_products_setting_is_checked(monkeypatch):
    from mlp_backend.backends import cupy as cupy_backend
    from mlp_backend.kernels import cublas

    monkeypatch.setenv("MLP_GRAPH_PRODUCTS", "tensorcores")
    with pytest.raises(ValueError, match="MLP_GRAPH_PRODUCTS must be one of gemm, cublas, got 'tensorcores'"):
        cupy_backend.graph_products_setting()
    monkeypatch.setenv("MLP_GRAPH_PRODUCTS", "cublas")
    monkeypatch.setattr(cublas, "available", lambda: False)
    with pytest.raises(ValueError, match="needs nvmath-python: pip install nvmath-python"):
        cupy_backend.graph_products_setting()
    monkeypatch.delenv("MLP_GRAPH_PRODUCTS")
    assert cupy_backend.graph_products_setting() == "gemm"


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE or __import__("importlib").util.find_spec("nvmath") is None,
                    reason="needs CuPy, nvmath-python and a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_products_through_nvmath_record_into_a_graph(dtype):
    import cupy

    from mlp_backend.kernels import cublas

    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.normal(size=(64, 784)), dtype=dtype)
    w = cupy.asarray(rng.normal(size=(784, 500)), dtype=dtype)
    dz = cupy.asarray(rng.normal(size=(64, 500)), dtype=dtype)
    # forward x @ W, weight gradient x.T @ dz, input gradient dz @ W.T: (a, b, trans_a, trans_b)
    products = ((x, w, False, False), (x, dz, True, False), (dz, w, False, True))
    expected = [cupy.matmul(a.T if ta else a, b.T if tb else b) for a, b, ta, tb in products]
    outs = [cupy.empty(e.shape, dtype=dtype) for e in expected]
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for (a, b, ta, tb), out in zip(products, outs):
            cublas.gemm(a, b, out, trans_a=ta, trans_b=tb)  # eagerly first: the handle is made outside the recording
            out.fill(np.nan)
        stream.begin_capture()
        for (a, b, ta, tb), out in zip(products, outs):
            cublas.gemm(a, b, out, trans_a=ta, trans_b=tb)
        graph = stream.end_capture()
        assert bool(cupy.isnan(outs[0]).all())  # recorded, not run
        graph.launch(stream)
        stream.synchronize()
    tol = 1e-12 if dtype == "float64" else 1e-4
    for out, e in zip(outs, expected):
        np.testing.assert_allclose(out.get(), e.get(), rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu"])
def test_a_recorded_dense_forward_fuses_bias_and_activation_into_its_product(dtype, activation):
    """kernels/gemm.py's forward epilogue gives the bits of its plain product followed by the elementwise pass, and
    the layer's output matches the eager one (cuBLAS) to rounding."""
    import cupy

    import mlp_backend as mlp

    be = mlp.get_backend("cupy", dtype=dtype)
    model = mlp.build_mlp([784, 500, 10], activation, backend=be)
    layer, rng = model.layers[0], np.random.default_rng(0)
    layer.params["b"][...] = cupy.asarray(rng.normal(size=500), dtype=dtype)  # not the zeros it starts at
    x = cupy.asarray(rng.normal(size=(64, 784)), dtype=dtype)
    eager = layer.forward(x)
    with be.graph_products():
        fused = layer.forward(x)
        z = be.compute("matmul", x, layer.params["W"])
        z = model.ops.bias_act(be.xp, z, layer.params["b"], "identity")
        apart = model.ops.bias_act(be.xp, z, None, activation, layer.alpha)
    assert bool((fused == apart).all())
    tol = 1e-12 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(fused.get(), eager.get(), rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_kernels_match_the_reference_on_the_gpu(dtype):
    import array_api_compat.cupy as xp

    from mlp_backend.kernels import cuda as K
    from mlp_backend.kernels import reference

    rng = np.random.default_rng(0)
    z = xp.asarray(rng.normal(size=(257, 1000)) * 4, dtype=getattr(xp, dtype))
    y = xp.asarray(rng.integers(0, 1000, 257))
    loss, grad = K.softmax_cross_entropy(xp, z, y, 0.1)
    rloss, rgrad = reference.softmax_cross_entropy(xp, z, y, 0.1)
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(float(loss), float(rloss), rtol=tol)
    np.testing.assert_allclose(grad.get(), rgrad.get(), rtol=tol, atol=tol * 1e-2)
    for act in ("relu", "gelu"):  # the derivative and the bias gradient in one pass
        bias, rbias = xp.zeros(1000, dtype=z.dtype), xp.zeros(1000, dtype=z.dtype)
        dz = K.act_backward(xp, grad, z, act, bias_grad=bias)
        rdz = reference.act_backward(xp, grad, z, act, bias_grad=rbias)
        np.testing.assert_allclose(dz.get(), rdz.get(), rtol=tol, atol=tol * 1e-2)
        np.testing.assert_allclose(bias.get(), rbias.get(), rtol=tol * 10, atol=tol * 1e-1)
    p = xp.asarray(rng.normal(size=100_001), dtype=getattr(xp, dtype))
    g = xp.asarray(rng.normal(size=100_001), dtype=getattr(xp, dtype))
    states = [[xp.zeros_like(p), xp.zeros_like(p)] for _ in range(2)]
    params = [p.copy(), p.copy()]
    from mlp_backend import AdamW
    from mlp_backend.kernels import hyper

    opt = AdamW(1e-2, weight_decay=0.1)
    for step in range(1, 4):
        hp = xp.asarray(hyper.pack("adam", {**opt.scalars(opt.lr, step), "grad_scale": 1.0, "skip": 0.0}),
                        dtype=p.dtype)
        assert K.optimizer_update(xp, "adam", params[0], g, *states[0], hp) is None  # fused, not declined
        reference.optimizer_update(xp, "adam", params[1], g, *states[1], hp)
    np.testing.assert_allclose(params[0].get(), params[1].get(), rtol=tol * 10, atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_steps_bookkeeping_kernels_match_the_reference_on_the_gpu(dtype):
    import array_api_compat.cupy as xp

    from mlp_backend.kernels import cuda as K
    from mlp_backend.kernels import reference

    rng = np.random.default_rng(0)
    X = xp.asarray(rng.normal(size=(300, 784)), dtype=getattr(xp, dtype))
    labels = rng.integers(0, 10, 300)
    order = xp.asarray(rng.permutation(300))
    logits = rng.normal(size=(64, 10))
    logits[0, 3] = np.nan
    logits = xp.asarray(logits, dtype=getattr(xp, dtype))
    for y in (xp.asarray(labels), xp.asarray(np.eye(10)[labels], dtype=getattr(xp, dtype))):
        results = []
        for ops in (K, reference):
            counter, correct = xp.asarray([2]), xp.zeros(5, dtype=xp.int64)
            outs = (xp.zeros(64, dtype=xp.int64), xp.zeros((64, 784), dtype=X.dtype),
                    xp.zeros((64, *y.shape[1:]), dtype=y.dtype))
            idx, xb, yb = ops.gather_batch(xp, X, y, order, counter, 64, 0, 64, *outs)
            ops.count_correct(xp, logits, yb, counter, correct)
            results.append([a.get() for a in (idx, xb, yb, correct)])
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
        assert results[0][3][2] > 0
    results = []
    for ops in (K, reference):
        counter, losses, flags = xp.asarray([0]), xp.zeros(3, dtype=X.dtype), xp.zeros(3, dtype=xp.int8)
        bad, record, records = xp.zeros((), dtype=X.dtype), xp.zeros(6, dtype=X.dtype), xp.ones((3, 6), dtype=X.dtype)
        for value, grad_sum in ((1.0, 0.0), (2.0, np.inf), (3.0, 0.0)):
            ops.record_step(xp, xp.asarray(value, dtype=X.dtype), counter, losses, record, records, flags=flags,
                            bad=bad, grad_sum=xp.asarray(grad_sum, dtype=X.dtype))
        results.append([a.get() for a in (counter, losses, flags, bad, record)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert results[0][2].tolist() == [0, 2, 0] and results[0][0].tolist() == [3]


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
def test_cupy_training_with_dropout_resumes_bit_identically(tmp_path):
    """Dropout masks come from seeds the (checkpointed) host generator draws: resuming changes nothing."""
    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic

    data = make_synthetic(n_samples=600, n_features=12, n_classes=3, seed=0)

    def run(**kw):
        model = mlp.build_mlp([12, 32, 3], "relu", dropout=0.3, backend="cupy", seed=0)
        model.fit(data.X_train, data.y_train, optimizer=mlp.Adam(1e-2), batch_size=32, seed=1, **kw)
        return model

    full = run(epochs=2)
    path = tmp_path / "ck.safetensors"
    run(epochs=1, checkpoint=path)
    resumed = run(epochs=2, resume=path)
    np.testing.assert_array_equal(full.flat_params.get(), resumed.flat_params.get())


def _graph_recipe(batch_norm=False, **fit):
    """float64, dropout, Adam with a schedule and clipping, L2, a last partial batch: every part of a step."""
    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic

    data = make_synthetic(n_samples=600, n_features=12, n_classes=3, seed=0)
    model = mlp.build_mlp([12, 32, 16, 3], "relu", dropout=0.2, batch_norm=batch_norm, backend="cupy",
                          dtype="float64", seed=0)
    opt = mlp.Adam(1e-2, clip_norm=1.0, schedule=mlp.StepDecay(0.5, every=10))
    history = model.fit(data.X_train, data.y_train, optimizer=opt, penalty=1e-4, batch_size=64, seed=1, **fit)
    return model, opt, history


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cupy_graph_mode_trains_as_the_eager_steps(batch_norm):
    """Replays of one recorded step give the eager run's losses: the products differ (kernels/gemm.py in the graph,
    cuBLAS eagerly) only in rounding, so float64 agrees to 1e-9. With BatchNorm too (its statistics' arrays are
    new at every step: the recording keeps them)."""
    eager, eager_opt, eager_history = _graph_recipe(batch_norm, epochs=2, graph=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a recording that fails and falls back fails the test
        model, opt, history = _graph_recipe(batch_norm, epochs=2, graph="auto")
    np.testing.assert_allclose(history.loss, eager_history.loss, rtol=1e-9)
    np.testing.assert_allclose(model.flat_params.get(), eager.flat_params.get(), rtol=1e-8, atol=1e-12)
    assert opt.step_count == eager_opt.step_count and history.train_accuracy == eager_history.train_accuracy


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
def test_cupy_graph_mode_records_a_loss_written_with_array_functions():
    """MSE computes with array functions; the step copies its gradient into the program's array, inside the
    recording too: the replays give the eager run's losses."""
    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic

    data = make_synthetic(n_samples=600, n_features=12, n_classes=3, seed=0)
    target = data.X_train[:, :2] @ np.array([1.0, -2.0])

    def fit(graph):
        model = mlp.build_mlp([12, 32, 1], "tanh", dropout=0.2, backend="cupy", dtype="float64", seed=0)
        return model.fit(data.X_train, target, loss="mse", optimizer=mlp.Adam(1e-2), batch_size=64, epochs=2,
                         seed=1, graph=graph).loss

    eager = fit(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a recording that fails and falls back fails the test
        np.testing.assert_allclose(fit(True), eager, rtol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
def test_cupy_graph_mode_resumes_bit_identically(tmp_path):
    full, _, _ = _graph_recipe(epochs=2, graph=True)
    path = tmp_path / "ck.safetensors"
    _graph_recipe(epochs=1, graph=True, checkpoint=path)
    resumed, _, _ = _graph_recipe(epochs=2, graph=True, resume=path)
    np.testing.assert_array_equal(full.flat_params.get(), resumed.flat_params.get())


@pytest.mark.gpu
@pytest.mark.skipif("cupy" not in AVAILABLE, reason="needs CuPy and a CUDA GPU")
def test_cupy_graph_mode_stops_at_a_non_finite_step_before_its_update():
    """A loss that turns NaN at its 6th step, counted on the device (a replay runs no Python): the flag on the device
    skips that update and every later one, and fit reports the step."""
    import cupy

    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic
    from mlp_backend.losses import SoftmaxCrossEntropy

    class NanAtStep(SoftmaxCrossEntropy):
        def __init__(self, step):
            super().__init__()
            table = np.ones(64)
            table[step - 1] = np.nan
            self.table, self.calls = cupy.asarray(table), cupy.zeros(1, dtype=cupy.int64)

        def value_and_grad(self, xp, ops, output, target, out=None):
            value, grad = super().value_and_grad(xp, ops, output, target, out=out)
            factor = cupy.take(self.table, self.calls)[0]
            cupy.add(self.calls, 1, out=self.calls)
            return value * factor, grad

    data = make_synthetic(n_samples=1000, n_features=12, n_classes=3, seed=0)
    X, y = data.X_train[:640], data.y_train[:640]
    assert X.shape[0] == 640
    good = mlp.build_mlp([12, 32, 3], "relu", backend="cupy", dtype="float64", seed=0)
    good.fit(X[:5 * 64], y[:5 * 64], optimizer=mlp.Adam(1e-2), epochs=1, batch_size=64, shuffle=False, graph=True)
    model = mlp.build_mlp([12, 32, 3], "relu", backend="cupy", dtype="float64", seed=0)
    opt = mlp.Adam(1e-2)
    with pytest.raises(FloatingPointError, match=r"loss became non-finite at epoch 1, step 6"):
        model.fit(X, y, loss=NanAtStep(6), optimizer=opt, epochs=1, batch_size=64, shuffle=False, graph=True)
    np.testing.assert_array_equal(model.flat_params.get(), good.flat_params.get())
    assert opt.step_count == 5
