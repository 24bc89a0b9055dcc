"""Adding a backend is one class: here NumPy seen through the Array API alone (no ``out=``, no fused kernels),
registered under a name of its own, trains a model, and agrees with NumPy's reference kernels to the bit."""
import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backends import CLASSES, Backend, register


class PlainNumpy(Backend):
    """NumPy arrays, computed by the Array API code only."""

    name = "plain_numpy"
    namespace = "array_api_compat.numpy"

    @classmethod
    def owns(cls, x) -> bool:
        return isinstance(x, np.ndarray)

    def resolve_device(self, device):
        return "cpu"


@pytest.fixture
def plain_numpy():
    register(PlainNumpy)
    yield PlainNumpy.name
    del CLASSES[PlainNumpy.name]


def test_a_registered_backend_trains_like_the_built_in_ones(plain_numpy):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)), rng.integers(0, 3, 120)
    runs = {}
    for backend, kernels in ((plain_numpy, "auto"), ("numpy", "reference")):
        model = mlp.build_mlp([6, 16, 3], "tanh", backend=backend, dtype="float64", seed=0, kernels=kernels,
                              dropout=0.2)
        history = model.fit(X, y, optimizer=mlp.Adam(1e-2), epochs=2, batch_size=32)
        runs[backend] = (history.train_loss, mlp.to_numpy(model.flat_params))
    assert type(mlp.get_backend(plain_numpy)) is PlainNumpy
    assert runs[plain_numpy][0] == runs["numpy"][0]
    np.testing.assert_array_equal(runs[plain_numpy][1], runs["numpy"][1])
    moved = mlp.build_mlp([6, 4, 3], seed=1).to(plain_numpy)
    assert moved.be.name == plain_numpy and moved.ops.used == f"reference (no Numba kernels for {plain_numpy})"
