"""Reshaping a net's input reshapes the net, as Caffe's Layer::Forward reshapes every layer
before running it: for every registered layer type that can take a reshape, a net built at one
geometry, reshaped and run, must give exactly what a fresh net built at the new geometry (same
weights, same inputs) gives, forward and backward."""
import numpy as np
import pytest

import netdef
from netdef.layers import layer_class

FILL = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.3 }'

# type -> (layers after the Input, {input top: (declared shape, new shape, values)}, phase)
# values: "real" (uniform in [-1, 1]), "pos" (uniform in [0.5, 1.5]), or ("label", C)
X = {"data": ((2, 3, 6, 5), (1, 3, 9, 7), "real")}
CASES = {
    "AbsVal": ('layer { name: "l" type: "AbsVal" bottom: "data" top: "out" }', X),
    "Accuracy": ('layer { name: "l" type: "Accuracy" bottom: "data" bottom: "label" top: "out" }',
                 {"data": ((2, 3, 4, 4), (3, 3, 5, 2), "real"),
                  "label": ((2, 1, 4, 4), (3, 1, 5, 2), ("label", 3))}),
    "ArgMax": ('layer { name: "l" type: "ArgMax" bottom: "data" top: "out" argmax_param { axis: 1 } }', X),
    "BNLL": ('layer { name: "l" type: "BNLL" bottom: "data" top: "out" }', X),
    "BatchNorm": ('layer { name: "l" type: "BatchNorm" bottom: "data" top: "out" }', X),
    "Bias": ('layer { name: "l" type: "Bias" bottom: "data" top: "out" '
             'bias_param { filler { type: "gaussian" } } }', X),
    "Concat": ('layer { name: "l" type: "Concat" bottom: "data" bottom: "data2" top: "out" }',
               {"data": ((2, 3, 4, 5), (1, 3, 6, 2), "real"),
                "data2": ((2, 2, 4, 5), (1, 2, 6, 2), "real")}),
    "Convolution": ('layer { name: "l" type: "Convolution" bottom: "data" top: "out" convolution_param '
                    '{ num_output: 4 kernel_size: 3 pad: 1 stride: 2 ' + FILL + ' } }', X),
    "Crop": ('layer { name: "l" type: "Crop" bottom: "data" bottom: "ref" top: "out" '
             'crop_param { axis: 2 offset: 1 } }',
             {"data": ((2, 3, 8, 8), (2, 3, 12, 9), "real"), "ref": ((2, 3, 5, 5), (2, 3, 7, 4), "real")}),
    "Deconvolution": ('layer { name: "l" type: "Deconvolution" bottom: "data" top: "out" convolution_param '
                      '{ num_output: 2 kernel_size: 4 stride: 2 ' + FILL + ' } }', X),
    "Dropout": ('layer { name: "l" type: "Dropout" bottom: "data" top: "out" }', X),
    "ELU": ('layer { name: "l" type: "ELU" bottom: "data" top: "out" }', X),
    "Eltwise": ('layer { name: "l" type: "Eltwise" bottom: "data" bottom: "data2" top: "out" '
                'eltwise_param { operation: PROD } }',
                {"data": ((2, 3, 4, 5), (1, 3, 7, 2), "real"), "data2": ((2, 3, 4, 5), (1, 3, 7, 2), "real")}),
    "EuclideanLoss": ('layer { name: "l" type: "EuclideanLoss" bottom: "data" bottom: "data2" top: "out" }',
                      {"data": ((2, 3, 4, 5), (4, 3, 2, 2), "real"),
                       "data2": ((2, 3, 4, 5), (4, 3, 2, 2), "real")}),
    "Exp": ('layer { name: "l" type: "Exp" bottom: "data" top: "out" }', X),
    "Flatten": ('layer { name: "l" type: "Flatten" bottom: "data" top: "out" }', X),
    "InnerProduct": ('layer { name: "l" type: "InnerProduct" bottom: "data" top: "out" '
                     'inner_product_param { num_output: 3 ' + FILL + ' } }',
                     {"data": ((2, 3, 4, 5), (5, 3, 4, 5), "real")}),
    "Input": ('layer { name: "l" type: "ReLU" bottom: "data" top: "out" }', X),
    "LRN": ('layer { name: "l" type: "LRN" bottom: "data" top: "out" lrn_param { local_size: 3 } }', X),
    "Log": ('layer { name: "l" type: "Log" bottom: "data" top: "out" }',
            {"data": ((2, 3, 6, 5), (1, 3, 9, 7), "pos")}),
    "PReLU": ('layer { name: "l" type: "PReLU" bottom: "data" top: "out" }', X),
    "Pooling": ('layer { name: "l" type: "Pooling" bottom: "data" top: "out" '
                'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }', X),
    "Power": ('layer { name: "l" type: "Power" bottom: "data" top: "out" '
              'power_param { power: 2 scale: 0.5 shift: 1 } }', X),
    "ReLU": ('layer { name: "l" type: "ReLU" bottom: "data" top: "out" relu_param { negative_slope: 0.1 } }', X),
    "Reshape": ('layer { name: "l" type: "Reshape" bottom: "data" top: "out" '
                'reshape_param { shape { dim: 0 dim: -1 } } }', X),
    "Scale": ('layer { name: "l" type: "Scale" bottom: "data" top: "out" '
              'scale_param { filler { type: "gaussian" } bias_term: true } }', X),
    "Sigmoid": ('layer { name: "l" type: "Sigmoid" bottom: "data" top: "out" }', X),
    "Silence": ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
                '{ num_output: 2 kernel_size: 1 ' + FILL + ' } }\n'
                'layer { name: "l" type: "Silence" bottom: "c" }\n'
                'layer { name: "e" type: "EuclideanLoss" bottom: "c" bottom: "c2" top: "out" }',
                {"data": ((2, 3, 4, 5), (1, 3, 7, 3), "real"), "c2": ((2, 2, 4, 5), (1, 2, 7, 3), "real")}),
    "Softmax": ('layer { name: "l" type: "Softmax" bottom: "data" top: "out" }', X),
    "SoftmaxWithLoss": ('layer { name: "l" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "out" '
                        'loss_param { ignore_label: 2 } }',
                        {"data": ((2, 4, 4, 4), (1, 4, 7, 3), "real"),
                         "label": ((2, 1, 4, 4), (1, 1, 7, 3), ("label", 4))}),
    "Split": ('layer { name: "l" type: "Split" bottom: "data" top: "out" top: "out2" }', X),
    "TanH": ('layer { name: "l" type: "TanH" bottom: "data" top: "out" }', X),
}
# Layers whose tops come from their input, not from a bottom: a batch of another shape reshapes
# the net through the same mechanism (test_data.py, test_python_layer.py); DummyData is below.
DATA_DRIVEN = {"Data", "HDF5Data", "ImageData", "MemoryData", "SegData", "SegmentationData", "Python",
               "DummyData"}


