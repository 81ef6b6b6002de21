"""The CPU backend's product choices under the convolutions, against the reference im2col +
GEMM path: gradient accumulation through GEMM's beta, the GEMV-like backward-data product taken
transposed, bias gradients as GEMVs, and Backend.matmul's branches (the CPU's and the GPU
policy's)."""
import numpy as np
import pytest

import netdef
from gradcheck import build_layer
from netdef.backend import gpu_policy

from test_convolution import conv_param


@pytest.fixture
def cpu():
    return netdef.get_backend("cpu")


@pytest.fixture(params=["blas", "numpy"], autouse=True)
def small_products(request, monkeypatch):
    """Run every test with BLAS for every product (small_product 0) and with the default, under
    which these small shapes keep numpy's matmul."""
    if request.param == "blas":
        monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 0)
    return request.param


@pytest.fixture
def workspace_names(monkeypatch, cpu):
    """The names of the scratch arrays the CPU backend is asked for, as they are asked for."""
    names = []
    real = cpu.workspace

    def spy(dtype, size, name="col"):
        names.append(name)
        return real(dtype, size, name)

    monkeypatch.setattr(cpu, "workspace", spy)
    return names


def run(kind, cfg, threshold=None, dtype=np.float64, transposed_grad_max_rows=None, merge=False):
    N, C, H, W, m, k, s, p, g = cfg
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    layer, bottom, top = build_layer(conv_param(kind, m, k, s, p, (1, 1), g, True), [x], dtype=dtype)
    if not merge:  # image by image: the per-image products these tests are about
        layer.merge_max_pixels = 0
    cpu, saved = layer.backend, {}
    for attr, value in (("transposed_adjoint_min_weights", threshold),
                        ("transposed_grad_max_rows", transposed_grad_max_rows)):
        if value is not None:
            saved[attr] = getattr(cpu, attr)
            setattr(cpu, attr, value)
    try:
        return _pass(layer, bottom, top)
    finally:
        for attr, value in saved.items():
            setattr(cpu, attr, value)


def _pass(layer, bottom, top):
    layer.param_propagate_down = [True, True]
    layer.forward(bottom, top)
    top[0].diff[...] = np.random.default_rng(1).standard_normal(top[0].shape)
    for b in layer.blobs:
        b.diff[...] = 0.25  # gradients must be added to what is there
    layer.backward(top, [True], bottom)
    return top[0].data.copy(), bottom[0].diff.copy(), [b.diff.copy() for b in layer.blobs], layer


# few output pixels against many weights: the shapes that take the transposed product
GEMV_LIKE = [
    ("Convolution", (1, 8, 4, 4, 5, (3, 3), (1, 1), (0, 0), 1)),   # L = 4, K = 72
    ("Convolution", (2, 16, 4, 4, 6, (3, 3), (1, 1), (0, 0), 2)),  # group 2, batch 2
    ("Convolution", (2, 40, 2, 1, 7, (1, 1), (1, 1), (0, 0), 1)),  # 1x1: K = 40, L = 2
    ("Deconvolution", (2, 3, 1, 2, 8, (3, 3), (2, 2), (0, 0), 1)),  # its forward: L = 2, K = 72
]


