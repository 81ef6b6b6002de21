"""Scoring a net: `netdef test` and Solver.test share netdef.solver.evaluate, and the blobs that
get segmentation metrics are chosen from the net's Accuracy / SoftmaxWithLoss layer (or given)."""
import argparse
import logging
import re

import pytest

import netdef
from netdef.cli import main
from netdef.commands import test as test_command
from netdef.metrics import SegmentationBlobs, find_segmentation_blobs

NET = """name: "tinyseg"
layer { name: "data" type: "SegmentationData" top: "data" top: "label"
  segmentation_data_param { synthetic: "shapes" split: "val" batch_size: 2 synthetic_size: 24
                            synthetic_train: 4 synthetic_val: 6 synthetic_classes: 3 } }
layer { name: "scale" type: "Power" bottom: "data" top: "scaled" power_param { scale: 0.0125 } }
layer { name: "score" type: "Convolution" bottom: "scaled" top: "score"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 } }
layer { name: "accuracy" type: "Accuracy" bottom: "score" bottom: "label" top: "accuracy"
  accuracy_param { ignore_label: 255 } }
"""


def _messages(caplog):
    return [r.getMessage() for r in caplog.records]


@pytest.fixture
def seg_solver(tmp_path, monkeypatch):
    monkeypatch.setenv("NETDEF_DATA_DIR", str(tmp_path / "data"))
    netdef.set_mode_cpu()
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\ntest_iter: 3\ntest_interval: 100\nbase_lr: 0.01\n'
        'lr_policy: "fixed"\nmax_iter: 1\nrandom_seed: 5\n')
    return lambda: netdef.get_solver(str(tmp_path / "solver.prototxt"))


def test_netdef_test_and_solver_test_print_the_same_numbers(seg_solver, tmp_path, caplog):
    solver = seg_solver()
    weights = str(tmp_path / "w.caffemodel")
    solver.net.save(weights)
    with caplog.at_level(logging.INFO, logger="netdef"):
        result = solver.test(0)
    solver_lines = _messages(caplog)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netdef"):
        assert main(["test", str(tmp_path / "net.prototxt"), "--weights", weights,
                     "--iterations", "3", "--cpu"]) == 0
    cli_lines = _messages(caplog)

    # the solver: "    Test net output #k: name = v [(* w = x loss)]"; the command: "name = v ..."
    from_solver = {m.group(1): m.group(2) for l in solver_lines
                   for m in [re.fullmatch(r"    Test net output #\d+: (\w+) = (.*)", l)] if m}
    from_cli = {m.group(1): m.group(2) for l in cli_lines
                for m in [re.fullmatch(r"(loss|accuracy) = (.*)", l)] if m}
    assert set(from_solver) == {"loss", "accuracy"}
    assert from_cli == from_solver
    assert "(* 1 = " in from_cli["loss"] and "(*" not in from_cli["accuracy"]

    seg = [l for l in solver_lines if "segmentation:" in l][0]
    assert re.fullmatch(r"    Test net #0 segmentation: pixel accuracy = \S+, mean accuracy = \S+, "
                        r"mean IU = \S+, fw IU = \S+", seg)
    for key, title in (("pixel_accuracy", "pixel accuracy"), ("mean_iu", "mean IU"),
                       ("fw_iu", "fw IU"), ("mean_accuracy", "mean accuracy")):
        value = format(result[key], "g")
        assert f"{title} = {value}" in seg
        assert f"{title} = {value}" in cli_lines


