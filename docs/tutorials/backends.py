# %% [markdown]
# # Backends
#
# Every layer, loss and optimizer is written once against the Python Array API standard, so one model
# definition trains on NumPy, torch tensors, array-api-strict (the standard's reference implementation,
# which refuses anything outside it) and, on a CUDA machine, CuPy. On NumPy and torch's CPU tensors the
# hot path runs fused Numba kernels; the Array API code is their specification and fallback.

# %%
import subprocess
import sys

import numpy as np

import mlp_backend as mlp
from mlp_backend.data import make_synthetic

print("available here:", mlp.available_backends())

# %% [markdown]
# ## One model, three array libraries
#
# The same seed gives the same initial weights, shuffles and dropout masks on every backend. In float64
# one epoch of Adam then ends with the same loss on each, to the last bit or within a few units of
# rounding:

# %%
data = make_synthetic(n_samples=1600, n_features=20, n_classes=4, seed=0)
losses, params = {}, {}
for backend in ("numpy", "torch", "array_api_strict"):
    model = mlp.build_mlp([20, 64, 32, 4], "relu", dropout=0.1, backend=backend, dtype="float64", seed=0)
    history = model.fit(data.X_train, data.y_train, optimizer=mlp.Adam(1e-2), epochs=1, batch_size=32, seed=0)
    losses[backend] = history.train_loss[-1]
    params[backend] = mlp.to_numpy(model.flat_params)
    print(f"{backend:17s} {type(model.flat_params).__module__:24s} loss {losses[backend]!r}")
for backend in ("torch", "array_api_strict"):
    print(f"numpy vs {backend}: largest parameter difference "
          f"{np.abs(params[backend] - params['numpy']).max():.1e}")

# %% [markdown]
# ## Moving a model
#
# `model.to(backend)` moves the parameters *and* the optimizer state; training continues where it left
# off. `predict`, `predict_proba` and `evaluate` take and return NumPy whatever the backend (the model's
# own arrays, such as `model.flat_params`, are the backend's; `mlp.to_numpy` brings any of them home).

# %%
model = mlp.build_mlp([20, 64, 32, 4], "relu", seed=0)
model.fit(data.X_train, data.y_train, optimizer=mlp.Adam(1e-3), epochs=2, seed=0)
before = model.evaluate(data.X_test, data.y_test)
model.to("torch")
print("on torch:", type(model.predict(data.X_test[:3])), model.evaluate(data.X_test, data.y_test) == before)
model.fit(data.X_train, data.y_train, epochs=2, seed=1)  # the same Adam, its moments now torch tensors
print("two more epochs on torch:", model.evaluate(data.X_test, data.y_test))

# %% [markdown]
# ## Fused kernels and the reference
#
# `kernels="reference"` (or `MLP_KERNELS=reference`, `--kernels reference`) forces the Array API code
# everywhere; the summary line says which kernels a model uses:

# %%
print(mlp.build_mlp([20, 4], backend="numpy").summary().splitlines()[-1])
print(mlp.build_mlp([20, 4], backend="numpy", kernels="reference").summary().splitlines()[-1])
print(mlp.build_mlp([20, 4], backend="array_api_strict").summary().splitlines()[-1])

# %% [markdown]
# ## `mlp parity`: every backend and kernel set against each other
#
# One epoch, the same seed and data order, float64, on every available backend with fused and reference
# kernels; it exits with status 1 if any differs by more than `--tol`:

# %%
mlp_command = [sys.executable, "-m", "mlp_backend.cli"]  # the `mlp` command of this environment
print(subprocess.run([*mlp_command, "parity"], capture_output=True, text=True, check=True).stdout)

# %% [markdown]
# ## `mlp bench`: how fast, against PyTorch and the GEMM floor
#
# `mlp bench` trains the default job (Fashion-MNIST, 784-500-250-100-10) with each implementation in its
# own process and reports the fastest epoch after the first. Here a short version: three implementations
# at batch 256, two epochs each (the full run: `mlp bench`, batch 64, 256 and 4096).

# %%
result = subprocess.run([*mlp_command, "bench", "--impl", "numpy-fused", "--impl", "numpy-reference",
                         "--impl", "pytorch-cpu", "--batch-sizes", "256", "--epochs", "2", "--quiet"],
                        capture_output=True, text=True, check=True)
print(result.stdout)

# %% [markdown]
# How to read the table:
#
# - **s/epoch** is the fastest epoch after the first (the first includes compilation and warm-up);
#   **samples/s** the same as throughput.
# - **vs PyTorch CPU** divides by PyTorch's best epoch in the same run; **paired** is the median of the
#   ratio within each repeat (`--repeats N`), which is steadier on a shared machine.
# - **vs GEMM floor**: an epoch's matrix-product FLOPs at the peak rate of NumPy's BLAS on this machine
#   (a 2048x2048 product); **vs products alone**: the step's own products at that batch size, timed back
#   to back through NumPy's BLAS, for the CPU rows. Small products run below the peak, so the second floor
#   is the higher, nearer one; 1.0x against it would mean everything but the products is free.
# - **test acc** after the run's epochs: implementations draw the same weights but sum in different
#   orders, so the accuracies agree to about a percent, not exactly.
#
# The numbers on this page are from the machine that built it; the recorded figures, with their dates and
# machines, are in [Performance](../../performance/).