@pytest.mark.parametrize("kind,cfg", GEMV_LIKE)
def test_transposed_adjoint_product_matches_reference(kind, cfg, workspace_names):
    names = workspace_names
    fast = run(kind, cfg, threshold=1)
    assert "adjoint" in names  # the transposed product ran
    names.clear()
    ref = run(kind, cfg, threshold=1 << 62)
    assert "adjoint" not in names
    for a, b in zip(fast[:2] + tuple(fast[2]), ref[:2] + tuple(ref[2])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


WGRAD = [
    ("Convolution", (3, 4, 7, 6, 5, (3, 3), (1, 1), (1, 1), 1)),    # m 5 < n 36, batch 3
    ("Convolution", (2, 8, 5, 5, 6, (3, 3), (2, 2), (1, 1), 2)),    # groups: m 3 < n 36
    ("Convolution", (2, 6, 4, 5, 9, (1, 1), (1, 1), (0, 0), 1)),    # 1x1: m 9 > n 6, the other way
    ("Deconvolution", (2, 5, 3, 4, 4, (3, 3), (2, 2), (1, 1), 1)),  # m 5 < n 36
]


@pytest.mark.parametrize("kind,cfg", WGRAD)
def test_transposed_weight_gradient_matches_reference(kind, cfg, small_products, workspace_names):
    """Weight gradients of fewer rows (output channels per group) than columns are taken
    transposed into the 'wgrad' scratch and added to what the diff holds; turned off, the
    direct products give the same."""
    names = workspace_names
    fast = run(kind, cfg)
    N, C, H, W, m, k, s, p, g = cfg
    rows, cols = (m if kind == "Convolution" else C) // g, (C if kind == "Convolution" else m) // g * k[0] * k[1]
    assert ("wgrad" in names) == (small_products == "blas" and rows < cols)
    names.clear()
    ref = run(kind, cfg, transposed_grad_max_rows=0)
    assert "wgrad" not in names
    for a, b in zip(fast[:2] + tuple(fast[2]), ref[:2] + tuple(ref[2])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_param_gradients_accumulate_on_the_cpu():
    cfg = (3, 4, 6, 5, 3, (3, 3), (1, 1), (1, 1), 1)
    *_, layer = run("Convolution", cfg)
    dW, db = layer.blobs[0].diff.copy(), layer.blobs[1].diff.copy()
    # a second backward adds the same gradient again
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 5))
    layer2, bottom, tp = build_layer(conv_param("Convolution", 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, True), [x])
    layer2.blobs[0].data[...] = layer.blobs[0].data
    layer2.param_propagate_down = [True, True]
    layer2.forward(bottom, tp)
    tp[0].diff[...] = np.random.default_rng(1).standard_normal(tp[0].shape)
    for b in layer2.blobs:
        b.diff[...] = 0
    layer2.backward(tp, [False], bottom)
    g_w, g_b = layer2.blobs[0].diff.copy(), layer2.blobs[1].diff.copy()
    layer2.backward(tp, [False], bottom)
    np.testing.assert_allclose(layer2.blobs[0].diff, 2 * g_w, rtol=1e-12)
    np.testing.assert_allclose(layer2.blobs[1].diff, 2 * g_b, rtol=1e-12)
    np.testing.assert_allclose(dW - 0.25, g_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db - 0.25, tp[0].diff.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("temp", [1 << 22, 130, 1], ids=["one-block", "blocks-of-3-rows", "row-by-row"])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("device", ["cpu", "gpu-cublas", "gpu-fallback"])
def test_backend_matmul(accumulate, device, temp, monkeypatch, emulated_gpu_backend):
    """Every branch of Backend.matmul: the CPU's (BLAS with beta, numpy, bounded temporaries),
    and the GPU policy's, its cuBLAS-shaped calls (emulated from their column-major arguments)
    and its fallback with the temporary product bounded to whole and partial row blocks."""
    if device == "cpu":
        backend = netdef.get_backend("cpu")
    else:
        backend = emulated_gpu_backend
        if device == "gpu-fallback":
            monkeypatch.setattr(backend, "_gemm_ok", lambda dtype: False)
    monkeypatch.setattr(backend, "accumulate_temp", temp)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 4, 5))            # (G, m, k), broadcast over images
    b = rng.standard_normal((3, 2, 5, 7))         # (nb, G, k, n)
    big = rng.standard_normal((3, 2, 4, 10))
    out = big[..., 1:8]                           # strided: a band of columns
    want = np.matmul(a, b) + (out if accumulate else 0)
    keep = big[..., :1].copy(), big[..., 8:].copy()
    backend.matmul(a, b, out, accumulate=accumulate)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(big[..., :1], keep[0])
    np.testing.assert_array_equal(big[..., 8:], keep[1])
    full = np.zeros((3, 2, 4, 7))
    backend.matmul(a, b, full)
    np.testing.assert_allclose(full, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    # transposed operands (a weight gradient's im2col^T, a backward-data's W^T)
    at, bt = rng.standard_normal((2, 5, 4)).swapaxes(-1, -2), rng.standard_normal((2, 7, 5)).swapaxes(-1, -2)
    acc = rng.standard_normal((2, 4, 7))
    want = np.matmul(at, bt) + (acc if accumulate else 0)
    backend.matmul(at, bt, acc, accumulate=accumulate)
    np.testing.assert_allclose(acc, want, rtol=1e-12, atol=1e-12)


def test_gemm_plan_refuses_what_cublas_cannot_read():
    rng = np.random.default_rng(4)
    out = np.zeros((2, 3, 4))
    assert gpu_policy.gemm_plan(rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 5, 4)), out)
    assert gpu_policy.gemm_plan(rng.standard_normal((2, 3, 10))[..., ::2], rng.standard_normal((2, 5, 4)),
                                out) is None  # no unit stride
    assert gpu_policy.gemm_plan(rng.standard_normal((3, 5)), rng.standard_normal((2, 5, 4)),
                                out) is None  # broadcast along the batch axis
    assert gpu_policy.gemm_plan(rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 5, 4)),
                                np.zeros((2, 4, 3)).swapaxes(-1, -2)) is None  # a transposed out
    assert gpu_policy.gemm_plan(rng.standard_normal((2, 3, 5)).astype(np.float32),
                                rng.standard_normal((2, 5, 4)), out) is None  # mixed dtypes