def test_every_registered_type_is_covered():
    # netdef's own types (other tests register types of their own)
    own = {t for t in netdef.known_types() if layer_class(t).__module__.startswith("netdef.")}
    assert own == set(CASES) | DATA_DRIVEN


def _net_text(layers, inputs, which, force_backward=True):
    shapes = "".join("shape { %s } " % " ".join(f"dim: {d}" for d in spec[which])
                     for spec in inputs.values())
    tops = " ".join(f'top: "{n}"' for n in inputs)
    head = f'name: "t" force_backward: {str(force_backward).lower()}\n'
    return head + f'layer {{ name: "in" type: "Input" {tops} input_param {{ {shapes}}} }}\n' + layers


def _values(rng, shape, kind):
    if kind == "real":
        return rng.uniform(-1, 1, shape)
    if kind == "pos":
        return rng.uniform(0.5, 1.5, shape)
    return rng.integers(0, kind[1], shape).astype(float)


def _run(net, arrays, top_diffs):
    for name, a in arrays.items():
        net.blobs[name].data[...] = a
    net.forward()
    net.clear_param_diffs()
    for name, d in top_diffs.items():
        net.blobs[name].diff[...] = d
    net.backward()


def _computes_in_place(type_):
    return type_ != "Input" and layer_class(type_).in_place_ok and len(CASES[type_][1]) == 1


