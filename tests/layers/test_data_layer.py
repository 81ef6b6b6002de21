"""The Data layer (netdef/layers/data.py) on LMDB and LevelDB databases of Datums, and the
record and binaryproto codecs it shares with netdef.io (netdef/data/datum.py)."""
import io as pyio
import os
import sys

import numpy as np
import pytest

import netdef
from netdef import io as nio
from netdef import netdef_pb2 as pb
from netdef.data import datum as dt
from netdef.data.lmdb_data import open_db, write_datums

pytest.importorskip("lmdb")


def raw_records(n=5, c=3, h=6, w=7, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (c, h, w), dtype=np.uint8) for _ in range(n)]
    return arrays, [(f"{i:08d}_img{i}", dt.array_to_datum(a, label=10 + i)) for i, a in enumerate(arrays)]


@pytest.fixture
def raw_db(tmp_path):
    arrays, records = raw_records()
    path = tmp_path / "raw_lmdb"
    assert write_datums(path, records) == 5
    return path, arrays


def data_net(source, phase=netdef.TEST, batch=3, transform="", extra="", tops=("data", "label")):
    top = " ".join(f'top: "{t}"' for t in tops)
    return netdef.Net(f'''name: "d" layer {{ name: "d" type: "Data" {top}
      transform_param {{ {transform} }}
      data_param {{ source: "{source}" batch_size: {batch} {extra} }} }}''', phase)


def test_raw_records_in_key_order_wrap_around_with_scale(raw_db):
    path, arrays = raw_db
    net = data_net(path, transform="scale: 0.5", extra="backend: LMDB")
    assert net.blobs["data"].shape == (3, 3, 6, 7) and net.blobs["label"].shape == (3,)
    seen = []
    for _ in range(3):
        out = net.forward()
        seen.append((out["data"].copy(), out["label"].copy()))
    order = [0, 1, 2, 3, 4, 0, 1, 2, 3]  # 9 reads of 5 records: Caffe's cursor wraps to the first
    for k, i in enumerate(order):
        b, j = divmod(k, 3)
        np.testing.assert_array_equal(seen[b][0][j], arrays[i].astype(np.float32) * 0.5)
        assert seen[b][1][j] == 10 + i
    net.layer_dict["d"].close()


def test_test_phase_center_crop_and_mean_values(raw_db):
    path, arrays = raw_db
    net = data_net(path, batch=2, transform="crop_size: 4 mean_value: 10 mean_value: 20 mean_value: 30 mirror: true")
    out = net.forward()["data"]
    mean = np.array([10, 20, 30], np.float32)[:, None, None]
    y, x = (6 - 4) // 2, (7 - 4) // 2
    for j in range(2):  # TEST: centred, never mirrored
        np.testing.assert_array_equal(out[j], arrays[j][:, y:y + 4, x:x + 4] - mean)


def test_train_phase_random_crop_and_mirror_are_windows_of_the_record(raw_db):
    path, arrays = raw_db
    net = data_net(path, phase=netdef.TRAIN, batch=5, transform="crop_size: 4 mirror: true")
    windows, mirrored = set(), 0
    for _ in range(4):
        out = net.forward()["data"]
        for j in range(5):
            a = arrays[j].astype(np.float32)
            hits = [(y, x, m) for y in range(3) for x in range(4) for m in (0, 1)
                    if np.array_equal(out[j], (a[:, y:y + 4, x:x + 4][:, :, ::-1] if m else a[:, y:y + 4, x:x + 4]))]
            assert hits, "a TRAIN output is not a (mirrored) 4x4 window of its record"
            windows.add(hits[0][:2])
            mirrored += hits[0][2]
    assert len(windows) > 3 and 0 < mirrored < 20


def test_mean_file_binaryproto_is_cropped_with_the_image(raw_db, tmp_path):
    path, arrays = raw_db
    mean = np.stack(arrays).astype(np.float64).mean(axis=0)
    dt.write_binaryproto(tmp_path / "mean.binaryproto", mean[None])
    net = data_net(path, batch=2, transform=f'crop_size: 4 mean_file: "{tmp_path}/mean.binaryproto" scale: 2')
    out = net.forward()["data"]
    np.testing.assert_allclose(out[1], (arrays[1][:, 1:5, 1:5] - mean[:, 1:5, 1:5]) * 2, rtol=1e-5)


