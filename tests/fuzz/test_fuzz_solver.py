"""Fuzzing solver files: a mutated solver.prototxt next to a small segmentation net must give a
solver that trains a few iterations (with test passes and snapshots), or a NetdefError.
Iteration counts the mutator makes huge (test_iter, iter_size) are capped before stepping, so
that a case stays short; everything else is used as written."""
import pytest

import fuzzlib
from fuzzlib import fuzz_budget  # noqa: F401  (autouse: budget, seed, data dir)
import netdef
from test_fuzz_binary import SOLVER_NET

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

SEEDS = {
    "sgd-step": """net: "train.prototxt"
test_iter: 2
test_interval: 2
test_initialization: true
base_lr: 0.01
lr_policy: "step"
gamma: 0.1
stepsize: 2
momentum: 0.9
weight_decay: 0.0005
display: 1
average_loss: 2
max_iter: 10
snapshot: 2
snapshot_prefix: "snaps/seg"
random_seed: 5
solver_mode: CPU
""",
    "adam-multistep": """train_net: "train.prototxt"
test_net: "train.prototxt"
test_iter: 1
test_interval: 3
type: "Adam"
base_lr: 0.001
momentum: 0.9
momentum2: 0.999
delta: 1e-8
lr_policy: "multistep"
stepvalue: 1
stepvalue: 2
gamma: 0.5
iter_size: 2
clip_gradients: 1.0
regularization_type: "L1"
weight_decay: 0.001
max_iter: 10
snapshot: 3
snapshot_prefix: "snaps/"
snapshot_format: BINARYPROTO
""",
    "rmsprop-poly": """net: "train.prototxt"
solver_type: RMSPROP
rms_decay: 0.98
base_lr: 0.01
lr_policy: "poly"
power: 0.9
max_iter: 10
display: 2
snapshot: 0
snapshot_after_train: false
""",
}



def train_a_little(path):
    import netdef.solver

    solver = netdef.solver.get_solver(str(path))
    try:
        p = solver.param
        p.iter_size = min(p.iter_size, 3)
        for k in range(len(p.test_iter)):
            p.test_iter[k] = min(p.test_iter[k], 2)
        solver.step(4)
        float(solver.learning_rate)
    finally:
        for net in [solver.net] + list(solver.test_nets):
            for layer in net.layers:
                getattr(layer, "close", lambda: None)()


@pytest.mark.parametrize("seed_name", sorted(SEEDS))
def test_mutated_solver_trains_or_raises_netdef_error(seed_name, tmp_path):
    (tmp_path / "train.prototxt").write_text(SOLVER_NET)
    (tmp_path / "snaps").mkdir()
    out = fuzzlib.Outcome(f"solver {seed_name}")
    path = tmp_path / "solver.prototxt"
    for i in range(fuzzlib.cases(60)):
        rng = fuzzlib.rng_for("solver", seed_name, i)
        mutated, descs = fuzzlib.mutate_text(SEEDS[seed_name], rng)
        path.write_bytes(mutated.encode("utf-8", "surrogatepass"))
        netdef.set_mode_cpu()
        out.run(f"solver {seed_name} case {i}: {'; '.join(descs)}", train_a_little, path)
    out.finish()


def test_unmutated_solver_seeds_train(tmp_path):
    (tmp_path / "train.prototxt").write_text(SOLVER_NET)
    (tmp_path / "snaps").mkdir()
    for text in SEEDS.values():
        (tmp_path / "solver.prototxt").write_text(text)
        train_a_little(tmp_path / "solver.prototxt")
