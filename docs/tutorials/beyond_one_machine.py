# %% [markdown]
# # Beyond one machine
#
# Two ways to use more than one process: **data parallelism**, where every process is a replica that
# takes a share of each batch and one MPI `Allreduce` averages the gradients (N ranks end where one process
# ends), and **parallel experiments**, where the points of a sweep run side by side with no communication
# at all (on MPI workers or a Dask cluster). This page runs both on the machine that builds it.

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

work = Path(tempfile.mkdtemp())
bin_dir = Path(sys.executable).parent
mpiexec = shutil.which("mpiexec", path=str(bin_dir)) or shutil.which("mpiexec")  # the mpich wheel's, in the venv
print("mpiexec:", mpiexec)

# %% [markdown]
# ## Two ranks equal one process
#
# A script is written once; `distributed="mpi"` is the only change. `batch_size` is the *global* batch:
# each of N ranks computes 1/N of it. Rank 0 writes the final parameters.

# %%
script = work / "train.py"
script.write_text('''
import sys
import numpy as np
import mlp_backend as mlp
from mlp_backend.data import make_synthetic

distributed = sys.argv[2] if len(sys.argv) > 2 else None
data = make_synthetic(n_samples=2048, n_features=32, n_classes=4, seed=0)
model = mlp.build_mlp([32, 64, 4], "relu", dtype="float64", seed=0)
model.fit(data.X_train, data.y_train, optimizer=mlp.SGD(0.05), epochs=2, batch_size=64, seed=0,
          distributed=distributed)
if distributed is None or __import__("mpi4py.MPI").MPI.COMM_WORLD.Get_rank() == 0:
    np.save(sys.argv[1], mlp.to_numpy(model.flat_params))
''')
env = {**os.environ, "OMP_NUM_THREADS": "1", "MLP_THREADS": "1"}  # one thread per rank on a small machine
subprocess.run([sys.executable, str(script), str(work / "one.npy")], check=True, env=env)
subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(work / "two.npy"), "mpi"], check=True, env=env)
one, two = np.load(work / "one.npy"), np.load(work / "two.npy")
print(f"{one.size} parameters; largest difference between 1 process and 2 ranks: {np.abs(one - two).max():.1e}")

# %% [markdown]
# The difference is rounding: the two ranks sum their halves of each batch separately before the
# allreduce adds them. The command line does the same with `mpiexec -n 4 mlp train --distributed`;
# rank 0 writes the run folder. Ranks first compare their settings, so a mismatch (say, a different
# `--batch-size` on one rank) stops every rank at once with one line naming it, instead of a hang.
#
# Whether it pays is a question of batch size and network: the gradient of the default model is 2.2 MB,
# exchanged every step. See [Beyond one machine](../../distributed/) for measured figures and the
# arithmetic at 64 nodes.
#
# ## A sweep over Dask
#
# `mlp sweep --executor dask` sends each run of the grid to a Dask cluster (`--scheduler tcp://HOST:8786`),
# or, without a scheduler, to a local cluster with one worker process per core started for the sweep. The
# report is the same as a local sweep's:

# %%
mlp_command = [sys.executable, "-m", "mlp_backend.cli"]
grid = ["sweep", "--dataset", "digits", "--hidden", "32", "--epochs", "5", "--optimizers", "sgd,adam",
        "--lrs", "0.05", "--seeds", "0,1", "--quiet"]
subprocess.run([*mlp_command, *grid, "--out", str(work / "local")], check=True, capture_output=True)
subprocess.run([*mlp_command, *grid, "--executor", "dask", "--out", str(work / "dask")], check=True,
               capture_output=True)
local = json.loads((work / "local" / "sweep.json").read_text())
dask = json.loads((work / "dask" / "sweep.json").read_text())
print((work / "dask" / "report.md").read_text().split("![")[0])


def scores(sweep):
    return sorted((r["label"], r["seed"], r["test_accuracy"]) for r in sweep["results"])


print("every run's test accuracy equals the local sweep's:", scores(local) == scores(dask))

# %% [markdown]
# The same runs on MPI workers: `mpiexec -n 9 python -m mpi4py.futures -m mlp_backend.cli sweep
# --executor mpi ...` (rank 0 schedules, 8 workers train).
