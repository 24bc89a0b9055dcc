"""Data-parallel training over MPI (mpi4py): each process a replica, gradients averaged in the flat buffer.

Importing this module imports no mpi4py; ``communicator()`` does. Launch with an MPI launcher, one process
per replica::

    mpiexec -n 4 mlp train --distributed
    mpiexec -n 4 python my_script.py          # fit(..., distributed="mpi")

``fit(distributed=...)`` then gives every rank the same epoch permutation and, of every global batch of
``batch_size`` samples, a contiguous share (ranks' shares differ by at most one sample). After the backward
pass each rank scales its flat gradient buffer by its share of the batch and one ``Allreduce`` sums them: the
mean gradient of the whole batch, so training equals one process's at the same global batch. Losses and
correct counts are reduced the same way when ``fit`` reads them. Rank 0 alone writes checkpoints and reports
progress; every epoch the replicas compare a checksum of their parameters and stop with an error if they have
drifted apart.

How arrays travel (``communicator`` picks, ``distributed=`` overrides):

- ``"mpi"``: host arrays (NumPy, torch CPU tensors through their NumPy views) go to MPI as they are; device
  arrays go the best way the machine has: CuPy arrays over NCCL (``"nccl"``) where CuPy has it, else straight
  to MPI when the MPI says it is CUDA-aware (``"mpi-cuda"``), else staged through (for CuPy, pinned) host
  buffers (``"mpi-staged"``). An MPI that is not CUDA-aware segfaults on a GPU pointer, so that is asked, not
  assumed.
- ``local_device()``: the GPU of this rank, from its rank among the processes of its node (one GPU per rank:
  NCCL refuses two ranks on one GPU). ``mlp train --distributed`` uses it.

Not run on a GPU yet: the NCCL and CUDA-aware paths, and pinned
staging. The staging path itself is tested on array_api_strict's second device.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .backends.numpy import NumpyBackend

# What launchers export: a process that sees one of these but an MPI world of size 1 was started by one MPI's
# launcher with another MPI's library (each process then believes it is alone).
_LAUNCHER_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class SingleProcess:
    """The communicator of a one-process fit: the whole batch is its share, and every collective is a no-op."""

    rank, size, is_root = 0, 1, True

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi

    def allreduce_sum(self, array):
        pass

    allreduce_max = broadcast = allreduce_sum

    def check_replicas(self, flat_params, epoch: int):
        pass

    def agree_on(self, settings: dict):
        pass

    def reduce_step(self, value, grads, share: float):
        return value

    def agree(self, flag):
        pass

    def reduce_results(self, losses, flags, correct):
        pass


class MPICommunicator:
    """Collective operations over ``comm`` (an mpi4py communicator): host arrays straight to MPI; device arrays
    are refused here (``StagedCommunicator``, ``CudaAwareCommunicator`` and ``NCCLCommunicator`` take them)."""

    name = "mpi"

    def __init__(self, comm=None, backend=None):
        from mpi4py import MPI

        # the model's Backend (instance or class): how its device arrays reach host memory and back
        self.backend = NumpyBackend if backend is None else backend
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX}
        _check_launch(self.size)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, array):
        """``array`` summed over ranks, in place."""
        self._allreduce(array, "sum")

    def allreduce_max(self, array):
        self._allreduce(array, "max")

    def _host_view(self, array):
        """A NumPy view of ``array`` that MPI can read and write in place; None for a device array."""
        return array if isinstance(array, np.ndarray) else self.backend.host_view(array)

    def _allreduce(self, array, op: str):
        host = self._host_view(array)
        if host is None:
            self._device_allreduce(array, op)
        else:
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self._ops[op])

    def broadcast(self, array):
        """Rank 0's values of ``array`` on every rank, in place."""
        host = self._host_view(array)
        if host is None:
            self._device_broadcast(array)
        else:
            self.comm.Bcast(host, root=0)

    def _device_allreduce(self, array, op):
        raise TypeError(f"this communicator ({self.name}) takes host arrays (numpy, torch CPU); got "
                        f"{type(array).__module__.split('.')[0]} arrays on a device: use distributed='mpi', which "
                        "stages them")

    _device_broadcast = _device_allreduce

    def check_replicas(self, flat_params, epoch: int):
        """An error when the ranks' parameters are no longer the same (a checksum, gathered)."""
        host = np.asarray(flat_params if isinstance(flat_params, np.ndarray) else self.backend.host_copy(flat_params),
                          dtype=np.float64)
        local = np.array([host.sum(), np.square(host).sum(), host[:: max(1, host.size // 1024)].sum()])
        gathered = np.empty((self.size, 3))
        self.comm.Allgather(local, gathered)
        if not np.all(gathered == gathered[0]):
            raise RuntimeError(f"replicas diverged after epoch {epoch + 1}: parameter checksums differ across ranks "
                               f"({gathered[:, 0].tolist()}); every rank must run the same code, data and seed")

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's contiguous share of the global batch ``[lo, hi)``."""
        n = hi - lo
        start = lo + self.rank * n // self.size
        return start, lo + (self.rank + 1) * n // self.size

    def agree_on(self, settings: dict):
        """Every rank's ``settings`` must be rank 0's: on a mismatch every rank raises the same one-line error
        naming what differs (before any collective that would hang on arrays of different sizes)."""
        import json

        everyone = self.comm.allgather(json.dumps(settings, sort_keys=True, default=str))
        if len(set(everyone)) == 1:
            return
        parsed = [json.loads(s) for s in everyone]
        differing = sorted(k for k in parsed[0] if any(p.get(k) != parsed[0][k] for p in parsed))
        raise ValueError(f"the {self.size} ranks were started with different settings ({', '.join(differing)}): "
                         "every rank must run the same command, data and seed")

    def reduce_step(self, value, grads, share: float):
        """A step's loss and gradient buffer, weighted by this rank's share of the batch and (the gradients, in
        place) summed over ranks: the global batch's mean gradient; returns the weighted local loss."""
        grads[...] *= share
        self.allreduce_sum(grads)
        return value * share

    def agree(self, flag):
        """Every replica skips an update together (the largest flag wins)."""
        self.allreduce_max(flag)

    def reduce_results(self, losses, flags, correct):
        """Read-back step results summed (losses: weighted local ones; counts) and flags maxed over ranks."""
        self.allreduce_sum(losses)
        self.allreduce_max(flags)
        if correct is not None:
            self.allreduce_sum(correct)


class StagedCommunicator(MPICommunicator):
    """Device arrays copied to a host buffer (pinned for CuPy: the copies run at full bus speed), reduced by
    MPI there, and copied back: works with any MPI and any device, at two copies per collective."""

    name = "mpi-staged"

    def __init__(self, comm=None, backend=None):
        super().__init__(comm, backend)
        self._staging: dict = {}  # host buffers, one per shape and dtype (the backend's: pinned for CuPy)

    def _device_allreduce(self, array, op):
        host = self.backend.stage(array, self._staging)
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self._ops[op])
        self.backend.unstage(host, array)

    def _device_broadcast(self, array):
        host = self.backend.stage(array, self._staging)
        self.comm.Bcast(host, root=0)
        self.backend.unstage(host, array)


class CudaAwareCommunicator(MPICommunicator):
    """CuPy arrays handed to an MPI that says it reads GPU memory (mpi4py takes ``__cuda_array_interface__``).
    MPI does not wait for CUDA streams, so the current stream is synchronised first."""

    name = "mpi-cuda"

    def _device_allreduce(self, array, op):
        _synchronize_cupy()
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self._ops[op])

    def _device_broadcast(self, array):
        _synchronize_cupy()
        self.comm.Bcast(array, root=0)


class NCCLCommunicator(MPICommunicator):
    """CuPy arrays reduced by NCCL on the current stream (no host synchronisation, and capturable in a CUDA
    graph with NCCL >= 2.9); MPI starts it (rank 0's unique id, broadcast) and still carries host arrays.

    Each rank must already use its own GPU (``local_device()``): NCCL refuses two ranks on one GPU.
    """

    name = "nccl"

    def __init__(self, comm=None, backend=None, nccl=None):
        super().__init__(comm, backend)
        if nccl is None:
            from cupy.cuda import nccl
        self.nccl = nccl
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.int64): nccl.NCCL_INT64, np.dtype(np.int8): nccl.NCCL_INT8}
        self._nccl_ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX}
        uid = nccl.get_unique_id()  # bytes in recent CuPy, a tuple of 128 small ints in older ones
        wire = np.frombuffer(uid, dtype=np.int8).copy() if isinstance(uid, bytes) else np.array(uid, dtype=np.int8)
        self.comm.Bcast(wire, root=0)  # rank 0's id everywhere (a buffer, not a pickle)
        uid = wire.tobytes() if isinstance(uid, bytes) else tuple(int(v) for v in wire)
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _call(self, array):
        import cupy

        dtype = np.dtype(array.dtype)
        if dtype not in self._types or not array.flags.c_contiguous:
            raise TypeError(f"NCCL collectives here take contiguous float32/float64/int64/int8 arrays, got {dtype}")
        return array.data.ptr, array.size, self._types[dtype], cupy.cuda.get_current_stream().ptr

    def _device_allreduce(self, array, op):
        ptr, count, dtype, stream = self._call(array)
        self.nccl_comm.allReduce(ptr, ptr, count, dtype, self._nccl_ops[op], stream)

    def _device_broadcast(self, array):
        ptr, count, dtype, stream = self._call(array)
        self.nccl_comm.bcast(ptr, count, dtype, 0, stream)


