"""The step program: the same numbers as a plain step-by-step loop, a non-finite step stopped on the device,
host reads only where fit asks for them, and one-hot targets."""
import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import to_numpy
from mlp_backend.data import make_synthetic
from mlp_backend.losses import SoftmaxCrossEntropy
from mlp_backend.step import StepCalls, StepProgram

from conftest import AVAILABLE, BACKEND_DEVICES


def blobs(n=200):
    data = make_synthetic(n_samples=n, n_features=8, n_classes=3, seed=0)
    return data.X_train.astype(np.float64), data.y_train


def recipe(batch_norm=False):
    """Adam with a schedule and global-norm clipping, L2, dropout: every piece of the step at once."""
    model = mlp.build_mlp([8, 16, 3], "tanh", dropout=0.2, batch_norm=batch_norm, dtype="float64", seed=3)
    opt = mlp.Adam(1e-2, clip_norm=0.5, schedule=mlp.StepDecay(0.5, every=7))
    return model, opt, mlp.L2(1e-3)


def plain_loop(model, opt, penalty, X, y, epochs, batch_size):
    """What fit did before the step program: each step read back and checked on the host."""
    be, xp = model.be, model.be.xp
    loss = SoftmaxCrossEntropy()
    Xd, yd = be.asarray(X), be.asarray_int(y)
    opt.init(be, model.flat_params)
    weights = [layer.params["W"] for layer in model.layers if "W" in layer.params]
    grads = [layer.grads["W"] for layer in model.layers if "W" in layer.grads]
    losses = []
    for _ in range(epochs):
        order = be.asarray_int(be.permutation(X.shape[0]))
        for lo in range(0, X.shape[0], batch_size):
            idx = order[lo:lo + batch_size]
            out = model.forward(be.take_rows(Xd, idx), training=True)
            value, grad = loss.value_and_grad(xp, model.ops, out, be.take_rows(yd, idx))
            model.backward(grad)
            for w, g in zip(weights, grads):
                g += penalty.grad(be, w)
            value = float(value + sum(penalty.value(be, w) for w in weights))
            assert np.isfinite(value)
            opt.step(model.flat_params, model.flat_grads, model.ops)
            losses.append(value)
    return losses


