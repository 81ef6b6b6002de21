"""Backend.fill (clearing gradients each iteration): every element of big and small, float32 and
float64 arrays, on the CPU's OpenMP path and numpy's."""
import numpy as np
import pytest

import netdef


@pytest.mark.parametrize("size", [1, 1000, 32768, 32769, 1_000_003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fill_sets_every_element(size, dtype):
    be = netdef.get_backend("cpu")
    a = np.full(size, np.nan, dtype=dtype)
    be.fill(a, 0)
    assert not a.any()
    be.fill(a, -2.5)
    assert (a == -2.5).all()


def test_clear_param_diffs_zeroes_every_gradient():
    net = netdef.Net("""input: 'x' input_shape { dim: 2 dim: 3 dim: 40 dim: 40 }
        layer { name: 'c' type: 'Convolution' bottom: 'x' top: 'y'
                convolution_param { num_output: 300 kernel_size: 11 } }""", netdef.TRAIN)
    for blob in net.learnable_params:
        blob.diff[...] = 7
    net.clear_param_diffs()
    assert all(not blob.diff.any() for blob in net.learnable_params)
