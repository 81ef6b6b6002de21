"""The CPU backend's helpers: fill (clearing gradients each iteration) on every element of big
and small, float32 and float64 arrays, on the OpenMP path and numpy's; row_tile, the segment
length of the row-tiled kernels."""
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


def test_row_tile_takes_whole_rows_unless_rows_are_too_few_for_the_threads():
    from netdef.backend.cpu import PARALLEL_ROWS

    be = netdef.get_backend("cpu")
    assert be.row_tile(326, 64 * 326) == 326                  # many rows: whole rows
    assert be.row_tile(500, PARALLEL_ROWS) == 500
    assert be.row_tile(10, 3) == 10                           # too little work to share
    for rows, width in ((1, 200_000), (3, 50_000), (PARALLEL_ROWS - 1, 10_000)):
        tile = be.row_tile(width, rows)
        assert tile < width and rows * -(-width // tile) >= PARALLEL_ROWS, (rows, width, tile)


def test_kernels_take_arrays_or_addresses():
    """The extension reads an array argument's address through the buffer protocol (cheaper
    than numpy's .ctypes.data); an int address works the same; a strided view, an array of
    the other dtype or a string for a number is refused (False) without running the kernel."""
    be = netdef.get_backend("cpu")
    kern = be._table["eltwise_axpby_f32"]
    x = np.arange(6, dtype=np.float32)
    for y in (np.zeros(6, np.float32), None):
        out = np.zeros(6, np.float32)
        kern(6, x if y is not None else x.ctypes.data, 2.0, out if y is not None else out.ctypes.data, 0.0)
        np.testing.assert_array_equal(out, 2 * x)
    assert kern(3, x[::2], 2.0, np.zeros(3, np.float32), 0.0) is False  # refused, not run
    assert kern(6, x.astype(np.float64), 2.0, np.zeros(6, np.float32), 0.0) is False
    assert kern(6, x, "2", np.zeros(6, np.float32), 0.0) is False
    kern(0, np.zeros(0, np.float32), 1.0, np.zeros(0, np.float32), 0.0)  # empty: no null pointer error


def test_launch_names_a_bad_argument_before_the_kernel_runs():
    """The extension refuses an array that is strided, of the other float dtype or of another
    element type before the kernel runs (it would see only an address); the launcher then names
    the argument. What the extension does not take as it is (numpy bools, 0-d arrays) works."""
    k = netdef.get_backend("cpu").kernels("eltwise")
    x = np.arange(6, dtype=np.float32)
    out = np.full(6, 7.0, np.float32)
    cases = [((3, x[::2], 2.0, out[:3], 0.0), "argument 1 is not C-contiguous"),
             ((6, x, 2.0, np.zeros(6, np.float64), 0.0), "argument 3 is float64, expected float32"),
             ((6, x, 2.0, np.zeros(6, np.int32), 0.0), "argument 3 has dtype int32"),
             ((6, x, 2.0, [0.0] * 6, 0.0), "argument 3 of type list")]
    for args, message in cases:
        with pytest.raises(netdef.BackendError, match=message):
            k.eltwise_axpby(*args)
        assert (out == 7).all()  # nothing written
    k.eltwise_axpby(6, x, np.float32(2), out, np.bool_(False))
    np.testing.assert_array_equal(out, 2 * x)
    one, y0 = np.array(3.0, np.float32), np.zeros((), np.float32)
    k.eltwise_axpby(1, one, 2.0, y0, 0.0)
    assert y0 == 6


def test_workspaces_and_ones_belong_to_the_backend(emulated_gpu_backend):
    """Scratch arrays are shared per backend, dtype and name, grow when asked for more, and are
    not shared with another backend (the emulated GPU's)."""
    be = netdef.get_backend("cpu")
    a = be.workspace(np.float32, 1 << 20, "test-scratch")
    b = be.workspace(np.float32, 10, "test-scratch")
    assert np.shares_memory(a, b) and b.size == 10
    assert not np.shares_memory(a, be.workspace(np.float32, 10, "test-other"))
    assert not np.shares_memory(a, be.workspace(np.float64, 10, "test-scratch"))
    assert not np.shares_memory(a, emulated_gpu_backend.workspace(np.float32, 10, "test-scratch"))
    c = be.workspace(np.float32, (1 << 20) + 1, "test-scratch")
    assert c.size == (1 << 20) + 1 and not np.shares_memory(a, c)
    ones = be.ones(np.float64, 7)
    assert ones.shape == (7,) and (ones == 1).all()
    be._workspaces = {k: v for k, v in be._workspaces.items() if not k[1].startswith("test-")}


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 17, 60, 70)])  # numpy's sum; GEMVs with ones
def test_add_channel_sums(shape):
    be = netdef.get_backend("cpu")
    x = np.random.default_rng(0).standard_normal(shape)
    out = np.full(shape[1], 0.5)
    be.add_channel_sums(x, out)
    np.testing.assert_allclose(out, 0.5 + x.sum(axis=(0, 2, 3)), rtol=1e-12)
