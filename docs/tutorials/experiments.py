# %% [markdown]
# # Experiments like the coursework's
#
# Coursework asks questions such as *which optimizer, which activation, which learning rate?*, *does
# weight decay help?*, *why cross-entropy rather than squared error?* and *does the initialisation
# matter?* One run answers none of them: a seed moves the result. `mlp sweep` runs a grid of settings,
# each over several seeds, and reports mean ± standard deviation. These sweeps use scikit-learn's bundled
# 8×8 digits (1,437 training images) so the page builds in seconds; on Fashion-MNIST the commands are the
# same without `--dataset digits`.

# %%
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display

work = Path(tempfile.mkdtemp())
mlp_command = [sys.executable, "-m", "mlp_backend.cli"]  # the `mlp` command of this environment


def sweep(name, *options):
    """Run `mlp sweep` into work/name and show its report."""
    out = work / name
    subprocess.run([*mlp_command, "sweep", "--dataset", "digits", "--hidden", "64", "--epochs", "15",
                    "--seeds", "0,1,2", "--out", str(out), "--quiet", *options], check=True, capture_output=True)
    report = (out / "report.md").read_text()
    display(Markdown(report.split("![")[0]))  # the table; the plots follow
    return out


# %% [markdown]
# ## Optimizers × activations × learning rates
#
# Three optimizers, two activations and three learning rates: 18 configurations, 54 runs.

# %%
out = sweep("optimizers", "--optimizers", "sgd,momentum,adam", "--activations", "relu,tanh",
            "--lrs", "0.001,0.01,0.1")

# %% [markdown]
# What the table shows: plain SGD at `lr=0.001` has barely left chance after 15 epochs and needs
# `lr=0.1`; momentum (0.9) at `lr=0.001` does about what SGD does at `0.01`, since it sums about ten past
# gradients into each step. Adam is the least sensitive to the learning rate, best near `0.01`, and
# unstable at `0.1` (see its ± column). The ± column is the standard deviation over seeds: two
# configurations whose means differ by less than it are not told apart by three seeds. The
# validation-loss curves, mean ± std over the seeds of each configuration:

# %%
display(Image(out / "comparison.png"))

# %% [markdown]
# ## Weight decay
#
# L2 weight decay adds $\lambda \lVert W\rVert^2/2$ to the loss (`--weight-decay`; decoupled for AdamW).
# A little decay is within the seed noise here; `1e-2` is too strong and costs accuracy:

# %%
out = sweep("decay", "--optimizers", "adam", "--lrs", "0.01", "--weight-decays", "0,1e-4,1e-3,1e-2")

# %% [markdown]
# ## Cross-entropy or squared error?
#
# `softmax_mse` is the squared error between the softmax output and the one-hot target. Its gradient
# through the softmax vanishes when the network is confidently wrong, where cross-entropy's
# ($p - t$) is largest, so plain SGD learns far more slowly with it. Adam divides each gradient by its
# running magnitude, which undoes most of that difference. (The test-loss column is each run's own loss:
# squared errors and cross-entropies are not comparable numbers.)

# %%
out = sweep("losses", "--optimizers", "sgd,adam", "--lrs", "0.01", "--losses", "cross_entropy,softmax_mse")
display(Image(out / "comparison_accuracy.png"))

# %% [markdown]
# ## Initialisations, in Python
#
# The sweep command varies what the coursework grids vary; anything else is a loop in Python. Here a
# deep (6 hidden layers) tanh and ReLU network under four initialisers, three seeds each, trained with
# SGD: a small fixed scale (`normal:0.01`, `uniform:0.05`) stalls the deep network at chance, since each
# layer shrinks the signal and its gradient; Glorot (scaled for tanh) and He (for ReLU) keep the
# variance from layer to layer and train.

# %%
import mlp_backend as mlp
from mlp_backend.data import Standardizer, load_digits

digits = load_digits()
scaler = Standardizer().fit(digits.X_train)
X_train, X_test = scaler.transform(digits.X_train), scaler.transform(digits.X_test)

rows = ["| activation | init | test accuracy (mean ± std over 3 seeds) |", "|---|---|---|"]
for activation in ("tanh", "relu"):
    for init in ("normal:0.01", "uniform:0.05", "glorot_uniform", "he_normal"):
        scores = []
        for seed in range(3):
            model = mlp.build_mlp([64] + [64] * 6 + [10], activation, init=init, seed=seed)
            model.fit(X_train, digits.y_train, optimizer=mlp.SGD(0.05), epochs=10, batch_size=32, seed=seed)
            scores.append(model.evaluate(X_test, digits.y_test)["accuracy"])
        rows.append(f"| {activation} | `{init}` | {np.mean(scores):.4f} ± {np.std(scores, ddof=1):.4f} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# `mlp plot RUN_A RUN_B --metric val_loss` draws the curves of any runs side by side (mean ± std over runs
# of the same name), and `mlp plot --activations --out act.png` the table of activations and their
# derivatives:

# %%
subprocess.run([*mlp_command, "plot", "--activations", "--out", str(work / "activations.png")], check=True)
display(Image(work / "activations.png"))
