import warnings

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.data import make_synthetic
from mlp_backend.kernels import fpenv

from conftest import AVAILABLE, BACKEND_DEVICES, backend_matrix


def blobs(n=400, seed=0):
    data = make_synthetic(n_samples=n, n_features=8, n_classes=3, seed=seed)
    return data.X_train, data.y_train, data.X_test, data.y_test


@pytest.mark.parametrize("case", backend_matrix(dtypes=("float32",)))
def test_multiclass_converges_on_every_backend(case):
    name, device, dtype, mode = case
    X, y, Xt, yt = blobs()
    model = mlp.build_mlp([8, 16, 3], "tanh", backend=name, device=device, dtype=dtype, kernels=mode)
    history = model.fit(X, y, epochs=15, batch_size=32, optimizer=mlp.Adam(1e-2), validation_data=(Xt, yt))
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    assert model.evaluate(Xt, yt)["accuracy"] > 0.9
    assert len(history.loss) == 15 * 10 and len(history.epoch_seconds) == 15
    pred = model.predict(Xt)
    assert isinstance(pred, np.ndarray) and pred.shape == (Xt.shape[0],)  # host in, host out
    proba = model.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_binary_and_regression_tasks_train():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    yb = (X[:, 0] * X[:, 1] > 0).astype(int)  # XOR-like: needs the hidden layer
    model = mlp.build_mlp([2, 32, 1], "relu", seed=1)
    model.fit(X, yb, loss="bce", epochs=60, batch_size=32, optimizer=mlp.Adam(1e-2))
    assert model.evaluate(X, yb)["accuracy"] > 0.9
    assert set(np.unique(model.predict(X))) <= {0, 1}
    assert np.all((model.predict_proba(X) >= 0) & (model.predict_proba(X) <= 1))
    yr = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    reg = mlp.build_mlp([2, 64, 1], "tanh", seed=2)
    reg.fit(X, yr, loss="mse", epochs=80, batch_size=32, optimizer=mlp.Adam(1e-2))
    scores = reg.evaluate(X, yr)
    assert scores["r2"] > 0.95 and scores["mse"] == pytest.approx(scores["loss"], rel=1e-4)


def test_one_epoch_loss_agrees_across_backends_in_float64():
    X, y, _, _ = blobs(256)
    losses = {}
    for name in [n for n in ("numpy", "array_api_strict", "torch") if n in AVAILABLE]:
        model = mlp.build_mlp([8, 16, 16, 3], "relu", dropout=0.1, backend=name, device=BACKEND_DEVICES[name],
                              dtype="float64", seed=5)
        history = model.fit(X, y, epochs=1, batch_size=16, seed=11, optimizer=mlp.Adam(1e-2))
        losses[name] = history.loss
    ref = np.array(losses.pop("numpy"))
    for name, values in losses.items():
        np.testing.assert_allclose(values, ref, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("opt", sorted(mlp.optim.OPTIMIZERS))
def test_every_optimizer_trains(opt):
    X, y, Xt, yt = blobs()
    model = mlp.build_mlp([8, 16, 3], "relu", seed=0)
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05}.get(opt, 1e-2)
    model.fit(X, y, optimizer=mlp.get_optimizer(opt, lr=lr), epochs=10, batch_size=32)
    assert model.evaluate(Xt, yt)["accuracy"] > 0.85, opt


def test_penalty_shrinks_weights_and_early_stopping_restores_best():
    X, y, Xt, yt = blobs()
    plain = mlp.build_mlp([8, 32, 3], seed=0)
    plain.fit(X, y, epochs=10, optimizer=mlp.Adam(1e-2))
    shrunk = mlp.build_mlp([8, 32, 3], seed=0)
    shrunk.fit(X, y, epochs=10, optimizer=mlp.Adam(1e-2), penalty=mlp.L2(0.1))
    norm = lambda m: float(np.sum(m.get_parameter("dense0.W") ** 2))
    assert norm(shrunk) < 0.7 * norm(plain)
    model = mlp.build_mlp([8, 32, 3], seed=0)
    stopper = mlp.EarlyStopping(monitor="val_loss", patience=2)
    history = model.fit(X, y, epochs=200, optimizer=mlp.Adam(5e-2), validation_data=(Xt, yt), callbacks=[stopper])
    assert history.stopped_early and len(history.val_loss) < 200
    best = history.best_epoch
    assert history.val_loss[best] == min(history.val_loss)
    assert model.evaluate(Xt, yt)["loss"] == pytest.approx(history.val_loss[best], rel=1e-5)


def test_reduce_lr_on_plateau_lowers_the_learning_rate():
    X, y, Xt, yt = blobs()
    model = mlp.build_mlp([8, 32, 3], seed=0)
    history = model.fit(X, y, epochs=40, optimizer=mlp.Adam(5e-2), validation_data=(Xt, yt),
                        callbacks=[mlp.ReduceLROnPlateau(patience=1, factor=0.5)])
    assert history.lr[-1] < history.lr[0]


