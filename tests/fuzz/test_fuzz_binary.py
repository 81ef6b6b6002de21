"""Fuzzing the binary path: damaged .caffemodel and .solverstate bytes must load or raise a
NetdefError, and a declared shape must never be allocated before it is checked.

Seeds are written by netdef itself (the MLP example, a small conv/deconv/crop net, the shrunk
FCN-8s when ../shared/data/fcn-reference is present), one written field by field in Caffe's
legacy V1 format (tests/wire.py), and a SolverState with history blobs. Three mutators:
blind bytes (truncation, bit flips, spliced bytes), wire-aware (a field's varint, length prefix,
wire type or number changed) and message-level (blob shapes huge / negative / wrong length,
data moved between float and double, legacy 4-D shapes, layers renamed or duplicated).
"""
import os

import numpy as np
import pytest

import fuzzlib
from fuzzlib import fuzz_budget  # noqa: F401  (autouse: budget, seed, data dir)
import netdef
import wire
from netdef import proto
from netdef import netdef_pb2 as pb
from netdef.blob import set_max_blob_bytes
from test_fuzz_prototxt import FCN_REFERENCE, ROOT, TINY_WITH_WEIGHTS

MLP = os.path.join(ROOT, "examples", "mlp.prototxt")



def _v1_tiny():
    """The tiny net's conv layer as a legacy V1 caffemodel, byte by byte (4-D legacy blobs)."""
    weights = np.arange(54, dtype=np.float32) / 54
    blob_w = (wire.v(1, 2) + wire.v(2, 3) + wire.v(3, 3) + wire.v(4, 3) + wire.packed_f32(5, weights))
    blob_b = wire.v(1, 1) + wire.v(2, 1) + wire.v(3, 1) + wire.v(4, 2) + wire.packed_f32(5, [0.5, -0.5])
    layer = (wire.ld(4, "conv") + wire.v(5, 4) + wire.ld(2, "x") + wire.ld(3, "c")  # 4 = CONVOLUTION
             + wire.ld(6, blob_w) + wire.ld(6, blob_b))
    return wire.ld(1, "tiny") + wire.ld(2, layer)


def _solverstate(net):
    st = pb.SolverState(iter=1000, current_step=2, learned_net="snap_iter_1000.caffemodel")
    for blob in net.learnable_params:
        proto.blob_to_proto(blob.to_numpy() * 0.5, st.history.add())
    return st.SerializeToString()


class Seed:
    def __init__(self, name, prototxt, data=None, kind="caffemodel"):
        self.name, self.prototxt, self.kind = name, prototxt, kind
        self.net = netdef.Net(prototxt, netdef.TEST)
        self.data = data if data is not None else self.net.to_proto().SerializeToString()


def _seeds():
    set_max_blob_bytes(fuzzlib.FUZZ_BLOB_BYTES)
    try:
        seeds = [Seed("mlp", MLP), Seed("tiny", TINY_WITH_WEIGHTS), Seed("tiny-v1", TINY_WITH_WEIGHTS, _v1_tiny())]
        seeds.append(Seed("tiny-solverstate", TINY_WITH_WEIGHTS, _solverstate(seeds[1].net), "solverstate"))
        fcn = os.path.join(FCN_REFERENCE, "voc-fcn8s", "deploy.prototxt")
        if os.path.exists(fcn):
            seeds.append(Seed("fcn8s-shrunk", fuzzlib.shrink_fcn(open(fcn).read())))
        return {s.name: s for s in seeds}
    finally:
        set_max_blob_bytes(None)


_SEEDS = {}


def seed(name):
    if not _SEEDS:
        _SEEDS.update(_seeds())
    if name not in _SEEDS:
        pytest.skip(f"seed {name} needs ../shared/data/fcn-reference")
    return _SEEDS[name]


SEED_NAMES = ["mlp", "tiny", "tiny-v1", "tiny-solverstate", "fcn8s-shrunk"]


# ---------------------------------------------------------------------------------------------
# Message-level mutations of a NetParameter / SolverState


def _blob_protos(msg):
    if isinstance(msg, pb.SolverState):
        return list(msg.history)
    return [b for lp in list(msg.layer) + list(msg.layers) for b in lp.blobs]


HUGE_DIMS = [2**31 - 1, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, -1, -(2**63), 0, 1 << 20]


