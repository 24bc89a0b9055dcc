"""Which parts of a training step CuPy can capture into a CUDA graph on this machine, and what a replay costs.

Each probe runs eagerly, is captured on a side stream (``Stream.begin_capture`` / ``end_capture``), replayed on that
stream, and compared with the eager result; a probe that cannot be captured prints the error it raised. The answers
decide how graph mode is built (which products must be ``kernels/gemm.py``'s, whether the step's temporaries may be
allocated under capture).

    python bench/graph_probe.py [--batch-size 64] [--repeats 200]
"""
import argparse
import dataclasses
import functools
import time
import traceback

import numpy as np

import mlp_backend as mlp


def _timed(fn, repeats, sync):
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats * 1e6


def replayed_us(fn, repeats):
    """µs per replay of ``fn()`` recorded as a CUDA graph on a side stream: the GPU's time without Python's."""
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        fn()
        stream.begin_capture()
        try:
            fn()
        finally:
            graph = stream.end_capture()
        return _timed(lambda: graph.launch(stream), repeats, stream.synchronize)


def probe(name, fn, result, repeats):
    """``fn()`` eagerly, then captured and replayed: µs per call each way and whether ``result()`` agrees (None:
    not compared), or the error."""
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    try:
        with stream:
            fn()
            stream.synchronize()
            eager = None if result is None else cupy.asnumpy(result())
            eager_us = _timed(fn, repeats, stream.synchronize)
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
            graph.launch(stream)
            stream.synchronize()
            replayed = None if result is None else cupy.asnumpy(result())
            replay_us = _timed(lambda: graph.launch(stream), repeats, stream.synchronize)
        verdict = ("not compared" if eager is None
                   else "agree" if np.allclose(eager, replayed, rtol=1e-5, atol=1e-6) else "DIFFER")
        print(f"{name}: captured; eager {eager_us:.1f} µs, replay {replay_us:.1f} µs, results {verdict}", flush=True)
    except Exception as e:  # what fails is the finding
        print(f"{name}: not captured: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
        traceback.print_exc(limit=3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    import cupy

    from mlp_backend.kernels import cublas, gemm
    from mlp_backend.kernels import cuda as K
    from mlp_backend.losses import SoftmaxCrossEntropy
    from mlp_backend.step import StepProgram

    n, r = args.batch_size, args.repeats
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.normal(size=(n, 784)).astype(np.float32))
    w = cupy.asarray(rng.normal(size=(784, 500)).astype(np.float32) * 0.05)
    b = cupy.zeros(500, np.float32)
    z = cupy.empty((n, 500), np.float32)

    x1 = cupy.empty_like(x)
    # every probe below computes the same result however often it runs, so eager and replayed results compare
    probe("cupy elementwise into an existing array", lambda: cupy.add(x, 1.0, out=x1), lambda: x1, r)
    temporaries = {}
    probe("cupy op making a new array (the pool under capture)",
          lambda: temporaries.__setitem__("t", x * 2.0), lambda: temporaries["t"], r)
    probe("cupy.matmul (cuBLAS)", lambda: cupy.matmul(x, w, out=z), lambda: z, r)
    probe("numba.cuda fused bias + ReLU (kernels/cuda.py; b = 0, so repeating it changes nothing)",
          lambda: K.bias_act(cupy, z, b, "relu"), lambda: z, r)
    probe("kernels/gemm.py product with the bias + ReLU epilogue",
          lambda: gemm.gemm(K._dev(x), K._dev(w), K._dev(z), bias=K._dev(b), act="relu", stream=K._stream()),
          lambda: z, r)

    # what a recorded kernel costs at the least: a recorded step of k kernels takes at least k times this
    state = cupy.zeros(2, np.uint64)
    floor = replayed_us(lambda: [K._count_mask_kernel[1, 1, K._stream()](K._dev(state)) for _ in range(30)], r)
    print(f"30 one-thread numba.cuda kernels as one graph: {floor:.1f} µs a replay, {floor / 30:.2f} µs a kernel",
          flush=True)

    # kernels/gemm.py on the step's products (graph mode's), each timed as a replayed graph (the GPU's time alone,
    # no Python launch), whole and with k split as gemm.plan splits it, beside cuBLAS eagerly (CuPy's call included)
    sync = cupy.cuda.get_current_stream().synchronize
    shapes = [("x @ W", (n, 784), (784, 500), False), ("x.T @ dz", (784, n), (n, 500), True),
              ("x @ W", (n, 500), (500, 250), False), ("dz @ W.T", (n, 250), (250, 500), None),
              ("x @ W", (n, 250), (250, 100), False)]
    # the default tile, the same without prefetching the next slice, and a smaller one
    other = dataclasses.replace(gemm.TILE, prefetch=not gemm.TILE.prefetch)
    for tile in (gemm.TILE, other, gemm.Tile(bm=32, bn=32, bk=16, tm=2, tn=2)):
        for name, (m, k), (k2, cols), how in shapes:
            a = cupy.asarray(rng.normal(size=(k, m) if how else (m, k)).astype(np.float32))
            bmat = cupy.asarray(rng.normal(size=(cols, k2) if how is None else (k2, cols)).astype(np.float32))
            left, right = (a.T if how else a), (bmat.T if how is None else bmat)  # the operands as the step has them
            expected = cupy.matmul(left, right)
            blas = _timed(lambda: cupy.matmul(left, right), r, sync)
            splits, _ = gemm.plan(m, cols, k, tile, gemm.target_blocks())
            line = (f"gemm tile {tile.bm}x{tile.bn}/{tile.tm}x{tile.tn}{' prefetch' if tile.prefetch else ''} {name} "
                    f"{m}x{k}x{cols} (plan: k in {splits}):")
            # the plan's split beside others, for tuning gemm.MIN_SLICES (a split's k in whole bk-deep slices)
            tried = {1, splits} | ({2, 4, 8, 16, 32} if tile.bm == gemm.TILE.bm else set())
            for ways in sorted({gemm._split(k, w, tile)[0] for w in tried}):
                c = cupy.full((m, cols), np.nan, np.float32)
                parts = cupy.empty((ways, m, cols), np.float32)
                product = functools.partial(gemm.gemm, K._dev(a), K._dev(bmat), K._dev(c), trans_a=bool(how),
                                            trans_b=how is None, tile=tile, splits=ways,
                                            workspace=K._dev(parts) if ways > 1 else None)
                own = replayed_us(lambda: product(stream=K._stream()), r)
                agree = bool(cupy.allclose(c, expected, rtol=1e-3, atol=1e-3))
                line += f" k in {ways}: {own:.1f} µs ({'agrees' if agree else 'DIFFERS'}),"
            if cublas.available() and tile == gemm.TILE:  # cuBLAS through nvmath-python, recorded
                c = cupy.full((m, cols), np.nan, np.float32)
                try:
                    replayed = replayed_us(lambda: cublas.gemm(a, bmat, c, trans_a=bool(how), trans_b=how is None), r)
                    agree = bool(cupy.allclose(c, expected, rtol=1e-3, atol=1e-3))
                    line += f" cuBLAS replayed {replayed:.1f} µs ({'agrees' if agree else 'DIFFERS'}),"
                except Exception as e:  # what fails is the finding
                    line += f" cuBLAS not recorded ({type(e).__name__}: {str(e)[:80]}),"
            print(f"{line} cuBLAS eagerly {blas:.1f} µs", flush=True)

    model = mlp.build_mlp([784, 500, 250, 100, 10], "relu", backend="cupy", seed=0)
    optimizer = mlp.Adam(1e-3)
    optimizer.init(model.be, model.flat_params)
    X = cupy.asarray(rng.normal(size=(n * 64, 784)).astype(np.float32))
    y = cupy.asarray(rng.integers(0, 10, n * 64))
    program = StepProgram(model, SoftmaxCrossEntropy(), optimizer, steps=64, batch_size=n)
    program.begin_epoch(np.arange(n * 64), 0)

    def step():  # step 0 every time (the counter reset on the device, in the graph too): timing, not training
        program.counter.fill(0)
        program.run(X, y)
    probe("the whole training step (StepProgram.run), cuBLAS products", step, None, r)  # trains: no fixed result

    def own_products_step():  # as graph mode records it (fit(graph=...)): kernels/gemm.py's products
        with model.be.graph_products():
            step()
    probe("the whole training step, kernels/gemm.py products (graph mode)", own_products_step, None, r)
    default, gemm.TILE = gemm.TILE, other  # the tile graph mode's products take
    probe(f"the whole training step, kernels/gemm.py products {'' if other.prefetch else 'not '}prefetching the "
          "next slice (graph mode)", own_products_step, None, r)
    gemm.TILE = default
    if cublas.available():
        model.be._graph_products = "cublas"  # as MLP_GRAPH_PRODUCTS=cublas sets it
        probe("the whole training step, cuBLAS products through nvmath-python (graph mode)", own_products_step,
              None, r)


if __name__ == "__main__":
    main()