BAD_INPUTS = [
    (lambda X, y: (X[:, 0], y), ValueError, "must be 2-D"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "0 samples"),
    (lambda X, y: (X[:, :5], y), ValueError, "has 5 features per sample but the model expects 8"),
    (lambda X, y: (X, y[:-1]), ValueError, "has 99 samples but X has 100"),
    (lambda X, y: (np.where(X > 1, np.nan, X), y), ValueError, "X contains NaN"),
    (lambda X, y: (np.where(X > 1, np.inf, X), y), ValueError, "X contains NaN or infinity"),
    (lambda X, y: (X.astype(complex), y), TypeError, "must hold real numbers"),
    (lambda X, y: (X.astype(object), y), TypeError, "must hold real numbers"),
    (lambda X, y: (X, y + 0.5), ValueError, "integer class labels"),
    (lambda X, y: (X, y + 3), ValueError, r"labels must be in \[0, 2\]"),
    (lambda X, y: (X, -y - 1), ValueError, r"labels must be in \[0, 2\]"),
]


@pytest.mark.parametrize("make,error,message", BAD_INPUTS)
def test_bad_fit_input_is_a_clear_error(make, error, message):
    X, y, _, _ = blobs(125)
    X, y = X[:100], y[:100]
    model = mlp.build_mlp([8, 4, 3])
    with pytest.raises(error, match=message):
        model.fit(*make(X, y), epochs=1)


@pytest.mark.parametrize("kwargs,message", [({"epochs": 0}, "epochs must be a positive integer"),
                                            ({"batch_size": -1}, "batch_size must be a positive integer"),
                                            ({"optimizer": "adadelta"}, "unknown optimizer"),
                                            ({"loss": "hinge"}, "unknown loss")])
def test_bad_fit_arguments_are_clear_errors(kwargs, message):
    X, y, _, _ = blobs(50)
    with pytest.raises(ValueError, match=message):
        mlp.build_mlp([8, 3]).fit(X, y, **kwargs)


def test_divergence_stops_with_a_clear_error():
    X, y, _, _ = blobs()
    model = mlp.build_mlp([8, 16, 3], "relu")
    with pytest.raises(FloatingPointError, match="loss became"):
        model.fit(X * 1e30, y, epochs=3, optimizer=mlp.SGD(1e10))


def test_input_layouts_give_the_same_predictions():
    X, y, Xt, _ = blobs()
    model = mlp.build_mlp([8, 16, 3], seed=0)
    model.fit(X, y, epochs=2)
    ref = model.predict_proba(Xt)
    fortran = np.asfortranarray(Xt.astype(np.float64))
    strided = np.repeat(Xt, 2, axis=1)[:, ::2]
    readonly = Xt.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, readonly, Xt.tolist()):
        np.testing.assert_allclose(model.predict_proba(variant), ref, rtol=1e-6)
    ints = np.round(Xt).astype(np.int64)
    for variant in (ints.astype(np.uint8 if ints.min() >= 0 else np.int8), ints.astype(np.int32), ints.astype(float)):
        np.testing.assert_allclose(model.predict_proba(variant), model.predict_proba(ints), rtol=1e-6)


def test_fused_and_reference_kernels_train_to_the_same_losses_in_float32():
    X, y, _, _ = blobs(512)
    histories = []
    for mode in ("auto", "reference"):
        model = mlp.build_mlp([8, 64, 32, 3], "relu", seed=3, kernels=mode)
        histories.append(model.fit(X, y, epochs=2, batch_size=32, seed=1).loss)
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)


def test_history_prints_short():
    X, y, _, _ = blobs(100)
    history = mlp.build_mlp([8, 16, 3], "relu").fit(X, y, epochs=2, batch_size=10)
    text = repr(history)
    assert text.startswith("History(2 epochs, ") and "train_loss=" in text and len(text) < 120


def test_loading_optimizer_state_copies_the_callers_arrays():
    model = mlp.build_mlp([4, 3], "relu")
    opt = mlp.Adam(1e-2)
    opt.init(model.be, model.flat_params)
    mine = {"step_count": 3, "lr_scale": 1.0, "exp_avg": np.ones(model.num_parameters, np.float32),
            "exp_avg_sq": np.ones(model.num_parameters, np.float32)}
    opt.load_state_dict(mine)
    model.flat_grads[...] = 1.0
    opt.step(model.flat_params, model.flat_grads, model.ops)
    np.testing.assert_array_equal(mine["exp_avg"], 1.0)  # PyTorch's semantics: the caller's arrays are untouched