def test_solver_segmentation_attribute_overrides_the_net(seg_solver, caplog):
    solver = seg_solver()
    solver.segmentation = False
    with caplog.at_level(logging.INFO, logger="netdef"):
        assert solver.test(0) is None
    assert not any("segmentation" in l for l in _messages(caplog))
    assert any(l.startswith("    Test net output #0: ") for l in _messages(caplog))

    found = seg_solver().test(0)
    solver = seg_solver()
    solver.segmentation = SegmentationBlobs("score", "label", ignore_label=255)
    same = solver.test(0)
    assert [same[k] for k in ("pixel_accuracy", "mean_iu")] == [found[k] for k in ("pixel_accuracy", "mean_iu")]
    solver = seg_solver()
    solver.segmentation = SegmentationBlobs("score", "label", ignore_label=0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netdef"):
        # this set's labels have 255 borders: with 0 ignored instead, 255 is no class
        assert solver.test(0) is None
    assert "(no segmentation metrics: label value 255 is outside [0, 4) and is not the ignore " \
           "label 0)" in _messages(caplog)


SEG = """name: "seg"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } shape { dim: 2 dim: 1 dim: 4 dim: 5 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
        convolution_param { num_output: 3 kernel_size: 1 } }
%s
"""
LOSS = 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" %s }'
ACC = 'layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc" %s }'

CLASSIFIER = """name: "cls"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 6 } shape { dim: 2 } } }
layer { name: "score" type: "InnerProduct" bottom: "data" top: "score" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc" }
"""


@pytest.mark.parametrize("layers, expected", [
    (LOSS % "loss_param { ignore_label: 255 }", SegmentationBlobs("score", "label", 255)),
    (LOSS % "", SegmentationBlobs("score", "label", None)),
    (ACC % "accuracy_param { ignore_label: 7 }", SegmentationBlobs("score", "label", 7)),
    # the first scoring layer decides (here Accuracy, whose ignore_label is unset)
    (ACC % "" + "\n" + LOSS % "loss_param { ignore_label: 255 }", SegmentationBlobs("score", "label", None)),
    ("", None),
])
def test_segmentation_blobs_come_from_the_scoring_layer(layers, expected):
    assert find_segmentation_blobs(netdef.Net(SEG % layers, netdef.TEST)) == expected


def test_classes_on_another_axis_are_no_segmentation():
    net = SEG.replace("dim: 2 dim: 1 dim: 4 dim: 5", "dim: 2 dim: 3 dim: 1 dim: 5")
    net = netdef.Net(net % (LOSS % "softmax_param { axis: 2 }"), netdef.TEST)
    assert find_segmentation_blobs(net) is None


def test_a_classifier_has_no_segmentation_blobs():
    assert find_segmentation_blobs(netdef.Net(CLASSIFIER, netdef.TEST)) is None


def _args(**kw):
    base = dict(no_seg_metrics=False, seg_score=None, seg_label=None, ignore_label=test_command._UNSET)
    return argparse.Namespace(**{**base, **kw})


def test_command_line_overrides():
    seg = netdef.Net(SEG % (LOSS % "loss_param { ignore_label: 255 }"), netdef.TEST)
    pick = test_command.segmentation_blobs
    assert pick(seg, _args()) == SegmentationBlobs("score", "label", 255)
    assert pick(seg, _args(ignore_label=None)) == SegmentationBlobs("score", "label", None)
    assert pick(seg, _args(ignore_label=3)) == SegmentationBlobs("score", "label", 3)
    assert pick(seg, _args(seg_score="data")) == SegmentationBlobs("data", "label", 255)
    assert pick(seg, _args(no_seg_metrics=True)) is False
    cls = netdef.Net(CLASSIFIER, netdef.TEST)
    assert pick(cls, _args()) is False
    assert pick(cls, _args(seg_score="score", seg_label="label")) == SegmentationBlobs("score", "label", None)
    with pytest.raises(netdef.NetdefError, match="--seg-score and --seg-label"):
        pick(cls, _args(ignore_label=255))


def test_command_line_options_parse_and_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["test", "-h"])
    out = capsys.readouterr().out
    for option in ("--seg-score BLOB", "--seg-label BLOB", "--ignore-label N", "--no-seg-metrics"):
        assert option in out
    assert "ignore_label" in out and "Accuracy or SoftmaxWithLoss" in out


def test_a_missing_segmentation_blob_is_an_error_naming_it(tmp_path, capsys):
    p = tmp_path / "seg.prototxt"
    p.write_text(SEG % (LOSS % ""))
    w = tmp_path / "w.caffemodel"
    netdef.Net(str(p), netdef.TEST).save(str(w))
    assert main(["test", str(p), "--weights", str(w), "--iterations", "1", "--cpu",
                 "--seg-score", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("netdef test: error: ") and "'nope'" in err
