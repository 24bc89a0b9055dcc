"""numba.cuda kernels under the CUDA simulator, on tiny shapes with few threads, against the reference."""
import array_api_compat.numpy as xp
import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.kernels import cuda as K
from mlp_backend.kernels import hyper, reference
from mlp_backend.kernels.activations import TABLE

DTYPES = [np.float32, np.float64]


def close(a, b, dtype):
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-5, 1e-6)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(1, 3), (3, 19)])
def test_softmax_cross_entropy(dtype, smoothing, shape):
    rng = np.random.default_rng(0)
    z = (rng.normal(size=shape) * 5).astype(dtype)
    z[0, 0] = -np.inf
    y = rng.integers(1, shape[1], shape[0])
    grad, rows = np.empty_like(z), np.empty(shape[0])
    K.launch_softmax_cross_entropy(z, y, smoothing, grad, rows, threads=8)
    rloss, rgrad = reference.softmax_cross_entropy(xp, z, y, smoothing)
    loss = np.full(1, np.nan, dtype)
    K.launch_mean(rows, loss, threads=4)
    close(loss[0], rloss, dtype)
    close(grad, rgrad, dtype)
    alias = z.copy()
    K.launch_softmax_cross_entropy(alias, y, smoothing, alias, rows, threads=8)  # grad written over the logits
    close(alias, rgrad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce(dtype):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=13) * 20).astype(dtype)
    t = rng.integers(0, 2, 13).astype(dtype)
    grad, elem = np.empty_like(z), np.empty_like(z)
    K.launch_bce(z, t, grad, elem, threads=8)
    rloss, rgrad = reference.sigmoid_binary_cross_entropy(xp, z, t)
    close(elem.mean(), rloss, dtype)
    close(grad, rgrad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", reference.ACTIVATIONS)
def test_bias_act_and_backward(dtype, act):
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(3, 5)) * 3).astype(dtype)
    b = rng.normal(size=5).astype(dtype)
    ours, ref = z.copy(), z.copy()
    K.launch_bias_act(ours, b, True, act, dtype(0.2), threads=8)  # alpha typed as the wrapper types it
    reference.bias_act(xp, ref, b, act, 0.2)
    close(ours, ref, dtype)
    dy = rng.normal(size=z.shape).astype(dtype)
    out = np.empty_like(dy)
    saved = ref if TABLE[act].saves == "output" else z + b
    K.launch_act_backward(dy.ravel(), saved.ravel(), act, dtype(0.2), out.ravel(), threads=8)
    close(out, reference.act_backward(xp, dy, saved, act, 0.2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", reference.ACTIVATIONS)
def test_act_backward_writes_the_bias_gradient_from_the_same_pass(dtype, act):
    """Two column blocks (the second partly past the edge), five rows for two row lanes, in place too."""
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(5, 40)) * 3).astype(dtype)
    saved = reference.bias_act(xp, z.copy(), None, act, 0.2) if TABLE[act].saves == "output" else z
    dy = rng.normal(size=z.shape).astype(dtype)
    want_bias = np.zeros(40, dtype)
    want = reference.act_backward(xp, dy, saved, act, 0.2, bias_grad=want_bias)
    for in_place in (False, True):
        out, bias = (dy.copy() if in_place else np.empty_like(dy)), np.full(40, np.nan, dtype)
        K.launch_act_backward_bias(out if in_place else dy, saved, act, dtype(0.2), out, bias, lanes=2)
        close(out, want, dtype)
        close(bias, want_bias, dtype)


