# %% [markdown]
# # Fashion-MNIST end to end
#
# The project's main job in Python: load the real Fashion-MNIST files (Debian's `dataset-fashion-mnist`,
# which `setup.sh` installs), train the default network, look at its curves and confusion matrix, save it,
# load it on another backend, and resume an interrupted run bit for bit. `mlp train` does all of this from
# the command line; here each step is visible.

# %%
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

import mlp_backend as mlp
from mlp_backend import plots
from mlp_backend.data import Standardizer, load_fashion_mnist

work = Path(tempfile.mkdtemp())
data = load_fashion_mnist()
print(data.X_train.shape, data.X_train.dtype, data.X_test.shape, data.class_names)

# %% [markdown]
# Pixels come as float32 in [0, 1]. As `mlp train` does, standardise with one mean and standard deviation
# taken from the training images (never from the test set), and hold out 10% of the training set for
# validation:

# %%
from mlp_backend.data import stratified_split

scaler = Standardizer(per_feature=False).fit(data.X_train)
X, X_test = scaler.transform(data.X_train), scaler.transform(data.X_test)
train_rows, val_rows = stratified_split(data.y_train, 0.1, seed=0)
X_train, y_train = X[train_rows], data.y_train[train_rows]
X_val, y_val = X[val_rows], data.y_train[val_rows]
print(len(y_train), "training,", len(y_val), "validation,", len(data.y_test), "test images")

# %% [markdown]
# ## Train
#
# The default model: 784-500-250-100-10 with ReLU, softmax cross-entropy and Adam. Four epochs at batch 128
# keep this page quick to build; `mlp train` runs 15 at batch 64.

# %%
model = mlp.build_mlp([784, 500, 250, 100, 10], "relu", seed=0)
print(model.summary())
history = model.fit(X_train, y_train, optimizer=mlp.Adam(1e-3), epochs=4, batch_size=128,
                    validation_data=(X_val, y_val), seed=0)
for epoch, (loss, acc) in enumerate(zip(history.val_loss, history.val_accuracy), 1):
    print(f"epoch {epoch}: validation loss {loss:.4f}, accuracy {acc:.4f}")

# %% [markdown]
# ## Curves
#
# `history` holds the loss of every mini-batch and the per-epoch means; the plot functions write PNGs
# (the same files a run folder holds).

# %%
plots.plot_loss(history.as_dict(), work / "loss.png")
display(Image(work / "loss.png"))
plots.plot_accuracy(history.as_dict(), work / "accuracy.png")
display(Image(work / "accuracy.png"))

# %% [markdown]
# ## Test set: confusion matrix and report
#
# The test set is touched once, at the end. Shirts, T-shirts, pullovers and coats are the classes a small
# MLP confuses most.

# %%
predicted = model.predict(X_test)
print(mlp.classification_report(data.y_test, predicted, class_names=data.class_names))
cm = mlp.confusion_matrix(data.y_test, predicted, num_classes=10)
plots.plot_confusion(cm, data.class_names, work / "confusion.png")
display(Image(work / "confusion.png"))

# %% [markdown]
# ## Save, load anywhere, evaluate
#
# A checkpoint is a safetensors file (no pickle: loading cannot run code) with the model's configuration
# and a SHA-256 over every tensor. It loads on any backend; here array-api-strict, the standard's
# reference implementation.

# %%
mlp.save_checkpoint(model, work / "model.safetensors", optimizer=model.optimizer)
loaded = mlp.load_checkpoint(work / "model.safetensors", backend="array_api_strict").model
print(loaded.summary())
print("saved model:  ", model.evaluate(X_test, data.y_test))
print("loaded model: ", loaded.evaluate(X_test, data.y_test))

# %% [markdown]
# ## Resume an interrupted run
#
# With `checkpoint=` and `checkpoint_every=`, `fit` saves everything needed to continue: parameters,
# optimizer state, the epoch's sample order, the random generator and the history. Here a run is
# interrupted in its second epoch and resumed; it ends with exactly the parameters of a run that was never
# interrupted.

# %%
def default_model():
    return mlp.build_mlp([784, 500, 250, 100, 10], "relu", seed=0)


settings = dict(epochs=2, batch_size=128, seed=0)
uninterrupted = default_model()
uninterrupted.fit(X_train, y_train, optimizer=mlp.Adam(1e-3), **settings)


class Interrupt(Exception):
    pass


seen = []


def stop_at(step, steps, loss):  # step counts within the epoch; 422 steps make an epoch here
    seen.append(step)
    if len(seen) == 600:  # mid-way through the second epoch
        raise Interrupt


interrupted = default_model()
try:
    interrupted.fit(X_train, y_train, optimizer=mlp.Adam(1e-3), **settings, checkpoint=work / "ck.safetensors",
                    checkpoint_every=100, on_step=stop_at)
except Interrupt:
    print("interrupted after", len(seen), "steps")

resumed = default_model()
resumed.fit(X_train, y_train, optimizer=mlp.Adam(1e-3), **settings, resume=work / "ck.safetensors")
same = np.array_equal(resumed.flat_params, uninterrupted.flat_params)
print("parameters identical to the uninterrupted run:", same)
assert same

# %% [markdown]
# From the command line the same is `mlp train --checkpoint-every 100` and, after an interruption,
# `mlp train --resume runs/RUN`.