@pytest.mark.parametrize("type_, in_place", [(t, False) for t in sorted(CASES)] +
                         [(t, True) for t in sorted(CASES) if _computes_in_place(t)],
                         ids=lambda v: v if isinstance(v, str) else ("in_place" if v else ""))
def test_reshaped_net_equals_fresh_net(type_, in_place):
    layers, inputs = CASES[type_]
    if in_place:
        # the same layer computing in place on a copy of its input
        layers = ('layer { name: "copy" type: "Power" bottom: "data" top: "mid" }\n'
                  + layers.replace('bottom: "data" top: "out"', 'bottom: "mid" top: "mid"')
                  + '\nlayer { name: "post" type: "Power" bottom: "mid" top: "out" }')
    phase = netdef.TEST if type_ == "Dropout" else netdef.TRAIN
    rng = np.random.default_rng(len(type_))
    old = netdef.Net(_net_text(layers, inputs, 0), phase, dtype=np.float64)
    _run(old, {n: _values(rng, s[0], s[2]) for n, s in inputs.items()}, {})
    for name, spec in inputs.items():
        old.blobs[name].reshape(*spec[1])
    fresh = netdef.Net(_net_text(layers, inputs, 1), phase, dtype=np.float64)
    for name, blobs in fresh.params.items():
        for mine, theirs in zip(old.params[name], blobs):
            theirs.data[...] = mine.data
    arrays = {n: _values(rng, s[1], s[2]) for n, s in inputs.items()}
    diffs = {n: rng.uniform(-1, 1, fresh.blobs[n].shape) for n in fresh.outputs
             if fresh.blob_loss_weights.get(n, 0) == 0}
    _run(old, arrays, diffs)
    _run(fresh, arrays, diffs)
    for name, blob in fresh.blobs.items():
        assert old.blobs[name].shape == blob.shape, name
        np.testing.assert_allclose(old.blobs[name].data, blob.data, rtol=1e-12, atol=1e-12, err_msg=name)
        if name in fresh.inputs and type_ not in ("Accuracy", "ArgMax"):
            np.testing.assert_allclose(old.blobs[name].diff, blob.diff, rtol=1e-12, atol=1e-12,
                                       err_msg=name)
    for name, blobs in fresh.params.items():
        for k, (mine, theirs) in enumerate(zip(old.params[name], blobs)):
            np.testing.assert_allclose(mine.diff, theirs.diff, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}[{k}]")


def test_dummy_data_top_reshaped_by_the_user_feeds_the_net():
    text = ('name: "d" layer { name: "data" type: "DummyData" top: "data" dummy_data_param { '
            'shape { dim: 2 dim: 3 dim: 20 dim: 20 } data_filler { type: "gaussian" } } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
            '{ num_output: 2 kernel_size: 3 ' + FILL + ' } }\n'
            'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }')
    net = netdef.Net(text, netdef.TEST, dtype=np.float64)
    net.forward()
    net.blobs["data"].reshape(1, 3, 12, 9)
    out = net.forward()
    assert out["c"].shape == (1, 2, 10, 7)
    ref = netdef.Net(text.replace("dim: 2 dim: 3 dim: 20 dim: 20", "dim: 1 dim: 3 dim: 12 dim: 9"),
                     netdef.TEST, dtype=np.float64)
    for name in ref.params:
        for a, b in zip(net.params[name], ref.params[name]):
            b.data[...] = a.data
    ref.blobs["data"].data[...] = net.blobs["data"].data
    ref.forward(start="c")
    np.testing.assert_allclose(net.blobs["c"].data, ref.blobs["c"].data, rtol=1e-12)
    net.reshape()  # as Caffe's DummyData: the user's shape stays
    assert net.blobs["data"].shape == (1, 3, 12, 9) and net.blobs["c"].shape == (1, 2, 10, 7)


