"""The one finite-difference gradient checker for every layer.

Objective: J = sum_t <r_t, top_t> with fixed random r_t, so dJ/dtop_t = r_t. The analytic
gradient of every bottom element and every learnable param is compared with the central
difference (J(x + h) - J(x - h)) / 2h, in float64, by Caffe's criterion
|a - n| <= threshold * max(|a|, |n|, 1).

The Layer contract is enforced on the way: before backward every param diff holds a random
prefill that the analytic gradient must come back on top of (param gradients are added), and
every bottom diff holds NaN that backward must overwrite (bottom gradients are written).

Layers that draw random numbers in forward (Dropout) get the same draws at every evaluation:
the backend generator is reseeded before each forward.
"""
import numpy as np
from google.protobuf import text_format

import netdef
from netdef import netdef_pb2 as pb
from netdef.blob import Blob
from netdef.layers import create_layer


def layer_param(text):
    """LayerParameter from prototxt text (the inside of `layer { ... }`)."""
    return text_format.Parse(text, pb.LayerParameter())


def build_layer(param, bottom_arrays, phase=netdef.TRAIN, dtype=np.float64, backend=None,
                num_tops=None, seed=1701):
    """Create, set up and reshape a layer on fresh bottom/top blobs."""
    if isinstance(param, str):
        param = layer_param(param)
    backend = backend or netdef.get_backend("cpu")
    backend.seed(seed)
    layer = create_layer(param, phase, backend, dtype)
    bottoms = []
    for i, a in enumerate(bottom_arrays):
        b = Blob(np.shape(a), dtype=dtype, backend=backend, name=f"bottom{i}")
        b.data[...] = backend.asarray(a, dtype=dtype)
        bottoms.append(b)
    n_top = num_tops if num_tops is not None else max(len(param.top), layer.exact_num_top or 1)
    tops = [Blob((), dtype=dtype, backend=backend, name=f"top{i}") for i in range(n_top)]
    layer.check_blob_counts(bottoms, tops)
    layer.setup(bottoms, tops)
    layer.param_propagate_down = [True] * len(layer.blobs)
    layer.reshape(bottoms, tops)
    return layer, bottoms, tops


def forward(layer, bottoms, tops, seed=1701):
    layer.backend.seed(seed)
    layer.forward(bottoms, tops)
    return [layer.backend.to_numpy(t.data).copy() for t in tops]


def check_gradients(param, bottom_arrays, *, phase=netdef.TRAIN, check_bottoms=None,
                    check_params=True, step=1e-3, threshold=1e-3, seed=0, num_tops=None,
                    max_checks=None, backend=None):
    """Compare analytic and numeric gradients; raises AssertionError naming the first mismatch.

    check_bottoms: indices of bottoms to check (default: all the layer allows backward to).
    max_checks: check at most this many randomly chosen elements per blob (None: all)."""
    rng = np.random.default_rng(seed)
    layer, bottoms, tops = build_layer(param, bottom_arrays, phase, np.float64, backend, num_tops)
    xp = layer.xp
    fwd_seed = 4242

    def objective():
        outs = forward(layer, bottoms, tops, fwd_seed)
        return sum(float(np.sum(o * r)) for o, r in zip(outs, weights))

    outs = forward(layer, bottoms, tops, fwd_seed)
    weights = [rng.standard_normal(o.shape) for o in outs]
    if check_bottoms is None:
        check_bottoms = [i for i in range(len(bottoms)) if layer.allow_backward(i)]
    propagate = [i in check_bottoms for i in range(len(bottoms))]
    for t, w in zip(tops, weights):
        t.diff[...] = xp.asarray(w)
    # Param gradients are added to diff (shared params, iter_size), so backward starts from a
    # known non-zero prefill that is subtracted afterwards: a layer that assigns loses it.
    fill_rng = np.random.default_rng(seed + 1)  # own stream: `rng` picks the checked elements
    prefill = [fill_rng.uniform(-1.0, 1.0, p.shape) for p in layer.blobs]
    for p, f in zip(layer.blobs, prefill):
        p.diff[...] = xp.asarray(f)
    # Bottom diffs are written, never added: NaN survives neither a missed element nor a +=.
    for b in bottoms:
        b.diff[...] = np.nan if xp is np else xp.nan
    layer.backward(tops, propagate, bottoms)
    targets = [(f"bottom[{i}]", bottoms[i], None) for i in check_bottoms]
    if check_params:
        targets += [(f"param[{i}]", p, f) for i, (p, f) in enumerate(zip(layer.blobs, prefill))]
    checked = 0
    for label, blob, before in targets:
        analytic = layer.backend.to_numpy(blob.diff).copy().reshape(-1)
        if before is not None:
            analytic -= before.reshape(-1)
        flat = blob.data.reshape(-1)
        idx = np.arange(flat.size)
        if max_checks is not None and flat.size > max_checks:
            idx = rng.choice(flat.size, max_checks, replace=False)
        for j in idx:
            orig = float(flat[j])
            flat[j] = orig + step
            plus = objective()
            flat[j] = orig - step
            minus = objective()
            flat[j] = orig
            numeric = (plus - minus) / (2 * step)
            a = analytic[j]
            scale = max(abs(a), abs(numeric), 1.0)
            if not abs(a - numeric) <= threshold * scale:
                raise AssertionError(
                    f"{layer.type} gradient mismatch at {label} element {j} "
                    f"(index {tuple(int(k) for k in np.unravel_index(j, blob.shape))} of shape "
                    f"{blob.shape}): analytic {float(a)!r}, numeric {float(numeric)!r}")
            checked += 1
    return checked


def compare_devices(param, bottom_arrays, *, phase=netdef.TRAIN, dtype=np.float32, rtol=1e-4,
                    atol=1e-5, num_tops=None):
    """Run forward and backward on the CPU and on the GPU from the same inputs, params and
    top diffs; assert that tops, bottom diffs and param diffs agree. Used by `gpu` tests (on
    the emulated GPU backend of conftest.py where there is no device)."""
    results = []
    rng = np.random.default_rng(7)
    weights = None
    for which in ("cpu", "gpu"):
        backend = netdef.get_backend(which)
        layer, bottoms, tops = build_layer(param, bottom_arrays, phase, dtype, backend, num_tops)
        outs = forward(layer, bottoms, tops)
        if weights is None:
            weights = [rng.standard_normal(o.shape) for o in outs]
        for t, w in zip(tops, weights):
            t.diff[...] = backend.asarray(w, dtype=dtype)
        for k, p in enumerate(layer.blobs):  # the same non-zero prefill on both: diffs add
            p.diff[...] = backend.asarray(np.full(p.shape, 0.25 * (k + 1)), dtype=dtype)
        prop = [layer.allow_backward(i) for i in range(len(bottoms))]
        layer.backward(tops, prop, bottoms)
        backend.synchronize()
        results.append(outs + [backend.to_numpy(b.diff) for b, p in zip(bottoms, prop) if p]
                       + [backend.to_numpy(p.diff) for p in layer.blobs])
    for k, (c, g) in enumerate(zip(*results)):
        np.testing.assert_allclose(g, c, rtol=rtol, atol=atol, err_msg=f"GPU vs CPU, array {k}")
