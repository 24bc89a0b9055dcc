"""``mlp bench``: the default job on every available backend, against its peers (``bench_peers.py``: PyTorch
eager and CUDA-graphed, JAX's epoch scan) and the GEMM floor.

Each (implementation, batch size) runs in its own subprocess, so its peak memory (max RSS) and its
threads are its own. Reported: seconds per epoch (the fastest of the epochs after the first, which pays
compilation and warm-up: on a shared machine the minimum is the figure least disturbed by other work;
the mean is kept in the JSON), samples per second, peak memory, test accuracy, the ratio to native
PyTorch at the same batch size, to the GEMM floor (training FLOPs / the sgemm peak measured in this run) and
to the step's matrix products alone (the same shapes timed through NumPy's BLAS at each batch size: what an
epoch would cost if everything but the products were free; small products run below the sgemm peak).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

from .bench_peers import HIDDEN


HELP = "time the default job on every backend against native PyTorch"
DESCRIPTION = ("Time the default model on each available implementation and batch size against native PyTorch "
               "and the GEMM floor.")


def implementations(cuda: bool) -> list[str]:
    """Implementation names that can run here."""
    import importlib.util

    names = ["numpy-fused", "numpy-reference"]
    if importlib.util.find_spec("torch"):
        names += ["mlp-torch", "mlp-torch-reference", "pytorch-cpu"]
    if cuda:
        names += ["cupy-graph", "cupy-fused", "cupy-reference"]
        if importlib.util.find_spec("torch"):
            names += ["pytorch-cuda", "pytorch-cuda-graph"]
    if importlib.util.find_spec("jax"):
        names += ["jax-scan"]  # on JAX's default device: the GPU where JAX has one
    return names


def _data(dataset, data_dir):
    from .data import Standardizer, load_dataset

    data = load_dataset(dataset, data_dir)
    scaler = Standardizer(per_feature=False).fit(data.X_train)
    return data, scaler.transform(data.X_train), scaler.transform(data.X_test)


def _run_mlp(impl, batch_size, epochs, seed, data, X, X_test):
    import mlp_backend as mlp

    backend = {"numpy": "numpy", "mlp": "torch", "cupy": "cupy"}[impl.split("-")[0]]
    kernels = "reference" if impl.endswith("reference") else "auto"
    # CuPy: each full batch's step one recorded CUDA graph, or launched kernel by kernel; elsewhere fit's default
    # (NumPy replays a full batch's step as its bound kernel calls)
    graph = impl == "cupy-graph" if backend == "cupy" else "auto"
    model = mlp.build_mlp([data.num_features, *HIDDEN, data.num_classes], "relu", backend=backend, seed=seed,
                          kernels=kernels)
    from .threads import default_setting

    history = model.fit(X, data.y_train, optimizer=mlp.Adam(1e-3), epochs=epochs, batch_size=batch_size, seed=seed,
                        threads=default_setting(), graph=graph)  # threads as mlp train sets them
    return history.epoch_seconds, model.evaluate(X_test, data.y_test)["accuracy"], history.threads


def worker(spec: dict) -> dict:
    """Run one configuration (in this process) and return its measurements."""
    data, X, X_test = _data(spec["dataset"], spec.get("data_dir"))
    from . import bench_peers

    impl = spec["impl"]
    run = (bench_peers.run_pytorch if impl.startswith("pytorch") else bench_peers.run_jax_scan if impl == "jax-scan"
           else _run_mlp)
    # (seconds per epoch, test accuracy[, thread count per epoch: ours; the peers manage their own threads])
    seconds, accuracy, *threads = run(spec["impl"], spec["batch_size"], spec["epochs"], spec["seed"], data, X, X_test)
    steady = seconds[1:] or seconds
    epoch_s = float(np.min(steady))
    return {**spec, "epoch_seconds": seconds, "seconds_per_epoch": epoch_s,
            "mean_seconds_per_epoch": float(np.mean(steady)),
            "samples_per_second": X.shape[0] / epoch_s, "test_accuracy": accuracy,
            "threads": threads[0] if threads else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Peak float32 matmul rate of NumPy's BLAS on this machine (GFLOP/s)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def products_seconds(n_samples: int, sizes, batch_size: int, repeats: int = 20) -> float:
    """Seconds per epoch of the training step's matrix products alone at ``batch_size``: per layer the forward
    ``x @ W`` and the backward ``x.T @ dz`` and ``dz @ W.T`` (not for the first layer), into existing arrays as
    ``fit`` makes them, through NumPy's BLAS at its thread count; the fastest of ``repeats`` passes, times the
    epoch's full batches, plus the last, partial one at its own size."""
    rng = np.random.default_rng(0)

    def one_step(n):
        layers = [(rng.random((n, a), dtype=np.float32), rng.random((a, b), dtype=np.float32),
                   rng.random((n, b), dtype=np.float32), np.empty((a, b), np.float32), np.empty((n, a), np.float32))
                  for a, b in zip(sizes[:-1], sizes[1:])]

        def products():
            for i, (x, w, dz, dw, dx) in enumerate(layers):
                np.matmul(x, w, out=dz)
                np.matmul(x.T, dz, out=dw)
                if i:
                    np.matmul(dz, w.T, out=dx)
        products()
        return min(_timed(products) for _ in range(repeats))

    full, rest = divmod(n_samples, batch_size)
    return full * one_step(batch_size) + (one_step(rest) if rest else 0.0)


