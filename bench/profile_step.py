"""Where one training step goes: the default model (784-500-250-100-10 ReLU, Adam, float32, NumPy,
fused kernels) at a batch size. First each operation timed on its own over many repeats (median µs: warm caches),
then each call of the step as ``fit`` replays it (``graph="auto"``), timed where it runs, between the others
(median µs over two epochs' replays): what the step costs in training.

    python bench/profile_step.py [--batch-size 64] [--parallel-update]

``--parallel-update``: inside ``fit``, the update's parallel kernel (both cores) instead of the serial one that its
size gets (``kernels.cpu.PARALLEL_MIN_ELEMENTS``).
"""
import argparse
import collections
import functools
import math
import statistics
import time

import numpy as np
from timing import median_us

import mlp_backend as mlp
from mlp_backend.kernels import bind, cpu
from mlp_backend.kernels.optimizers import RULES
from mlp_backend.step import StepCalls

SIZES = [784, 500, 250, 100, 10]  # the default model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--parallel-update", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.batch_size
    X = rng.normal(size=(60000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 60000)
    model = mlp.build_mlp(SIZES, "relu")
    model.fit(X[:512], y[:512], epochs=1, batch_size=n)  # allocates optimizer state, compiles kernels
    xp, ops, be = model.be.xp, model.ops, model.be
    idx = rng.permutation(60000)[:n]
    rows = []
    rows.append(("gather batch (take X, y)", median_us(lambda: (xp.take(X, idx, axis=0), xp.take(y, idx)), args.repeats)))
    xb, yb = X[idx], y[idx]
    acts = [xb]
    for i, layer in enumerate(model.layers):
        W, b = layer.params["W"], layer.params["b"]
        x = acts[-1]
        rows.append((f"dense{i} forward matmul {x.shape[1]}x{W.shape[1]}", median_us(lambda: x @ W, args.repeats)))
        z = x @ W
        rows.append((f"dense{i} bias + {layer.activation} (fused)",
                     median_us(lambda: ops.bias_act(xp, z, b, layer.activation), args.repeats)))
        acts.append(model.layers[i].forward(x, training=True))
    out = acts[-1]
    rows.append(("softmax cross-entropy + gradient (fused)",
                 median_us(lambda: ops.softmax_cross_entropy(xp, out, yb), args.repeats)))
    _, dy = ops.softmax_cross_entropy(xp, out, yb)
    for i in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[i]
        x, yact = acts[i], acts[i + 1]
        db = layer.grads["b"]
        rows.append((f"dense{i} activation backward + bias gradient (fused)",
                     median_us(lambda: ops.act_backward(xp, dy, yact, layer.activation, bias_grad=db), args.repeats)))
        dz = ops.act_backward(xp, dy, yact, layer.activation, bias_grad=db)
        rows.append((f"dense{i} dW = x.T @ dz", median_us(lambda: be.compute("matmul", x.T, dz, out=layer.grads["W"]),
                                                         args.repeats)))
        if i > 0:
            rows.append((f"dense{i} dx = dz @ W.T", median_us(lambda: dz @ layer.params["W"].T, args.repeats)))
        dy = dz @ layer.params["W"].T
    rows.append((f"Adam update over {model.num_parameters:,} parameters (fused, bound as fit replays it)",
                 median_us(bound_adam(ops, xp, model.num_parameters), args.repeats)))
    total = sum(t for _, t in rows)
    print(f"| operation (batch {n}) | µs | share |\n|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {100 * t / total:.1f}% |")
    print(f"| **sum of the parts** | **{total:.0f}** | 100% |")
    # the update's arithmetic without its memory traffic: arrays small enough to stay in this core's L2
    k = 1 << 16
    scaled = median_us(bound_adam(ops, xp, k), args.repeats * 10) * model.num_parameters / k
    print(f"\nAdam over {k:,} parameters (its 4 arrays in L2), times {model.num_parameters:,} / {k:,}: {scaled:.0f} µs")
    if args.parallel_update:
        cpu.PARALLEL_MIN_ELEMENTS = model.num_parameters
    in_fit(X, y, n)


def in_fit(X, y, n):
    """Each call of the replayed step timed inside ``fit`` (a fresh model, two epochs, every replay of both)."""
    times = collections.defaultdict(list)
    names, between, last = {}, [], [None]  # between: fit's time from one step's return to the next step's call
    replay = StepCalls.run

    def timed(i, call):
        def run():
            start = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - start)
        return run

    def run(self, *args, **kwargs):  # a tape just made (each epoch makes its own) gets its calls timed
        start = time.perf_counter()
        if last[0] is not None:
            between.append(start - last[0])
        replay(self, *args, **kwargs)
        if self.calls is not None and not getattr(self.calls[0], "timed", False):
            names.update((i, describe(call)) for i, call in enumerate(self.calls))
            self.calls = tuple(timed(i, call) for i, call in enumerate(self.calls))
            self.calls[0].timed = True
        last[0] = time.perf_counter()

    StepCalls.run = run
    try:
        fresh = mlp.build_mlp(SIZES, "relu")
        history = fresh.fit(X, y, epochs=2, batch_size=n)
    finally:
        StepCalls.run = replay
    medians = {i: statistics.median(t) * 1e6 for i, t in times.items()}
    products = sum(t for i, t in medians.items() if names[i].startswith("matmul"))
    total = sum(medians.values())
    print(f"\n| call of the replayed step inside fit (batch {n}) | µs |\n|---|---:|")
    for i in sorted(medians):
        print(f"| {names[i]} | {medians[i]:.1f} |")
    step = history.epoch_seconds[-1] / math.ceil(X.shape[0] / n) * 1e6
    print(f"| **calls** (products {products:.0f}, the rest {total - products:.0f}) | **{total:.0f}** |\n"
          f"\nwhole step inside fit (2nd epoch, its seconds / its steps): {step:.0f} µs; fit's Python between "
          f"two steps: {statistics.median(between) * 1e6:.1f} µs (median)")


def bound_adam(ops, xp, n):
    """The fused Adam update of ``n`` float32 parameters as a training step replays it: bound to its arrays."""
    rng = np.random.default_rng(1)
    p, g, m, v = (rng.normal(size=n).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    record = dict(lr=1e-3, grad_scale=1.0, clip=np.inf, beta1=0.9, one_minus_beta1=0.1, beta2=0.999,
                  one_minus_beta2=0.001, eps=1e-8, step_size=1e-3, inv_sqrt_bias2=1.0, decay=1.0)
    hp = np.array([record.get(name, 0.0) for name in RULES["adam"].record], np.float32)
    return bind(ops.optimizer_update, xp, "adam", p, g, m, v, hp)


def describe(call) -> str:
    """A tape's call in words: the kernel or function it binds, and its arrays' shapes."""
    if isinstance(call, functools.partial):
        func = getattr(call.func, "py_func", call.func)
        shapes = " ".join(str(a.shape) for a in call.args if hasattr(a, "shape") and a.ndim)
        return f"{getattr(func, '__name__', type(func).__name__)} {shapes}"
    return call.__qualname__.split(".<locals>")[0].removeprefix("bind_")  # a binder's closure: the op's name


if __name__ == "__main__":
    main()
