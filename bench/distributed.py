"""Data-parallel scaling on this machine: allreduce cost of the default model's gradient buffer and epoch time.

    mpiexec -n 1 python bench/distributed.py
    mpiexec -n 2 python bench/distributed.py
    mpiexec -n 2 python bench/distributed.py --backend cupy   # one GPU per rank (2+ GPUs): NCCL, or the
                                                              # communicator named by --distributed

Each rank uses one BLAS/Numba thread (OMP_NUM_THREADS=1 etc. are set before NumPy loads), so N ranks use N
cores. Prints (rank 0) the median Allreduce time of the 543,860-parameter float32 gradient buffer and the
seconds per epoch of the default job (Fashion-MNIST, 784-500-250-100-10 ReLU, Adam, global batch 64 and 256)
over 12,800 images, on the backend given (numpy by default). Figures go into bench/RESULTS.md by hand.
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mlp_backend as mlp  # noqa: E402
import mlp_backend.backend  # noqa: E402, F401
import mlp_backend.distributed  # noqa: E402, F401
from mlp_backend.data import Standardizer, load_fashion_mnist  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--distributed", default="mpi", help="the communicator: mpi (picked), nccl, mpi-cuda, ...")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    device = None
    if args.backend == "cupy":
        from mlp_backend.distributed import local_device

        device = local_device()
    be = mlp.backend.get_backend(args.backend, device=device)
    communicator = mlp.distributed.communicator(args.distributed, backend=mlp.get_backend(args.backend))
    grads = be.asarray(np.ones(543_860, np.float32))
    times = []
    for _ in range(50):
        comm.Barrier()
        start = time.perf_counter()
        communicator.allreduce_sum(grads)
        if args.backend == "cupy":  # NCCL returns at once: the time is the stream's
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        times.append(time.perf_counter() - start)
    data = load_fashion_mnist()
    X = Standardizer(per_feature=False).fit(data.X_train).transform(data.X_train)[:12_800]
    y = data.y_train[:12_800]
    rows = []
    for batch in (64, 256):
        model = mlp.build_mlp([784, 500, 250, 100, 10], "relu", seed=0, backend=args.backend, device=device)
        history = model.fit(X, y, epochs=3, batch_size=batch, optimizer=mlp.Adam(1e-3),
                            distributed=communicator if size > 1 else None)
        rows.append((batch, min(history.epoch_seconds[1:])))
    if rank == 0:
        print(f"ranks {size} ({args.backend}, {type(communicator).__name__}): allreduce of 543,860 float32 median {np.median(times) * 1e3:.3f} ms "
              f"(min {min(times) * 1e3:.3f})")
        for batch, seconds in rows:
            print(f"ranks {size}: batch {batch}: {seconds:.3f} s per epoch of 12,800 images "
                  f"({12_800 / seconds:,.0f} samples/s)")


if __name__ == "__main__":
    main()
