"""WindowData: the window file's format and its errors (file and line), Caffe's warp geometry
(context padding, square mode, clipping, mirroring) against values worked out by hand, pixels
against a direct computation, the foreground / background split of a batch, cache_images,
mean_file, the legacy window_data_param fields, and resuming."""
import numpy as np
import pytest
from PIL import Image

import netdef
from netdef import NetdefError
from netdef import io as ndio
from netdef import netdef_pb2 as pb
from netdef.data.window_data import read_window_file, warp_geometry


@pytest.fixture
def images(tmp_path):
    """Two lossless images (30x20 and 16x25, W x H) and their RGB pixels."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (h, w) in (("a.png", (20, 30)), ("b.png", (25, 16))):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / name)
        out[name] = rgb
    return tmp_path, out


WINDOWS = """# 0
a.png
3
20
30
4
1 0.8 2 3 20 15
0 0.1 0 0 29 19
5 0.4 5 5 10 10
2 0.95 1 1 4 4
# 1
b.png
3 25 16
2
2 0.9 0 0 15 24
3 0.05 1 1 4 4
"""


def window_net(root, phase=netdef.TRAIN, wparams="", transform="crop_size: 4", windows=WINDOWS):
    (root / "windows.txt").write_text(windows)
    return netdef.Net(f"""layer {{ name: "d" type: "WindowData" top: "data" top: "label"
        window_data_param {{ source: "{root}/windows.txt" batch_size: 8 {wparams} }}
        transform_param {{ {transform} }} }}""", phase)


def test_window_file_is_read_into_foreground_and_background(tmp_path):
    (tmp_path / "w.txt").write_text(WINDOWS)
    images, fg, bg = read_window_file(str(tmp_path / "w.txt"), 0.5, 0.3)
    assert images == {0: ("a.png", 3, 20, 30), 1: ("b.png", 3, 25, 16)}
    # overlap 0.4 is neither (bg_threshold 0.3 <= 0.4 < fg_threshold 0.5); background labels are 0
    assert fg[:, [0, 1]].tolist() == [[0, 1], [0, 2], [1, 2]]
    assert bg[:, 0].tolist() == [0, 1] and bg[:, 1].tolist() == [0, 0] and bg[:, 2].tolist() == [0, 0]
    assert bg[1, 3:].tolist() == [1, 1, 4, 4]


@pytest.mark.parametrize("text, line, match", [
    ("# 0\na.png\n3 20 x\n0\n", 3, "expected the image's width"),
    ("# 0\na.png\n3 20 30\n1\n0 0.1 0 0 30 19\n", 5, r"window \(0, 0, 30, 19\) is not inside the 30x20 image"),
    ("# 0\na.png\n3 20 30\n1\n0 0.9 0 0 3 3\n", 5, "foreground window .* needs a class_index > 0"),
    ("# 0\na.png\n3 20 30\n2\n1 0.9 0 0 3 3\n", 5, "the file ends where a window's class_index"),
    ("0\na.png\n", 1, "expected '# image_index'"),
    ("# 0\na.png\n3 20 30\n0\n# 0\nb.png\n3 25 16\n0\n", 5, "image index 0 appears twice"),
    ("# 0\na.png\n4 20 30\n0\n", 3, "1 or 3 channels, not 4"),
])
def test_window_file_errors_name_the_line(tmp_path, text, line, match):
    (tmp_path / "w.txt").write_text(text)
    with pytest.raises(NetdefError, match=match) as e:
        read_window_file(str(tmp_path / "w.txt"), 0.5, 0.5)
    assert e.value.file == str(tmp_path / "w.txt") and e.value.line == line


def test_warp_geometry_as_caffe_computes_it():
    # warp without context: the box fills the crop
    assert warp_geometry((2, 3, 20, 15), 9, 0, False, (20, 30), False) == ((2, 3, 20, 15), (9, 9), (0, 0))
    # context_pad 2 on a crop of 9: the box grows by 9/5 about its centre (11.5, 9.5) to x -6..29,
    # y -2..21 (36 x 24), is clipped to the 30x20 image, and lands 2 (=round(6/4)) columns and
    # 1 (=round(2 * 9/24)) row in; 30 * 9/36 = 7.5 rounds up to 8 columns, trimmed to 9 - 2 = 7
    assert warp_geometry((2, 3, 20, 15), 9, 2, False, (20, 30), False) == ((0, 0, 29, 19), (8, 7), (1, 2))
    # mirrored, the placement takes the right-hand clipping (none here)
    assert warp_geometry((2, 3, 20, 15), 9, 2, False, (20, 30), True) == ((0, 0, 29, 19), (8, 8), (1, 0))
    # square: 4 wide, 10 high becomes 10 x 10 about (3, 6): x -2..8 (11 columns), clipped to
    # 0..8, which take round(9 * 10/11) = 8 columns after round(2 * 10/11) = 2 of padding
    assert warp_geometry((1, 1, 4, 10), 10, 0, True, (20, 30), False) == ((0, 1, 8, 11), (10, 8), (0, 2))


def expected_window(rgb, box, mean=0.0, scale=1.0, mirror=False):
    x1, y1, x2, y2 = box
    bgr = rgb[y1:y2 + 1, x1:x2 + 1, ::-1].astype(np.float32)
    if mirror:
        bgr = bgr[:, ::-1]
    return ((bgr - mean) * np.float32(scale)).transpose(2, 0, 1)


def test_batches_take_background_then_foreground_windows_with_exact_pixels(images):
    root, rgb = images
    # 4x4 boxes warped to a crop of 4 are copied unresized
    windows = "# 0\na.png\n3 20 30\n3\n0 0.1 5 6 8 9\n2 0.9 1 1 4 4\n4 0.7 20 10 23 13\n"
    net = window_net(root, netdef.TEST, "fg_fraction: 0.5 scale: 0.5",
                     "crop_size: 4 mean_value: 10 mean_value: 20 mean_value: 30", windows)
    mean = np.array([10, 20, 30], dtype=np.float32)
    fg_boxes = {2: (1, 1, 4, 4), 4: (20, 10, 23, 13)}
    seen = set()
    for _ in range(3):
        net.forward()
        data, label = net.blobs["data"].data, net.blobs["label"].data
        assert data.shape == (8, 3, 4, 4) and label.shape == (8, 1, 1, 1)
        assert label[:4].ravel().tolist() == [0] * 4 and set(label[4:].ravel()) <= {2, 4}
        for k in range(8):
            lab = int(label[k, 0, 0, 0])
            box = fg_boxes[lab] if lab else (5, 6, 8, 9)
            np.testing.assert_array_equal(data[k], expected_window(rgb["a.png"], box, mean, 0.5))
            seen.add(lab)
    assert seen == {0, 2, 4}


def test_mirror_in_train_only_and_context_padding_is_zero(images):
    root, rgb = images
    windows = "# 0\na.png\n3 20 30\n2\n0 0.1 5 6 8 9\n2 0.9 1 1 4 4\n"
    train = window_net(root, netdef.TRAIN, "", "crop_size: 4 mirror: true", windows)
    flips = set()
    for _ in range(4):
        train.forward()
        for k in range(8):
            box = (1, 1, 4, 4) if train.blobs["label"].data[k].item() else (5, 6, 8, 9)
            got = train.blobs["data"].data[k]
            plain, flipped = (expected_window(rgb["a.png"], box, mirror=m) for m in (False, True))
            assert (got == plain).all() or (got == flipped).all()
            flips.add(bool((got == flipped).all() and not (got == plain).all()))
    assert flips == {False, True}
    test = window_net(root, netdef.TEST, "", "crop_size: 4 mirror: true", windows)
    test.forward()
    assert all((test.blobs["data"].data[k] == expected_window(rgb["a.png"], (5, 6, 8, 9))).all() for k in range(6))
    # context padding: the window at the image's corner has its cut-off context left 0
    pad = window_net(root, netdef.TEST, "context_pad: 2 fg_fraction: 1", "crop_size: 12 mean_value: 300",
                     "# 0\na.png\n3 20 30\n1\n2 0.9 0 0 3 3\n")
    pad.forward()
    # grown by 12/8 about (2, 2) to -1..5: 1 pixel of 7 cut off, round(12/7) = 2 in the crop
    (x1, y1, x2, y2), (oh, ow), (ph, pw) = warp_geometry((0, 0, 3, 3), 12, 2, False, (20, 30), False)
    assert (ph, pw) == (2, 2) and (oh, ow) == (10, 10)
    data = pad.blobs["data"].data
    assert (data[:, :, :ph] == 0).all() and (data[:, :, :, :pw] == 0).all()
    assert (data[:, :, ph:ph + oh, pw:pw + ow] < 0).all()  # pixels minus a mean above 255


def test_mean_file_center_window_and_legacy_fields(images):
    root, rgb = images
    mean = np.arange(3 * 6 * 6, dtype=np.float32).reshape(1, 3, 6, 6)
    bp = ndio.array_to_blobproto(mean)
    (root / "mean.binaryproto").write_bytes(bp.SerializeToString())
    windows = "# 0\na.png\n3 20 30\n1\n3 0.9 1 1 4 4\n"
    # window_data_param's own crop_size / mean_file / scale (Caffe's older spellings)
    net = window_net(root, netdef.TEST, f'fg_fraction: 1 crop_size: 4 mean_file: "{root}/mean.binaryproto" scale: 2',
                     "", windows)
    net.forward()
    centre = mean[0, :, 1:5, 1:5].transpose(1, 2, 0)
    np.testing.assert_allclose(net.blobs["data"].data[0], expected_window(rgb["a.png"], (1, 1, 4, 4), centre, 2))
    with pytest.raises(NetdefError, match=r"window_data_param.crop_size \(4\) and transform_param.crop_size \(5\) disagree"):
        window_net(root, netdef.TEST, "crop_size: 4", "crop_size: 5", windows)


def test_cache_images_reads_the_files_once(images):
    root, _ = images
    net = window_net(root, netdef.TEST, "cache_images: true", "crop_size: 5")
    (root / "a.png").unlink()
    (root / "b.png").unlink()
    for _ in range(3):
        net.forward()
    assert net.blobs["data"].shape == (8, 3, 5, 5)
    with pytest.raises(NetdefError, match="not found") as e:
        window_net(root, netdef.TEST)
    assert "a.png" in str(e.value)


def test_get_state_set_state_resumes(images):
    root, _ = images
    net = window_net(root, netdef.TRAIN, "context_pad: 1 crop_mode: \"square\"", "crop_size: 6 mirror: true")
    net.forward()
    state = net.layers[0].get_state()
    net.forward()
    expected = net.blobs["data"].data.copy(), net.blobs["label"].data.copy()
    other = window_net(root, netdef.TRAIN, "context_pad: 1 crop_mode: \"square\"", "crop_size: 6 mirror: true")
    other.layers[0].set_state(state)
    other.forward()
    np.testing.assert_array_equal(other.blobs["data"].data, expected[0])
    np.testing.assert_array_equal(other.blobs["label"].data, expected[1])


@pytest.mark.parametrize("wparams, transform, windows, match", [
    ("", "", WINDOWS, "crop_size must be set"),
    ('crop_mode: "stretch"', "crop_size: 4", WINDOWS, "crop_mode must be 'warp' or 'square'"),
    ("context_pad: 2", "crop_size: 4", WINDOWS, "context_pad 2 leaves nothing"),
    ("fg_fraction: 1.5", "crop_size: 4", WINDOWS, r"fg_fraction must be in \[0, 1\]"),
    ("", "crop_size: 4", "# 0\na.png\n3 20 30\n1\n1 0.9 0 0 3 3\n", "takes 6 background windows but the file has none"),
    ("", "crop_size: 4", "# 0\na.png\n3 20 30\n0\n# 1\nb.png\n1 25 16\n0\n", "different channel counts"),
    ("", "crop_size: 4 mean_value: 1 mean_value: 2", WINDOWS, "2 mean_value"),
])
def test_bad_parameters(images, wparams, transform, windows, match):
    root, _ = images
    with pytest.raises(NetdefError, match=match):
        window_net(root, netdef.TEST, wparams, transform, windows)


def test_an_image_of_another_size_than_declared_is_named(images):
    root, _ = images
    with pytest.raises(NetdefError, match=r"the image is 30x20 \(WxH\), the window file says 30x21") as e:
        window_net(root, netdef.TEST, "fg_fraction: 0", "crop_size: 4", "# 0\na.png\n3 21 30\n1\n0 0.1 0 0 3 3\n")
    assert "a.png" in str(e.value)


def test_v0_window_data_layer_builds(images):
    root, _ = images
    (root / "windows.txt").write_text(WINDOWS)
    net = netdef.Net(f"""layers {{ layer {{ name: "d" type: "window_data" source: "{root}/windows.txt"
        batchsize: 4 cropsize: 7 det_context_pad: 1 det_fg_fraction: 0.5 }} top: "data" top: "label" }}""",
                     netdef.TEST)
    assert net.layers[0].layer_param.transform_param == pb.TransformationParameter(crop_size=7)
    net.forward()
    assert net.blobs["data"].shape == (4, 3, 7, 7) and (net.blobs["label"].data[2:] > 0).all()