def test_divergence_that_never_becomes_nan_warns_once():
    X, y, _, _ = blobs(300)
    model = mlp.build_mlp([8, 16, 3], "relu", seed=0)
    with pytest.warns(mlp.DivergenceWarning, match="training looks divergent") as caught:
        model.fit(X, y, epochs=6, batch_size=30, optimizer=mlp.Adam(1e6))
    assert sum(issubclass(w.category, mlp.DivergenceWarning) for w in caught) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", mlp.DivergenceWarning)  # a healthy run does not warn
        mlp.build_mlp([8, 16, 3], "relu", seed=0).fit(X, y, epochs=6, batch_size=30, optimizer=mlp.Adam(1e-2))


def test_verbose_fit_shows_a_bar_and_a_line_per_epoch(capsys):
    X, y, _, _ = blobs(100)
    mlp.build_mlp([8, 16, 3], "relu").fit(X, y, epochs=2, batch_size=10, verbose=1)
    captured = capsys.readouterr()
    assert [line.split()[:2] for line in captured.out.splitlines()] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert "epoch 1/2" in captured.err and "batch" in captured.err  # tqdm's bar
    mlp.build_mlp([8, 16, 3], "relu").fit(X, y, epochs=1, batch_size=10, verbose=2)
    captured = capsys.readouterr()
    assert captured.out.startswith("epoch   1/1  loss ") and captured.err == ""
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        mlp.build_mlp([8, 16, 3], "relu").fit(X, y, epochs=1, verbose=3)


def test_callback_hooks_see_every_step_once_in_order():
    import mlp_backend as mlp

    class Recorder(mlp.Callback):
        def __init__(self):
            self.calls, self.losses, self.global_steps = [], [], []

        def on_train_begin(self, state):
            self.calls.append("train_begin")

        def on_epoch_begin(self, state):
            self.calls.append(f"epoch_begin {state.epoch}")

        def on_batch_end(self, state, step, logs):
            self.losses.append(logs["loss"])
            self.global_steps.append(logs["global_step"])
            assert 1 <= step <= logs["steps"] == 4 and logs["epoch"] == state.epoch + 1

        def on_epoch_end(self, state, logs):
            self.calls.append(f"epoch_end {state.epoch}")

        def on_train_end(self, state):
            self.calls.append("train_end")

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    recorder = Recorder()
    history = mlp.build_mlp([4, 8, 3], seed=0).fit(X, y, epochs=3, batch_size=13, callbacks=[recorder])
    assert recorder.calls == ["train_begin", "epoch_begin 0", "epoch_end 0", "epoch_begin 1", "epoch_end 1",
                              "epoch_begin 2", "epoch_end 2", "train_end"]
    assert recorder.losses == history.loss and recorder.global_steps == list(range(1, 13))


@pytest.mark.skipif(not fpenv.X86, reason="x86-64's MXCSR")
def test_fit_trains_with_subnormal_numbers_flushed_and_restores_the_setting_after():
    """Inside fit (its callbacks too) a float32 product below the smallest normal number is zero, as under XLA; the
    thread's setting comes back when fit returns and when it fails."""
    tiny_product = lambda: np.float32(1e-30) * np.float32(1e-10)  # noqa: E731  (1e-40: subnormal)
    seen = []

    class Look(mlp.Callback):
        def on_epoch_end(self, state, logs):
            seen.append(tiny_product())
            if len(seen) == 3:
                raise KeyboardInterrupt

    X, y, _, _ = blobs(100)
    before = fpenv.read_mxcsr()
    assert tiny_product() > 0
    mlp.build_mlp([8, 4, 3], seed=0).fit(X, y, epochs=2, callbacks=[Look()])
    assert seen == [0.0, 0.0] and tiny_product() > 0 and fpenv.read_mxcsr() & fpenv.FLUSH_BITS == 0
    with pytest.raises(KeyboardInterrupt):
        mlp.build_mlp([8, 4, 3], seed=0).fit(X, y, epochs=5, callbacks=[Look()])
    assert seen[2] == 0.0 and tiny_product() > 0
    assert fpenv.read_mxcsr() & ~0x3F == before & ~0x3F  # the control bits as they were (the low six are flags)


@pytest.mark.skipif(not fpenv.X86, reason="x86-64's MXCSR")
def test_where_the_register_cannot_be_read_fit_warns_once_and_trains(monkeypatch):
    """A Numba that cannot compile the register's intrinsic: one warning that says so, and training goes on."""
    def broken():
        raise RuntimeError("no intrinsic here")

    monkeypatch.setattr(fpenv, "read_mxcsr", broken)
    monkeypatch.setattr(fpenv, "_UNAVAILABLE", [])
    X, y, _, _ = blobs(100)
    with pytest.warns(RuntimeWarning, match=r"subnormal numbers are not flushed to zero while training \(RuntimeError: "
                                            r"no intrinsic here\)"):
        mlp.build_mlp([8, 4, 3], seed=0).fit(X, y, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(mlp.build_mlp([8, 4, 3], seed=0).fit(X, y, epochs=1).train_loss) == 1  # warned once
