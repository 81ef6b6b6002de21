"""TensorBoardMonitor / `netdef train --tensorboard`: TensorBoard's own event reader reads back
the scalars the solver computed and the validation images, coloured as the labels are."""
import io
import sys

import numpy as np
import pytest

import netdef
from netdef.errors import NetdefError
from netdef.segment import voc_palette
from test_cli_train import NET, SOLVER

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from netdef.tensorboard import LABEL_ALPHA  # noqa: E402


def _solver(root, max_iter=6):
    (root / "train.prototxt").write_text(NET)
    (root / "snapshots").mkdir(exist_ok=True)
    (root / "solver.prototxt").write_text(
        SOLVER.format(test_interval=3, base_lr=0.05, display=3, max_iter=max_iter, snapshot=3))
    netdef.set_mode_cpu()
    return netdef.get_solver(str(root / "solver.prototxt"))


def _read(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from netdef.tensorboard import TensorBoardMonitor

    root = tmp_path_factory.mktemp("tb")
    mp = pytest.MonkeyPatch()
    mp.setenv("NETDEF_DATA_DIR", str(root / "data"))
    solver = _solver(root)
    results = []
    solver.add_test_callback(lambda i, r: results.append((solver.iter, r)))
    try:
        with TensorBoardMonitor(solver, root / "events"):
            solver.solve()
    finally:
        solver.close()
        mp.undo()
    return solver, results, _read(root / "events"), root


def test_scalars_are_the_solvers(run):
    solver, results, acc, _ = run
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/smoothed_loss", "train/lr", "test0/loss", "test0/pixel_accuracy",
            "test0/mean_accuracy", "test0/mean_iu", "test0/fw_iu"} <= set(tags)
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(6))
    np.testing.assert_allclose([e.value for e in loss], solver.losses, rtol=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([0.05] * 6)
    # the test callback's evaluations (iterations 0, 3 and the final 6) are what was written
    assert [it for it, _ in results] == [0, 3, 6]
    assert [e.step for e in acc.Scalars("test0/mean_iu")] == [0, 3, 6]
    np.testing.assert_allclose([e.value for e in acc.Scalars("test0/mean_iu")],
                               [r.segmentation["mean_iu"] for _, r in results], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in acc.Scalars("test0/loss")],
                               [r.outputs[0][1][0] for _, r in results], rtol=1e-6)


def test_images_show_image_truth_and_prediction(run):
    from PIL import Image

    solver, _, acc, _ = run
    assert acc.Tags()["images"] == [f"test0/sample_{k}" for k in range(4)]
    events = acc.Images("test0/sample_0")
    assert [e.step for e in events] == [0, 3, 6]
    panel = np.asarray(Image.open(io.BytesIO(events[-1].encoded_image_string)).convert("RGB")).astype(int)
    assert panel.shape == (32, 3 * 32 + 4, 3)
    # the test net still holds its last batch: the middle cell is the image blended with the
    # label colours, the right one with the arg-max's
    net = solver.test_nets[0]
    label = net.blobs["label"].data[0, 0].astype(int)
    pred = net.blobs["score"].data[0].argmax(axis=0)
    image = panel[:, :32]
    pal = voc_palette().astype(int)
    for cell, labels in ((panel[:, 34:66], label), (panel[:, 68:100], pred)):
        expected = (1 - LABEL_ALPHA) * image + LABEL_ALPHA * pal[labels]
        assert np.abs(cell - expected).max() <= 1.5
    # the image is the data blob, stretched to 0..255 and shown as RGB
    data = net.blobs["data"].data[0]
    stretched = (data - data.min()) * 255.0 / (data.max() - data.min())
    assert np.abs(image - stretched[::-1].transpose(1, 2, 0)).max() <= 1.0


def test_cli_and_resume_purge(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDEF_DATA_DIR", str(tmp_path / "data"))
    _solver(tmp_path)
    from netdef.cli import main

    solver = str(tmp_path / "solver.prototxt")
    events = str(tmp_path / "events")
    assert main(["train", solver, "--tensorboard", events, "--log", "none"]) == 0
    assert main(["train", solver, "--tensorboard", events, "--log", "none",
                 "--snapshot", str(tmp_path / "snapshots" / "tiny_iter_3.solverstate")]) == 0
    loss = _read(events).Scalars("train/loss")
    # two event files; the resumed run's steps 3.. replace the first run's
    assert [e.step for e in loss] == list(range(6))


def test_missing_tensorboardx_names_the_extra(monkeypatch, tmp_path):
    from netdef.tensorboard import TensorBoardMonitor

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(NetdefError, match=r"netdef\[tensorboard\]"):
        TensorBoardMonitor(object(), str(tmp_path))