def test_mean_file_of_other_channels_or_size_is_an_error(raw_db, tmp_path):
    path, _ = raw_db
    dt.write_binaryproto(tmp_path / "m1.binaryproto", np.zeros((1, 1, 6, 7)))
    with pytest.raises(netdef.NetdefError, match="mean_file has 1 channels"):
        data_net(path, transform=f'mean_file: "{tmp_path}/m1.binaryproto"')
    dt.write_binaryproto(tmp_path / "m2.binaryproto", np.zeros((1, 3, 5, 5)))
    net = None
    with pytest.raises(netdef.NetdefError, match="mean_file is 5x5"):
        net = data_net(path, transform=f'mean_file: "{tmp_path}/m2.binaryproto"')
        net.forward()
    with pytest.raises(netdef.NetdefError, match="mean_value"):
        data_net(path, transform="mean_value: 1 mean_value: 2")


def test_source_is_relative_to_the_prototxt_directory(raw_db, tmp_path, monkeypatch):
    path, arrays = raw_db
    sub = tmp_path / "nets"
    sub.mkdir()
    (sub / "net.prototxt").write_text('layer { name: "d" type: "Data" top: "data" top: "label" '
                                      'data_param { source: "../raw_lmdb" batch_size: 1 } }')
    monkeypatch.chdir("/")
    net = netdef.Net(str(sub / "net.prototxt"), netdef.TEST)
    np.testing.assert_array_equal(net.forward()["data"][0], arrays[0])