def _synchronize_cupy():
    import cupy

    cupy.cuda.get_current_stream().synchronize()


def local_rank(comm: Any = None) -> int:
    """This process's rank among the processes of its node (``MPI.COMM_TYPE_SHARED``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator (default: ``COMM_WORLD``).

    Returns
    -------
    int
        0 for the node's first process.
    """
    from mpi4py import MPI

    node = (comm if comm is not None else MPI.COMM_WORLD).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def local_device(count: int | None = None, comm: Any = None) -> int:
    """The GPU this rank should use: its node-local rank modulo the node's GPU count.

    Parameters
    ----------
    count : int, optional
        GPUs per node (default: CuPy's device count).
    comm : mpi4py.MPI.Comm, optional
        The communicator (default: ``COMM_WORLD``).

    Returns
    -------
    int
        The device number.
    """
    if count is None:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("no CUDA device on this node")
    return local_rank(comm) % count


def _mpi_reads_gpu_memory(comm) -> bool:
    """Whether the MPI says it takes CUDA memory (MPI 4.1's memory-allocation kinds; Open MPI and MPICH)."""
    try:
        info = comm.Get_info()
        kinds = info.Get("mpi_memory_alloc_kinds") or ""
        info.Free()
    except Exception:  # an MPI without the key, or without Get_info
        return False
    return "cuda" in kinds


