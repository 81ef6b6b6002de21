"""`netdef segment --sheet`: one PNG of image | ground truth | prediction rows, the ground truth
found in the VOC layout or a --labels directory; labels read from palette, grey or RGB PNGs."""
import numpy as np
import pytest
from PIL import Image

import netdef
from netdef.cli import main
from netdef.errors import NetdefError
from netdef.segment import contact_sheet, find_label, load_label, pixel_accuracy, voc_palette

DEPLOY = """name: "sheet"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 } }
"""


def _palette_png(labels, path):
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)


def test_sheet_layout_and_colours(tmp_path):
    image = np.zeros((24, 24, 3), np.float32)
    image[:, :, 2] = 200  # BGR: red
    truth = np.zeros((24, 24), np.int64)
    truth[:12] = 1
    truth[0, 0] = 255
    pred = np.full((24, 24), 2, np.int64)
    pred[:12] = 1
    sheet = np.asarray(contact_sheet([("a.png", image, truth, pred), ("b.png", image, None, pred)],
                                     str(tmp_path / "s.png"), min_height=24))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png").convert("RGB")), np.asarray(sheet))
    pad, text_h, w = 6, 14, 24
    y0 = text_h + pad + text_h  # first row's cells
    x = [pad, pad + w + pad, pad + 2 * (w + pad)]
    pal = voc_palette()
    assert tuple(sheet[y0 + 5, x[0] + 5]) == (200, 0, 0)
    assert tuple(sheet[y0 + 5, x[1] + 5]) == tuple(pal[1]) and tuple(sheet[y0 + 20, x[1] + 5]) == tuple(pal[0])
    assert tuple(sheet[y0, x[1]]) == tuple(pal[255])
    assert tuple(sheet[y0 + 20, x[2] + 5]) == tuple(pal[2])
    # the second row has no label: a grey cell
    y1 = y0 + w + pad + text_h
    assert tuple(sheet[y1 + 5, x[1] + 5]) == (220, 220, 220)
    assert sheet.shape == (y1 + w + pad, x[2] + w + pad, 3)
    assert pixel_accuracy(truth, pred) == pytest.approx((12 * 24 - 1) / (24 * 24 - 1))


def test_labels_from_palette_grey_and_rgb(tmp_path):
    labels = np.array([[0, 1, 2], [15, 255, 3]])
    _palette_png(labels, tmp_path / "p.png")
    Image.fromarray(labels.astype(np.uint8), mode="L").save(tmp_path / "g.png")
    Image.fromarray(voc_palette()[labels]).save(tmp_path / "rgb.png")
    for name in ("p.png", "g.png", "rgb.png"):
        assert np.array_equal(load_label(str(tmp_path / name)), labels), name
    bad = voc_palette()[labels].copy()
    bad[0, 0] = (1, 2, 3)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(NetdefError, match=r"bad.png.*\(1, 2, 3\)"):
        load_label(str(tmp_path / "bad.png"))


def test_segment_command_writes_a_sheet_finding_voc_labels(tmp_path, capsys):
    netdef.set_mode_cpu()
    (tmp_path / "deploy.prototxt").write_text(DEPLOY)
    net = netdef.Net(str(tmp_path / "deploy.prototxt"), netdef.TEST)
    # class = argmax(B, G, R) of the mean-free image: a pure colour picks its channel
    net.params["score"][0].data[...] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    net.params["score"][1].data[...] = 0
    net.save(str(tmp_path / "w.caffemodel"))
    voc = tmp_path / "VOC"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :4] = (0, 0, 255)  # RGB blue -> BGR channel 0 -> class 0
    img[:, 4:] = (255, 0, 0)  # red -> class 2
    Image.fromarray(img).save(voc / "JPEGImages" / "one.png")
    truth = np.zeros((8, 8), np.int64)
    truth[:, 4:] = 2
    truth[0, 4:] = 1  # 4 of 64 pixels wrong
    _palette_png(truth, voc / "SegmentationClass" / "one.png")
    Image.fromarray(img).save(voc / "JPEGImages" / "two.png")  # no label
    assert find_label(str(voc / "JPEGImages" / "one.png")) == str(voc / "SegmentationClass" / "one.png")
    sheet = tmp_path / "sheet.png"
    assert main(["segment", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
                 str(voc / "JPEGImages"), "--sheet", str(sheet), "--mean", "0,0,0"]) == 0
    out = capsys.readouterr().out
    assert "one.png: classes 0, 2, pixel accuracy 0.9375" in out and "(2 rows)" in out
    rows = np.asarray(Image.open(sheet).convert("RGB"))
    assert rows.shape[1] == 6 + 3 * (96 + 6)  # three columns of 8 px images shown at 96 px
    # -o is no longer required, but one output is
    assert main(["segment", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
                 str(voc / "JPEGImages")]) == 1
    assert "-o DIR" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "deploy.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
                 str(voc / "JPEGImages"), "--sheet", str(sheet), "--labels", str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err
