"""ONNX export: every mapped layer type on awkward shapes, run in ONNX Runtime (an independent
implementation) against netdef's forward; FCN-8s with --dynamic at sizes it was not exported at;
the refusals."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import netdef  # noqa: E402
from netdef.errors import NetdefError  # noqa: E402
from netdef.onnx import compare, export  # noqa: E402
from zoo_nets import ZOO, thin, thin_zoo  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4


def net_text(inputs, body):
    tops = "".join(f'  top: "{n}"\n' for n in inputs)
    shapes = "".join("    shape { " + " ".join(f"dim: {d}" for d in s) + " }\n" for s in inputs.values())
    return f'name: "t"\nlayer {{\n  name: "input"\n  type: "Input"\n{tops}  input_param {{\n{shapes}  }}\n}}\n{body}'


def layer(type_, bottoms, tops, params="", name=None):
    b = "".join(f' bottom: "{x}"' for x in bottoms)
    t = "".join(f' top: "{x}"' for x in tops)
    return f'layer {{ name: "{name or tops[0]}" type: "{type_}"{b}{t} {params} }}\n'


def randomize(net, seed=1):
    """Random weights of unit gain (so deep nets stay finite), positive BatchNorm variances."""
    rng = np.random.default_rng(seed)
    for lname, lay in net.layer_dict.items():
        for i, b in enumerate(lay.blobs):
            v = rng.standard_normal(b.shape)
            if i == 0 and len(b.shape) >= 2:
                v /= np.sqrt(np.prod(b.shape[1:]))
            if lay.type == "BatchNorm":  # positive variances and scale factor
                v = [v, np.abs(v) + 0.5, np.full(b.shape, 2.5)][i]
            b.data[...] = v


def check(text, opset=17, dynamic=False, sizes=(), inputs=None, seed=1):
    net = netdef.Net(text, netdef.TEST)
    randomize(net, seed)
    model = export(net, opset=opset, dynamic=dynamic)
    runs = [{}] + [dict(s) for s in sizes]
    for shapes in runs:
        results = compare(model, net, shapes=shapes, inputs=inputs)
        assert results and set(results) == {o.name for o in model.graph.output}
        for name, (err, rel) in results.items():
            y = net.blobs[name].to_numpy()
            assert np.isfinite(y).all() and np.abs(y).max() > 0, name  # a comparison that can fail
            assert rel < RTOL, f"{name} at {shapes or 'the export shapes'}: abs {err:.3g}, rel {rel:.3g}"
    return net, model


def single(type_, params, shape=(2, 3, 7, 9), n_bottoms=1, n_tops=1, **kw):
    ins = {f"x{i}": shape for i in range(n_bottoms)}
    body = layer(type_, list(ins), [f"y{i}" for i in range(n_tops)], params, name="L")
    return check(net_text(ins, body), **kw)


def ops(model):
    return [n.op_type for n in model.graph.node]


CONV = [
    "num_output: 9 kernel_size: 3 stride: 2 pad: 1 dilation: 2 group: 3",
    "num_output: 4 kernel_h: 1 kernel_w: 3 stride_h: 3 stride_w: 1 pad_h: 0 pad_w: 2",
    "num_output: 5 kernel_size: 2 stride: 3 bias_term: false",           # stride > kernel
    "num_output: 2 kernel_size: 2 pad: 3",                                # pad >= kernel
    "num_output: 6 kernel_size: 3 group: 6 pad: 1",                       # depthwise
]


@pytest.mark.parametrize("params", CONV)
def test_convolution(params):
    _, model = single("Convolution", f"convolution_param {{ {params} }}", shape=(2, 6, 11, 13))
    assert ops(model) == ["Conv"]


DECONV = [
    "num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2 dilation: 2",
    "num_output: 4 kernel_size: 4 stride: 2 group: 4 bias_term: false",  # FCN's upsampling
    "num_output: 3 kernel_h: 3 kernel_w: 2 stride_h: 3 stride_w: 1 pad: 2",
    "num_output: 5 kernel_size: 1 stride: 3",                             # stride > kernel
]


@pytest.mark.parametrize("params", DECONV)
def test_deconvolution(params):
    _, model = single("Deconvolution", f"convolution_param {{ {params} }}", shape=(2, 4, 5, 7))
    assert ops(model) == ["ConvTranspose"]


def test_deconvolution_weight_layout():
    # Caffe's Deconvolution weight is (C_in, C_out / group, kh, kw): with one input channel and
    # two output channels, each output channel must be its own slice of the weight
    net, model = single("Deconvolution", "convolution_param { num_output: 2 kernel_size: 2 stride: 2 "
                        "bias_term: false }", shape=(1, 1, 1, 1))
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    assert w.shape == (1, 2, 2, 2)
    from netdef.onnx.check import run_onnx
    y = run_onnx(model, {"x0": np.ones((1, 1, 1, 1), np.float32)})["y0"]
    np.testing.assert_allclose(y[0], w[0], rtol=1e-6)


POOL = [
    "pool: MAX kernel_size: 3 stride: 2",                     # ceil rounding, odd sizes
    "pool: AVE kernel_size: 3 stride: 2",
    "pool: MAX kernel_size: 3 stride: 2 pad: 1",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1",              # ceil window past the padding
    "pool: AVE kernel_size: 3 stride: 2 pad: 2",
    "pool: AVE kernel_size: 4 stride: 3 pad: 3",
    "pool: MAX kernel_size: 2 stride: 3",                     # empty last window (H 7 -> 3)
    "pool: AVE kernel_size: 1 stride: 3",
    "pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0",
    "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 0 pad_w: 1",
    "pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR",
    "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR",
    "pool: MAX global_pooling: true",
    "pool: AVE global_pooling: true",
]


@pytest.mark.parametrize("params", POOL)
@pytest.mark.parametrize("dynamic", [False, True])
def test_pooling(params, dynamic):
    sizes = [{"x0": (1, 3, 8, 10)}, {"x0": (3, 3, 12, 5)}] if dynamic else []
    single("Pooling", f"pooling_param {{ {params} }}", shape=(2, 3, 7, 11), dynamic=dynamic,
           sizes=sizes)


@pytest.mark.parametrize("params,shape", [
    ("inner_product_param { num_output: 4 }", (2, 3, 5, 7)),
    ("inner_product_param { num_output: 4 axis: 2 }", (2, 3, 5, 7)),
    ("inner_product_param { num_output: 3 transpose: true bias_term: false }", (3, 10)),
])
@pytest.mark.parametrize("dynamic", [False, True])
def test_inner_product(params, shape, dynamic):
    single("InnerProduct", params, shape=shape, dynamic=dynamic,
           sizes=[{"x0": (1,) + shape[1:]}] if dynamic else [])


def test_batch_norm_and_scale():
    ins = {"x": (2, 4, 5, 3)}
    body = (layer("BatchNorm", ["x"], ["bn"], "batch_norm_param { eps: 0.01 }")
            + layer("Scale", ["bn"], ["bn"], "scale_param { bias_term: true }", name="sc")
            + layer("BatchNorm", ["bn"], ["bn2"], "batch_norm_param { use_global_stats: false }")
            + layer("BatchNorm", ["x"], ["bn3"], name="bn3")
            + layer("Scale", ["bn3"], ["sc3"], "scale_param { axis: 1 num_axes: 2 }", name="sc3"))
    _, model = check(net_text(ins, body))
    # the first pair folds into one BatchNormalization; a Scale over (C, H) cannot
    assert ops(model).count("BatchNormalization") == 2 and ops(model).count("Mul") == 2


@pytest.mark.parametrize("params,bshape", [
    ("scale_param { axis: 1 num_axes: 2 }", None),
    ("scale_param { axis: 0 num_axes: 0 bias_term: true }", None),
    ("scale_param { axis: 1 bias_term: true }", (4, 5)),
    ("bias_param { axis: 2 num_axes: -1 }", None),
])
def test_scale_bias(params, bshape):
    type_ = "Bias" if params.startswith("bias") else "Scale"
    ins = {"x": (2, 4, 5, 3)}
    if bshape:
        ins["s"] = bshape
    check(net_text(ins, layer(type_, list(ins), ["y"], params)))


NEURONS = [
    ("ReLU", ""), ("ReLU", "relu_param { negative_slope: 0.1 }"), ("PReLU", ""),
    ("PReLU", "prelu_param { channel_shared: true }"), ("ELU", "elu_param { alpha: 0.5 }"),
    ("Sigmoid", ""), ("TanH", ""), ("AbsVal", ""), ("BNLL", ""),
    ("Power", "power_param { power: 3 scale: 0.5 shift: 0.25 }"),
    ("Power", "power_param { power: 0.5 scale: 0.5 shift: 6 }"),
    ("Power", "power_param { scale: -2 }"),
    ("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"), ("Exp", ""),
    ("Log", "log_param { base: 10 scale: 0.5 shift: 6 }"), ("Log", "log_param { shift: 6 }"),
    ("Threshold", "threshold_param { threshold: 0.3 }"), ("Clip", "clip_param { min: -0.5 max: 0.7 }"),
    ("Swish", "swish_param { beta: 1.5 }"), ("Dropout", "dropout_param { dropout_ratio: 0.3 }"),
]


@pytest.mark.parametrize("type_,params", NEURONS)
def test_neurons(type_, params):
    single(type_, params, shape=(2, 3, 5, 4))


def test_bnll_large_inputs():
    x = np.linspace(-100, 100, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    single("BNLL", "", shape=(2, 3, 4, 5), inputs={"x0": x})


@pytest.mark.parametrize("params", [
    "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }",
    "eltwise_param { operation: PROD }", "eltwise_param { operation: MAX }", "",
])
def test_eltwise(params):
    single("Eltwise", params, shape=(2, 3, 5, 4), n_bottoms=3)


def test_eltwise_difference():
    _, model = single("Eltwise", "eltwise_param { coeff: 1 coeff: -1 }", n_bottoms=2)
    assert ops(model) == ["Sub"]


@pytest.mark.parametrize("params,n_tops,dynamic", [
    ("slice_param { axis: 1 slice_point: 1 slice_point: 3 }", 3, False),
    ("slice_param { axis: 3 }", 3, True),
    ("slice_param { axis: -2 slice_point: 2 }", 2, True),
])
def test_slice(params, n_tops, dynamic):
    single("Slice", params, shape=(2, 5, 7, 9), n_tops=n_tops, dynamic=dynamic,
           sizes=[{"x0": (1, 5, 4, 6)}] if dynamic else [])


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_concat(axis):
    single("Concat", f"concat_param {{ axis: {axis} }}", n_bottoms=3)


@pytest.mark.parametrize("type_,params", [
    ("Flatten", ""), ("Flatten", "flatten_param { axis: 1 end_axis: 2 }"),
    ("Flatten", "flatten_param { axis: 2 }"),
    ("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }"),
    ("Reshape", "reshape_param { shape { dim: 3 dim: -1 } axis: 1 num_axes: 1 }"),
    ("Reshape", "reshape_param { shape { dim: -1 } axis: 2 }"),
])
@pytest.mark.parametrize("dynamic", [False, True])
def test_flatten_reshape(type_, params, dynamic):
    single(type_, params, shape=(2, 6, 5, 3), dynamic=dynamic,
           sizes=[{"x0": (3, 6, 5, 3)}] if dynamic else [])


@pytest.mark.parametrize("params,opset", [("", 13), ("softmax_param { axis: -1 }", 11),
                                          ("softmax_param { axis: 2 }", 17)])
def test_softmax(params, opset):
    single("Softmax", params, opset=opset)


def test_softmax_over_channels_at_opset_11_is_refused():
    with pytest.raises(NetdefError, match=r"layer 'L'.*opset 13"):
        single("Softmax", "", opset=11)
    single("Softmax", "", shape=(2, 5, 1, 1), opset=11)  # nothing after the axis: the same


@pytest.mark.parametrize("params", [
    "lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 }",
    "lrn_param { local_size: 3 alpha: 0.5 beta: 0.6 norm_region: WITHIN_CHANNEL }",
])
def test_lrn(params):
    single("LRN", params, shape=(2, 7, 5, 6))


@pytest.mark.parametrize("params", [
    "interp_param { zoom_factor: 3 }", "interp_param { shrink_factor: 2 }",
    "interp_param { height: 10 width: 4 }", "interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -2 }",
    "interp_param { shrink_factor: 2 zoom_factor: 3 }",
])
@pytest.mark.parametrize("dynamic", [False, True])
def test_interp(params, dynamic):
    single("Interp", params, shape=(2, 3, 7, 9), dynamic=dynamic,
           sizes=[{"x0": (1, 3, 5, 12)}] if dynamic else [])


def test_interp_to_a_reference():
    ins = {"x": (2, 3, 5, 6), "ref": (2, 1, 9, 4)}
    check(net_text(ins, layer("Interp", ["x", "ref"], ["y"])), dynamic=True,
          sizes=[{"x": (1, 3, 4, 4), "ref": (1, 1, 11, 7)}])


@pytest.mark.parametrize("params", [
    "argmax_param { axis: 1 }", "argmax_param { axis: 1 top_k: 2 out_max_val: true }",
    "argmax_param { axis: 3 top_k: 3 }", "argmax_param { top_k: 3 }",
    "argmax_param { top_k: 2 out_max_val: true }", "",
])
def test_argmax(params):
    single("ArgMax", params, shape=(2, 5, 3, 4))


def test_argmax_ties_take_the_larger_index():
    x = np.zeros((2, 5, 3, 4))
    x[:, 1] = x[:, 3] = 1
    single("ArgMax", "argmax_param { axis: 1 }", shape=(2, 5, 3, 4), inputs={"x0": x})


@pytest.mark.parametrize("params", ["tile_param { axis: 1 tiles: 3 }", "tile_param { axis: -1 tiles: 2 }"])
def test_tile(params):
    single("Tile", params)


@pytest.mark.parametrize("params", [
    "reduction_param { operation: SUM axis: 1 coeff: 2 }", "reduction_param { operation: ASUM axis: 2 }",
    "reduction_param { operation: SUMSQ }", "reduction_param { operation: MEAN axis: -1 coeff: 0.5 }",
])
def test_reduction(params):
    single("Reduction", params)


@pytest.mark.parametrize("params", ["", "mvn_param { across_channels: true eps: 0.01 }",
                                    "mvn_param { normalize_variance: false }"])
def test_mvn(params):
    single("MVN", params, shape=(2, 3, 5, 4))


@pytest.mark.parametrize("params,ref", [
    ("crop_param { axis: 2 offset: 1 offset: 2 }", (1, 1, 4, 5)),
    ("crop_param { axis: 1 offset: 1 }", (1, 2, 5, 5)),
    ("", (1, 3, 7, 6)),
])
@pytest.mark.parametrize("dynamic", [False, True])
def test_crop(params, ref, dynamic):
    ins = {"x": (2, 4, 8, 9), "ref": ref}
    sizes = [{"x": (1, 4, 10, 11), "ref": ref[:2] + (6, 8)}] if dynamic else []
    check(net_text(ins, layer("Crop", ["x", "ref"], ["y"], params)), dynamic=dynamic, sizes=sizes)


def test_embed():
    x = np.array([[0, 3, 2], [1, 1, 4]], dtype=np.float32)
    single("Embed", "embed_param { num_output: 3 input_dim: 5 }", shape=(2, 3), inputs={"x0": x})


def test_in_place_blobs_keep_their_names():
    ins = {"data": (2, 3, 6, 6)}
    body = (layer("Convolution", ["data"], ["conv1"], "convolution_param { num_output: 4 kernel_size: 3 }")
            + layer("ReLU", ["conv1"], ["conv1"], name="relu1")
            + layer("Dropout", ["conv1"], ["conv1"], name="drop1")
            + layer("Pooling", ["conv1"], ["pool1"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
            + layer("ReLU", ["pool1"], ["pool1"], name="relu2")
            + layer("Softmax", ["conv1"], ["prob"]))
    _, model = check(net_text(ins, body))
    nodes = {n.name: (list(n.input), list(n.output)) for n in model.graph.node}
    assert nodes["conv1"][1] == ["conv1/conv1"]
    assert nodes["relu1"] == (["conv1/conv1"], ["conv1"])
    assert nodes["pool1"][0] == ["conv1"] and nodes["prob"][0] == ["conv1"]
    assert {o.name for o in model.graph.output} == {"pool1", "prob"}
    assert [i.name for i in model.graph.input] == ["data"]


def test_training_layers_are_left_out(caplog):
    text = """name: "t"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 dim: 1 dim: 4 dim: 4 }
                     data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "acc" }