OPTIMIZERS = {
    "sgd": lambda: mlp.SGD(0.1, weight_decay=0.01, clip_value=0.8),
    "momentum": lambda: mlp.Momentum(0.1, 0.9, weight_decay=0.01, clip_value=0.8),
    "nesterov": lambda: mlp.Nesterov(0.1, 0.9, weight_decay=0.01, clip_value=0.8),
    "rmsprop": lambda: mlp.RMSProp(0.01, rho=0.9, eps=1e-8, weight_decay=0.01, clip_value=0.8),
    "adam": lambda: mlp.Adam(0.01, weight_decay=0.01, clip_value=0.8),
    "adamw": lambda: mlp.AdamW(0.01, weight_decay=0.01, clip_value=0.8),
    "adagrad": lambda: mlp.Adagrad(0.05, lr_decay=0.1, weight_decay=0.01, clip_value=0.8),
    "lion": lambda: mlp.Lion(0.01, weight_decay=0.1, clip_value=0.8),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates_over_steps(dtype, name):
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=21).astype(dtype)
    results = []
    for fused in (True, False):
        opt = OPTIMIZERS[name]()
        p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        gen = np.random.default_rng(4)
        for step in range(1, 4):
            g = gen.normal(size=21).astype(dtype)
            hp = np.array(hyper.pack(opt.rule, {**opt.scalars(opt.lr, step), "grad_scale": 0.5, "skip": 0.0}), dtype)
            states = [s1, s2][:len(opt.state_names)] + [None] * (2 - len(opt.state_names))
            if fused:
                K.launch_update(opt.rule, p, g, *states, hp, threads=8)
            else:
                reference.optimizer_update(xp, opt.rule, p, g, *states, hp)
        results.append((p, s1, s2))
    for a, b in zip(*results):
        close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_masks_come_from_the_device_state_alone(dtype):
    """Counter-based masks: each launch draws mask k of ``[base, k]`` and advances k on the device (no host
    scalar per mask); the same state gives the same mask (so a resumed run draws what it would have), another
    count or base another one, kept at the rate asked, scaled by 1/keep."""
    with np.errstate(over="ignore"):  # the simulator runs the uint64 hash in NumPy scalars, which warn on wrap
        state = np.array([12345, 0], dtype=np.uint64)
        masks = []
        for _ in range(2):
            out = np.empty(4000, dtype)
            K.launch_dropout_mask(out, state, 0.7, threads=8)
            masks.append(out)
        assert state.tolist() == [12345, 2]
        again, other = np.empty(4000, dtype), np.empty(4000, dtype)
        K.launch_dropout_mask(again, np.array([12345, 0], dtype=np.uint64), 0.7, threads=8)
        K.launch_dropout_mask(other, np.array([99, 0], dtype=np.uint64), 0.7, threads=8)
    np.testing.assert_array_equal(masks[0], again)
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], other)
    assert set(np.unique(masks[0])) == {dtype(0), dtype(1 / 0.7)}
    for mask in (*masks, other):
        assert abs(np.mean(mask > 0) - 0.7) < 0.03

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("check", [None, "loss", "all"])
def test_record_step_matches_the_reference(dtype, check):
    """One thread writes the step's loss, flag, sticky flag and update record, and advances the counter."""
    results = []
    for fused in (True, False):
        records = np.arange(30, dtype=dtype).reshape(5, 6)
        records[:, hyper.SKIP] = 0
        counter, losses, flags = np.array([1]), np.zeros(5, dtype), np.zeros(5, np.int8)
        bad, record, seen = np.zeros(1, dtype), np.zeros(6, dtype), []
        for value, grad_sum in ((1.5, 0.0), (2.0, np.inf), (np.nan, 1.0), (0.5, 0.0)):
            value, grad_sum = np.array([value], dtype), np.array([grad_sum], dtype) if check == "all" else None
            if fused:
                K.launch_record_step(value, counter, losses, record, records, flags if check else None,
                                     bad if check else None, grad_sum)
            else:
                reference.record_step(xp, value.reshape(()), counter, losses, record, records, flags if check else None,
                                      bad.reshape(()) if check else None, None if grad_sum is None else grad_sum[0])
            seen.append(record.copy())
        results.append((counter, losses, flags, bad, np.array(seen)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    counter, _, flags, bad, seen = results[0]
    assert counter.tolist() == [5] and (bad.tolist() == [1] if check else not flags.any())
    assert seen[:, hyper.SKIP].tolist() == {None: [0, 0, 0, 0], "loss": [0, 0, 1, 1], "all": [0, 1, 1, 1]}[check]


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_matches_the_reference(dtype):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(dtype), rng.integers(0, 4, 40)
    order, counter = rng.permutation(40), np.array([2])
    idx, xb, yb = np.zeros(5, np.int64), np.zeros((5, 6), dtype), np.zeros((5, 1), np.int64)
    K.launch_gather_batch(X, y.reshape(-1, 1), order, counter, 3, 8, idx, xb, yb, threads=4)  # two blocks a row
    want = reference.gather_batch(xp, X, y, order, counter, 8, 3, 5)
    for got, expected in zip((idx, xb, yb[:, 0]), want):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(idx, order[19:24])


@pytest.mark.parametrize("one_hot", [False, True])
def test_count_correct_matches_the_reference(one_hot):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(21, 4))
    logits[0], logits[1] = [1, 3, 3, 0], [0, np.nan, 5, np.nan]
    labels = rng.integers(0, 4, 21)
    y = np.eye(4)[labels] if one_hot else labels
    correct, want = np.zeros(3, np.int64), np.zeros(3, np.int64)
    K.launch_count_correct(logits, y.reshape(21, -1), one_hot, np.array([2]), correct, threads=8)
    reference.count_correct(xp, logits, y, np.array([2]), want)
    assert correct.tolist() == want.tolist() and correct[2] > 0