def test_fit_gives_the_plain_loops_losses_to_the_last_bit():
    X, y = blobs()
    model, opt, penalty = recipe()
    expected = plain_loop(model, opt, penalty, X, y, epochs=2, batch_size=32)
    model2, opt2, penalty2 = recipe()
    history = model2.fit(X, y, optimizer=opt2, penalty=penalty2, epochs=2, batch_size=32)
    assert history.loss == expected  # bit for bit, float64
    np.testing.assert_array_equal(to_numpy(model2.flat_params), to_numpy(model.flat_params))
    assert opt2.step_count == opt.step_count == 2 * -(-X.shape[0] // 32)


class Poisoned:
    """A loss (mixed in before its class) that turns non-finite on one call: its value NaN or, with ``gradient``, one
    gradient element infinite under a finite value. A divergence at a step we choose."""

    def __init__(self, call, gradient=False):
        super().__init__()
        self.call, self.calls, self.gradient = call, 0, gradient

    def value_and_grad(self, xp, ops, output, target):
        value, grad = super().value_and_grad(xp, ops, output, target)
        self.calls += 1
        if self.calls != self.call:
            return value, grad
        if not self.gradient:
            return value * float("nan"), grad
        grad = grad.copy()
        grad[0, 0] = float("inf")
        return value, grad


class PoisonAt(Poisoned, SoftmaxCrossEntropy):
    """Cross-entropy whose loss is NaN on one call."""


def test_every_full_batch_is_the_same_call_driven_by_the_device_counter():
    """What replaying a captured step needs: a step takes no step number. It reads its samples' positions in
    the order, its result slots and its optimizer record from the program's counter on the device and
    advances it, so calling ``run(X, y)`` with the same arguments every step gives fit's numbers to the bit
    (float64, 2 epochs, dropout, Adam with a schedule and clipping, L2, a last partial batch)."""
    X, y = blobs()
    n, batch = X.shape[0], 48
    model, opt, penalty = recipe()
    expected = model.fit(X, y, optimizer=opt, penalty=penalty, epochs=2, batch_size=batch, seed=5).loss
    model, opt, penalty = recipe()
    be = model.be
    opt.init(be, model.flat_params)
    be.reseed(5)
    steps = -(-n // batch)
    program = StepProgram(model, SoftmaxCrossEntropy(), opt, steps=steps, batch_size=batch, penalty=penalty)
    Xd, yd, losses = be.asarray(X), be.asarray_int(y), []
    for epoch in range(2):
        program.begin_epoch(be.permutation(n), 0)
        for _ in range(n // batch):
            program.run(Xd, yd)
        program.run(Xd, yd, (0, n % batch))  # the partial batch: its own part, the same counter
        assert int(program.counter[0]) == steps
        losses += program.read(0, steps).losses.tolist()
    assert n % batch and losses == expected


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_a_non_finite_step_is_stopped_on_the_device_before_its_update(backend):
    if backend not in AVAILABLE:
        pytest.skip(f"{backend} not installed")
    X, y = blobs()
    # the step before the poisoned one, for reference: parameters after 4 good steps
    good = mlp.build_mlp([8, 16, 3], "relu", backend=backend, device=BACKEND_DEVICES[backend], seed=1)
    good.fit(X[:4 * 20], y[:4 * 20], optimizer=mlp.Adam(1e-2), epochs=1, batch_size=20, shuffle=False)
    model = mlp.build_mlp([8, 16, 3], "relu", backend=backend, device=BACKEND_DEVICES[backend], seed=1)
    opt = mlp.Adam(1e-2)
    # no progress callback: fit reads the losses only at the epoch's end, 5 steps after the bad one
    with pytest.raises(FloatingPointError, match=r"loss became non-finite at epoch 1, step 5 \(loss nan\)"):
        model.fit(X, y, loss=PoisonAt(5), optimizer=opt, epochs=1, batch_size=20, shuffle=False)
    np.testing.assert_array_equal(to_numpy(model.flat_params), to_numpy(good.flat_params))
    np.testing.assert_array_equal(to_numpy(opt.state["exp_avg_sq"]), to_numpy(good.optimizer.state["exp_avg_sq"]))
    assert opt.step_count == 4  # the skipped updates are not counted


@pytest.mark.skipif("array_api_strict" not in AVAILABLE, reason="array_api_strict not installed")
def test_fit_reads_the_device_only_where_it_says(monkeypatch):
    """array_api_strict on its non-default device: count every device-to-host transfer and scalar read."""
    import array_api_strict

    Array = type(array_api_strict.asarray(0.0))
    reads = []
    for method in ("__float__", "__int__", "__bool__", "__index__", "to_device"):
        original = getattr(Array, method)

        def spy(self, *args, _original=original, _name=method, **kwargs):
            if _name != "to_device" or args[0] == array_api_strict.Device("CPU_DEVICE"):
                reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Array, method, spy)
    calls = []
    original_read = StepProgram.read
    monkeypatch.setattr(StepProgram, "read", lambda self, *a: calls.append(a) or original_read(self, *a))
    X, y = blobs()
    model = mlp.build_mlp([8, 16, 3], "relu", backend="array_api_strict", device=BACKEND_DEVICES["array_api_strict"])
    reads.clear()
    model.fit(X, y, epochs=2, batch_size=20, optimizer=mlp.Adam(1e-2, clip_norm=1.0), penalty=1e-4)
    steps = -(-X.shape[0] // 20)
    assert calls == [(0, steps), (0, steps)]  # read once at each epoch's end
    assert len(reads) == 2 * 3, reads  # each read: flags, losses, correct counts; nothing between


def test_one_hot_targets_train_and_evaluate():
    X, y = blobs()
    onehot = np.eye(3)[y]
    model = mlp.build_mlp([8, 16, 3], "relu", seed=0)
    history = model.fit(X, onehot, epochs=5, batch_size=3, optimizer=mlp.Adam(1e-2))
    same = mlp.build_mlp([8, 16, 3], "relu", seed=0)
    labels = same.fit(X, y, epochs=5, batch_size=3, optimizer=mlp.Adam(1e-2))
    np.testing.assert_allclose(history.loss, labels.loss, rtol=1e-5, atol=1e-6)  # soft-label path vs fused kernel
    assert history.train_accuracy == labels.train_accuracy
    assert model.evaluate(X, onehot)["accuracy"] == same.evaluate(X, y)["accuracy"] > 0.8


def test_sample_weights_are_a_weighted_mean_per_batch():
    """Weight 2 equals the sample twice (one full batch, plain SGD), weights of one equal none, zero drops it."""
    X, y = blobs(60)
    n = X.shape[0]

    def trained(X, y, **kw):
        model = mlp.build_mlp([8, 16, 3], "tanh", dtype="float64", seed=0)
        history = model.fit(X, y, optimizer=mlp.SGD(0.1), epochs=3, batch_size=len(y), shuffle=False, **kw)
        return np.asarray(model.flat_params), history.loss

    w = np.ones(n)
    w[:10] = 2.0
    weighted, losses = trained(X, y, sample_weight=w)
    doubled, doubled_losses = trained(np.concatenate([X, X[:10]]), np.concatenate([y, y[:10]]))
    np.testing.assert_allclose(weighted, doubled, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(losses, doubled_losses, rtol=1e-12)
    plain, plain_losses = trained(X, y)
    ones, ones_losses = trained(X, y, sample_weight=np.ones(n))
    np.testing.assert_allclose(ones, plain, rtol=1e-12, atol=1e-14)
    w = np.ones(n)
    w[-5:] = 0.0
    np.testing.assert_allclose(trained(X, y, sample_weight=w)[0], trained(X[:-5], y[:-5])[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="one weight per sample"):
        trained(X, y, sample_weight=np.ones(n - 1))
    with pytest.raises(ValueError, match="non-negative and not all zero"):
        trained(X, y, sample_weight=-np.ones(n))


def test_a_step_copies_nothing_to_the_device(monkeypatch):
    """The optimizer's per-step scalars arrive with the epoch's records (one copy per epoch), not per step."""
    copies = {"in_steps": 0, "per_epoch": 0}
    inside = [False]
    X, y = blobs()
    model = mlp.build_mlp([8, 16, 3], "relu")
    Backend = type(model.be)  # the library's class: its own upload, the shared asarray
    original_asarray, original_run = Backend.asarray, StepProgram._run
    original_upload = Backend.upload

    def asarray(self, *args, **kwargs):
        copies["in_steps" if inside[0] else "per_epoch"] += 1
        return original_asarray(self, *args, **kwargs)

    def upload(self, *args, **kwargs):
        copies["in_steps" if inside[0] else "per_epoch"] += 1
        return original_upload(self, *args, **kwargs)

    def run(self, *args):
        inside[0] = True
        try:
            return original_run(self, *args)
        finally:
            inside[0] = False
    monkeypatch.setattr(Backend, "asarray", asarray)
    monkeypatch.setattr(Backend, "upload", upload)
    monkeypatch.setattr(StepProgram, "_run", run)
    model.fit(X, y, epochs=3, batch_size=20, optimizer=mlp.Adam(1e-2, clip_norm=1.0), penalty=1e-4)
    # X once, then each epoch's order, records and step counter
    assert copies == {"in_steps": 0, "per_epoch": 1 + 3 * 3}


def _step_program(batch, features=32, classes=10):
    """Every layer kind that takes static buffers, and every part of the step: dropout, an activation saving
    its input (GELU), a separate activation layer, L2, clipping, Adam with a schedule."""
    model = mlp.Sequential([mlp.layers.Dense(features, 48, "gelu"), mlp.layers.Dropout(0.3),
                            mlp.layers.Dense(48, 32), mlp.layers.ReLU(), mlp.layers.Dense(32, classes)],
                           dtype="float64", seed=0)
    opt = mlp.Adam(1e-3, clip_norm=1.0, schedule=mlp.StepDecay(0.5, every=2))
    opt.init(model.be, model.flat_params)
    program = StepProgram(model, SoftmaxCrossEntropy(), opt, steps=4, batch_size=batch, penalty=mlp.L2(1e-4))
    rng = np.random.default_rng(0)
    program.begin_epoch(rng.permutation(4 * batch), 0)
    X = model.be.asarray(rng.normal(size=(4 * batch, features)))
    y = model.be.asarray_int(rng.integers(0, classes, 4 * batch))
    return program, X, y


def _transient_bytes(batch):
    """The most memory (NumPy's, Numba's and Python's: tracemalloc sees them all) held at once during a step
    beyond what was held before it, for the third step of a program at ``batch``."""
    import tracemalloc

    program, X, y = _step_program(batch)
    for step in range(2):
        program.run(X, y)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        program.run(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def test_a_step_allocates_nothing_that_grows_with_the_batch():
    """From its second step on a step writes into the program's arrays: 64 times the batch, and the memory a
    step holds at its peak grows by less than one byte per added sample (one batch-length array of bools
    would be a byte per sample; a gathered batch, 256). What remains is constant: 0-d results, Python objects."""
    small, large = _transient_bytes(256), _transient_bytes(256 * 64)
    assert large - small < 256 * 63, (small, large)


def test_the_step_reuses_its_arrays_and_lends_them_to_no_one_else():
    program, X, y = _step_program(64)
    model = program.model
    program.run(X, y)
    made = len(program.workspace)
    addresses = [layer._saved.ctypes.data for layer in model.layers if hasattr(layer, "_saved")]
    program.run(X, y)
    assert len(program.workspace) == made > 10
    assert [layer._saved.ctypes.data for layer in model.layers if hasattr(layer, "_saved")] == addresses
    assert all(layer.workspace is None for layer in model.layers)  # handed over for the step only
    first = model.forward(X[:64, ...], training=True)
    assert model.forward(X[:64, ...], training=True) is not first  # a user's calls get new arrays
    program.run(X, y, (0, 10))  # another batch shape: its own arrays
    assert len(program.workspace) > made
    order, records = program.order, program.records
    program.begin_epoch(np.arange(4 * 64), 0)  # a new epoch: the same arrays, refilled
    assert program.order is order and program.records is records and order.tolist() == list(range(4 * 64))


def _fit_planned_or_not(monkeypatch, planned, activation="relu", dtype="float32", callbacks=(), epochs=3):
    """A fit whose Dense layers run their planned calls (the default) or every call whole (no plans kept)."""
    from mlp_backend.backend import Workspace

    monkeypatch.setattr(Workspace, "PLANS_PER_CALL", Workspace.PLANS_PER_CALL if planned else 0)
    X, y = blobs(250)  # 200 training samples: 6 full batches of 32 and a last, partial one of 8
    model = mlp.build_mlp([8, 16, 12, 3], activation, dropout=0.1, dtype=dtype, seed=1)
    history = model.fit(X.astype(dtype), y, optimizer=mlp.Adam(1e-2), epochs=epochs, batch_size=32,
                        callbacks=list(callbacks), seed=0)
    return history, to_numpy(model.flat_params)


@pytest.mark.parametrize("activation, dtype", [("relu", "float32"), ("gelu", "float64"), ("elu", "float32")])
def test_planned_calls_give_the_bits_of_every_call_made_whole(monkeypatch, activation, dtype):
    """From its second step a Dense layer makes just the kernel and BLAS calls it resolved at its first (the
    forward and backward of a full batch, and of the last, partial one): the same numbers to the last bit, GELU
    (which keeps its input) and dropout between the layers included."""
    planned, params = _fit_planned_or_not(monkeypatch, True, activation, dtype)
    whole, whole_params = _fit_planned_or_not(monkeypatch, False, activation, dtype)
    assert planned.loss == whole.loss and planned.train_accuracy == whole.train_accuracy
    np.testing.assert_array_equal(params, whole_params)


def test_a_dense_layer_plans_its_calls_once_per_batch_shape(monkeypatch):
    """The ops' own checks run while a layer plans (a full batch's step and the partial one's), not at every step."""
    from mlp_backend import kernels

    counts = {"bias_act": 0, "act_backward": 0}

    def counting(op, name):
        def call(*args, **kwargs):
            counts[name] += 1
            return op(*args, **kwargs)
        call.bind = op.bind  # the op's binder: the layer still plans
        return call

    real = kernels.kernel_set

    def kernel_set(*args, **kwargs):
        ops = real(*args, **kwargs)
        for name in counts:
            setattr(ops, name, counting(getattr(ops, name), name))
        return ops

    monkeypatch.setattr(kernels, "kernel_set", kernel_set)
    _fit_planned_or_not(monkeypatch, True)  # 3 epochs of 6 full batches and a partial one
    # 3 Dense layers, each op called whole where the layer plans: a full batch's first step, the partial one's
    assert counts == {"bias_act": 3 * 2, "act_backward": 3 * 2}
    _fit_planned_or_not(monkeypatch, False)
    assert counts == {"bias_act": 3 * 2 + 3 * 21, "act_backward": 3 * 2 + 3 * 21}


def test_a_layer_changed_during_fit_leaves_its_plans(monkeypatch):
    """A plan holds for the very objects it was made with: a callback that swaps a layer's activation mid-fit
    gets the changed layer's numbers, as without plans."""
    class Swap(mlp.Callback):
        def on_epoch_end(self, state, logs):
            if state.epoch == 0:
                state.model.layers[0].activation = "tanh"

    planned, params = _fit_planned_or_not(monkeypatch, True, callbacks=[Swap()])
    whole, whole_params = _fit_planned_or_not(monkeypatch, False, callbacks=[Swap()])
    assert planned.loss == whole.loss
    np.testing.assert_array_equal(params, whole_params)


def test_a_call_fed_new_objects_every_step_stops_being_planned():
    """Past a few keys nothing more is planned, so a layer fed new arrays at every step (a loss's gradient for
    one-hot targets) does not pay for a plan it never reuses."""
    from mlp_backend.backend import Workspace, get_backend

    ws, made, owner, keys = Workspace(get_backend("numpy")), [], object(), []
    for step in range(Workspace.PLANS_PER_CALL + 3):
        keys.append((np.zeros(2),))  # a new array each step
        assert ws.planned(owner, "forward", keys[-1]) is None
        ws.keep_plan(owner, "forward", keys[-1], lambda: made.append(step) or ("calls",))
    assert made == list(range(Workspace.PLANS_PER_CALL))
    assert ws.planned(owner, "forward", keys[0]) == ("calls",) and ws.planned(owner, "backward", keys[0]) is None


def test_ops_bind_only_what_their_kernels_run():
    from mlp_backend import kernels
    from mlp_backend.kernels import cpu

    ops, ref = kernels.kernel_set("numpy", "auto"), kernels.kernel_set("numpy", "reference")
    dy, saved, out = (np.ones((4, 3), np.float32) for _ in range(3))
    bias_grad = np.zeros(3, np.float32)
    call = kernels.bind(ops.act_backward, np, dy, saved, "relu", out=out, bias_grad=bias_grad)
    dy[0, 0], out[...] = 2.0, 0.0
    assert call() is None and out[0, 0] == 2.0 and bias_grad.tolist() == [5.0, 4.0, 4.0]
    assert kernels.bind(ref.act_backward, np, dy, saved, "relu", out=out) is None  # the reference binds nothing
    assert kernels.bind(ops.act_backward, np, dy, saved, "relu") is None  # no array to write into
    assert kernels.bind(ops.act_backward, np, dy.astype(np.float16), saved, "relu", out=out) is None
    big = np.ones((cpu.PARALLEL_MIN_ELEMENTS // 4, 4), np.float32)  # its bands follow the thread count
    assert kernels.bind(ops.act_backward, np, big, big, "relu", out=big.copy(), bias_grad=np.zeros(4, np.float32)) \
        is None
    z = np.zeros((2, 3), np.float32)
    kernels.bind(ops.bias_act, np, z, np.array([1.0, -1.0, 2.0], np.float32), "relu")()
    assert z.tolist() == [[1.0, 0.0, 2.0]] * 2
    assert kernels.bind(ops.bias_act, np, z[:, :2], None, "relu") is None  # not contiguous: the reference's


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch not installed")
def test_torch_cpu_tensors_train_through_numpy_views_to_the_same_bits():
    """torch CPU tensors take the same static buffers, dropout masks and products as NumPy arrays."""
    X, y = blobs()
    losses = {}
    for backend in ("numpy", "torch"):
        model = mlp.build_mlp([8, 32, 3], "relu", dropout=0.3, dtype="float64", backend=backend, seed=1)
        losses[backend] = model.fit(X, y, epochs=2, batch_size=32, optimizer=mlp.Adam(1e-2)).loss
    assert losses["torch"] == losses["numpy"]


class StandInRecorder:
    """NumPy standing in for a device that records steps (CuPy's CUDA graphs): ``capture`` returns a replay that
    runs the step's array work and then undoes what its Python did on the host (the optimizer's and the program's
    counts), as a replayed graph runs no Python. ``fit`` must do the host's part itself to give eager's numbers."""

    def __init__(self, monkeypatch, fail=False):
        from mlp_backend.backends.numpy import NumpyBackend

        self.recordings = self.replays = 0
        recorder = self

        def capture(be, step):
            if fail:
                raise RuntimeError("capture refused")
            recorder.recordings += 1
            owner = next(c.cell_contents for c in step.__closure__  # the program the recorded call belongs to
                         if isinstance(c.cell_contents, StepProgram))

            def replay():
                recorder.replays += 1
                hosts = (owner, owner.optimizer)
                counts = [{k: v for k, v in vars(h).items() if isinstance(v, (int, float))} for h in hosts]
                step()
                for h, kept in zip(hosts, counts):
                    vars(h).update(kept)
            return replay

        monkeypatch.setattr(NumpyBackend, "records_graphs", True)
        monkeypatch.setattr(NumpyBackend, "replays_calls", False)  # a device's recording, not NumPy's own
        monkeypatch.setattr(NumpyBackend, "capture", capture)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_recorded_step_replayed_gives_eager_numbers_to_the_last_bit(monkeypatch, batch_norm):
    X, y = blobs()
    n, batch = X.shape[0], 48
    model, opt, penalty = recipe(batch_norm)
    eager = model.fit(X, y, optimizer=opt, penalty=penalty, epochs=2, batch_size=batch, seed=5, graph=False)
    recorder = StandInRecorder(monkeypatch)
    model2, opt2, penalty2 = recipe(batch_norm)
    replayed = model2.fit(X, y, optimizer=opt2, penalty=penalty2, epochs=2, batch_size=batch, seed=5, graph=True)
    assert replayed.loss == eager.loss and replayed.train_accuracy == eager.train_accuracy
    np.testing.assert_array_equal(to_numpy(model2.flat_params), to_numpy(model.flat_params))
    for layer, layer2 in zip(model.layers, model2.layers):  # BatchNorm's running statistics
        for name, buffer in layer.buffers.items():
            np.testing.assert_array_equal(to_numpy(layer2.buffers[name]), to_numpy(buffer))
    assert opt2.step_count == opt.step_count
    # one recording per fit; every full batch after the first runs as a replay; the partial ones as usual
    assert n % batch and recorder.recordings == 1 and recorder.replays == 2 * (n // batch) - 1


def test_graph_mode_resumes_from_a_checkpoint_as_an_uninterrupted_run(monkeypatch, tmp_path):
    StandInRecorder(monkeypatch)
    X, y = blobs()

    def run(**kw):
        model, opt, penalty = recipe()
        model.fit(X, y, optimizer=opt, penalty=penalty, batch_size=48, seed=5, graph=True, **kw)
        return model

    full = run(epochs=3)
    path = tmp_path / "ck.safetensors"
    run(epochs=2, checkpoint=path)
    np.testing.assert_array_equal(to_numpy(run(epochs=3, resume=path).flat_params), to_numpy(full.flat_params))


def test_graph_mode_asked_where_no_step_can_be_recorded_is_an_error_and_auto_falls_back(monkeypatch):
    X, y = blobs()
    model, opt, _ = recipe()
    with pytest.raises(ValueError, match="graph must be 'auto', True or False, got 'sometimes'"):
        model.fit(X, y, optimizer=opt, epochs=1, graph="sometimes")
    model, opt, _ = recipe()
    eager = model.fit(X, y, optimizer=opt, epochs=2, batch_size=48, seed=5, graph=False).loss
    StandInRecorder(monkeypatch, fail=True)
    model, opt, _ = recipe()
    with pytest.warns(RuntimeWarning, match=r"graph mode is off for this fit: recording the training step failed "
                                            r"\(RuntimeError: capture refused\)"):
        assert model.fit(X, y, optimizer=opt, epochs=2, batch_size=48, seed=5).loss == eager  # "auto"
    assert opt.step_count == 2 * -(-X.shape[0] // 48)
    model, opt, _ = recipe()
    with pytest.raises(RuntimeError, match="capture refused"):
        model.fit(X, y, optimizer=opt, epochs=1, batch_size=48, graph=True)


def test_auto_records_batches_up_to_the_measured_limit_and_true_records_any(monkeypatch):
    from mlp_backend.train import GRAPH_AUTO_MAX_BATCH

    X, y = blobs(n=3 * GRAPH_AUTO_MAX_BATCH)
    recorder = StandInRecorder(monkeypatch)
    for batch, graph, recordings in ((GRAPH_AUTO_MAX_BATCH, "auto", 1), (GRAPH_AUTO_MAX_BATCH + 1, "auto", 1),
                                     (GRAPH_AUTO_MAX_BATCH + 1, True, 2)):
        model, opt, _ = recipe()
        model.fit(X, y, optimizer=opt, epochs=1, batch_size=batch, graph=graph)
        assert recorder.recordings == recordings, (batch, graph)


def test_graph_mode_stops_at_a_non_finite_step_before_its_update(monkeypatch):
    StandInRecorder(monkeypatch)
    X, y = blobs()
    good = mlp.build_mlp([8, 16, 3], "relu", seed=1)
    good.fit(X[:4 * 20], y[:4 * 20], optimizer=mlp.Adam(1e-2), epochs=1, batch_size=20, shuffle=False, graph=True)
    model, opt = mlp.build_mlp([8, 16, 3], "relu", seed=1), mlp.Adam(1e-2)
    with pytest.raises(FloatingPointError, match=r"loss became non-finite at epoch 1, step 5 \(loss nan\)"):
        model.fit(X, y, loss=PoisonAt(5), optimizer=opt, epochs=1, batch_size=20, shuffle=False, graph=True)
    np.testing.assert_array_equal(to_numpy(model.flat_params), to_numpy(good.flat_params))
    assert opt.step_count == 4


# -- a step replayed as its bound calls (NumPy, StepCalls) --------------------------------------
def _count_program_runs(monkeypatch):
    """A list that gets one entry per step run through the program (not replayed as its calls)."""
    runs, run = [], StepProgram.run
    monkeypatch.setattr(StepProgram, "run", lambda self, *a, **k: runs.append(1) or run(self, *a, **k))
    return runs


def _fit_replayed_or_not(graph, activation, dtype, optimizer, smoothing=0.0, penalty=None, callbacks=(),
                         dropout=0.0):
    X, y = blobs(250)  # 200 training samples: 6 full batches of 32 and a last, partial one of 8
    model = mlp.build_mlp([8, 16, 12, 3], activation, dtype=dtype, seed=1, dropout=dropout)
    opt = optimizer()
    history = model.fit(X.astype(dtype), y, loss=SoftmaxCrossEntropy(smoothing), optimizer=opt, epochs=3,
                        batch_size=32, penalty=penalty, callbacks=list(callbacks), seed=0, threads=1, graph=graph)
    return history, model, opt


@pytest.mark.parametrize("activation, dtype, optimizer, smoothing, penalty, dropout", [
    ("relu", "float32", lambda: mlp.Adam(1e-2, schedule=mlp.StepDecay(0.5, every=7)), 0.0, None, 0.0),
    ("gelu", "float64", lambda: mlp.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), 0.1, mlp.L2(1e-3), 0.2),
    ("elu", "float64", lambda: mlp.Lion(1e-3, clip_value=0.05), 0.0, mlp.L1(1e-3), 0.0),
    ("tanh", "float32", lambda: mlp.RMSProp(1e-2), 0.0, mlp.L2(1e-2), 0.5)])
def test_a_step_replayed_as_its_bound_calls_gives_the_bits_of_the_python_step(monkeypatch, activation, dtype,
                                                                              optimizer, smoothing, penalty, dropout):
    """On NumPy a full batch's step is taped once (after the layers have planned theirs) and then replayed as its
    calls: the same losses, accuracies, parameters and optimizer state to the last bit, for activations that keep
    their output or their input, four update rules, a schedule, label smoothing, clipping by value, both penalties
    and dropout (its masks drawn from the same generator in the same order)."""
    eager, model, opt = _fit_replayed_or_not(False, activation, dtype, optimizer, smoothing, penalty, dropout=dropout)
    runs = _count_program_runs(monkeypatch)
    replayed, model2, opt2 = _fit_replayed_or_not("auto", activation, dtype, optimizer, smoothing, penalty,
                                                  dropout=dropout)
    assert replayed.loss == eager.loss and replayed.train_accuracy == eager.train_accuracy
    np.testing.assert_array_equal(model2.flat_params, model.flat_params)
    for name, state in opt.state.items():
        np.testing.assert_array_equal(opt2.state[name], state)
    assert opt2.step_count == opt.step_count == 3 * 7
    # through the program: the fit's first step (nothing planned yet), each epoch's taped step and its partial batch
    assert len(runs) == 1 + 3 * 2, len(runs)


@pytest.mark.parametrize("loss", ["soft_targets", "mse", "bce", "softmax_mse"])
def test_a_loss_computed_with_array_functions_is_one_call_of_the_replayed_step(monkeypatch, loss):
    """Losses written with array functions (MSE, binary cross-entropy, soft targets) are one host call on the tape,
    their value and gradient in arrays of the program's: the eager steps' bits."""
    X, y = blobs(250)
    targets = {"soft_targets": np.eye(3)[y] * 0.9 + 0.1 / 3, "mse": X[:, :2] @ np.array([1.0, -2.0]),
               "bce": (y == 1).astype(np.float64)[:, None], "softmax_mse": y}[loss]
    outputs = {"mse": 1, "bce": 1}.get(loss, 3)
    name = {"soft_targets": "cross_entropy"}.get(loss, loss)

    def fit(graph):
        model = mlp.build_mlp([8, 16, outputs], "tanh", dtype="float64", seed=1, dropout=0.1)
        history = model.fit(X, targets, loss=name, optimizer=mlp.Adam(1e-2), epochs=3, batch_size=32, seed=0,
                            penalty=mlp.L2(1e-3), graph=graph)
        return history.loss, model.flat_params.copy()

    eager = fit(False)
    runs = _count_program_runs(monkeypatch)
    replayed = fit(True)
    assert replayed[0] == eager[0]
    np.testing.assert_array_equal(replayed[1], eager[1])
    assert len(runs) == 1 + 3 * 2, len(runs)


def test_auto_replays_epochs_of_enough_full_batches(monkeypatch):
    """A tape is made at every epoch's start: "auto" replays epochs of at least MIN_FULL_BATCHES full batches (a
    shorter one would pay more for its tapes than its replays save)."""
    X, y = blobs()
    n, least = X.shape[0], StepCalls.MIN_FULL_BATCHES
    for batch, graph, replayed in ((n // least, "auto", True), (n // (least - 1), "auto", False)):
        runs = _count_program_runs(monkeypatch)
        mlp.build_mlp([8, 16, 3], "relu", seed=3).fit(X, y, epochs=2, batch_size=batch, seed=0, graph=graph)
        full, partial = n // batch, int(n % batch > 0)
        # replayed: the fit's first step, a taped step an epoch, the partial batches; else every step
        assert len(runs) == (1 + 2 + 2 * partial if replayed else 2 * (full + partial)), (batch, graph)
        monkeypatch.undo()


class _SwapAt(mlp.Callback):
    """Reads the results at a step of the first epoch and swaps the first layer's activation there."""

    def __init__(self, step):
        self.step = step

    def reads_at(self, global_step, last_of_epoch):
        return global_step == self.step

    def on_batch_end(self, state, step, logs):
        if state.epoch == 0 and step == self.step:
            state.model.layers[0].activation = "tanh"


def test_a_callback_that_changes_the_model_between_steps_is_seen_by_the_replayed_step(monkeypatch):
    """The tape is made again after every read of the results, where callbacks run: a layer changed there is
    replayed changed (the eager steps' numbers), from the next step on."""
    adam = lambda: mlp.Adam(1e-2)  # noqa: E731
    eager, model, _ = _fit_replayed_or_not(False, "relu", "float64", adam, callbacks=[_SwapAt(4)])
    runs = _count_program_runs(monkeypatch)
    replayed, model2, _ = _fit_replayed_or_not(True, "relu", "float64", adam, callbacks=[_SwapAt(4)])
    assert replayed.loss == eager.loss
    np.testing.assert_array_equal(model2.flat_params, model.flat_params)
    # after the read at step 4 the tape of step 5 misses the changed layer's plan (the step runs whole and plans it),
    # step 6's holds; not replayed before the next epoch's read, so that epoch runs a step before its tape
    assert len(runs) == (2 + 2 + 1) + 3 + 2, len(runs)


def test_a_fit_that_reads_at_every_step_runs_each_one_as_usual(monkeypatch):
    """A callback that has the results read after every step leaves no step to replay: none is taped."""
    class EveryStep(mlp.Callback):
        def reads_at(self, global_step, last_of_epoch):
            return True

    adam = lambda: mlp.Adam(1e-2)  # noqa: E731
    eager, _, _ = _fit_replayed_or_not(False, "relu", "float64", adam, callbacks=[EveryStep()])
    runs, tapes, run = _count_program_runs(monkeypatch), [], StepCalls.run
    monkeypatch.setattr(StepCalls, "run", lambda self, *a, **k: tapes.append(self.calls) or run(self, *a, **k))
    replayed, _, _ = _fit_replayed_or_not(True, "relu", "float64", adam, callbacks=[EveryStep()])
    assert replayed.loss == eager.loss and len(runs) == 3 * 7 and tapes == [None] * (3 * 6)


def test_a_step_with_a_call_that_does_not_bind_runs_as_usual(monkeypatch):
    """A kernel that follows the thread count is not bound (``bind_act_backward``): the tape misses it, and the
    steps run through the program, as without replays, with the same numbers."""
    from mlp_backend.kernels import cpu

    monkeypatch.setattr(cpu, "PARALLEL_MIN_ELEMENTS", 64)  # every layer's kernels parallel
    adam = lambda: mlp.Adam(1e-2)  # noqa: E731
    eager, model, _ = _fit_replayed_or_not(False, "relu", "float64", adam)
    runs = _count_program_runs(monkeypatch)
    replayed, model2, _ = _fit_replayed_or_not(True, "relu", "float64", adam)
    assert replayed.loss == eager.loss
    np.testing.assert_array_equal(model2.flat_params, model.flat_params)
    assert len(runs) == 3 * 7


def _model(layers):
    """Dense layers, or with normalisation layers (planned calls) and activation layers that plan nothing (their
    forward and backward host calls of the replayed step)."""
    if layers in ("dense", "batch_norm"):
        return mlp.build_mlp([8, 16, 12, 3], "relu", dtype="float64", seed=1, dropout=0.2 * (layers == "batch_norm"),
                             batch_norm=layers == "batch_norm")
    return mlp.Sequential([mlp.Dense(8, 16), mlp.LayerNorm(16), mlp.GELU(), mlp.Dropout(0.2), mlp.Dense(16, 12),
                           mlp.Tanh(), mlp.Dense(12, 3)], dtype="float64", seed=1)


@pytest.mark.parametrize("change", [{"layers": "batch_norm"}, {"layers": "layer_norm_and_activation_layers"},
                                    {"sample_weight": True}, {"check_finite": "all"}, {"clip_norm": 0.5},
                                    {"sample_weight": True, "clip_norm": 0.5, "layers": "batch_norm"}])
def test_a_step_with_work_written_with_array_functions_is_replayed_with_it_as_host_calls(monkeypatch, change):
    """What is written with array functions rather than bound calls (a layer that plans nothing: the activation
    layers; sample weights; check_finite="all"'s sum; clip_norm's norm) is one host call of the replayed step, its
    result in an array of the program's, and BatchNorm1d and LayerNorm plan their kernels' calls: the eager steps'
    bits, BatchNorm's running statistics included."""
    X, y = blobs(250)  # 6 full batches of 32 and a partial one of 8
    weights = np.linspace(0.5, 1.5, len(y)) if change.get("sample_weight") else None

    def fit(graph):
        model = _model(change.get("layers", "dense"))
        opt = mlp.Adam(1e-2, clip_norm=change.get("clip_norm"), schedule=mlp.StepDecay(0.5, every=7))
        history = model.fit(X, y, optimizer=opt, epochs=3, batch_size=32, penalty=mlp.L2(1e-3), sample_weight=weights,
                            check_finite=change.get("check_finite", "loss"), seed=0, threads=1, graph=graph)
        return history, model, opt

    eager, model, opt = fit(False)
    runs = _count_program_runs(monkeypatch)
    replayed, model2, opt2 = fit(True)
    assert replayed.loss == eager.loss and replayed.train_accuracy == eager.train_accuracy
    np.testing.assert_array_equal(model2.flat_params, model.flat_params)
    for name, state in opt.state.items():
        np.testing.assert_array_equal(opt2.state[name], state)
    for layer, layer2 in zip(model.layers, model2.layers):
        for name, buffer in layer.buffers.items():
            np.testing.assert_array_equal(layer2.buffers[name], buffer)
    # through the program: the fit's first step, each epoch's taped step and its partial batch
    assert len(runs) == 1 + 3 * 2, len(runs)


def test_graph_true_where_a_step_cannot_be_replayed_is_an_error():
    """A distributed step exchanges gradients between processes: not a list of calls to replay."""
    from mlp_backend.train import _step_graph

    X, y = blobs()
    model, opt, _ = recipe()
    opt.init(model.be, model.flat_params)
    program = StepProgram(model, SoftmaxCrossEntropy(), opt, steps=5, batch_size=32, comm=object())
    with pytest.raises(ValueError, match="graph=True, but no training step can be recorded here: a distributed step "
                                         "exchanges gradients between processes"):
        _step_graph(True, program, y)
    assert _step_graph("auto", program, y) is None


def test_a_replayed_step_stops_at_a_non_finite_loss_before_its_update(monkeypatch):
    """A loss that overflows in a replayed step is flagged on the device, that update and every later one skipped,
    and fit stops at it with the eager steps' message and parameters."""
    def diverge(graph):
        X, y = blobs()
        model = mlp.build_mlp([8, 16, 3], "relu", dtype="float64", seed=3)
        opt = mlp.SGD(1e20)  # the logits overflow after a few updates
        with pytest.raises(FloatingPointError, match="loss became non-finite at epoch 1, step 6 ") as stop:
            model.fit(X * 1e10, y, optimizer=opt, epochs=1, batch_size=10, shuffle=False, graph=graph)
        return str(stop.value), model.flat_params.copy(), opt.step_count

    eager = diverge(False)
    runs = _count_program_runs(monkeypatch)
    message, params, count = diverge(True)
    assert message == eager[0] and count == eager[2] == 5 and len(runs) == 2
    np.testing.assert_array_equal(params, eager[1])


def test_a_replayed_step_stops_at_a_non_finite_gradient_with_check_finite_all(monkeypatch):
    """check_finite="all" sums the gradient in a host call of the replayed step, made again at every replay: a
    gradient that turns infinite under a finite loss stops fit at that step, before its update."""
    from mlp_backend.losses import MeanSquaredError

    class InfGradAt(Poisoned, MeanSquaredError):
        pass

    def diverge(graph):
        X, _ = blobs()
        model, opt = mlp.build_mlp([8, 16, 2], "relu", dtype="float64", seed=3), mlp.Adam(1e-2)
        with pytest.raises(FloatingPointError, match="gradient became non-finite at epoch 1, step 6 "):
            model.fit(X, X[:, :2], loss=InfGradAt(6, gradient=True), optimizer=opt, epochs=1, batch_size=10,
                      shuffle=False, check_finite="all", graph=graph)
        return model.flat_params.copy(), opt.step_count

    eager = diverge(False)
    runs = _count_program_runs(monkeypatch)
    params, count = diverge(True)
    assert count == eager[1] == 5 and len(runs) == 2
    np.testing.assert_array_equal(params, eager[0])
