"""numba.cuda kernels under the CUDA simulator, on tiny shapes with few threads, against the reference."""
import array_api_compat.numpy as xp
import numpy as np
import pytest

from mlp_backend.kernels import cuda as K
from mlp_backend.kernels import reference
from mlp_backend.kernels.elementwise import ACT_CODES

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
    K.launch_bias_act(ours, b, True, ACT_CODES[act], 0.2, threads=8)
    reference.bias_act(xp, ref, b, act, 0.2)
    close(ours, ref, dtype)
    dy = rng.normal(size=z.shape).astype(dtype)
    out = np.empty_like(dy)
    K.launch_act_backward(dy.ravel(), ours.ravel(), ACT_CODES[act], 0.2, out.ravel(), threads=8)
    close(out, reference.act_backward(xp, dy, ref, act, 0.2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_optimizer_updates_over_steps(dtype, rule):
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=21).astype(dtype)
    results = []
    for fused in (True, False):
        p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        gen = np.random.default_rng(4)
        for step in range(1, 4):
            g = gen.normal(size=21).astype(dtype)
            common = dict(weight_decay=0.01, grad_scale=0.5, clip_value=0.8)
            if rule in ("sgd", "momentum", "nesterov"):
                mom, nest = (0.0 if rule == "sgd" else 0.9), rule == "nesterov"
                if fused:
                    K.launch_sgd(p, g, s1, 0.1, mom, nest, 0.01, 0.5, 0.8, threads=8)
                else:
                    reference.sgd_update(xp, p, g, s1, lr=0.1, momentum=mom, nesterov=nest, **common)
            elif rule == "rmsprop":
                if fused:
                    K.launch_rmsprop(p, g, s1, 0.01, 0.9, 1e-8, 0.01, 0.5, 0.8, threads=8)
                else:
                    reference.rmsprop_update(xp, p, g, s1, lr=0.01, rho=0.9, eps=1e-8, **common)
            else:
                dec = rule == "adamw"
                if fused:
                    K.launch_adam(p, g, s1, s2, 0.01, step, 0.9, 0.999, 1e-8, 0.01, dec, 0.5, 0.8, threads=8)
                else:
                    reference.adam_update(xp, p, g, s1, s2, lr=0.01, step=step, decoupled=dec, **common)
        results.append((p, s1, s2))
    for a, b in zip(*results):
        close(a, b, dtype)