def training_flops(n_samples: int, sizes) -> float:
    """Matmul FLOPs of one epoch: forward 2·N·in·out per layer, backward the same twice (dW and dx),
    except dx of the first layer, which is not computed."""
    per_sample = sum(6 * a * b for a, b in zip(sizes[:-1], sizes[1:])) - 2 * sizes[0] * sizes[1]
    return float(n_samples) * per_sample


def _cuda_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@contextlib.contextmanager
def _busy(count: int):
    """``count`` processes spinning on a core each for the length of the block (``--contended``)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def measure(args) -> dict:
    impls = args.impl or implementations(_cuda_available())
    data, _, _ = _data(args.dataset, args.data_dir)
    sizes = [data.num_features, *HIDDEN, data.num_classes]
    rows, gflops, passes, skipped = {}, 0.0, {}, {}
    # --repeats N runs the whole grid N times and keeps each configuration's fastest run: on a shared
    # machine a slow phase then cannot single out one implementation. The sgemm peak is measured before
    # each pass and the best kept, for the same reason. Each pass's figure is kept too, for the paired ratio.
    for n_pass in range(args.repeats):
        gflops = max(gflops, sgemm_gflops())
        for batch_size in args.batch_sizes:
            for impl in impls:
                spec = {"impl": impl, "batch_size": batch_size, "epochs": args.epochs, "seed": args.seed,
                        "dataset": args.dataset, "data_dir": args.data_dir}
                with _busy(args.contended):
                    done = subprocess.run([sys.executable, "-m", "mlp_backend.bench", "--worker", json.dumps(spec)],
                                          capture_output=True, text=True)
                if done.returncode != 0:  # cannot run here (no CuPy, no GPU, no JAX...): skipped, with why
                    reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    if impl not in skipped:
                        print(f"mlp bench: skipped {impl}: {reason}", file=sys.stderr, flush=True)
                    skipped[impl] = reason
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                key = (batch_size, impl)
                passes.setdefault(key, [None] * args.repeats)[n_pass] = r["seconds_per_epoch"]
                if key not in rows or r["seconds_per_epoch"] < rows[key]["seconds_per_epoch"]:
                    rows[key] = r
                if not args.quiet:
                    print(f"  {impl:<20} batch {batch_size:>5}: {r['seconds_per_epoch']:.2f} s/epoch, "
                          f"accuracy {r['test_accuracy']:.4f}", file=sys.stderr, flush=True)
    rows = list(rows.values())
    if not rows:
        raise ValueError("no implementation could run here: "
                         + "; ".join(f"{impl}: {why}" for impl, why in skipped.items()))
    floor = training_flops(data.X_train.shape[0], sizes) / (gflops * 1e9)
    products = {b: products_seconds(data.X_train.shape[0], sizes, b) for b in sorted({r["batch_size"] for r in rows})}
    jax_on_gpu = any(r["impl"] == "jax-scan" for r in rows) and _cuda_available()  # JAX's default device
    for r in rows:
        anchor = next((a for a in rows if a["batch_size"] == r["batch_size"] and a["impl"] == "pytorch-cpu"), None)
        r["vs_pytorch_cpu"] = r["seconds_per_epoch"] / anchor["seconds_per_epoch"] if anchor else None
        r["pass_seconds"] = passes[(r["batch_size"], r["impl"])]
        r["vs_pytorch_cpu_paired"] = paired_ratio(r["pass_seconds"], passes.get((r["batch_size"], "pytorch-cpu")))
        r["vs_jax_scan_paired"] = paired_ratio(r["pass_seconds"], passes.get((r["batch_size"], "jax-scan")))
        on_gpu = r["impl"].startswith(("cupy", "pytorch-cuda")) or (r["impl"] == "jax-scan" and jax_on_gpu)
        # both floors are the CPU's (its sgemm peak, NumPy's products): no measure of a GPU row
        r["vs_gemm_floor"] = None if on_gpu else r["seconds_per_epoch"] / floor
        r["vs_products"] = None if on_gpu else r["seconds_per_epoch"] / products[r["batch_size"]]
    import numba

    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "sgemm_gflops": gflops, "gemm_floor_seconds": floor,
            "products_seconds": {str(b): s for b, s in products.items()}, "epochs": args.epochs,
            "repeats": args.repeats,
            "contended": args.contended, "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "dataset": args.dataset}
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:
        pass
    meta["blas"] = blas_kernels()
    return {"meta": meta, "results": rows, "skipped": skipped}


def blas_kernels() -> str:
    """NumPy's BLAS and the kernels it runs ('openblas 0.3.31 SkylakeX'); OPENBLAS_CORETYPE can force them."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    try:
        from threadpoolctl import threadpool_info  # comes with scikit-learn
    except ImportError:
        return "BLAS not reported (threadpoolctl not installed)" + (f", OPENBLAS_CORETYPE={forced}" if forced else "")
    found = [f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
             if i["user_api"] == "blas"]
    return ", ".join(found) + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")


