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
    close(rows.mean(), rloss, dtype)
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