def _png(arr_hwc_rgb):
    from PIL import Image

    buf = pyio.BytesIO()
    Image.fromarray(arr_hwc_rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_encoded_records_decode_to_bgr_and_force_gray(tmp_path):
    rng = np.random.default_rng(1)
    rgb = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(2)]
    recs = [(f"{i}", dt.encoded_datum(_png(a), i)) for i, a in enumerate(rgb)]
    write_datums(tmp_path / "enc", recs)
    out = data_net(tmp_path / "enc", batch=2).forward()
    np.testing.assert_array_equal(out["data"][1], rgb[1][:, :, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(out["label"], [0, 1])
    gray = data_net(tmp_path / "enc", batch=2, transform="force_gray: true").forward()["data"]
    assert gray.shape == (2, 1, 5, 4)
    from PIL import Image

    np.testing.assert_array_equal(gray[0, 0], np.asarray(Image.fromarray(rgb[0]).convert("L")))
    with pytest.raises(netdef.NetdefError, match="force_color and force_gray"):
        data_net(tmp_path / "enc", transform="force_gray: true force_color: true")


def test_gray_encoded_record_with_force_color_has_three_channels(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    from PIL import Image

    buf = pyio.BytesIO()
    Image.fromarray(g, mode="L").save(buf, format="PNG")
    write_datums(tmp_path / "g", [("a", dt.encoded_datum(buf.getvalue(), 3))])
    assert data_net(tmp_path / "g", batch=1).forward()["data"].shape == (1, 1, 4, 5)
    out = data_net(tmp_path / "g", batch=1, transform="force_color: true").forward()["data"]
    assert out.shape == (1, 3, 4, 5) and all(np.array_equal(out[0, c], g) for c in range(3))


def test_float_data_records_and_a_single_top(tmp_path):
    feats = [np.linspace(-1, 1, 6, dtype=np.float32).reshape(1, 6, 1) * (i + 1) for i in range(3)]
    write_datums(tmp_path / "f", [(str(i), dt.array_to_datum(f)) for i, f in enumerate(feats)])
    net = data_net(tmp_path / "f", batch=3, tops=("data",))
    np.testing.assert_allclose(net.forward()["data"], np.stack(feats), rtol=1e-6)


def test_rand_skip_moves_the_start(raw_db):
    path, arrays = raw_db
    firsts = set()
    for seed in range(6):
        netdef.set_random_seed(seed)
        out = data_net(path, batch=1, extra="rand_skip: 5").forward()["label"]
        firsts.add(int(out[0]) - 10)
    assert len(firsts) > 1 and firsts <= set(range(5))


def test_resume_goes_on_from_the_saved_cursor(raw_db):
    path, _ = raw_db
    netdef.set_random_seed(3)
    a = data_net(path, phase=netdef.TRAIN, batch=2, transform="crop_size: 3 mirror: true", extra="prefetch: 2")
    a.forward()
    a.forward()
    state = a.layer_dict["d"].get_state()
    assert state["pos"] == 4 and state["size"] == 5
    expected = [a.forward()["data"].copy() for _ in range(2)]
    b = data_net(path, phase=netdef.TRAIN, batch=2, transform="crop_size: 3 mirror: true")
    b.layer_dict["d"].set_state(state)
    for e in expected:  # the random crops/mirrors follow the cursor too
        np.testing.assert_array_equal(b.forward()["data"], e)
    with pytest.raises(netdef.NetdefError, match="source of 9 samples"):
        b.layer_dict["d"].set_state(dict(state, size=9))


def test_records_of_different_sizes_in_a_batch_are_an_error(tmp_path):
    recs = [("0", dt.array_to_datum(np.zeros((1, 4, 4), np.uint8))),
            ("1", dt.array_to_datum(np.zeros((1, 5, 4), np.uint8)))]
    write_datums(tmp_path / "mixed", recs)
    with pytest.raises(netdef.NetdefError, match=r"record '1'.*one size"):
        data_net(tmp_path / "mixed", batch=2).forward()


# ---- bad databases ------------------------------------------------------------------------------


def test_missing_empty_and_not_lmdb_databases_name_the_path(tmp_path):
    with pytest.raises(netdef.NetdefError, match="nope.*does not exist.*convert-imageset"):
        data_net(tmp_path / "nope")
    write_datums(tmp_path / "empty", [])
    with pytest.raises(netdef.NetdefError, match="empty.*no records"):
        data_net(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(os.urandom(8192))
    with pytest.raises(netdef.NetdefError, match="junk.*cannot open the LMDB"):
        data_net(tmp_path / "junk")
    (tmp_path / "plain").mkdir()
    with pytest.raises(netdef.NetdefError, match="plain.*not a database"):
        data_net(tmp_path / "plain")


def test_a_record_that_does_not_decode_names_the_key(tmp_path):
    good = dt.array_to_datum(np.zeros((1, 2, 2), np.uint8))
    write_datums(tmp_path / "bad", [("a", good), ("b-broken", b"\x0a\xff\xff\xff"), ("c", good)])
    net = data_net(tmp_path / "bad", batch=1)
    net.forward()
    with pytest.raises(netdef.NetdefError, match=r"bad, record 'b-broken'.*not a Datum"):
        net.forward()
    short = pb.Datum(channels=1, height=3, width=3, data=b"\x00" * 4)
    write_datums(tmp_path / "short", [("k1", short)])
    with pytest.raises(netdef.NetdefError, match=r"record 'k1'.*9 values but data has 4 bytes"):
        data_net(tmp_path / "short", batch=1)
    enc = dt.encoded_datum(b"\x89PNG\r\n\x1a\n-not-really")
    write_datums(tmp_path / "enc", [("img", enc)])
    with pytest.raises(netdef.NetdefError, match=r"record 'img'.*cannot decode"):
        data_net(tmp_path / "enc", batch=1)


def test_deprecated_data_param_fields_and_backend_mismatch(raw_db):
    path, _ = raw_db
    with pytest.raises(netdef.NetdefError, match="data_param.crop_size is deprecated.*transform_param"):
        data_net(path, extra="crop_size: 3")
    with pytest.raises(netdef.NetdefError, match="database is LMDB but backend LEVELDB"):
        data_net(path, extra="backend: LEVELDB")


def test_leveldb_backend(tmp_path):
    pytest.importorskip("plyvel")
    arrays, records = raw_records(3)
    write_datums(tmp_path / "ldb", records, backend="leveldb")
    out = data_net(tmp_path / "ldb", batch=3, extra="backend: LEVELDB").forward()
    np.testing.assert_array_equal(out["data"][2], arrays[2])
    assert len(open_db(tmp_path / "ldb")) == 3


def test_missing_packages_name_the_extras(raw_db, monkeypatch):
    path, _ = raw_db
    from netdef.data import lmdb_data

    monkeypatch.setitem(sys.modules, "lmdb", None)
    monkeypatch.setattr(lmdb_data, "_open", {})
    with pytest.raises(netdef.NetdefError, match=r"netdef\[lmdb\]"):
        data_net(path)
    monkeypatch.setitem(sys.modules, "plyvel", None)
    with pytest.raises(netdef.NetdefError, match=r"netdef\[leveldb\].*convert-imageset --backend lmdb"):
        write_datums(path.parent / "x", [], backend="leveldb")


# ---- the codecs ---------------------------------------------------------------------------------


def test_binaryproto_legacy_and_shape_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    dt.write_binaryproto(tmp_path / "legacy.binaryproto", a)
    bp = pb.BlobProto.FromString((tmp_path / "legacy.binaryproto").read_bytes())
    assert not bp.HasField("shape") and (bp.num, bp.channels, bp.height, bp.width) == (1, 2, 3, 4)
    np.testing.assert_array_equal(dt.read_binaryproto(tmp_path / "legacy.binaryproto"), a)
    dt.write_binaryproto(tmp_path / "shape.binaryproto", a[0, 0], legacy=False)
    assert dt.read_binaryproto(tmp_path / "shape.binaryproto").shape == (3, 4)
    d = pb.BlobProto(double_data=[1.5, 2.5])
    d.shape.dim.extend([2])
    (tmp_path / "d.binaryproto").write_bytes(d.SerializeToString())
    got = dt.read_binaryproto(tmp_path / "d.binaryproto")
    assert got.dtype == np.float64 and list(got) == [1.5, 2.5]
    # pycaffe's caffe.io reads the same messages through the same code
    np.testing.assert_array_equal(nio.blobproto_to_array(bp), a)
    assert nio.datum_to_array is not dt.datum_to_array  # a wrapper giving pycaffe's error type


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"), (b"\x0a\x05\x08", "not a binary BlobProto"), (None, "cannot read"),
    (pb.BlobProto(num=1, channels=2, height=2, width=2, data=[1.0]).SerializeToString(), "holds 8 values"),
])
def test_bad_binaryproto_files(tmp_path, content, match):
    p = tmp_path / "m.binaryproto"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(netdef.NetdefError, match=match):
        dt.read_binaryproto(p)
    with pytest.raises(netdef.NetdefError, match="mean_file"):
        data_net(tmp_path / "unused", transform=f'mean_file: "{p}"')


def test_io_errors_stay_value_errors():
    with pytest.raises(ValueError, match="float_data has 1"):
        nio.datum_to_array(pb.Datum(channels=1, height=1, width=2, float_data=[1.0]))
    with pytest.raises(ValueError, match="Incorrect array shape"):
        nio.array_to_datum(np.zeros(3))


def test_solver_snapshot_stores_the_cursor(raw_db, tmp_path):
    path, _ = raw_db
    (tmp_path / "net.prototxt").write_text(f'''
      layer {{ name: "d" type: "Data" top: "data" top: "label"
        transform_param {{ crop_size: 4 mirror: true }} data_param {{ source: "{path}" batch_size: 2 }} }}
      layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}
      layer {{ name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "ip" top: "loss" }}''')
    (tmp_path / "solver.prototxt").write_text(f'net: "{tmp_path}/net.prototxt" base_lr: 0.1 '
                                              f'lr_policy: "fixed" max_iter: 10 snapshot_prefix: "{tmp_path}/s" random_seed: 5')

    def solver():
        return netdef.get_solver(str(tmp_path / "solver.prototxt"))

    a = solver()
    a.step(3)
    snap = a.snapshot()
    def next_batch(net):
        net.forward()
        return np.array(net.blobs["data"].data)

    after = [next_batch(a.net) for _ in range(2)]
    b = solver()
    b.restore(snap)
    assert b.net.layer_dict["d"].get_state()["pos"] == 1  # 3 batches of 2 in 5 records
    for e in after:
        np.testing.assert_array_equal(next_batch(b.net), e)
    a.close()
    b.close()


def test_a_batch_of_another_size_reshapes_the_net(tmp_path):
    recs = [(f"{i}", dt.array_to_datum(np.full((1, 4 + i // 2, 4), i, np.uint8))) for i in range(4)]
    write_datums(tmp_path / "sizes", recs)
    net = netdef.Net(f'''layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{tmp_path}/sizes" batch_size: 2 }} }}
      layer {{ name: "p" type: "Pooling" bottom: "data" top: "p"
        pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}''', netdef.TEST)
    net.forward()
    assert net.blobs["p"].shape == (2, 1, 2, 2)
    net.forward()
    assert net.blobs["data"].shape == (2, 1, 5, 4) and net.blobs["p"].shape == (2, 1, 3, 2)
    np.testing.assert_array_equal(net.blobs["p"].data[:, 0, 0, 0], [2, 3])


def test_a_database_rewritten_at_the_same_path_is_read_afresh(tmp_path):
    import shutil

    for value in (1, 2):
        shutil.rmtree(tmp_path / "db", ignore_errors=True)
        write_datums(tmp_path / "db", [("a", dt.array_to_datum(np.full((1, 2, 2), value, np.uint8)))])
        net = data_net(tmp_path / "db", batch=1)
        assert net.forward()["data"][0, 0, 0, 0] == value
        del net
        import gc

        gc.collect()