"""
    caplog.set_level("INFO", logger="netdef")
    _, model = check(text)
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["score"]
    assert "loss (SoftmaxWithLoss)" in caplog.text and "label" in caplog.text


def test_unsupported_layer_names_layer_type_and_line(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text(net_text({"x": (1, 2, 8, 8)}, layer("ReLU", ["x"], ["r"])
                          + layer("SPP", ["r"], ["y"], "spp_param { pyramid_height: 2 }", name="spp")))
    net = netdef.Net(str(p), netdef.TEST)
    with pytest.raises(NetdefError) as e:
        export(net)
    msg = str(e.value)
    assert f"{p}:" in msg and "layer 'spp'" in msg and "SPP" in msg and "no ONNX equivalent" in msg
    line = int(msg.split(f"{p}:")[1].split(",")[0])
    assert 'name: "spp"' in p.read_text().splitlines()[line - 1]


def test_bad_opset():
    with pytest.raises(NetdefError, match="opset 9"):
        single("ReLU", "", opset=9)


def test_write_and_reload(tmp_path):
    net = netdef.Net(net_text({"x": (1, 2, 3, 3)}, layer("TanH", ["x"], ["y"])), netdef.TEST)
    export(net, tmp_path / "m.onnx", opset=13)
    m = onnx.load(str(tmp_path / "m.onnx"))
    assert m.opset_import[0].version == 13 and m.producer_name == "netdef"


@pytest.mark.parametrize("model_dir,factor", [("fcn8s-mini", 1), ("fcn8s", 16)])
def test_fcn8s_dynamic(model_dir, factor):
    param = thin(os.path.join(ROOT, "models", model_dir, "deploy.prototxt"), factor)
    param.layer[0].input_param.shape[0].dim[:] = [1, 3, 64, 64]
    net, model = check(param, dynamic=True, sizes=[{"data": (1, 3, 75, 93)}, {"data": (2, 3, 50, 41)}])
    assert "Slice" in ops(model) and "ConvTranspose" in ops(model)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_nets(name):
    param = thin_zoo(name, 8)
    for lp in param.layer:
        if lp.type == "Input":
            lp.input_param.shape[0].dim[0] = 1
    # compare the logits: a softmax over 1000 random logits is nearly one-hot and hides errors
    keep = [lp for lp in param.layer if lp.type != "Softmax"]
    del param.layer[:]
    param.layer.extend(keep)
    check(param)


@pytest.mark.parametrize("opset", [11, 12, 13, 15, 18, 21])
@pytest.mark.parametrize("dynamic", [False, True])
def test_opsets(opset, dynamic):
    # the operators whose form changed between opsets: Reduce* / Squeeze / Unsqueeze axes, Split,
    # Slice, Pad, Resize, Shape, ArgMax's select_last_index, Softmax's axis
    ins = {"x": (2, 4, 9, 7)}
    body = (layer("Pooling", ["x"], ["p"], "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }")
            + layer("Interp", ["p"], ["i"], "interp_param { zoom_factor: 3 }")
            + layer("Slice", ["i"], ["s1", "s2"], "slice_param { axis: 3 }")
            + layer("Reduction", ["s1"], ["r"], "reduction_param { operation: MEAN axis: 2 }")
            + layer("ArgMax", ["s2"], ["a"], "argmax_param { top_k: 2 out_max_val: true }")
            + layer("MVN", ["s2"], ["m"])
            + layer("Softmax", ["m"], ["sm"], "softmax_param { axis: -1 }"))
    sizes = [{"x": (1, 4, 11, 11)}] if dynamic else []
    check(net_text(ins, body), opset=opset, dynamic=dynamic, sizes=sizes)


def test_missing_onnx_names_the_extra():
    import subprocess
    import sys
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import netdef\n"
            "net = netdef.Net('layer { name: \"i\" type: \"Input\" top: \"x\" input_param { shape { dim: 1 } } }')\n"
            "try:\n    netdef.onnx.export(net, 'x.onnx')\n"
            "except netdef.NetdefError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pip install 'netdef[onnx]'" in res.stdout


def test_export_stays_callable_after_use(tmp_path):
    # the module holding the mapping is not named `export`: importing it must not replace the
    # package's export() function by a module (a second call used to fail)
    import netdef.onnx

    net = netdef.Net(net_text({"data": (1, 1, 3, 3)},
                              layer("Convolution", ["data"], ["c"],
                                    "convolution_param { num_output: 2 kernel_size: 1 }")),
                     netdef.TEST)
    for i in range(2):
        netdef.onnx.export(net, str(tmp_path / f"m{i}.onnx"))
    assert callable(netdef.onnx.export)
