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

Implemented here: MPI on host arrays (NumPy, and torch CPU tensors through their NumPy views). Not yet: NCCL
for CuPy arrays and staging of device arrays through pinned host memory (device arrays are refused with
a clear error rather than handed to an MPI that may not be CUDA-aware, which segfaults).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from .backend import library_name

# What launchers export: a process that sees one of these but an MPI world of size 1 was started by one MPI's
# launcher with another MPI's library (each process then believes it is alone).
_LAUNCHER_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class MPICommunicator:
    """Collective operations over ``comm`` (an mpi4py communicator) on host arrays."""

    def __init__(self, comm=None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        _check_launch(self.size)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def _host(self, array):
        """A NumPy view of ``array`` that MPI can read and write in place."""
        if isinstance(array, np.ndarray):
            return array
        if library_name(array) == "torch" and array.device.type == "cpu":
            return array.detach().numpy()
        raise TypeError(f"MPI data parallelism takes host arrays (numpy, torch CPU); got {library_name(array)} arrays "
                        "(NCCL for CuPy is not implemented yet)")

    def allreduce_sum(self, array):
        """``array`` summed over ranks, in place."""
        self.comm.Allreduce(self.MPI.IN_PLACE, self._host(array), op=self.MPI.SUM)

    def allreduce_max(self, array):
        self.comm.Allreduce(self.MPI.IN_PLACE, self._host(array), op=self.MPI.MAX)

    def broadcast(self, array):
        """Rank 0's values of ``array`` on every rank, in place."""
        self.comm.Bcast(self._host(array), root=0)

    def check_replicas(self, flat_params, epoch: int):
        """An error when the ranks' parameters are no longer the same (a checksum, gathered)."""
        host = np.asarray(self._host(flat_params), dtype=np.float64)
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


def _check_launch(size: int):
    claimed = next((int(os.environ[v]) for v in _LAUNCHER_SIZES if os.environ.get(v, "").isdigit()), None)
    if claimed is not None and claimed != size:
        raise RuntimeError(f"the launcher started {claimed} processes but MPI sees {size}: mpiexec and mpi4py come "
                           "from different MPI installations (use the mpiexec of the MPI that mpi4py was built with)")
    if size == 1:
        warnings.warn("distributed training in a single process: launch with mpiexec -n N to use N replicas",
                      RuntimeWarning, stacklevel=3)


def communicator(spec="mpi"):
    """A communicator from ``"mpi"`` (COMM_WORLD), an mpi4py communicator, or one of ours (returned as is)."""
    if isinstance(spec, MPICommunicator):
        return spec
    if spec == "mpi":
        try:
            return MPICommunicator()
        except ImportError as e:
            raise ImportError(f"distributed training needs mpi4py and an MPI: pip install 'mlp-backend[mpi]' ({e})") \
                from None
    if hasattr(spec, "Allreduce"):
        return MPICommunicator(spec)
    raise ValueError(f"distributed must be 'mpi', an mpi4py communicator or None, got {spec!r}")
