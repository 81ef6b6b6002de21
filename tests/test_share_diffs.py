"""Net.share_diffs (on for a Solver's training net): the diffs of the blobs between layers share
memory by lifetime. Gradients are the same as with a diff per blob, for FCN-8s's topology
(splits, in-place ReLU/Dropout, Eltwise, Crop, Deconvolution, SoftmaxWithLoss); the pool holds
much less than the blobs it serves; a diff that no layer writes still reads as zeros; inputs,
outputs and loss tops keep their own."""
import os
import sys

import numpy as np

import netdef
from netdef.coord_map import fill_crop_offsets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))


def fcn_train_net(size=48, classes=3):
    import fcn as fcn_models
    from netdef.net_spec import L

    def inputs(n):
        n.data = L.Input(shape=dict(dim=[2, 3, size, size]))
        n.label = L.Input(shape=dict(dim=[2, 1, size, size]))

    param = fill_crop_offsets(fcn_models.fcn("fcn8s-mini", classes, inputs, "train").to_proto("mini"))
    netdef.set_random_seed(3)
    net = netdef.Net(param, netdef.TRAIN, dtype=np.float64)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].shape)
    net.blobs["label"].data[...] = rng.integers(0, classes, net.blobs["label"].shape)
    return net


def gradients(net):
    for p in net.learnable_params:
        p.diff[...] = 0
    netdef.set_random_seed(5)  # the same dropout masks in every run
    loss = net.forward_backward()
    return loss, [p.diff.copy() for p in net.learnable_params], net.blobs["data"].diff.copy()


def test_same_gradients_with_far_less_diff_memory():
    net = fcn_train_net()
    loss0, grads0, ddata0 = gradients(net)
    net.share_diffs = True
    loss1, grads1, ddata1 = gradients(net)
    assert loss1 == loss0
    for a, b in zip(grads0, grads1):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ddata0, ddata1)
    shared = net._diff_lifetimes()
    assert len(shared) > 20
    served = sum(b.count for b in shared)
    pooled = sum(buf.size for buf in net._diff_pool.buffers)
    assert pooled < 0.5 * served, (pooled, served)
    # blobs whose lives overlap never share memory
    for a, (fa, la) in shared.items():
        for b, (fb, lb) in shared.items():
            if a is not b and fa <= lb and fb <= la:
                assert not np.shares_memory(a.diff, b.diff), (a.name, b.name)
    # a second pass reuses the plan
    pool = [id(b) for b in net._diff_pool.buffers]
    loss2, grads2, _ = gradients(net)
    assert loss2 == loss0 and all(np.array_equal(a, b) for a, b in zip(grads0, grads2))
    assert [id(b) for b in net._diff_pool.buffers] == pool


def test_a_smaller_batch_replans_in_the_same_buffers():
    """Reshaped to smaller inputs (FCN on images of varying size), the net plans again but keeps
    the buffers it has, and its gradients match a net that never shared."""
    net = fcn_train_net(size=48)
    net.share_diffs = True
    gradients(net)
    pool = {id(b) for b in net._diff_pool.buffers}
    ref = fcn_train_net(size=40)
    for n in (net, ref):
        n.blobs["data"].reshape(2, 3, 40, 40)
        n.blobs["label"].reshape(2, 1, 40, 40)
        n.reshape()
        n.blobs["data"].data[...] = np.linspace(-1, 1, n.blobs["data"].count).reshape(2, 3, 40, 40)
        n.blobs["label"].data[...] = np.arange(n.blobs["label"].count).reshape(2, 1, 40, 40) % 3
    ref.copy_from(net.to_proto())  # same weights
    got, want = gradients(net), gradients(ref)
    assert got[0] == want[0]
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)
    assert {id(b) for b in net._diff_pool.buffers} <= pool


def test_inputs_outputs_and_loss_tops_keep_their_own_diffs():
    net = fcn_train_net()
    net.share_diffs = True
    gradients(net)
    shared = net._diff_lifetimes()
    for name in ["data", "label", "loss"]:
        assert net.blobs[name] not in shared


