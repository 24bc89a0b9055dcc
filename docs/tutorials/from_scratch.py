# %% [markdown]
# # An MLP from scratch
#
# The classic coursework starts by writing one layer's forward and backward pass by hand. This tutorial does
# exactly that in plain NumPy, next to the framework's `Dense` layer, checks both with float64 finite
# differences, and then derives the softmax-cross-entropy gradient in code.

# %%
import numpy as np

import mlp_backend as mlp

rng = np.random.default_rng(0)

# %% [markdown]
# ## One Dense layer by hand
#
# A Dense layer computes $z = xW + b$ and then an activation $y = f(z)$. With $x$ of shape (N, in) and
# $W$ of shape (in, out), the backward pass receives $\partial L/\partial y$ and returns
#
# - $\partial L/\partial z = \partial L/\partial y \odot f'(z)$,
# - $\partial L/\partial W = x^\top\, \partial L/\partial z$, $\partial L/\partial b = \sum_n \partial L/\partial z_n$,
# - $\partial L/\partial x = \partial L/\partial z\, W^\top$.


# %%
class HandDense:
    """A tanh Dense layer, forward and backward, in plain NumPy."""

    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        self.y = np.tanh(x @ self.W + self.b)
        return self.y

    def backward(self, dy):
        dz = dy * (1.0 - self.y**2)  # tanh'(z) = 1 - tanh(z)^2, from the saved output
        self.dW = self.x.T @ dz
        self.db = dz.sum(axis=0)
        return dz @ self.W.T


# %% [markdown]
# The framework's layer, in a one-layer model, in float64 so the comparison is exact to rounding:

# %%
model = mlp.Sequential([mlp.Dense(4, 3, activation="tanh")], dtype="float64", seed=0)
print(model.summary())
W, b = model.get_parameter("dense0.W"), model.get_parameter("dense0.b")
hand = HandDense(W.copy(), b.copy())

x = rng.normal(size=(5, 4))
dy = rng.normal(size=(5, 3))
y_framework = model.forward(x, training=True)
dx_framework = model.backward_to_input(dy)
y_hand = hand.forward(x)
dx_hand = hand.backward(dy)

grads = model.gradients()
print("forward   max |difference|:", np.abs(y_framework - y_hand).max())
print("dL/dx     max |difference|:", np.abs(dx_framework - dx_hand).max())
print("dL/dW     max |difference|:", np.abs(grads["dense0.W"] - hand.dW).max())
print("dL/db     max |difference|:", np.abs(grads["dense0.b"] - hand.db).max())
assert np.allclose(y_framework, y_hand) and np.allclose(dx_framework, dx_hand)
assert np.allclose(grads["dense0.W"], hand.dW) and np.allclose(grads["dense0.b"], hand.db)

# %% [markdown]
# ## Checking a gradient with finite differences
#
# An analytic gradient is only as good as its check. The central difference
# $\frac{L(\theta+\varepsilon) - L(\theta-\varepsilon)}{2\varepsilon}$ in float64 agrees with a correct
# gradient to about $10^{-8}$ relative error; a wrong one is off by order one. First our hand-written layer:


# %%
def numeric_grad(f, theta, eps=1e-6):
    g = np.zeros_like(theta)
    for i in np.ndindex(theta.shape):
        old = theta[i]
        theta[i] = old + eps
        up = f()
        theta[i] = old - eps
        down = f()
        theta[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def loss_of_hand():  # a scalar loss: L = sum(y * dy), so dL/dy = dy
    return float((hand.forward(x) * dy).sum())


hand.forward(x)
hand.backward(dy)
numeric = numeric_grad(loss_of_hand, hand.W)
print("hand dL/dW relative error:", np.abs(numeric - hand.dW).max() / np.abs(numeric).max())

# %% [markdown]
# The framework has the same check built in for any layer, loss or whole model
# (`check_layer_gradients`, `check_loss_gradients`, `check_model_gradients`; the tolerances are
# `torch.autograd.gradcheck`'s):

# %%
print(mlp.check_layer_gradients(mlp.Dense(4, 3, activation="tanh"), x))
print(mlp.check_layer_gradients(mlp.LayerNorm(4), x))

# %% [markdown]
# ## Softmax cross-entropy, derived in code
#
# For logits $z$ and a one-hot target $t$, $p = \mathrm{softmax}(z)$ and $L = -\sum_k t_k \log p_k$.
# Since $\partial p_j / \partial z_k = p_j(\delta_{jk} - p_k)$,
#
# $$\frac{\partial L}{\partial z_k} = -\sum_j \frac{t_j}{p_j}\, p_j (\delta_{jk} - p_k) = p_k \sum_j t_j - t_k = p_k - t_k.$$
#
# Averaged over a batch of N samples, the gradient is $(p - t)/N$. Computing it stably needs the
# log-sum-exp shift ($z - \max z$ changes nothing but keeps `exp` finite):

# %%
logits = rng.normal(size=(6, 4)) * 3
labels = np.array([0, 1, 2, 3, 1, 0])


def softmax_cross_entropy(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    t = np.eye(z.shape[1])[y]
    loss = -(t * log_p).sum() / len(y)
    grad = (np.exp(log_p) - t) / len(y)
    return loss, grad


loss_hand, grad_hand = softmax_cross_entropy(logits, labels)
numeric = numeric_grad(lambda: softmax_cross_entropy(logits, labels)[0], logits)
print(f"loss {loss_hand:.6f}; gradient vs finite differences: {np.abs(grad_hand - numeric).max():.2e}")

# %% [markdown]
# The framework computes the loss and this gradient in one fused pass (a Numba kernel on the CPU). Its value
# matches the hand-written one, and its gradient passes the same check:

# %%
trained = mlp.build_mlp([4, 4], dtype="float64")  # a one-layer model only to reach evaluate's loss
trained.set_parameter("dense0.W", np.eye(4))
trained.set_parameter("dense0.b", np.zeros(4))
print("framework loss:", trained.evaluate(logits, labels)["loss"], " hand:", loss_hand)
print(mlp.check_loss_gradients("cross_entropy", logits, labels))

# %% [markdown]
# ## From one layer to a trained network
#
# Stacking layers is `build_mlp`; training is `fit`. On scikit-learn's bundled 8×8 digits a small ReLU
# network reaches about 97% test accuracy in a second, and the whole model passes the gradient check:

# %%
from mlp_backend.data import Standardizer, load_digits

digits = load_digits()
scaler = Standardizer().fit(digits.X_train)
X_train, X_test = scaler.transform(digits.X_train), scaler.transform(digits.X_test)
net = mlp.build_mlp([64, 32, 10], "relu", seed=0)
history = net.fit(X_train, digits.y_train, optimizer=mlp.Adam(1e-2), epochs=20, batch_size=32)
print("test accuracy:", net.evaluate(X_test, digits.y_test)["accuracy"])

small = mlp.build_mlp([64, 8, 10], "tanh", dtype="float64", seed=0)
print(mlp.check_model_gradients(small, X_train[:16], digits.y_train[:16]))
