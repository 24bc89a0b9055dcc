"""The numba.cuda GEMM with fused epilogues, under the simulator: every transpose, edge tiles, both dtypes."""
import array_api_compat.numpy as xp
import numpy as np
import pytest

from mlp_backend.kernels import reference
from mlp_backend.kernels.activations import TABLE
from mlp_backend.kernels.gemm import Tile, gemm, plan

SMALL = Tile(bm=8, bn=8, bk=4, tm=2, tn=2)  # 16 threads: the simulator runs one Python thread per CUDA thread
DTYPES = [np.float32, np.float64]


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def operands(rng, m, n, k, trans_a, trans_b, dtype):
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    product = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    return a, b, product


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (13, 11, 9), (16, 8, 8), (5, 19, 17)])  # edge tiles, exact tiles
def test_product_for_every_transpose(dtype, trans_a, trans_b, shape):
    rng = np.random.default_rng(0)
    m, n, k = shape
    a, b, expected = operands(rng, m, n, k, trans_a, trans_b, dtype)
    c = np.full((m, n), np.nan, dtype)
    gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, tile=SMALL)
    np.testing.assert_allclose(c, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["identity", "relu", "tanh", "gelu"])
def test_forward_epilogue_is_bias_and_activation(dtype, act):
    rng = np.random.default_rng(1)
    a, b, product = operands(rng, 10, 9, 7, False, False, dtype)
    bias = rng.normal(size=9).astype(dtype)
    c = np.empty((10, 9), dtype)
    gemm(a, b, c, bias=bias, act=act, alpha=dtype(0.1), tile=SMALL)
    expected = reference.activation(xp, (product + bias).astype(dtype), act, 0.1)
    np.testing.assert_allclose(c, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "sigmoid", "elu", "gelu"])
def test_backward_epilogue_is_the_activation_derivative(dtype, act):
    """dz_prev = act'(dz @ W.T) from what the previous layer saved: one kernel for two passes."""
    rng = np.random.default_rng(2)
    dz, w, product = operands(rng, 12, 6, 5, False, True, dtype)  # dz (12, 5) @ W.T with W (6, 5)
    z_prev = rng.normal(size=(12, 6)).astype(dtype)
    saved = z_prev if TABLE[act].saves == "input" else reference.activation(xp, z_prev, act, 0.3)
    c = np.empty((12, 6), dtype)
    gemm(dz, w, c, trans_b=True, act=act, alpha=dtype(0.3), saved=saved, tile=SMALL)
    expected = reference.activation_derivative(xp, product.astype(dtype), saved, act, 0.3)
    np.testing.assert_allclose(c, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("splits", [2, 3])
def test_k_split_between_blocks_gives_the_product(dtype, trans_a, trans_b, splits):
    """k = 23 over slices of 4: 2 or 3 blocks per tile, the last with a partial slice, the parts then added."""
    rng = np.random.default_rng(3)
    m, n, k = 10, 9, 23
    a, b, expected = operands(rng, m, n, k, trans_a, trans_b, dtype)
    parts, c = np.full((splits, m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
    gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, tile=SMALL, splits=splits, workspace=parts)
    np.testing.assert_allclose(c, expected, **tol(dtype))
    np.testing.assert_allclose(parts.sum(axis=0), expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_split_keeps_both_epilogues(dtype):
    rng = np.random.default_rng(4)
    a, b, product = operands(rng, 10, 9, 23, False, False, dtype)
    bias = rng.normal(size=9).astype(dtype)
    c = np.empty((10, 9), dtype)
    gemm(a, b, c, bias=bias, act="gelu", tile=SMALL, splits=2, workspace=np.empty((2, 10, 9), dtype))
    np.testing.assert_allclose(c, reference.activation(xp, (product + bias).astype(dtype), "gelu", 0.0), **tol(dtype))
    saved = rng.normal(size=(10, 9)).astype(dtype)
    gemm(a, b, c, act="relu", saved=saved, tile=SMALL, splits=3, workspace=np.empty((3, 10, 9), dtype))
    np.testing.assert_allclose(c, reference.activation_derivative(xp, product.astype(dtype), saved, "relu", 0.0),
                               **tol(dtype))


def test_plan_splits_a_small_batchs_long_k_and_leaves_large_products_whole():
    # the default model at batch 64 on a GPU of 132 multiprocessors (264 blocks wanted), 64x64 tiles, 16-deep slices
    assert plan(64, 500, 784, target_blocks=264) == (13, 64)  # 8 tiles, 49 slices: 13 blocks each, 4 slices apiece
    assert plan(784, 500, 64, target_blocks=264) == (1, 64)   # the weight gradient: 104 tiles, 4 slices
    assert plan(4096, 500, 784, target_blocks=264) == (1, 784)  # batch 4096: 512 tiles
    assert plan(64, 500, 784, target_blocks=1) == (1, 784)      # the simulator: no split
    for m, n, k in ((64, 10, 100), (64, 250, 500), (3, 5, 1000), (64, 500, 17)):
        splits, chunk = plan(m, n, k, target_blocks=264)
        assert chunk % 16 == 0 and (splits - 1) * chunk < k <= splits * chunk  # every k in exactly one block


def test_shape_errors_are_clear():
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="gemm shapes do not agree"):
        gemm(a, b, np.zeros((3, 2), np.float32), tile=SMALL)
    a, b = np.zeros((3, 8), np.float32), np.zeros((8, 2), np.float32)
    with pytest.raises(ValueError, match=r"splits=2 needs a workspace shaped \(2, 3, 2\)"):
        gemm(a, b, np.zeros((3, 2), np.float32), tile=SMALL, splits=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_prefetching_the_next_slice_gives_the_same_bits(dtype, trans_a, trans_b):
    """Registers carry the next slice while the block computes: the same sums in the same order, whole and split,
    with an edge tile and a last slice that is partial (k = 23 over slices of 4)."""
    rng = np.random.default_rng(5)
    m, n, k = 10, 9, 23
    a, b, expected = operands(rng, m, n, k, trans_a, trans_b, dtype)
    bias = rng.normal(size=n).astype(dtype)
    prefetching = Tile(bm=8, bn=8, bk=4, tm=2, tn=2, prefetch=True)
    for splits in (1, 3):
        results = []
        for tile in (SMALL, prefetching):
            c = np.full((m, n), np.nan, dtype)
            parts = np.full((splits, m, n), np.nan, dtype) if splits > 1 else None
            gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, bias=bias, act="relu", tile=tile, splits=splits,
                 workspace=parts)
            results.append(c)
        np.testing.assert_array_equal(results[1], results[0])
        np.testing.assert_allclose(results[1], np.maximum(expected + bias, 0), **tol(dtype))


def test_a_tile_whose_slices_do_not_divide_between_its_threads_is_refused():
    with pytest.raises(ValueError, match="do not divide between 16 threads"):
        Tile(bm=8, bn=8, bk=3, tm=2, tn=2)
