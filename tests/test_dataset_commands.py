"""netdef convert-imageset, compute-image-mean and extract-features (netdef/commands/), and
the atomic database writer they share (netdef.data.lmdb_data.write_datums)."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.cli import main
from netdef.data import datum as dt
from netdef.data.lmdb_data import open_db

pytest.importorskip("lmdb")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def images(tmp_path):
    """imgs/ with 6 RGB PNGs of 5x4 (one 6x4 when asked), a list file, their arrays (RGB)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub dir").mkdir(parents=True)
    arrays, lines = [], []
    for i in range(6):
        a = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
        rel = f"sub dir/im {i}.png" if i == 2 else f"im{i}.png"
        Image.fromarray(a).save(tmp_path / "imgs" / rel)
        arrays.append(a)
        lines.append(f"{rel} {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, arrays


def records(path):
    db = open_db(path)
    return [(k.decode(), pb.Datum.FromString(v)) for k, v in db.items()]


def convert(d, *flags, db="db"):
    return main(["convert-imageset", *flags, "--no-progress", f"{d}/imgs/", f"{d}/list.txt", f"{d}/{db}"])


def test_convert_imageset_raw_bgr_in_list_order(images):
    d, arrays = images
    assert convert(d) == 0
    recs = records(d / "db")
    assert [k for k, _ in recs] == ["00000000_im0.png", "00000001_im1.png", "00000002_sub dir/im 2.png",
                                    "00000003_im3.png", "00000004_im4.png", "00000005_im5.png"]
    for (_, datum), a in zip(recs, arrays, strict=True):
        assert (datum.channels, datum.height, datum.width, datum.encoded) == (3, 5, 4, False)
        np.testing.assert_array_equal(dt.datum_to_array(datum), a[:, :, ::-1].transpose(2, 0, 1))
    assert [d_.label for _, d_ in recs] == [0, 1, 2, 0, 1, 2]
    assert not glob.glob(str(d / "db.*")), "a temporary directory was left behind"


def test_gflags_spellings_gray_resize_shuffle(images):
    d, arrays = images
    assert main(["convert-imageset", "-gray", "-resize_height=7", "--resize_width", "9", "-shuffle",
                 "--seed=3", "--no-progress", f"{d}/imgs/", f"{d}/list.txt", f"{d}/db"]) == 0
    recs = records(d / "db")
    names = [k.split("_", 1)[1] for k, _ in recs]
    assert sorted(names) != names or len(set(names)) == 6
    assert set(names) == {"im0.png", "im1.png", "sub dir/im 2.png", "im3.png", "im4.png", "im5.png"}
    assert all((x.channels, x.height, x.width) == (1, 7, 9) for _, x in recs)
    assert main(["convert-imageset", "-gray=false", "-shuffle=false", "--no-progress", f"{d}/imgs/",
                 f"{d}/list.txt", f"{d}/db2"]) == 0
    assert records(d / "db2")[0][1].channels == 3


def test_encoded_keeps_png_files_and_reencodes_as_asked(images):
    d, arrays = images
    assert convert(d, "--encoded") == 0
    recs = records(d / "db")
    assert recs[0][1].encoded and recs[0][1].data == (d / "imgs" / "im0.png").read_bytes()
    assert convert(d, "--encoded", "--encode_type=jpg", db="jpg") == 0
    datum = records(d / "jpg")[1][1]
    assert datum.data[:2] == b"\xff\xd8"  # a JPEG
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arrays[1]).save(buf, format="JPEG")  # the same encoder, the same settings
    again = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(dt.datum_to_array(datum), again[:, :, ::-1].transpose(2, 0, 1))


def test_check_size_and_bad_inputs_leave_no_database(images, capsys):
    from PIL import Image

    d, _ = images
    Image.fromarray(np.zeros((6, 4, 3), np.uint8)).save(d / "imgs" / "im4.png")
    assert convert(d) == 0
    assert convert(d, "--check_size", db="checked") == 1
    assert "im4.png" in capsys.readouterr().err and not os.path.exists(d / "checked")
    (d / "list.txt").write_text("im0.png 0\nmissing.png 1\n")
    assert convert(d, db="m") == 1
    err = capsys.readouterr().err
    assert "missing.png" in err and "not found" in err and not os.path.exists(d / "m")
    assert not glob.glob(str(d / "m.*"))
    (d / "list.txt").write_text("im0.png zero\n")
    assert convert(d, db="m") == 1 and "list.txt:1: expected" in capsys.readouterr().err
    assert convert(d) == 1 and "already exists" in capsys.readouterr().err
    assert convert(d, "--resize_height=4", db="m") == 1 and "both" in capsys.readouterr().err