def _check_launch(size: int):
    claimed = next((int(os.environ[v]) for v in _LAUNCHER_SIZES if os.environ.get(v, "").isdigit()), None)
    if claimed is not None and claimed != size:
        raise RuntimeError(f"the launcher started {claimed} processes but MPI sees {size}: mpiexec and mpi4py come "
                           "from different MPI installations (use the mpiexec of the MPI that mpi4py was built with)")
    if size == 1:
        warnings.warn("distributed training in a single process: launch with mpiexec -n N to use N replicas",
                      RuntimeWarning, stacklevel=3)


COMMUNICATORS = {c.name: c for c in (MPICommunicator, StagedCommunicator, CudaAwareCommunicator, NCCLCommunicator)}


def communicator(spec: Any = "mpi", backend: Any = None) -> MPICommunicator:
    """The communicator a data-parallel ``fit`` uses.

    Parameters
    ----------
    spec : str or mpi4py.MPI.Comm, default "mpi"
        ``"mpi"``: the best for arrays of ``backend`` (host arrays straight to MPI; CuPy arrays over NCCL where
        CuPy has it, else CUDA-aware MPI, else staged through pinned host buffers); ``"nccl"``,
        ``"mpi-cuda"`` or ``"mpi-staged"`` force one; an mpi4py communicator means ``"mpi"`` over it; one of
        ours is returned as is.
    backend : Backend or type, optional
        The model's backend, which decides what ``"mpi"`` picks.

    Returns
    -------
    MPICommunicator
        The communicator.
    """
    if isinstance(spec, MPICommunicator):
        return spec
    comm = None
    if hasattr(spec, "Allreduce"):
        comm, spec = spec, "mpi"
    if spec not in ("mpi", *COMMUNICATORS):
        raise ValueError(f"distributed must be one of {', '.join(COMMUNICATORS)}, an mpi4py communicator or None, "
                         f"got {spec!r}")
    kind = spec if spec != "mpi" else (backend.communicator if backend is not None else "mpi")
    try:
        if kind == "mpi-gpu":
            return _best_for_gpus(comm)(comm, backend)
        return COMMUNICATORS[kind](comm, backend)
    except ImportError as e:
        if e.name != "mpi4py" and not str(e).startswith("mpi4py"):
            raise ImportError(f"distributed={spec!r} needs CuPy with NCCL: pip install 'mlp-backend[cuda13]' ({e})") \
                from None
        raise ImportError(f"distributed training needs mpi4py and an MPI: pip install 'mlp-backend[mpi]' ({e})") \
            from None


def _best_for_gpus(comm):
    """NCCL where CuPy has it, else CUDA-aware MPI where the MPI says so, else host staging."""
    try:
        from cupy.cuda import nccl

        if nccl.available:
            return NCCLCommunicator
    except ImportError:
        pass
    from mpi4py import MPI

    if _mpi_reads_gpu_memory(comm if comm is not None else MPI.COMM_WORLD):
        return CudaAwareCommunicator
    return StagedCommunicator
