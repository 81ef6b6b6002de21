"""HDF5Output: its bottoms written as datasets `data` and `label` (4-D as Caffe writes them),
appended batch after batch, read back by HDF5Data; no gradient; errors for a missing h5py,
file_name, unequal batch sizes and rows that change shape."""
import sys

import numpy as np
import pytest

import netdef
from netdef import NetdefError

h5py = pytest.importorskip("h5py")


def output_net(path, data_shape=(3, 2, 4), label_shape=(3,), file_name=None, force_backward=False):
    dims = lambda s: " ".join(f"dim: {d}" for d in s)
    return netdef.Net(f"""{'force_backward: true' if force_backward else ''}
        layer {{ name: "in" type: "Input" top: "x" top: "y"
                 input_param {{ shape {{ {dims(data_shape)} }} shape {{ {dims(label_shape)} }} }} }}
        layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y"
                 hdf5_output_param {{ file_name: "{path if file_name is None else file_name}" }} }}""",
                      netdef.TEST)


def test_batches_are_appended_as_4d_data_and_label(tmp_path):
    path = tmp_path / "out.h5"
    net = output_net(path)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for _ in range(3):
        x = rng.standard_normal((3, 2, 4)).astype(np.float32)
        y = rng.integers(0, 5, 3).astype(np.float32)
        net.blobs["x"].data[...] = x
        net.blobs["y"].data[...] = y
        net.forward()
        xs.append(x)
        ys.append(y)
        with h5py.File(path, "r") as f:  # flushed after every batch
            assert f["data"].shape == (3 * len(xs), 2, 4, 1)
    net.close()
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["data", "label"] and f["data"].dtype == np.float32
        np.testing.assert_array_equal(f["data"][...], np.concatenate(xs)[..., None])
        np.testing.assert_array_equal(f["label"][...], np.concatenate(ys).reshape(9, 1, 1, 1))
    # HDF5Data reads the file back, batch for batch
    (tmp_path / "list.txt").write_text("out.h5\n")
    back = netdef.Net(f"""layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{tmp_path}/list.txt" batch_size: 3 }} }}""", netdef.TEST)
    for x, y in zip(xs, ys, strict=True):
        back.forward()
        np.testing.assert_array_equal(back.blobs["data"].data[..., 0], x)
        np.testing.assert_array_equal(back.blobs["label"].data.ravel(), y)


def test_setup_truncates_and_backward_reaches_no_bottom(tmp_path):
    path = tmp_path / "out.h5"
    with h5py.File(path, "w") as f:
        f["old"] = np.zeros(3)
    net = output_net(path, force_backward=True)
    net.blobs["x"].data[...] = 1
    net.forward()
    net.blobs["x"].diff[...] = 7
    net.backward()
    assert (net.blobs["x"].diff == 7).all()  # nothing propagated into it
    net.close()
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["data", "label"]


def test_float64_nets_write_float64(tmp_path):
    net = netdef.Net(f"""layer {{ name: "in" type: "Input" top: "x" top: "y"
        input_param {{ shape {{ dim: 2 dim: 3 dim: 1 dim: 1 dim: 2 }} shape {{ dim: 2 }} }} }}
        layer {{ name: "out" type: "HDF5Output" bottom: "x" bottom: "y"
                 hdf5_output_param {{ file_name: "{tmp_path}/o.h5" }} }}""", netdef.TEST, dtype=np.float64)
    net.forward()
    net.close()
    with h5py.File(tmp_path / "o.h5", "r") as f:
        # more than 4 axes are written as they are
        assert f["data"].dtype == np.float64 and f["data"].shape == (2, 3, 1, 1, 2)


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(NetdefError, match="file_name .* is not set"):
        output_net(tmp_path / "x.h5", file_name="")
    with pytest.raises(NetdefError, match=r"need the same number of rows"):
        output_net(tmp_path / "x.h5", label_shape=(4,))
    with pytest.raises(NetdefError, match="cannot create the HDF5 file") as e:
        output_net(tmp_path / "no" / "such" / "dir.h5")
    assert "dir.h5" in str(e.value)
    net = output_net(tmp_path / "x.h5")
    net.forward()
    net.blobs["x"].reshape(3, 5, 4)
    with pytest.raises(NetdefError, match=r"now has rows of \(5, 4\), but the file's 'data' holds rows of \(2, 4, 1\)"):
        net.forward()
    net.close()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(NetdefError, match=r"HDF5Output needs h5py.*pip install 'netdef\[hdf5\]'"):
        output_net(tmp_path / "y.h5")