def test_dummy_data_constant_top_is_filled_at_its_new_shape():
    text = ('name: "d" layer { name: "data" type: "DummyData" top: "data" dummy_data_param { '
            'shape { dim: 1 dim: 2 dim: 3 dim: 3 } data_filler { type: "constant" value: 7 } } }')
    net = netdef.Net(text, netdef.TEST)
    net.blobs["data"].reshape(4, 2, 5, 5)
    net.forward()
    assert (net.blobs["data"].data == 7).all()


TINY = ('name: "t" layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 1 dim: 20 dim: 20 } } }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
        '{ num_output: 2 kernel_size: 3 ' + FILL + ' } }\n'
        'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'
        'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')


def test_the_issue_case_20x20_declared_12x9_fed():
    net = netdef.Net(TINY, netdef.TEST)
    net.blobs["data"].reshape(1, 1, 12, 9)
    net.blobs["data"].data[...] = 1
    assert net.forward()["p"].shape == (1, 2, 5, 4)  # conv 10x7, pooled (ceil) 5x4


def test_forward_ranges_reshape_the_layers_they_run():
    net = netdef.Net(TINY, netdef.TEST)
    net.blobs["data"].reshape(1, 1, 12, 9)
    net.forward(end="c")
    assert net.blobs["c"].shape == (1, 2, 10, 7)
    assert net.blobs["p"].shape == (1, 2, 9, 9)  # not run: Caffe leaves it too
    net.forward(start="r")
    assert net.blobs["p"].shape == (1, 2, 5, 4)
    net.blobs["data"].reshape(2, 1, 8, 8)
    net.backward()  # backward alone also brings the layers to the new shapes
    assert net.blobs["c"].diff.shape == (2, 2, 6, 6) and net.blobs["p"].shape == (2, 2, 3, 3)


def test_user_reshaping_an_intermediate_blob_is_undone_by_its_layer():
    net = netdef.Net(TINY, netdef.TEST)
    net.blobs["c"].reshape(1, 2, 4, 4)  # Caffe: the producing layer reshapes it back
    net.forward()
    assert net.blobs["c"].shape == (1, 2, 18, 18) and net.blobs["p"].shape == (1, 2, 9, 9)


def test_a_reshape_that_does_not_fit_names_the_layer():
    net = netdef.Net(TINY, netdef.TEST)
    net.blobs["data"].reshape(1, 1, 2, 2)
    with pytest.raises(netdef.NetdefError, match="'c'"):
        net.forward()


def test_nothing_is_reshaped_when_no_shape_changed(monkeypatch):
    net = netdef.Net(TINY, netdef.TEST)
    net.forward()
    calls = []
    for layer in net.layers:
        monkeypatch.setattr(layer, "reshape", lambda b, t, n=layer.name: calls.append(n))
    net.forward()
    net.backward()
    net.blobs["data"].reshape(1, 1, 20, 20)  # same shape: no change
    net.forward()
    assert calls == []


def test_fcn_inference_recipe_on_an_image_of_another_size():
    # FCN's infer.py: reshape the input to the image, fill it, forward; the score map must be
    # the image's size (the crops follow), and equal to a net declared at that size.
    import os

    deploy = os.path.join(os.path.dirname(__file__), "..", "models", "fcn8s-mini", "deploy.prototxt")
    net = netdef.Net(deploy, netdef.TEST)
    image = np.random.default_rng(0).uniform(-50, 50, (1, 3, 60, 41)).astype(np.float32)
    net.blobs["data"].reshape(*image.shape)
    net.blobs["data"].data[...] = image
    net.forward()
    score = net.blobs["score"].data.copy()
    assert score.shape[2:] == (60, 41)
    text = open(deploy).read().replace("dim: 128\n      dim: 128", "dim: 60\n      dim: 41")
    assert "dim: 60" in text
    fresh = netdef.Net(text, netdef.TEST)
    for name, blobs in net.params.items():
        for a, b in zip(blobs, fresh.params[name]):
            b.data[...] = a.data
    fresh.blobs["data"].data[...] = image
    fresh.forward()
    np.testing.assert_allclose(score, fresh.blobs["score"].data, rtol=1e-5, atol=1e-5)