def _budget_pass(kind, cfg, budget, monkeypatch):
    N, C, H, W, m, k, s, p, d, g, bias = cfg
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    layer, bottom, top = build_layer(conv_param(kind, m, k, s, p, d, g, bias), [x])
    if budget == "rows":
        monkeypatch.setattr(layer.backend, "col_budget", 1)
        layer.reshape(bottom, top)
    layer.param_propagate_down = [True] * len(layer.blobs)
    layer.forward(bottom, top)
    top[0].diff[...] = np.random.default_rng(1).standard_normal(top[0].shape)
    for b in layer.blobs:
        b.diff[...] = 0.5
    layer.backward(top, [True], bottom)
    monkeypatch.undo()
    return [top[0].data.copy(), bottom[0].diff.copy()] + [b.diff.copy() for b in layer.blobs]


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
@pytest.mark.parametrize("budget", ["whole", "rows"])
def test_blas_products_match_numpy_products_on_every_config(kind, budget, small_products, monkeypatch):
    """The convolution tests' configurations, every product through BLAS (gemm with beta, bands
    written in place) against every product through numpy's matmul."""
    from test_convolution import CONFIGS, RANDOM

    if small_products == "numpy":
        pytest.skip("one comparison is enough")
    from netdef.errors import NetdefError

    ran = 0
    for cfg in CONFIGS + RANDOM:
        try:
            monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 0)
            got = _budget_pass(kind, cfg, budget, monkeypatch)
        except NetdefError:  # a Convolution geometry that makes no Deconvolution
            continue
        ran += 1
        monkeypatch.setattr(netdef.get_backend("cpu"), "small_product", 1 << 62)
        want = _budget_pass(kind, cfg, budget, monkeypatch)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11, err_msg=str(cfg))
    assert ran >= 10


# batches of images with few pixels: their products run as one over all the images' pixels
MERGED = [
    ("Convolution", (3, 8, 5, 5, 6, (3, 3), (1, 1), (1, 1), 1)),   # im2col, L = 25
    ("Convolution", (2, 16, 4, 3, 6, (3, 3), (2, 1), (2, 0), 2)),  # groups, stride, pad >= kernel / 2
    ("Convolution", (4, 12, 3, 3, 7, (1, 1), (1, 1), (0, 0), 1)),  # 1x1
    ("Deconvolution", (3, 5, 3, 2, 4, (4, 4), (2, 2), (1, 1), 1)),  # its forward is the adjoint
]


@pytest.mark.parametrize("kind,cfg", MERGED)
def test_merged_images_match_image_by_image(kind, cfg, workspace_names):
    names = workspace_names
    merged = run(kind, cfg, merge=True)
    assert "merged" in names  # the merged products ran
    assert merged[3]._merge(cfg[0], merged[3].OH)
    names.clear()
    single = run(kind, cfg)
    assert "merged" not in names
    for a, b in zip(merged[:3], single[:3]):
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