def mutate_message(data, kind, rng):
    msg = pb.SolverState() if kind == "solverstate" else pb.NetParameter()
    msg.ParseFromString(data)
    blobs = _blob_protos(msg)
    ops = ["dims", "dims", "ndims", "data", "double", "legacy", "diff", "blobcount", "rename", "duplayer", "type"]
    op = rng.choice(ops if kind == "caffemodel" else ops[:7] + ["json"] * 4)
    if not blobs and op != "json":
        op = "rename" if kind == "caffemodel" else "json"
    b = rng.choice(blobs) if blobs else None
    desc = op
    if op == "dims":
        dims = list(b.shape.dim) or [1]
        k = rng.randrange(len(dims))
        dims[k] = rng.choice(HUGE_DIMS)
        b.shape.ClearField("dim")
        b.shape.dim.extend(dims)
        desc = f"shape -> {dims}"
    elif op == "ndims":
        n = rng.choice([0, 1, 5, 33, 100, 100000])
        fill = rng.choice([0, 1, 2])
        b.shape.ClearField("dim")
        b.shape.dim.extend([fill] * n)
        desc = f"shape -> [{fill}] * {n}"
    elif op == "data":
        vals = list(b.data)
        cut = rng.choice([0, 1, len(vals) - 1, len(vals) + 1, 2 * len(vals)])
        vals = (vals * 3)[:max(cut, 0)]
        b.ClearField("data")
        b.data.extend(vals)
        desc = f"data length -> {len(vals)}"
    elif op == "double":
        vals = list(b.data) or list(b.double_data)
        if rng.random() < 0.5:
            b.ClearField("data")
        b.double_data.extend(vals[:rng.choice([len(vals), max(len(vals) - 1, 0)])])
        desc = "data -> double_data"
    elif op == "legacy":
        shape = list(b.shape.dim)
        if rng.random() < 0.7:
            b.ClearField("shape")
        shape = ([1] * 4 + shape)[-4:]
        k = rng.randrange(4)
        shape[k] = rng.choice([2**31 - 1, -1, 0, 1, shape[k] + 1, -(2**31)])
        b.num, b.channels, b.height, b.width = shape
        desc = f"legacy shape {shape}"
    elif op == "diff":
        b.diff.extend([1.0] * rng.choice([1, len(b.data)]))
        desc = "diff added"
    elif op == "json":
        state = _mutate_json(msg.netdef_state, rng)
        msg.netdef_state = state
        desc = f"netdef_state -> {state[:60]!r}"
    elif op in ("blobcount", "rename", "duplayer", "type"):
        layers = [lp for lp in msg.layer] or [lp for lp in msg.layers]
        lp = rng.choice(layers)
        if op == "blobcount":
            if lp.blobs and rng.random() < 0.5:
                del lp.blobs[rng.randrange(len(lp.blobs))]
            else:
                lp.blobs.add().CopyFrom(rng.choice(blobs))
        elif op == "rename":
            lp.name = rng.choice([l.name for l in layers] + ["", "nope"])
        elif op == "duplayer":
            (msg.layer if msg.layer else msg.layers).add().CopyFrom(lp)
        else:
            if msg.layer:
                lp.type = rng.choice(["Convolution", "InnerProduct", "Nope", ""])
            else:
                lp.type = rng.choice([0, 4, 14, 39])
        desc = f"{op} layer {lp.name!r}"
    return msg.SerializeToString(), desc


JSON_VALUES = [None, -1, 0, 2**70, -(2**70), 1.5, float("nan"), "x", "", [], {}, [1, 2], {"epoch": 0},
               True, "PCG64", "MT19937"]