def paired_ratio(ours, anchor):
    """Median over passes of ``ours / anchor`` measured in the same pass (minutes apart, not the best of
    each whenever it happened): the estimate that a machine whose speed drifts disturbs least."""
    if not anchor:
        return None
    ratios = [a / b for a, b in zip(ours, anchor) if a is not None and b is not None]
    return float(np.median(ratios)) if ratios else None


def table(report: dict) -> str:
    meta = report["meta"]
    lines = [f"{meta['date']}, {meta['machine']}, {meta.get('blas', 'BLAS unknown')}, "
             f"sgemm {meta['sgemm_gflops']:.0f} GFLOP/s, "
             f"GEMM floor {meta['gemm_floor_seconds']:.2f} s/epoch, products alone "
             + ", ".join(f"{s:.2f} (batch {b})" for b, s in meta.get("products_seconds", {}).items())
             + f" s/epoch, {meta['epochs']} epochs per run"
             + (f", {meta['contended']} busy process(es) beside each run" if meta.get("contended") else ""),
             "", "| implementation | batch | s/epoch | samples/s | peak MiB | test acc | vs PyTorch CPU "
                 "| paired | vs GEMM floor | vs products alone |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keys = ["vs_pytorch_cpu", "vs_pytorch_cpu_paired", "vs_gemm_floor", "vs_products"]
    if any(r.get("vs_jax_scan_paired") is not None for r in report["results"]):  # JAX's epoch scan ran
        lines[-2], lines[-1] = lines[-2] + " paired vs jax-scan |", lines[-1] + "---:|"
        keys.append("vs_jax_scan_paired")
    for r in report["results"]:
        ratios = " | ".join(f"{r[k]:.2f}x" if r.get(k) is not None else "-" for k in keys)
        lines.append(f"| {r['impl']} | {r['batch_size']} | {r['seconds_per_epoch']:.2f} | "
                     f"{r['samples_per_second']:,.0f} | {r['peak_rss_mib']:.0f} | {r['test_accuracy']:.4f} | "
                     f"{ratios} |")
    lines += ["", "vs PyTorch CPU: best epoch / PyTorch's best epoch; paired: the median over passes of the "
                  "ratio within each pass (to PyTorch CPU's, or to jax-scan's); products alone: the "
                  "step's matrix products at that batch size, timed through NumPy's BLAS; both floors are the CPU's "
                  "(CPU rows only)"]
    return "\n".join(lines)


def plot(report: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = list(dict.fromkeys(r["impl"] for r in report["results"]))
    batches = sorted({r["batch_size"] for r in report["results"]})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        values = [next((r["seconds_per_epoch"] for r in report["results"]
                        if r["impl"] == impl and r["batch_size"] == b), np.nan) for b in batches]
        ax.bar(np.arange(len(batches)) + k * width, values, width, label=impl)
    ax.axhline(report["meta"]["gemm_floor_seconds"], color="k", linestyle="--", linewidth=1, label="GEMM floor")
    ax.set_xticks(np.arange(len(batches)) + width * (len(impls) - 1) / 2, [f"batch {b}" for b in batches])
    ax.set_ylabel("seconds per epoch")
    ax.set_title("784-500-250-100-10 MLP, Adam, Fashion-MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[64, 256, 4096],
                        help="comma-separated batch sizes")
    parser.add_argument("--impl", action="append", default=None,
                        help="run only this implementation (repeatable): numpy-fused, numpy-reference, mlp-torch, "
                             "mlp-torch-reference, pytorch-cpu, cupy-graph, cupy-fused, cupy-reference, pytorch-cuda, "
                             "pytorch-cuda-graph, jax-scan")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per run (the fastest after the first is reported)")
    parser.add_argument("--repeats", type=int, default=1, help="run the grid N times, keep each one's fastest")
    parser.add_argument("--dataset", default="fashion-mnist", help="dataset of the job")
    parser.add_argument("--data-dir", default=None, help="directory holding the dataset's files")
    parser.add_argument("--seed", type=int, default=0, help="seeds every run")
    parser.add_argument("--json", default=None, help="write the full report as JSON")
    parser.add_argument("--plot", default=None, help="write a bar chart (PNG)")
    parser.add_argument("--contended", type=int, default=0, metavar="N",
                        help="run N busy processes (one busy loop each) beside every implementation: speed on a "
                             "shared machine")
    parser.add_argument("--quiet", action="store_true", help="print only the table")


def run(args):
    report = measure(args)
    print(table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.plot:
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        p = argparse.ArgumentParser(prog="python -m mlp_backend.bench")
        add_arguments(p)
        run(p.parse_args())
