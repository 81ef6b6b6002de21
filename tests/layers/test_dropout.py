import numpy as np
import pytest

import netdef
from gradcheck import build_layer, check_gradients, compare_devices, forward


def test_dropout_test_phase_is_identity():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer, b, t = build_layer("type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", [x], phase=netdef.TEST)
    np.testing.assert_array_equal(forward(layer, b, t)[0], x)


def test_dropout_train_scales_kept_units():
    x = np.ones((50, 40, 10))
    layer, b, t = build_layer("type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", [x])
    (y,) = forward(layer, b, t)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.02  # 20000 draws: 4 standard deviations is ~0.013
    # the same mask is used by backward
    t[0].diff[...] = 1
    layer.backward(t, [True], b)
    np.testing.assert_array_equal(b[0].diff != 0, kept)


def test_dropout_gradient():
    x = np.random.default_rng(1).standard_normal((2, 3, 5))
    check_gradients("type: 'Dropout' dropout_param { dropout_ratio: 0.4 }", [x])


def test_dropout_bad_ratio():
    with pytest.raises(netdef.LayerSetupError, match="dropout_ratio"):
        build_layer("name: 'd' type: 'Dropout' dropout_param { dropout_ratio: 1.0 }", [np.ones(3)])


@pytest.mark.gpu
def test_dropout_gpu_test_phase_matches_cpu():
    x = np.random.default_rng(2).standard_normal((2, 3, 5))
    compare_devices("type: 'Dropout'", [x], phase=netdef.TEST)
