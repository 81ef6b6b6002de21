"""Fuzzing the prototxt path: mutated nets must build or raise a NetdefError.

Seeds: examples/mlp.prototxt, every models/*/*.prototxt, the published FCN prototxts (when
../shared/data/fcn-reference is present) as they are and shrunk to a size that builds in
milliseconds (same graph, fewer channels, 64x64 input; see fuzzlib.shrink_fcn), and a small
net with weights inside the prototxt. Each case parses the text, builds the Net in-process
(blobs above fuzzlib.FUZZ_BLOB_BYTES are refused before allocation), computes the coordinate
maps, and runs forward and backward when the net is small.
"""
import glob
import os

import numpy as np
import pytest

import fuzzlib
from fuzzlib import fuzz_budget  # noqa: F401  (autouse: budget, seed, data dir)
import netdef
from netdef import coord_map, proto
from netdef import netdef_pb2 as pb

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FCN_REFERENCE = os.path.join(ROOT, "..", "shared", "data", "fcn-reference")

# protobuf warns about invalid escapes such as "\777" that the mutator writes on purpose.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]  # NaN/inf weights, on purpose

TINY_WITH_WEIGHTS = """
name: "tiny"
layer { name: "in" type: "Input" top: "x" top: "y" input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } shape { dim: 2 dim: 1 dim: 3 dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 2 kernel_size: 3 pad: 0 stride: 1 }
  blobs { shape { dim: 2 dim: 3 dim: 3 dim: 3 } data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6
          data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6 data: 0.1 data: 0.2 data: 0.3 data: 0.4
          data: 0.5 data: 0.6 data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6 data: 0.1 data: 0.2
          data: 0.3 data: 0.4 data: 0.5 data: 0.6 data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6
          data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6 data: 0.1 data: 0.2 data: 0.3 data: 0.4
          data: 0.5 data: 0.6 data: 0.1 data: 0.2 data: 0.3 data: 0.4 data: 0.5 data: 0.6 }
  blobs { num: 1 channels: 1 height: 1 width: 2 data: 0.5 data: -0.5 } }
layer { name: "pool" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 1 } }
layer { name: "up" type: "Deconvolution" bottom: "p" top: "u" param { lr_mult: 0 }
  convolution_param { num_output: 2 group: 2 kernel_size: 4 stride: 2 bias_term: false weight_filler { type: "bilinear" } } }
layer { name: "crop" type: "Crop" bottom: "u" bottom: "x" top: "uc" crop_param { axis: 2 offset: 0 } }
layer { name: "score" type: "Convolution" bottom: "uc" top: "s" convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "sc" type: "Crop" bottom: "s" bottom: "y" top: "sy" crop_param { axis: 2 offset: 1 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sy" bottom: "y" top: "loss" loss_param { ignore_label: 255 normalize: false } }
"""


def _seeds():
    seeds = {"mlp": open(os.path.join(ROOT, "examples", "mlp.prototxt")).read(), "tiny": TINY_WITH_WEIGHTS}
    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "*.prototxt"))):
        name = "models/" + os.path.relpath(path, os.path.join(ROOT, "models"))
        # The published FCN files below cover the full-size parse; these build shrunk.
        seeds[name if "solver" in name else name + " (shrunk)"] = (open(path).read() if "solver" in name
                                                                   else fuzzlib.shrink_fcn(open(path).read()))
    for path in sorted(glob.glob(os.path.join(FCN_REFERENCE, "*", "*.prototxt"))):
        name = "fcn-reference/" + os.path.relpath(path, FCN_REFERENCE)
        text = open(path).read()
        seeds[name] = text
        if "solver" not in name:
            seeds[name + " (shrunk)"] = fuzzlib.shrink_fcn(text)
    return seeds


SEEDS = _seeds()



def _is_solver(name):
    return os.path.basename(name.split(" ")[0]).startswith("solver")


def build_and_run(path, phase):
    net = netdef.Net(path, phase)
    coord_map.compute(net.param)
    total = sum(b.count for b in net.blobs.values())
    if total <= 200_000:
        for name in net.inputs:
            blob = net.blobs[name]
            blob.data[...] = np.random.default_rng(0).integers(0, 3, blob.shape)
        net.forward()
        net.backward()


def parse_solver(path):
    msg, _ = proto.read_text(path, pb.SolverParameter)
    return msg


@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_mutated_prototxt_builds_or_raises_netdef_error(seed_name, tmp_path):
    if seed_name.startswith("fcn-reference/") and not os.path.isdir(FCN_REFERENCE):
        pytest.skip("../shared/data/fcn-reference is not present")
    text = SEEDS[seed_name]
    solver = _is_solver(seed_name)
    out = fuzzlib.Outcome(f"prototxt {seed_name}")
    n = fuzzlib.cases(120 if seed_name in ("mlp", "tiny") else 30 if "shrunk" in seed_name else 15)
    path = tmp_path / "fuzz.prototxt"
    for i in range(n):
        rng = fuzzlib.rng_for("prototxt", seed_name, i)
        mutated, descs = fuzzlib.mutate_text(text, rng)
        # Text with undecodable characters (lone surrogates) is written as bytes as they come.
        path.write_bytes(mutated.encode("utf-8", "surrogateescape") if "\ud800" not in mutated
                         else mutated.encode("utf-8", "surrogatepass"))
        phase = rng.choice([netdef.TRAIN, netdef.TEST])
        label = f"{seed_name} case {i}: {'; '.join(descs)}"
        out.run(label, parse_solver if solver else build_and_run, str(path), *(() if solver else (phase,)))
    out.finish()
