"""HingeLoss (L1 and L2) against a numpy loop, the finite-difference gradient, label and shape
errors, GPU against CPU."""
import numpy as np
import pytest

from gradcheck import build_layer, check_gradients, compare_devices, forward
from netdef.errors import NetdefError, ShapeError


def proto(norm="L1"):
    return f"name: 'hinge' type: 'HingeLoss' hinge_loss_param {{ norm: {norm} }}"


def reference(x, lab, power):
    N = x.shape[0]
    xf = x.reshape(N, -1)
    loss, grad = 0.0, np.zeros_like(xf)
    for n in range(N):
        for c in range(xf.shape[1]):
            s = -1.0 if c == int(lab[n]) else 1.0
            d = max(0.0, 1 + s * xf[n, c])
            loss += d if power == 1 else d * d
            grad[n, c] = s * ((d > 0) if power == 1 else 2 * d)
    return loss / N, grad.reshape(x.shape) / N


def data(seed, shape=(4, 5)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 1.5
    return x, rng.integers(0, int(np.prod(shape[1:])), shape[0]).astype(float)


@pytest.mark.parametrize("norm,power", [("L1", 1), ("L2", 2)])
def test_against_reference(norm, power):
    x, lab = data(0, (4, 3, 2))
    layer, b, top = build_layer(proto(norm), [x, lab])
    (loss,) = forward(layer, b, top)
    ref, g = reference(x, lab, power)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    top[0].diff[...] = 1.5
    layer.backward(top, [True, False], b)
    np.testing.assert_allclose(b[0].diff, 1.5 * g, rtol=1e-12)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gradient(norm):
    x, lab = data(1, (3, 5))
    x[np.abs(np.abs(x) - 1) < 0.05] += 0.2  # keep away from the hinge's kink
    check_gradients(proto(norm), [x, lab])


def test_errors():
    x, lab = data(2)
    with pytest.raises(ShapeError, match="one label per row"):
        build_layer(proto(), [x, np.zeros(3)])
    lab[2] = -1
    layer, b, top = build_layer(proto(), [x, lab])
    with pytest.raises(NetdefError, match=r"outside \[0, 5\).*index \(2,\)"):
        forward(layer, b, top)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    compare_devices(proto("L2"), list(data(3, (6, 7))))