def _mutate_json(raw, rng):
    """netdef_state (JSON) with one value replaced, a key dropped, or broken syntax."""
    import json

    r = rng.random()
    if r < 0.15 or not raw:
        return rng.choice([b"", b"{", b"[" * 100000, b"\xff\xfe", b"null", b"[]", b'{"format": 1}',
                           b'{"format": 1, "rng": 5, "layers": 7}', b'{"format": 1, "layers": {"train": 3}}',
                           b'{"format": "1"}' + b" " * 10, raw[: len(raw) // 2]])
    doc = json.loads(raw)
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + (k,))
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + (i,))
                walk(v, path + (i,))

    walk(doc, ())
    path = rng.choice(paths)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if r < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(JSON_VALUES)
    return json.dumps(doc).encode()


def mutate(data, kind, rng):
    return fuzzlib.mutate_binary(data, rng, lambda d, r: mutate_message(d, kind, r),
                                 bytes_below=0.3, wire_below=0.65)


# ---------------------------------------------------------------------------------------------


def load(s, path):
    if s.kind == "solverstate":
        st = proto.read_binary(path, pb.SolverState, "solverstate")
        for b in st.history:
            proto.proto_to_array(b, np.float32)
    else:
        proto.read_caffemodel(path)
        s.net.copy_from(path)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_mutated_binary_loads_or_raises_netdef_error(name, tmp_path):
    s = seed(name)
    out = fuzzlib.Outcome(f"{s.kind} {name}")
    path = tmp_path / f"fuzz.{s.kind}"
    for i in range(fuzzlib.cases(200)):
        rng = fuzzlib.rng_for("binary", name, i)
        data, descs = mutate(s.data, s.kind, rng)
        path.write_bytes(data)
        out.run(f"{s.kind} {name} case {i}: {'; '.join(descs)}", load, s, str(path))
    out.finish()


def test_unmutated_seeds_load(tmp_path):
    for name in SEED_NAMES:
        if name == "fcn8s-shrunk" and not os.path.isdir(FCN_REFERENCE):
            continue
        s = seed(name)
        path = tmp_path / name
        path.write_bytes(s.data)
        load(s, str(path))


@pytest.mark.parametrize("payload, what", [
    (fuzzlib.deep_groups(10000), "groups"),
    (fuzzlib.deep_messages(10000), "messages"),
    (wire.ld(1, "x") + wire.key(100, 2) + wire.varint(2**62), "huge length"),
    (wire.ld(100, wire.key(1, 2) + wire.varint(2**31)), "nested huge length"),
    (wire.ld(2, wire.key(1, 7)), "wire type 7"),
    (wire.key(0, 0) + wire.varint(1), "field 0"),
    (b"\xff" * 20, "varint too long"),
])
def test_hostile_wire_bytes(tmp_path, payload, what):
    path = tmp_path / "hostile.caffemodel"
    path.write_bytes(payload)
    net = netdef.Net(MLP, netdef.TEST)
    try:
        net.copy_from(str(path))
    except netdef.NetdefError as e:
        assert len(str(e)) < 600
    for kind in (pb.SolverState, pb.NetParameter):
        try:
            proto.read_binary(str(path), kind, "file")
        except netdef.NetdefError:
            pass


@pytest.mark.parametrize("dims", [[2**20, 2**20, 2**20], [2**62, 4], [2**31] * 3, [1 << 40], [3] * 40])
def test_huge_declared_shapes_are_refused_before_allocating(tmp_path, dims, monkeypatch):
    """A blob declaring a huge shape next to little data: refused without allocating anything
    of the declared size (np.zeros / np.empty would fail or overcommit first)."""
    calls = []
    real_zeros, real_empty = np.zeros, np.empty

    def guarded(real):
        def alloc(shape, *a, **k):
            n = int(np.prod(shape, dtype=object)) if np.ndim(shape) else int(shape)
            calls.append(n)
            assert n < 1 << 24, f"allocation of {n} elements from a declared shape"
            return real(shape, *a, **k)
        return alloc

    net = netdef.Net(TINY_WITH_WEIGHTS, netdef.TEST)
    msg = net.to_proto()
    bp = next(lp for lp in msg.layer if lp.name == "conv").blobs[0]
    bp.shape.ClearField("dim")
    bp.shape.dim.extend(dims)
    path = tmp_path / "huge.caffemodel"
    path.write_bytes(msg.SerializeToString())
    monkeypatch.setattr(np, "zeros", guarded(real_zeros))
    monkeypatch.setattr(np, "empty", guarded(real_empty))
    with pytest.raises(netdef.NetdefError, match="conv"):
        net.copy_from(str(path))


# ---------------------------------------------------------------------------------------------
# A real snapshot restored into a real solver (netdef_state JSON: generator and data-reader
# states), then one training step to use what was restored.

SOLVER_NET = """name: "seg"
layer { name: "data" type: "SegmentationData" top: "data" top: "label"
  segmentation_data_param { synthetic: "shapes" split: "train" batch_size: 2 synthetic_size: 16
                            synthetic_train: 6 synthetic_val: 2 synthetic_classes: 3 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "drop" type: "Dropout" bottom: "score" top: "score" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
  loss_param { ignore_label: 255 } }
"""


@pytest.fixture(scope="module")
def solver_snapshot(tmp_path_factory):
    import netdef.solver

    d = tmp_path_factory.mktemp("solver")
    old = os.environ.get("NETDEF_DATA_DIR")
    os.environ["NETDEF_DATA_DIR"] = str(d / "data")
    (d / "train.prototxt").write_text(SOLVER_NET)
    (d / "solver.prototxt").write_text('net: "train.prototxt" base_lr: 0.01 momentum: 0.9 max_iter: 100 '
                                       'lr_policy: "step" stepsize: 3 gamma: 0.5 snapshot_prefix: "snap" '
                                       'random_seed: 1 type: "Adam"')
    try:
        solver = netdef.solver.get_solver(str(d / "solver.prototxt"))
        solver.step(3)
        path = solver.snapshot()
        yield solver, open(path, "rb").read(), d
    finally:
        for layer in solver.net.layers:
            getattr(layer, "close", lambda: None)()
        if old is None:
            os.environ.pop("NETDEF_DATA_DIR", None)
        else:
            os.environ["NETDEF_DATA_DIR"] = old


def test_mutated_solverstate_restores_or_raises_netdef_error(solver_snapshot):
    solver, data, d = solver_snapshot
    out = fuzzlib.Outcome("solverstate restore")
    path = d / "fuzz.solverstate"

    def restore_and_step():
        solver.restore(str(path))
        solver.step(1)

    for i in range(fuzzlib.cases(150)):
        rng = fuzzlib.rng_for("restore", "adam", i)
        mutated, descs = mutate(data, "solverstate", rng)
        path.write_bytes(mutated)
        out.run(f"solverstate restore case {i}: {'; '.join(descs)}", restore_and_step)
    out.finish()
