"""The peers ``mlp bench`` measures us against, each the same job written the way that library runs it best.

- ``pytorch-cpu`` / ``pytorch-cuda``: eager PyTorch, the loop people write.
- ``pytorch-cuda-graph``: each training step captured once as a CUDA graph and replayed (Adam
  ``capturable=True``; the batch gathered by index inside the graph from data already on the GPU): PyTorch's
  best without a compiler.
- ``jax-scan``: the whole epoch as one compiled ``lax.scan`` over its batches (the best peer measured on an
  H100), on JAX's default device, float32 matmuls at "highest" precision.

Every peer: 784-500-250-100-10 ReLU (``HIDDEN``), PyTorch's default initialisation, Adam(1e-3), mean
cross-entropy, a new permutation every epoch, the last partial batch trained too. Each returns the seconds of
every epoch (the device synchronised at both ends) and the test accuracy.
"""
from __future__ import annotations

import time

import numpy as np

HIDDEN = (500, 250, 100)


def _torch_net(sizes, device):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(device)


def run_pytorch(impl, batch_size, epochs, seed, data, X, X_test):
    import torch

    device = "cpu" if impl == "pytorch-cpu" else "cuda"
    torch.manual_seed(seed)
    net = _torch_net([data.num_features, *HIDDEN, data.num_classes], device)
    graph = impl == "pytorch-cuda-graph"
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=graph)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xd, yd = torch.as_tensor(X, device=device), torch.as_tensor(data.y_train, device=device)
    gen = torch.Generator().manual_seed(seed)

    def step(idx):
        loss = loss_fn(net(Xd.index_select(0, idx)), yd.index_select(0, idx))
        loss.backward()
        opt.step()

    replay = _captured_step(step, opt, batch_size, device) if graph else None
    seconds = []
    for _ in range(epochs):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(Xd.shape[0], generator=gen).to(device)
        for lo in range(0, Xd.shape[0], batch_size):
            idx = order[lo:lo + batch_size]
            if replay is not None and idx.shape[0] == batch_size:
                replay(idx)
            else:  # eager (the partial batch in graph mode: the captured gradients are zeroed, not freed)
                opt.zero_grad(set_to_none=not graph)
                step(idx)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    with torch.no_grad():
        pred = net(torch.as_tensor(X_test, device=device)).argmax(dim=1).cpu().numpy()
    return seconds, float(np.mean(pred == data.y_test))


def _captured_step(step, opt, batch_size, device):
    """``step`` captured as a CUDA graph over a static index buffer; returns ``replay(idx)``.

    As PyTorch's documentation for whole-network capture: a few warm-up steps on a side stream (they train,
    on the first rows of the data: the epoch that follows is not reported), then one capture with the
    gradients unallocated, so that the graph owns them and each replay writes (not adds) them.
    """
    import torch

    static_idx = torch.arange(batch_size, device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step(static_idx)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step(static_idx)

    def replay(idx):
        static_idx.copy_(idx)
        graph.replay()
    return replay


def run_jax_scan(impl, batch_size, epochs, seed, data, X, X_test):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    sizes = [data.num_features, *HIDDEN, data.num_classes]
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b
        bound = 1.0 / np.sqrt(a)
        params.append((jnp.asarray(rng.uniform(-bound, bound, (a, b)), jnp.float32),
                       jnp.asarray(rng.uniform(-bound, bound, b), jnp.float32)))

    def forward(params, x):
        for W, b in params[:-1]:
            x = jax.nn.relu(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, y):
        logits = forward(params, x)
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0])

    beta1, beta2, eps, lr = 0.9, 0.999, 1e-8, 1e-3

    def train_step(carry, idx, Xd, yd):
        params, m, v, t = carry
        grads = jax.grad(loss_fn)(params, Xd[idx], yd[idx])
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, grads)
        step_size = lr / (1 - beta1 ** t)
        root_bias2 = jnp.sqrt(1 - beta2 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root_bias2 + eps),
                                        params, m, v)
        return (params, m, v, t), None

    @jax.jit
    def epoch(carry, batches, Xd, yd):  # the data are arguments, not constants baked into the program
        carry, _ = jax.lax.scan(lambda c, idx: train_step(c, idx, Xd, yd), carry, batches)
        return carry

    last_step = jax.jit(lambda carry, idx, Xd, yd: train_step(carry, idx, Xd, yd)[0])
    Xd, yd = jnp.asarray(X, jnp.float32), jnp.asarray(data.y_train, jnp.int32)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (params, zeros, zeros, jnp.float32(0))
    n, seconds = X.shape[0], []
    full = n // batch_size * batch_size
    for _ in range(epochs):
        jax.block_until_ready(carry)
        start = time.perf_counter()
        order = jnp.asarray(rng.permutation(n), jnp.int32)
        carry = epoch(carry, order[:full].reshape(-1, batch_size), Xd, yd)
        if full < n:
            carry = last_step(carry, order[full:], Xd, yd)
        jax.block_until_ready(carry)
        seconds.append(time.perf_counter() - start)
    pred = np.asarray(jnp.argmax(forward(carry[0], jnp.asarray(X_test, jnp.float32)), axis=1))
    return seconds, float(np.mean(pred == data.y_test))
