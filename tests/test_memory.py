"""Memory behaviour the benchmarks rely on: TEST-phase nets allocate no gradients, in-place
ReLU/Dropout share their bottom's storage, the convolution workspace is shared, and a train step
allocates nothing large once warm."""
import os
import sys
import tracemalloc

import numpy as np
import pytest

import netdef
from netdef.layers import base_conv

MODELS = os.path.join(os.path.dirname(__file__), "..", "models")


def fcn_nets(size=48, classes=3):
    sys.path.insert(0, MODELS)
    try:
        import fcn as fcn_models
    finally:
        sys.path.remove(MODELS)
    from netdef.coord_map import fill_crop_offsets
    from netdef.net_spec import L

    def train_inputs(n):
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
        n.label = L.Input(shape=dict(dim=[1, 1, size, size]))

    def deploy_input(n):
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))

    train = fill_crop_offsets(fcn_models.fcn("fcn8s-mini", classes, train_inputs, "train").to_proto("t"))
    deploy = fill_crop_offsets(fcn_models.fcn("fcn8s-mini", classes, deploy_input, "deploy").to_proto("d"))
    return train, deploy


@pytest.fixture(scope="module")
def nets():
    return fcn_nets()


def test_test_phase_forward_allocates_no_diff(nets):
    _, deploy = nets
    net = netdef.Net(deploy, netdef.TEST)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.forward()
    net.forward()
    with_diff = [name for name, b in net.blobs.items() if b.has_diff]
    params = [f"{name}[{i}]" for name, ps in net.params.items() for i, p in enumerate(ps) if p.has_diff]
    assert with_diff == [] and params == []


def test_in_place_relu_and_dropout_share_storage(nets):
    train, _ = nets
    net = netdef.Net(train, netdef.TRAIN)
    # relu1_1 computes conv1_1 in place: no blob of its own, one buffer
    assert net.top_names["relu1_1"] == net.bottom_names["relu1_1"] == ["conv1_1"]
    assert net.top_names["drop6"] == ["fc6"]
    i = net._layer_names.index("relu1_1")
    assert net._top_ids[i][0] is net._bottom_ids[i][0]
    rng = np.random.default_rng(1)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, 3, net.blobs["label"].shape)
    net.forward()
    assert (net.blobs["conv1_1"].data >= 0).all()  # rectified in place


def test_train_step_allocates_nothing_large_once_warm(nets):
    train, _ = nets
    from netdef import netdef_pb2 as pb
    from netdef.solver import SGDSolver

    sp = pb.SolverParameter(base_lr=1e-3, momentum=0.9, lr_policy="fixed", display=0, max_iter=100,
                            type="SGD")
    sp.net_param.CopyFrom(train)
    solver = SGDSolver(sp)
    net = solver.net
    rng = np.random.default_rng(2)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, 3, net.blobs["label"].shape)
    solver.step(2)
    largest_param = max(p.data.nbytes for p in net.learnable_params)
    largest_blob = max(b.data.nbytes for b in net.blobs.values())
    tracemalloc.start()
    try:
        solver.step(1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Temporaries the size of a layer's output may remain (layers outside the convolution), but
    # nothing proportional to the weights (the gradient accumulation goes through GEMM's beta).
    assert peak < max(largest_blob, largest_param // 4) + (1 << 20)


def test_conv_workspace_is_shared_between_layers(nets):
    train, _ = nets
    backend = netdef.get_backend("cpu")
    backend._workspaces.clear()
    net = netdef.Net(train, netdef.TRAIN)
    net.blobs["data"].data[...] = 1.0
    net.forward()
    net.backward()
    keys = [k for k in backend._workspaces if k == (np.dtype(np.float32).str, "col")]
    assert len(keys) == 1  # one buffer for every convolution of the net
    convs = [layer for layer in net.layers if isinstance(layer, base_conv.BaseConvolutionLayer)
             and layer.path == "im2col"]
    biggest = max(layer.K * layer.L for layer in convs)
    assert backend._workspaces[keys[0]].size >= min(biggest, backend.col_budget) // 2
