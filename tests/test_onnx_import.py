"""ONNX import: prototxt -> ONNX -> prototxt + caffemodel gives the outputs of the first net;
hand-written ONNX graphs (the forms other exporters write) against ONNX Runtime; the refusals."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_onnx_export import CONV, DECONV, POOL, layer, net_text, randomize  # noqa: E402

import netdef  # noqa: E402
from netdef import cli  # noqa: E402
from netdef.errors import NetdefError  # noqa: E402
from netdef.onnx import compare, export, import_model, to_caffe  # noqa: E402

RTOL = 1e-4


def round_trip(text, tmp_path, opset=17, inputs=None):
    first = netdef.Net(text, netdef.TEST)
    randomize(first)
    model = export(first, opset=opset)
    to_caffe(model, tmp_path / "net.prototxt", tmp_path / "net.caffemodel")
    second = netdef.Net(str(tmp_path / "net.prototxt"), netdef.TEST,
                        weights=str(tmp_path / "net.caffemodel"))
    rng = np.random.default_rng(3)
    feeds = {n: rng.standard_normal(first.blobs[n].shape) for n in first.inputs}
    feeds.update(inputs or {})
    outs = [o.name for o in model.graph.output]
    want = {k: first.forward(**feeds)[k].copy() for k in outs}
    got = second.forward(**{n: feeds[n] for n in second.inputs})  # a static Crop's reference is no input
    for k in outs:
        assert got[k].shape == want[k].shape, k
        scale = np.abs(want[k]).max()
        assert scale > 0 and np.abs(got[k] - want[k]).max() <= RTOL * scale, k
    return second


def one(type_, params, shape=(2, 3, 7, 9), n_bottoms=1, n_tops=1):
    ins = {f"x{i}": shape for i in range(n_bottoms)}
    return net_text(ins, layer(type_, list(ins), [f"y{i}" for i in range(n_tops)], params, name="L"))


CASES = (
    [("Convolution", f"convolution_param {{ {p} }}", (2, 6, 11, 13)) for p in CONV]
    + [("Deconvolution", f"convolution_param {{ {p} }}", (2, 4, 5, 7)) for p in DECONV]
    + [("Pooling", f"pooling_param {{ {p} }}", (2, 3, 7, 11)) for p in POOL
       if "kernel_size: 2 stride: 3" not in p and "kernel_size: 1 stride: 3" not in p]
    + [("InnerProduct", "inner_product_param { num_output: 4 }", (2, 3, 5, 7)),
       ("InnerProduct", "inner_product_param { num_output: 4 axis: 2 }", (2, 3, 5, 7)),
       ("InnerProduct", "inner_product_param { num_output: 3 transpose: true bias_term: false }", (3, 10)),
       ("BatchNorm", "batch_norm_param { eps: 0.01 }", (2, 4, 5, 3)),
       ("Scale", "scale_param { bias_term: true }", (2, 4, 5, 3)),
       ("Scale", "scale_param { axis: 1 num_axes: 2 }", (2, 4, 5, 3)),
       ("Bias", "bias_param { axis: 2 num_axes: -1 }", (2, 4, 5, 3)),
       ("ReLU", "relu_param { negative_slope: 0.1 }", (2, 3, 4, 5)), ("ReLU", "", (2, 3, 4, 5)),
       ("PReLU", "", (2, 3, 4, 5)), ("PReLU", "prelu_param { channel_shared: true }", (2, 3, 4, 5)),
       ("ELU", "elu_param { alpha: 0.5 }", (2, 3, 4, 5)), ("Sigmoid", "", (2, 3)), ("TanH", "", (2, 3)),
       ("AbsVal", "", (2, 3, 4)), ("BNLL", "", (2, 3, 4)), ("Dropout", "", (2, 3, 4)),
       ("Power", "power_param { power: 3 scale: 0.5 shift: 0.25 }", (2, 3, 4)),
       ("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }", (2, 3, 4)),
       ("Log", "log_param { base: 10 scale: 0.5 shift: 6 }", (2, 3, 4)),
       ("Threshold", "threshold_param { threshold: 0.3 }", (2, 3, 4)),
       ("Clip", "clip_param { min: -0.5 max: 0.7 }", (2, 3, 4)),
       ("Swish", "swish_param { beta: 1.5 }", (2, 3, 4)),
       ("Softmax", "", (2, 5, 3, 4)),
       ("LRN", "lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 }", (2, 7, 5, 6)),
       ("LRN", "lrn_param { local_size: 3 alpha: 0.5 norm_region: WITHIN_CHANNEL }", (2, 7, 5, 6)),
       ("Interp", "interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -2 }", (2, 3, 7, 9)),
       ("ArgMax", "argmax_param { axis: 1 }", (2, 5, 3, 4)),
       ("Tile", "tile_param { axis: 1 tiles: 3 }", (2, 3, 4)),
       ("Reduction", "reduction_param { operation: ASUM axis: 2 coeff: 2 }", (2, 3, 4, 5)),
       ("Reduction", "reduction_param { operation: MEAN axis: 1 }", (2, 3, 4, 5)),
       ("Flatten", "", (2, 6, 5, 3)), ("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }", (2, 6, 5, 3))]
)


@pytest.mark.parametrize("type_,params,shape", CASES)
def test_round_trip(type_, params, shape, tmp_path):
    round_trip(one(type_, params, shape), tmp_path)


@pytest.mark.parametrize("type_,params,n_bottoms,n_tops", [
    ("Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }", 3, 1),
    ("Eltwise", "eltwise_param { operation: PROD }", 3, 1), ("Eltwise", "eltwise_param { operation: MAX }", 2, 1),
    ("Concat", "concat_param { axis: 2 }", 3, 1),
    ("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 3 }", 1, 3),
])
def test_round_trip_several_blobs(type_, params, n_bottoms, n_tops, tmp_path):
    round_trip(one(type_, params, (2, 5, 4, 3), n_bottoms, n_tops), tmp_path)


def test_round_trip_crop_and_in_place(tmp_path):
    ins = {"x": (2, 4, 8, 9), "ref": (1, 1, 4, 5)}
    body = (layer("Crop", ["x", "ref"], ["c"], "crop_param { axis: 2 offset: 1 offset: 2 }")
            + layer("ReLU", ["c"], ["c"], name="relu")
            + layer("Convolution", ["c"], ["y"], "convolution_param { num_output: 3 kernel_size: 3 pad: 1 }"))
    net = round_trip(net_text(ins, body), tmp_path)
    assert "Crop" in [lay.type for lay in net.layers]


def test_round_trip_fcn8s_mini(tmp_path):
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models",
                        "fcn8s-mini", "deploy.prototxt")
    from netdef.core import proto
    param, _ = proto.read_net_text(path)
    param.layer[0].input_param.shape[0].dim[:] = [1, 3, 48, 56]
    round_trip(param, tmp_path)


def _graph_model(nodes, inputs, outputs, inits, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(v if v.dtype.kind == "i" else v.astype(np.float32), k)
                                           for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_pytorch_style_graph(tmp_path):
    # what exporters of other frameworks write: a separate Pad, BatchNormalization with affine
    # parameters, Gemm with alpha / beta, a broadcast Add, Softmax over the last axis at opset 11
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)) * 0.3, "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1]),
             "g": rng.random(4) + 0.5, "b": rng.standard_normal(4), "m": rng.standard_normal(4),
             "v": rng.random(4) + 0.5, "fw": rng.standard_normal((4 * 4 * 4, 5)) * 0.1,
             "fb": rng.standard_normal(5), "k": rng.standard_normal((4, 1, 1)),
             "mw": rng.standard_normal((5, 6)) * 0.3}
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["xp"], mode="constant"),
        helper.make_node("Conv", ["xp", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
        helper.make_node("Add", ["bn", "k"], ["bk"]),
        helper.make_node("Relu", ["bk"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["fc"], alpha=0.5, beta=2.0),
        helper.make_node("MatMul", ["fc", "mw"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["prob"], axis=1),
    ]
    model = _graph_model(nodes, [_vi("x", [2, 3, 13, 15])], [_vi("prob", None)], inits, opset=11)
    net = to_caffe(model, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    for name, (err, rel) in compare(model, net).items():
        assert rel < RTOL, (name, err, rel)
    types = [lay.type for lay in net.layers]
    assert types.count("Convolution") == 1 and "Scale" in types and types.count("InnerProduct") == 2


def test_unnamed_and_repeated_node_names(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n"), helper.make_node("Sigmoid", ["a"], ["b"], name="n"),
             helper.make_node("Tanh", ["b"], ["y"])]
    model = _graph_model(nodes, [_vi("x", [2, 3])], [_vi("y", None)], {})
    net = to_caffe(model, tmp_path / "n.prototxt")
    assert [lay.type for lay in net.layers] == ["Input", "ReLU", "Sigmoid", "TanH"]
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(net.forward(x=x)["y"], np.tanh(1 / (1 + np.exp(-np.maximum(x, 0)))), rtol=1e-5)


def test_unsupported_operators_are_listed():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Erf", ["t"], ["y"])]
    model = _graph_model(nodes, [_vi("x", [1, 2, 3])], [_vi("y", None)], {})
    with pytest.raises(NetdefError, match="without a Caffe equivalent: Erf, Transpose"):
        import_model(model)


def test_refusals():
    w = {"w": np.ones((2, 3, 3, 3))}
    conv = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[0, 0, 1, 1])
    with pytest.raises(NetdefError, match="Conv node.*asymmetric pads"):
        import_model(_graph_model([conv], [_vi("x", [1, 3, 8, 8])], [_vi("y", None)], w))
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["N", 3])], [_vi("y", None)], {})
    with pytest.raises(NetdefError, match="symbolic"):
        import_model(model)
    param, _ = import_model(model, {"x": (4, 3)})
    assert list(param.layer[0].input_param.shape[0].dim) == [4, 3]


def test_commands(tmp_path, capsys):
    p = tmp_path / "net.prototxt"
    p.write_text(one("Convolution", "convolution_param { num_output: 3 kernel_size: 3 }", (1, 2, 9, 8)))
    out = tmp_path / "m.onnx"
    assert cli.main(["export-onnx", str(p), "-o", str(out), "--check", "--dynamic",
                     "--input-shape", "x0=2,2,11,10"]) == 0
    text = capsys.readouterr().out
    assert "check passed" in text and "x0 (3, 2, 18, 15)" in text
    assert cli.main(["import-onnx", str(out), "-o", str(tmp_path / "back.prototxt")]) == 1  # symbolic
    assert cli.main(["export-onnx", str(p), "-o", str(out)]) == 0
    assert cli.main(["import-onnx", str(out), "-o", str(tmp_path / "back.prototxt"),
                     "--weights", str(tmp_path / "back.caffemodel"), "--check"]) == 0
    assert "check passed" in capsys.readouterr().out
    assert cli.main(["export-onnx", str(p), "-o", str(out), "--input-shape", "nope=1,2"]) == 1
