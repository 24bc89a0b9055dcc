"""Fused Numba kernels against the Array API reference on NumPy, small and large sizes.

    python bench/kernels.py [--repeats 50] [--json out.json]

Prints median microseconds per call and the speed-up; figures go into bench/RESULTS.md by hand.
Compile time is excluded (one warm-up call); a second process loads the kernels from Numba's cache.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import array_api_compat.numpy as xp
import numpy as np
from timing import median_us

import mlp_backend as mlp
from mlp_backend.kernels import hyper, kernel_set, reference
from mlp_backend.kernels.activations import TABLE

fused = kernel_set("numpy", "numba")  # as training calls them: the Numba kernel, the reference where it declines


def record(opt, step=10):
    return np.array(hyper.pack(opt.rule, {**opt.scalars(opt.lr, step), "grad_scale": 1.0, "skip": 0.0}), np.float32)


def cases(rng):
    for n, c in ((64, 10), (4096, 1000)):
        z = rng.normal(size=(n, c)).astype(np.float32)
        y = rng.integers(0, c, n)
        yield f"softmax_xent {n}x{c}", lambda impl, z=z, y=y: (lambda: impl.softmax_cross_entropy(xp, z, y))
    for n, c in ((64, 10), (4096, 1000)):
        z = rng.normal(size=(n, c)).astype(np.float32)
        t = rng.integers(0, 2, (n, c)).astype(np.float32)
        yield f"bce_logits {n}x{c}", lambda impl, z=z, t=t: (lambda: impl.sigmoid_binary_cross_entropy(xp, z, t))
    for n, m in ((64, 500), (4096, 500)):
        z0 = rng.normal(size=(n, m)).astype(np.float32)
        b = rng.normal(size=m).astype(np.float32)
        dy = rng.normal(size=(n, m)).astype(np.float32)
        for act in (name for name in TABLE if name != "identity"):
            z = z0.copy()
            y = reference.activation(xp, z0, act, 0.1) if TABLE[act].saves == "output" else z0
            yield f"bias_{act} {n}x{m}", lambda impl, z=z, b=b, act=act: (lambda: impl.bias_act(xp, z, b, act, 0.1))
            yield f"{act}_backward {n}x{m}", lambda impl, dy=dy, y=y, act=act: (
                lambda: impl.act_backward(xp, dy, y, act, 0.1))
            # what a Dense layer's backward calls: dz and the bias gradient from one pass
            yield f"{act}_backward+db {n}x{m}", lambda impl, dy=dy, y=y, act=act, db=np.empty(m, np.float32): (
                lambda: impl.act_backward(xp, dy, y, act, 0.1, bias_grad=db))
    for size in (100_000, 10_000_000):
        p, g = rng.normal(size=size).astype(np.float32), rng.normal(size=size).astype(np.float32)
        m, v = np.zeros_like(p), np.zeros_like(p)
        adam, momentum, rmsprop = record(mlp.Adam(1e-3)), record(mlp.Momentum(1e-3)), record(mlp.RMSProp(1e-3))
        yield f"adam {size:.0e}", lambda impl, p=p, g=g, m=m, v=v: (
            lambda: impl.optimizer_update(xp, "adam", p, g, m, v, adam))
        yield f"sgd_momentum {size:.0e}", lambda impl, p=p, g=g, m=m: (
            lambda: impl.optimizer_update(xp, "momentum", p, g, m, None, momentum))
        yield f"rmsprop {size:.0e}", lambda impl, p=p, g=g, v=v: (
            lambda: impl.optimizer_update(xp, "rmsprop", p, g, v, None, rmsprop))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import numba

    rows = []
    print(f"{'op':<30} {'reference µs':>13} {'fused µs':>10} {'speed-up':>9}")
    for name, make in cases(np.random.default_rng(0)):
        repeats = max(5, args.repeats // 10) if "1e+07" in name or "4096" in name else args.repeats
        ref = median_us(make(reference), repeats)
        ours = median_us(make(fused), repeats)
        rows.append({"op": name, "reference_us": ref, "fused_us": ours, "speedup": ref / ours})
        print(f"{name:<30} {ref:>13.1f} {ours:>10.1f} {ref / ours:>8.1f}x", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpus": __import__("os").cpu_count(), "numpy": np.__version__, "numba": numba.__version__,
            "threading_layer": numba.threading_layer()}
    print(json.dumps(meta))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