def test_a_diff_no_layer_writes_still_reads_as_zeros():
    text = """
      input: 'x' input_shape { dim: 2 dim: 3 dim: 5 dim: 5 }
      input: 'y' input_shape { dim: 2 dim: 4 dim: 3 dim: 3 }
      layer { name: 'c1' type: 'Convolution' bottom: 'x' top: 'h'
              convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: 'gaussian' } } }
      layer { name: 'c2' type: 'Convolution' bottom: 'h' top: 'o' propagate_down: false
              convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: 'gaussian' } } }
      layer { name: 'loss' type: 'EuclideanLoss' bottom: 'o' bottom: 'y' top: 'loss' }"""
    results = []
    for share in (False, True):
        netdef.set_random_seed(1)
        net = netdef.Net(text, netdef.TRAIN, dtype=np.float64)
        net.share_diffs = share
        net.blobs["x"].data[...] = 1.0
        net.blobs["h"].diff[...] = np.nan if share else 0  # garbage a shared pool might hold
        net.forward_backward()
        results.append([p.diff.copy() for p in net.learnable_params])
        assert net.blobs["h"] not in net._diff_lifetimes()
    assert not results[1][0].any()  # c1 saw a zero top diff, not the garbage
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_the_solver_shares_its_training_nets_diffs(tmp_path):
    solver_text = """
      base_lr: 0.1 lr_policy: 'fixed' max_iter: 3 type: 'SGD' momentum: 0.9 display: 0
      net_param {
        layer { name: 'in' type: 'DummyData' top: 'x' top: 'y'
                dummy_data_param { shape { dim: 4 dim: 6 } shape { dim: 4 dim: 2 }
                                   data_filler { type: 'gaussian' } data_filler { type: 'gaussian' } } }
        layer { name: 'fc1' type: 'InnerProduct' bottom: 'x' top: 'h'
                inner_product_param { num_output: 5 weight_filler { type: 'xavier' } } }
        layer { name: 'relu' type: 'ReLU' bottom: 'h' top: 'h' }
        layer { name: 'fc2' type: 'InnerProduct' bottom: 'h' top: 'o'
                inner_product_param { num_output: 2 weight_filler { type: 'xavier' } } }
        layer { name: 'loss' type: 'EuclideanLoss' bottom: 'o' bottom: 'y' top: 'loss' } }
      random_seed: 4"""
    finals = []
    for share in (True, False):
        s = netdef.get_solver(solver_text)
        assert s.net.share_diffs
        s.net.share_diffs = share
        s.step(3)
        finals.append([p.data.copy() for p in s.net.learnable_params])
    for a, b in zip(*finals):
        np.testing.assert_array_equal(a, b)


def test_turning_it_off_gives_every_blob_its_own_diff_again():
    net = fcn_train_net()
    net.share_diffs = True
    gradients(net)
    shared = list(net._diff_lifetimes())
    net.share_diffs = False
    gradients(net)
    for i, a in enumerate(shared):
        for b in shared[i + 1:]:
            assert not np.shares_memory(a.diff, b.diff), (a.name, b.name)
    net.share_diffs = True  # and on again
    loss, grads, _ = gradients(net)
    assert net._diff_pool.buffers


def test_the_planning_rule_on_a_chain():
    """memory.diff_lifetimes and DiffPool without a Net: in a chain a <- b <- c <- d (backward
    order), a blob lives from the step that writes its diff to the step that reads it, so
    blobs two steps apart share, and a kept blob or one no step writes is left alone."""
    from netdef.backend import get_backend
    from netdef.blob import Blob
    from netdef.memory import DiffPool, diff_lifetimes

    a, b, c, d, e = (Blob((n,), name=name) for n, name in zip((4, 6, 5, 3, 2), "abcde"))
    steps = [([a], [(b, True)]), ([b], [(c, True)]), ([c], [(d, True), (e, False)])]
    lives = diff_lifetimes(steps, keep={id(a)})
    assert lives == {b: (0, 1), c: (1, 2), d: (2, 2)}  # a kept, e never written
    pool = DiffPool(get_backend(), np.float32)
    calls = []
    pool.plan("shapes", lambda: calls.append(1) or lives)
    assert sorted(buf.size for buf in pool.buffers) == [5, 6]  # b and d share, c alone
    assert np.shares_memory(b.diff, d.diff) and not np.shares_memory(b.diff, c.diff)
    pool.plan("shapes", lambda: calls.append(1) or lives)
    assert len(calls) == 1  # same shapes: the plan stands
    pool.release()
    assert pool.buffers == [] and not b.has_diff and not np.shares_memory(b.diff, d.diff)
