"""netdef.io (pycaffe's caffe.io) against hand computations and pycaffe's documented behaviour."""
import numpy as np
import pytest
from PIL import Image

from netdef import NetdefError, io
from netdef import netdef_pb2 as pb


def test_preprocess_order_and_deprocess_inverse():
    t = io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    rng = np.random.default_rng(0)
    img = rng.random((4, 5, 3)).astype(np.float32)
    keep = img.copy()
    out = t.preprocess("data", img)
    # by hand: HWC -> CHW, RGB -> BGR, * 255, - mean (per channel, after the swap), * 0.5
    want = (img.transpose(2, 0, 1)[::-1] * 255.0 - np.array([10.0, 20.0, 30.0])[:, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == (3, 4, 5)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(img, keep)  # the caller's image is untouched
    np.testing.assert_allclose(t.deprocess("data", out[None]), img, atol=1e-5)


def test_preprocess_resizes_to_the_input_size():
    t = io.Transformer({"data": (1, 1, 4, 4)})
    t.set_transpose("data", (2, 0, 1))
    img = np.full((2, 2, 1), 0.25, np.float32)
    out = t.preprocess("data", img)
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(out, 0.25)


def test_set_mean_shapes_and_errors():
    t = io.Transformer({"data": (1, 3, 2, 2)})
    full = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    t.set_transpose("data", (2, 0, 1))
    t.set_mean("data", full)
    np.testing.assert_allclose(t.preprocess("data", np.ones((2, 2, 3))), 1.0 - full)
    with pytest.raises(ValueError, match="Mean channels incompatible"):
        t.set_mean("data", np.zeros(4))
    with pytest.raises(ValueError, match="Mean shape incompatible"):
        t.set_mean("data", np.zeros((3, 5, 5)))
    with pytest.raises(NetdefError, match="Mean shape invalid"):
        t.set_mean("data", np.zeros((1, 3, 2, 2)))
    with pytest.raises(NetdefError, match="not one of the net inputs"):
        t.set_raw_scale("label", 1)
    with pytest.raises(Exception, match="Transpose order"):
        t.set_transpose("data", (1, 0))
    with pytest.raises(Exception, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))


def test_load_image_color_and_gray(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [51, 102, 153]]], np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    im = io.load_image(str(path))
    assert im.dtype == np.float32 and im.shape == (2, 2, 3)
    np.testing.assert_allclose(im, rgb / 255.0, atol=1e-6)
    gray = io.load_image(str(path), color=False)
    assert gray.shape == (2, 2, 1)
    np.testing.assert_allclose(gray[..., 0], (rgb / 255.0) @ [0.2125, 0.7154, 0.0721], atol=1e-6)
    # a gray file loaded in colour is tiled to 3 channels
    Image.fromarray(rgb[..., 1]).save(tmp_path / "g.png")
    g3 = io.load_image(str(tmp_path / "g.png"))
    assert g3.shape == (2, 2, 3) and np.all(g3[..., 0] == g3[..., 2])
    with pytest.raises(NetdefError, match="no such image"):
        io.load_image(str(tmp_path / "missing.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(NetdefError, match="bad.jpg"):
        io.load_image(str(tmp_path / "bad.jpg"))


def test_resize_bilinear_and_nearest_by_hand():
    im = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)[:, :, None]
    up = io.resize_image(im, (4, 4))
    # output centres at source coordinates -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]
    w = np.array([0.0, 0.25, 0.75, 1.0])
    want = (w[:, None] * 2.0) + w[None, :]
    np.testing.assert_allclose(up[..., 0], want, atol=1e-6)
    assert up.min() >= im.min() and up.max() <= im.max()
    near = io.resize_image(im, (4, 4), interp_order=0)
    np.testing.assert_array_equal(near[..., 0], np.kron(im[..., 0], np.ones((2, 2))))
    down = io.resize_image(np.arange(16, dtype=np.float32).reshape(4, 4, 1), (2, 2))
    np.testing.assert_allclose(down[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(NetdefError, match="interp_order"):
        io.resize_image(im, (2, 2), interp_order=3)


def test_oversample_order():
    im = np.arange(4 * 5 * 1, dtype=np.float32).reshape(4, 5, 1)
    crops = io.oversample([im], (2, 3))
    assert crops.shape == (10, 2, 3, 1)
    starts = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]  # centre: floor(2 - 1), floor(2.5 - 1.5)
    for k, (i, j) in enumerate(starts):
        np.testing.assert_array_equal(crops[k], im[i:i + 2, j:j + 3])
        np.testing.assert_array_equal(crops[k + 5], im[i:i + 2, j:j + 3][:, ::-1])


def test_blobproto_roundtrips():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = -a
    bp = io.array_to_blobproto(a, d)
    assert list(bp.shape.dim) == [2, 3, 4] and list(bp.data)[:3] == [0, 1, 2]
    np.testing.assert_array_equal(io.blobproto_to_array(bp), a)
    np.testing.assert_array_equal(io.blobproto_to_array(bp, return_diff=True), d)
    legacy = pb.BlobProto(num=1, channels=2, height=1, width=2, data=[1, 2, 3, 4])
    assert io.blobproto_to_array(legacy).shape == (1, 2, 1, 2)
    s = io.arraylist_to_blobprotovector_str([a, np.ones(3)])
    back = io.blobprotovector_str_to_arraylist(s)
    assert len(back) == 2
    np.testing.assert_array_equal(back[0], a)
    np.testing.assert_array_equal(back[1], np.ones(3))
    with pytest.raises(NetdefError, match="holds"):
        io.blobproto_to_array(pb.BlobProto(shape=pb.BlobShape(dim=[2]), data=[1.0]))


def test_datum_roundtrips():
    u = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    dt = io.array_to_datum(u, label=7)
    assert dt.data == u.tobytes() and dt.label == 7 and (dt.channels, dt.height, dt.width) == (3, 2, 2)
    np.testing.assert_array_equal(io.datum_to_array(dt), u)
    f = np.linspace(0, 1, 12).reshape(3, 2, 2)
    df = io.array_to_datum(f)
    assert not df.data and len(df.float_data) == 12
    np.testing.assert_allclose(io.datum_to_array(df), f, rtol=1e-6)
    with pytest.raises(ValueError, match="Incorrect array shape"):
        io.array_to_datum(np.zeros((2, 2)))
    # encoded: a PNG in data, decoded to BGR (C, H, W) as Caffe's readers do
    import io as pyio
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200
    buf = pyio.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    enc = pb.Datum(channels=3, height=2, width=3, data=buf.getvalue(), encoded=True)
    arr = io.datum_to_array(enc)
    assert arr.shape == (3, 2, 3) and np.all(arr[2] == 200) and np.all(arr[0] == 0)