def test_a_killed_conversion_never_leaves_a_complete_looking_database(images):
    """The list's last image is a FIFO: the conversion blocks opening it after writing the
    others, and is killed there; then a new conversion removes the leftover."""
    d, _ = images
    os.mkfifo(d / "imgs" / "fifo.png")
    with open(d / "list.txt", "a") as f:
        f.write("fifo.png 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "netdef", "convert-imageset", "--no-progress",
                             f"{d}/imgs/", f"{d}/list.txt", f"{d}/db"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not glob.glob(str(d / f"db.{proc.pid}.*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert glob.glob(str(d / f"db.{proc.pid}.*")), "the conversion did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.exists(d / "db")
    lines = (d / "list.txt").read_text().splitlines()[:-1]
    (d / "list.txt").write_text("\n".join(lines) + "\n")
    assert convert(d) == 0 and len(records(d / "db")) == 6
    assert not glob.glob(str(d / "db.*")), "the killed run's temporary directory is still there"


def test_compute_image_mean(images, tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="netdef")
    d, arrays = images
    convert(d)
    assert main(["compute-image-mean", "--no-progress", f"{d}/db", f"{d}/mean.binaryproto"]) == 0
    expected = np.stack(arrays).astype(np.float64).mean(0)[:, :, ::-1].transpose(2, 0, 1)
    bp = pb.BlobProto.FromString((d / "mean.binaryproto").read_bytes())
    assert (bp.num, bp.channels, bp.height, bp.width) == (1, 3, 5, 4)
    np.testing.assert_allclose(dt.read_binaryproto(d / "mean.binaryproto")[0], expected, rtol=1e-5)
    assert f"mean_value channel [0]: {expected[0].mean():.6g}" in caplog.text
    assert main(["compute-image-mean", f"{d}/nothing"]) == 1
    assert "does not exist" in capsys.readouterr().err


EXTRACT_NET = """name: "ex"
layer { name: "d" type: "Data" top: "data" top: "label"
  data_param { source: "%s" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
"""


def test_extract_features_writes_float_datums(images, capsys):
    d, arrays = images
    convert(d)
    (d / "net.prototxt").write_text(EXTRACT_NET % (d / "db"))
    netdef.set_random_seed(1)
    net = netdef.Net(str(d / "net.prototxt"), netdef.TEST)
    net.save(str(d / "w.caffemodel"))
    expected = {"ip": [], "data": []}
    for _ in range(2):
        net.forward()
        for b in expected:
            expected[b].extend(np.array(net.blobs[b].data).reshape(4, -1))
    net.layer_dict["d"].close()
    assert main(["extract-features", f"{d}/w.caffemodel", f"{d}/net.prototxt", "ip,data",
                 f"{d}/f_ip,{d}/f_data", "2", "lmdb", "CPU"]) == 0
    for b in ("ip", "data"):
        recs = dict(records(d / f"f_{b}"))
        assert sorted(recs) == sorted(str(i) for i in range(8))
        for i in range(8):
            x = recs[str(i)]
            assert (x.channels, x.height, x.width) == (1, expected[b][i].size, 1)
            np.testing.assert_allclose(x.float_data, expected[b][i], rtol=1e-5)
    for argv, match in [(["ip", f"{d}/a,{d}/b", "1"], "one database per blob"),
                        (["nope", f"{d}/a", "1"], "unknown feature blob 'nope'"),
                        (["ip", f"{d}/a", "0"], "must be >= 1"),
                        (["ip", f"{d}/a", "1", "lmdb", "TPU"], "unexpected arguments TPU"),
                        (["ip", f"{d}/f_ip", "1"], "already exists")]:
        assert main(["extract-features", f"{d}/w.caffemodel", f"{d}/net.prototxt", *argv]) == 1
        assert match in capsys.readouterr().err
    assert not os.path.exists(d / "a")


def test_convert_imageset_to_leveldb(images):
    pytest.importorskip("plyvel")
    d, arrays = images
    assert convert(d, "--backend=leveldb") == 0
    recs = records(d / "db")
    assert len(recs) == 6 and open_db(d / "db").backend == "leveldb"
    np.testing.assert_array_equal(dt.datum_to_array(recs[3][1]), arrays[3][:, :, ::-1].transpose(2, 0, 1))
