import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import get_backend, to_numpy
from mlp_backend.gradcheck import check_loss_gradients
from mlp_backend.kernels import kernel_set

from conftest import AVAILABLE, backend_matrix, tol

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(6, 4)) * 3
LABELS = rng.integers(0, 4, 6)


@pytest.mark.parametrize("loss,targets", [
    (mlp.SoftmaxCrossEntropy(), LABELS),
    (mlp.SoftmaxCrossEntropy(label_smoothing=0.1), LABELS),
    (mlp.SoftmaxCrossEntropy(), np.eye(4)[LABELS]),
    (mlp.SoftmaxMeanSquaredError(), LABELS),
    (mlp.MeanSquaredError(), rng.normal(size=(6, 4))),
    (mlp.BinaryCrossEntropy(), rng.integers(0, 2, (6, 4)).astype(float)),
])
def test_loss_gradients_match_finite_differences(loss, targets):
    result = check_loss_gradients(loss, LOGITS, targets)
    assert result.ok and result.max_rel_error < 1e-5, str(result)


def _eval(case, loss, logits, targets):
    name, device, dtype, mode = case
    be = get_backend(name, device=device, dtype=dtype)
    t = be.asarray_int(targets) if targets.dtype.kind == "i" else be.asarray(targets)
    value, grad = loss.value_and_grad(be.xp, kernel_set(name, mode), be.asarray(logits), t)
    return float(value), to_numpy(grad)


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("case", backend_matrix())
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_torch(case, smoothing):
    import torch

    z = torch.tensor(LOGITS, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(z, torch.tensor(LABELS), label_smoothing=smoothing)
    expected.backward()
    value, grad = _eval(case, mlp.SoftmaxCrossEntropy(smoothing), LOGITS, LABELS)
    rtol, atol = tol(case[2])
    assert value == pytest.approx(expected.item(), rel=rtol * 10)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=rtol * 10, atol=atol)


@pytest.mark.skipif("torch" not in AVAILABLE, reason="torch oracle not installed")
@pytest.mark.parametrize("case", backend_matrix())
def test_bce_and_mse_match_torch(case):
    import torch

    t = rng.integers(0, 2, LOGITS.shape).astype(float)
    z = torch.tensor(LOGITS, requires_grad=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(t))
    expected.backward()
    value, grad = _eval(case, mlp.BinaryCrossEntropy(), LOGITS, t)
    rtol, atol = tol(case[2])
    assert value == pytest.approx(expected.item(), rel=rtol * 10)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=rtol * 10, atol=atol)
    z.grad = None
    expected = torch.nn.functional.mse_loss(z, torch.tensor(t))
    expected.backward()
    value, grad = _eval(case, mlp.MeanSquaredError(), LOGITS, t)
    assert value == pytest.approx(expected.item(), rel=rtol * 10)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=rtol * 10, atol=atol)


@pytest.mark.parametrize("case", backend_matrix())
def test_cross_entropy_is_stable_for_huge_and_infinite_logits(case):
    z = np.array([[1e4, 0.0, -1e4], [-np.inf, 2.0, 1.0], [0.0, 0.0, 0.0]])
    value, grad = _eval(case, mlp.SoftmaxCrossEntropy(), z, np.array([0, 1, 2]))
    expected_rows = [0.0, np.log1p(np.exp(-1.0)), np.log(3.0)]
    assert value == pytest.approx(np.mean(expected_rows), rel=1e-5)
    assert np.all(np.isfinite(grad))
    assert grad[1, 0] == 0.0


def test_loss_names_and_errors():
    assert isinstance(mlp.get_loss("cross_entropy"), mlp.SoftmaxCrossEntropy)
    assert isinstance(mlp.get_loss("bce"), mlp.BinaryCrossEntropy)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        mlp.get_loss("hinge")
    with pytest.raises(ValueError, match="label_smoothing"):
        mlp.SoftmaxCrossEntropy(label_smoothing=1.5)


@pytest.mark.parametrize("scratch", [False, True])
def test_penalties_values_and_gradients(scratch):
    be = get_backend("numpy", dtype="float64")
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    s = np.full_like(w, 7.0) if scratch else None  # a stale scratch array must not leak into the results
    assert float(mlp.L2(0.1).value(be, w, scratch=s)) == pytest.approx(0.5 * 0.1 * 5.25)
    np.testing.assert_allclose(mlp.L2(0.1).grad(be, w, out=s), 0.1 * w)
    assert float(mlp.L1(0.1).value(be, w, scratch=s)) == pytest.approx(0.35)
    np.testing.assert_allclose(mlp.L1(0.1).grad(be, w, out=s), 0.1 * np.sign(w))
    np.testing.assert_array_equal(w, [[1.0, -2.0], [0.5, 0.0]])
    with pytest.raises(ValueError, match="non-negative"):
        mlp.L2(-1)


@pytest.mark.parametrize("make,target", [
    (lambda: mlp.SoftmaxCrossEntropy(), "labels"), (lambda: mlp.SoftmaxCrossEntropy(0.1), "labels"),
    (lambda: mlp.SoftmaxCrossEntropy(), "soft"), (lambda: mlp.SoftmaxMeanSquaredError(), "labels"),
    (lambda: mlp.MeanSquaredError(), "real"), (lambda: mlp.BinaryCrossEntropy(), "binary")])
def test_per_sample_losses_average_to_the_loss(make, target):
    """What sample weights weigh: each sample's loss, whose mean is the loss value_and_grad reports."""
    import array_api_compat.numpy as xp

    from mlp_backend.kernels import kernel_set

    rng = np.random.default_rng(0)
    out = rng.normal(size=(9, 4)) * 3
    t = {"labels": rng.integers(0, 4, 9), "soft": rng.dirichlet(np.ones(4), 9), "real": rng.normal(size=(9, 4)),
         "binary": rng.integers(0, 2, (9, 4)).astype(float)}[target]
    loss = make()
    per = loss.per_sample(xp, out, t)
    assert per.shape == (9,)
    np.testing.assert_allclose(np.mean(per), loss.value_and_grad(xp, kernel_set("numpy"), out, t)[0], rtol=1e-12)
