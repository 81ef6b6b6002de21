"""Solver: update rules and lr policies against hand computations, iter_size, clipping,
regularization, test nets and their printed outputs, seeding, snapshots and exact resume,
signals, non-finite losses, solver file errors."""
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import netdef
from netdef import netdef_pb2 as pb
from netdef.layer import Layer
from netdef.layers import LAYERS, register_layer
from netdef.solver import learning_rate, read_solverstate

F32 = lambda v: float(np.float32(v))  # solver fields are float32 in the schema

# ---------------------------------------------------------------------------------------------
# A tiny data layer for these tests: rows of a fixed regression set, in order (its position is
# its state), plus noise from the backend's host generator when the layer's name says 'noisy'.

RNG = np.random.default_rng(12)
DATA_X = RNG.standard_normal((16, 3))
DATA_Y = DATA_X @ RNG.standard_normal((3, 2)) + 0.5 + 0.1 * RNG.standard_normal((16, 2))

if "SolverTestRows" not in LAYERS:
    @register_layer("SolverTestRows")
    class RowsLayer(Layer):
        exact_num_bottom = 0
        exact_num_top = 2

        def setup(self, bottom, top):
            self.batch = int(self.layer_param.input_param.shape[0].dim[0])
            self.pos = 0
            self.noisy = "noisy" in self.name
            top[0].reshape((self.batch, DATA_X.shape[1]))
            top[1].reshape((self.batch, DATA_Y.shape[1]))

        def reshape(self, bottom, top):
            pass

        def forward(self, bottom, top):
            idx = (self.pos + np.arange(self.batch)) % len(DATA_X)
            self.pos = int((self.pos + self.batch) % len(DATA_X))
            x = DATA_X[idx]
            if self.noisy:
                x = x + 0.1 * self.backend.host_rng.standard_normal(x.shape)
            top[0].data[...] = self.backend.asarray(x, dtype=self.dtype)
            top[1].data[...] = self.backend.asarray(DATA_Y[idx], dtype=self.dtype)

        def get_state(self):
            return {"pos": self.pos}

        def set_state(self, state):
            self.pos = int(state["pos"])


def rows_net(batch=4, name="rows", dropout=False, hidden=False):
    mid = ""
    bottom = "x"
    if hidden:
        mid += """layer { name: "h" type: "InnerProduct" bottom: "x" top: "h"
          inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                                bias_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }\n"""
        bottom = "h"
    if dropout:
        mid += f"""layer {{ name: "drop" type: "Dropout" bottom: "{bottom}" top: "{bottom}"
          dropout_param {{ dropout_ratio: 0.3 }} }}\n"""
    return f"""name: "regress"
    layer {{ name: "{name}" type: "SolverTestRows" top: "x" top: "y"
            input_param {{ shape {{ dim: {batch} }} }} }}
    {mid}
    layer {{ name: "fc" type: "InnerProduct" bottom: "{bottom}" top: "fc"
      param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
      inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.3 }}
                            bias_filler {{ type: "constant" value: 0.1 }} }} }}
    layer {{ name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }}
    """


def make_solver(tmp_path, solver_text, net_text, dtype=np.float64, name="solver.prototxt"):
    (tmp_path / "net.prototxt").write_text(net_text)
    path = tmp_path / name
    path.write_text('net: "net.prototxt"\n' + solver_text)
    return netdef.get_solver(str(path), dtype=dtype)


def params_of(net):
    return [net.backend.to_numpy(b.data).copy() for b in net.learnable_params]


# ---------------------------------------------------------------------------------------------
# Update rules against hand computations

INPUT_NET = """name: "lin"
layer { name: "data" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 6 dim: 3 } shape { dim: 6 dim: 2 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.3 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "loss" }
"""


def hand_grads(W, b, X, Y):
    r = X @ W.T + b - Y
    return r.T @ X / len(X), r.sum(0) / len(X)


RULES = {
    "SGD": "momentum: 0.9",
    "Nesterov": "momentum: 0.9",
    "AdaGrad": "delta: 1e-6",
    "RMSProp": "rms_decay: 0.9 delta: 1e-6",
    "AdaDelta": "momentum: 0.95 delta: 1e-6",
    "Adam": "momentum: 0.9 momentum2: 0.99 delta: 1e-7",
}


def hand_update(rule, t, w, g, h, rate, p):
    """One step of `rule` on param w with gradient g (regularized), history list h; returns w."""
    if rule == "SGD":
        h[0] = rate * g + p["momentum"] * h[0]
        return w - h[0]
    if rule == "Nesterov":
        old = h[0].copy()
        h[0] = p["momentum"] * h[0] + rate * g
        return w - ((1 + p["momentum"]) * h[0] - p["momentum"] * old)
    if rule == "AdaGrad":
        h[0] = h[0] + g * g
        return w - rate * g / (np.sqrt(h[0]) + p["delta"])
    if rule == "RMSProp":
        h[0] = p["rms_decay"] * h[0] + (1 - p["rms_decay"]) * g * g
        return w - rate * g / (np.sqrt(h[0]) + p["delta"])
    if rule == "AdaDelta":
        m, d = p["momentum"], p["delta"]
        h[0] = m * h[0] + (1 - m) * g * g
        step = g * np.sqrt((h[1] + d) / (h[0] + d))
        h[1] = m * h[1] + (1 - m) * step * step
        return w - rate * step
    if rule == "Adam":
        b1, b2, eps = p["momentum"], p["momentum2"], p["delta"]
        h[0] = b1 * h[0] + (1 - b1) * g
        h[1] = b2 * h[1] + (1 - b2) * g * g
        corr = math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        return w - rate * corr * h[0] / (np.sqrt(h[1]) + eps)
    raise AssertionError(rule)


@pytest.mark.parametrize("reg", ["L2", "L1"])
@pytest.mark.parametrize("rule", list(RULES))
def test_update_rule_matches_hand_computation(tmp_path, rule, reg):
    extra = RULES[rule]
    base_lr = 1.0 if rule == "AdaDelta" else 0.05
    solver = make_solver(tmp_path, f"""type: "{rule}" base_lr: {base_lr} lr_policy: "inv"
        gamma: 0.1 power: 0.75 weight_decay: 0.01 regularization_type: "{reg}" max_iter: 10
        {extra}""", INPUT_NET)
    assert isinstance(solver, getattr(netdef, f"{rule}Solver"))
    assert solver.type == rule
    p = {k: F32(getattr(solver.param, k)) for k in ("momentum", "momentum2", "delta", "rms_decay")}
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["y"].data[...] = Y
    W, b = params_of(solver.net)
    hist = {"W": [np.zeros_like(W), np.zeros_like(W)], "b": [np.zeros_like(b), np.zeros_like(b)]}
    wd = F32(0.01)
    for t in range(5):
        gW, gb = hand_grads(W, b, X, Y)
        gW = gW + wd * (W if reg == "L2" else np.sign(W))  # decay_mult 1 for W, 0 for b
        rate = F32(base_lr) * (1 + F32(0.1) * t) ** (-F32(0.75))
        W = hand_update(rule, t, W, gW, hist["W"], rate, p)
        b = hand_update(rule, t, b, gb, hist["b"], 2 * rate, p)  # lr_mult 2
        solver.step(1)
        got_W, got_b = params_of(solver.net)
        np.testing.assert_allclose(got_W, W, rtol=1e-10, atol=1e-13, err_msg=f"{rule} W step {t}")
        np.testing.assert_allclose(got_b, b, rtol=1e-10, atol=1e-13, err_msg=f"{rule} b step {t}")
    assert solver.iter == 5
    assert len(solver.history) == (2 if rule in ("AdaDelta", "Adam") else 1) * 2


def test_float32_sgd_matches_float64_closely(tmp_path):
    finals = []
    for dt in (np.float32, np.float64):
        d = tmp_path / np.dtype(dt).name
        d.mkdir()
        s = make_solver(d, 'base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 random_seed: 3',
                        rows_net(), dtype=dt)
        s.step(20)
        finals.append(params_of(s.net))
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Learning-rate policies


def _policy(text):
    param = pb.SolverParameter()
    from google.protobuf import text_format

    text_format.Parse(text, param)
    return param


def test_lr_policies_match_their_formulas():
    base, gamma, power = F32(0.01), F32(0.5), F32(0.75)
    cases = {
        'lr_policy: "fixed"': lambda t: base,
        'lr_policy: "step" stepsize: 3': lambda t: base * gamma ** (t // 3),
        'lr_policy: "exp"': lambda t: base * gamma ** t,
        'lr_policy: "inv"': lambda t: base * (1 + gamma * t) ** -power,
        'lr_policy: "poly" max_iter: 20': lambda t: base * (1 - t / 20) ** power,
        'lr_policy: "sigmoid" stepsize: 6': lambda t: base / (1 + math.exp(-gamma * (t - 6))),
    }
    for text, formula in cases.items():
        param = _policy(f"base_lr: 0.01 gamma: 0.5 power: 0.75 {text}")
        for t in range(20):
            rate, _ = learning_rate(param, t)
            assert rate == pytest.approx(formula(t), rel=1e-12), (text, t)


def test_multistep_policy_and_current_step():
    param = _policy('base_lr: 1 gamma: 0.1 lr_policy: "multistep" stepvalue: 2 stepvalue: 5 stepvalue: 6')
    step, rates = 0, []
    for t in range(8):
        rate, step = learning_rate(param, t, step)
        rates.append(rate)
    expect = [1, 1, 0.1, 0.1, 0.1, 0.01, 0.001, 0.001]
    np.testing.assert_allclose(rates, expect, rtol=1e-6)
    assert step == 3


def test_step_policy_drives_sgd_and_logs_lr(tmp_path, caplog):
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "step" gamma: 0.5 stepsize: 2 '
                         'display: 1 max_iter: 5', rows_net())
    with caplog.at_level(logging.INFO, logger="netdef"):
        solver.step(5)
    lrs = [float(m.group(2)) for m in re.finditer(r"Iteration (\d+), lr = (\S+)", caplog.text)]
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert solver.current_step == 2


# ---------------------------------------------------------------------------------------------
# iter_size, clipping, lr_mult 0


def test_iter_size_equals_a_larger_batch(tmp_path):
    a = make_solver(tmp_path, 'base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01 '
                    'random_seed: 4', rows_net(batch=8), name="a.prototxt")
    b = make_solver(tmp_path, 'base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 weight_decay: 0.01 '
                    'random_seed: 4 iter_size: 2', rows_net(batch=4), name="b.prototxt")
    for p, q in zip(params_of(a.net), params_of(b.net)):
        np.testing.assert_array_equal(p, q)  # same seed, same fillers
    a.step(6)
    b.step(6)
    for p, q in zip(params_of(a.net), params_of(b.net)):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-12)


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_clip_gradients_scales_to_the_global_norm(tmp_path, clip, caplog):
    solver = make_solver(tmp_path, f'base_lr: 1 lr_policy: "fixed" clip_gradients: {clip}',
                         INPUT_NET)
    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2)) + 3
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["y"].data[...] = Y
    W, b = params_of(solver.net)
    gW, gb = hand_grads(W, b, X, Y)
    norm = math.sqrt((gW ** 2).sum() + (gb ** 2).sum())
    scale = F32(clip) / norm if norm > F32(clip) else 1.0
    with caplog.at_level(logging.INFO, logger="netdef"):
        solver.step(1)
    got_W, got_b = params_of(solver.net)
    np.testing.assert_allclose(got_W, W - scale * gW, rtol=1e-12)
    np.testing.assert_allclose(got_b, b - 2 * scale * gb, rtol=1e-12)
    assert ("Gradient clipping: scaling down gradients" in caplog.text) == (clip < 1)


def test_lr_mult_zero_freezes_a_param(tmp_path):
    net = INPUT_NET.replace("param { lr_mult: 2 decay_mult: 0 }", "param { lr_mult: 0 }")
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 '
                         'weight_decay: 0.1', net)
    solver.net.blobs["x"].data[...] = 1
    W0, b0 = params_of(solver.net)
    solver.step(3)
    W, b = params_of(solver.net)
    np.testing.assert_array_equal(b, b0)
    assert not np.array_equal(W, W0)


# ---------------------------------------------------------------------------------------------
# Test nets and printed outputs


def test_test_nets_average_outputs_over_test_iter(tmp_path, caplog):
    (tmp_path / "t1.prototxt").write_text(rows_net(batch=4, name="rows1"))
    (tmp_path / "t2.prototxt").write_text(rows_net(batch=2, name="rows2"))
    solver = make_solver(tmp_path, """test_net: "t1.prototxt" test_net: "t2.prototxt"
        test_iter: 4 test_iter: 3 test_interval: 100 test_compute_loss: true
        base_lr: 0.01 lr_policy: "fixed" display: 1 max_iter: 1""", rows_net())
    assert len(solver.test_nets) == 2
    # test nets share the train net's weights (the data, as Caffe's ShareData; not the diffs)
    test_w, train_w = solver.test_nets[0].params["fc"][0], solver.net.params["fc"][0]
    assert np.shares_memory(test_w.data, train_w.data)
    assert not np.shares_memory(test_w.diff, train_w.diff)
    W, b = params_of(solver.net)

    def expected(batch, iters):
        losses = []
        for k in range(iters):
            idx = (k * batch + np.arange(batch)) % 16
            r = DATA_X[idx] @ W.T + b - DATA_Y[idx]
            losses.append((r ** 2).sum() / (2 * batch))
        return np.mean(losses)

    with caplog.at_level(logging.INFO, logger="netdef"):
        solver.test_all()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Iteration 0, Testing net (#0)"
    got = [float(m.group(1)) for l in lines
           for m in [re.fullmatch(r"    Test net output #0: loss = (\S+) \(\* 1 = \S+ loss\)", l)] if m]
    np.testing.assert_allclose(got, [expected(4, 4), expected(2, 3)], rtol=1e-5)
    assert "Iteration 0, Testing net (#1)" in lines
    assert sum(l.startswith("Test loss: ") for l in lines) == 2


def test_generic_net_gives_test_nets_per_test_iter_with_test_state(tmp_path):
    net = rows_net() + """layer { name: "extra" type: "Power" bottom: "fc" top: "p"
        include { phase: TEST stage: "val" } }"""
    solver = make_solver(tmp_path, """test_iter: 2 test_iter: 1 test_interval: 5
        test_state { stage: "val" } test_state { }
        base_lr: 0.01 lr_policy: "fixed" max_iter: 1""", net)
    assert len(solver.test_nets) == 2
    assert "extra" in solver.test_nets[0].layer_dict
    assert "extra" not in solver.test_nets[1].layer_dict
    assert solver.test_nets[0].phase == netdef.TEST and solver.net.phase == netdef.TRAIN


SEG_NET = """name: "seg"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 5 } shape { dim: 2 dim: 1 dim: 4 dim: 5 } } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
        convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss"
        loss_param { ignore_label: 255 } }
"""


def test_segmentation_test_net_prints_metrics(tmp_path, caplog):
    solver = make_solver(tmp_path, """test_iter: 1 test_interval: 1
        base_lr: 0.01 lr_policy: "fixed" max_iter: 1""", SEG_NET)
    net = solver.test_nets[0]
    rng = np.random.default_rng(8)
    net.blobs["data"].data[...] = rng.standard_normal((2, 3, 4, 5))
    label = rng.integers(0, 3, (2, 1, 4, 5)).astype(float)
    label[0, 0, 0, :] = 255
    net.blobs["label"].data[...] = label
    with caplog.at_level(logging.INFO, logger="netdef"):
        result = solver.test(0)
    pred = net.blobs["score"].data.argmax(axis=1)
    keep = label[:, 0] != 255
    hist = np.zeros((3, 3))
    for t, p in zip(label[:, 0][keep].astype(int), pred[keep]):
        hist[t, p] += 1
    iu = np.diag(hist) / (hist.sum(0) + hist.sum(1) - np.diag(hist))
    assert result["pixel_accuracy"] == pytest.approx(np.diag(hist).sum() / hist.sum())
    assert result["mean_iu"] == pytest.approx(np.nanmean(iu))
    line = [r.getMessage() for r in caplog.records if "segmentation" in r.getMessage()][0]
    assert re.fullmatch(r"    Test net #0 segmentation: pixel accuracy = \S+, mean accuracy = \S+, "
                        r"mean IU = \S+, fw IU = \S+", line)


# ---------------------------------------------------------------------------------------------
# Seeds, snapshots, resume


def test_same_seed_same_losses_and_another_seed_differs(tmp_path):
    runs = []
    for seed in (7, 7, 8):
        d = tmp_path / f"run{len(runs)}"
        d.mkdir()
        s = make_solver(d, f'base_lr: 0.05 lr_policy: "fixed" momentum: 0.9 random_seed: {seed}',
                        rows_net(name="noisy", dropout=True, hidden=True), dtype=np.float32)
        s.step(8)
        runs.append(s.losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


RESUME_SOLVER = """type: "{rule}" base_lr: 0.02 lr_policy: "step" gamma: 0.5 stepsize: 3
momentum: 0.9 weight_decay: 0.001 max_iter: 10 snapshot: 4 random_seed: 11
test_iter: 2 test_interval: 3 display: 2 snapshot_prefix: "snap/run"
"""


@pytest.mark.parametrize("rule", ["SGD", "Adam"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, rule):
    net = rows_net(name="noisy", dropout=True, hidden=True)
    (tmp_path / "snap").mkdir()
    full = make_solver(tmp_path, RESUME_SOLVER.format(rule=rule), net, dtype=np.float32)
    full.solve(progress=False)
    assert full.iter == 10
    final = params_of(full.net)
    assert os.path.exists(tmp_path / "snap" / "run_iter_4.caffemodel")
    state, extra = read_solverstate(tmp_path / "snap" / "run_iter_8.solverstate")
    assert state.iter == 8 and state.learned_net.endswith("run_iter_8.caffemodel")
    assert state.current_step == 2
    assert len(state.history) == len(full.history)
    assert extra["layers"]["train"]["noisy"] == {"pos": (8 * 4) % 16}

    resumed = make_solver(tmp_path, RESUME_SOLVER.format(rule=rule), net, dtype=np.float32)
    resumed.solve(str(tmp_path / "snap" / "run_iter_4.solverstate"), progress=False)
    assert resumed.iter == 10
    for a, b in zip(final, params_of(resumed.net)):
        np.testing.assert_array_equal(a, b)
    assert resumed.losses == full.losses[4:]


def test_snapshot_files_load_in_a_fresh_process(tmp_path):
    net = INPUT_NET
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 max_iter: 3',
                         net, dtype=np.float32)
    solver.net.blobs["x"].data[...] = 1
    solver.solve(progress=False)
    model, state = tmp_path / "solver_iter_3.caffemodel", tmp_path / "solver_iter_3.solverstate"
    assert model.exists() and state.exists()
    code = f"""
import json, numpy as np, netdef
from netdef.solver import read_solverstate
net = netdef.Net({str(tmp_path / 'net.prototxt')!r}, netdef.TEST, weights={str(model)!r})
st, extra = read_solverstate({str(state)!r})
print(json.dumps({{"iter": st.iter, "history": len(st.history), "rng": sorted(extra["rng"]),
                  "w": net.params["fc"][0].data.tolist()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["iter"] == 3 and got["history"] == 2
    assert "host" in got["rng"] and "device" in got["rng"]
    np.testing.assert_array_equal(np.array(got["w"], np.float32), params_of(solver.net)[0])


def test_failed_snapshot_leaves_the_previous_one(tmp_path, monkeypatch):
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" snapshot: 2 max_iter: 6',
                         INPUT_NET, dtype=np.float32)
    solver.step(2)
    assert solver.last_snapshot.endswith("solver_iter_2.solverstate")
    before = params_of(solver.net)
    import netdef.proto as proto

    real_replace = os.replace

    def killed(src, dst):  # the process dies after writing the temporary file, before the rename
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(proto.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        solver.step(2)
    monkeypatch.setattr(proto.os, "replace", real_replace)
    assert not (tmp_path / "solver_iter_4.caffemodel").exists()
    assert not (tmp_path / "solver_iter_4.solverstate").exists()

    def failing(src, dst):  # a full disk: the write fails cleanly
        raise OSError(28, "No space left on device")

    solver.iter = 4
    monkeypatch.setattr(proto.os, "replace", failing)
    with pytest.raises(netdef.TrainingError, match="snapshot failed.*solver_iter_2.solverstate"):
        solver.snapshot()
    monkeypatch.setattr(proto.os, "replace", real_replace)
    assert not list(p for p in os.listdir(tmp_path) if p.startswith("solver_iter_4") and
                    not p.endswith(".tmp"))
    fresh = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" snapshot: 2 max_iter: 6',
                        INPUT_NET, dtype=np.float32)
    fresh.restore(str(tmp_path / "solver_iter_2.solverstate"))
    assert fresh.iter == 2
    for a, b in zip(before, params_of(fresh.net)):
        np.testing.assert_array_equal(a, b)


def test_restore_checks_the_history(tmp_path):
    s = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" max_iter: 1', INPUT_NET)
    s.solve(progress=False)
    (tmp_path / "adam.prototxt").write_text('net: "net.prototxt" type: "Adam" base_lr: 0.1 '
                                            'lr_policy: "fixed"')
    adam = netdef.get_solver(str(tmp_path / "adam.prototxt"), dtype=np.float64)
    with pytest.raises(netdef.ParseError, match="2 history blobs.*needs 4"):
        adam.restore(str(tmp_path / "solver_iter_1.solverstate"))
    with pytest.raises(netdef.ParseError, match="could not open"):
        adam.restore(str(tmp_path / "nope.solverstate"))


def test_signals_snapshot_and_stop(tmp_path):
    solver = make_solver(tmp_path, 'base_lr: 0.01 lr_policy: "fixed" max_iter: 100',
                         rows_net(), dtype=np.float32)

    def on_start():
        if solver.iter == 3:
            os.kill(os.getpid(), signal.SIGHUP)
        if solver.iter == 6:
            os.kill(os.getpid(), signal.SIGINT)

    solver.add_callback(on_start=on_start)
    old = signal.getsignal(signal.SIGINT)
    with solver.handle_signals():
        solver.solve(progress=False)
    assert signal.getsignal(signal.SIGINT) is old
    assert solver.iter == 7
    files = sorted(p for p in os.listdir(tmp_path) if p.endswith(".solverstate"))
    assert files == ["solver_iter_4.solverstate", "solver_iter_7.solverstate"]


def test_non_finite_loss_stops_and_names_the_layer(tmp_path):
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" snapshot: 2 max_iter: 10',
                         INPUT_NET, dtype=np.float32)
    solver.net.blobs["x"].data[...] = 1

    def poison():
        if solver.iter == 3:
            solver.net.params["fc"][0].data[0, 0] = np.inf

    solver.add_callback(on_start=poison)
    with pytest.raises(netdef.TrainingError) as e:
        solver.solve(progress=False)
    msg = str(e.value)
    assert "iteration 3" in msg and "'fc'" in msg and "non-finite" in msg
    assert "solver_iter_2.solverstate" in msg
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".caffemodel")) == \
        ["solver_iter_2.caffemodel"]
    netdef.Net(str(tmp_path / "net.prototxt"), weights=str(tmp_path / "solver_iter_2.caffemodel"))


SQRT_NET = """name: "sqrt"
layer { name: "data" type: "DummyData" top: "x" top: "t"
  dummy_data_param { shape { dim: 1 dim: 2 } shape { dim: 1 dim: 1 }
    data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param { num_output: 1 weight_filler { type: "constant" value: 0 } } }
layer { name: "sqrt" type: "Power" bottom: "y" top: "z" power_param { power: 0.5 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "t" top: "loss" }
"""


def test_diverged_update_with_a_finite_loss_is_never_snapshotted(tmp_path):
    # sqrt at 0: the loss is finite but its gradient is infinite, so the first update makes
    # the weights infinite; the snapshot due right after must refuse them.
    solver = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" snapshot: 1 max_iter: 5',
                         SQRT_NET, dtype=np.float32)
    with pytest.raises(netdef.TrainingError) as e:
        solver.solve(progress=False)
    msg = str(e.value)
    assert "iteration 1" in msg and "layer 'fc'" in msg and "non-finite" in msg
    assert "no snapshot was written" in msg
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".caffemodel", ".solverstate"))]


# ---------------------------------------------------------------------------------------------
# Solver file errors


@pytest.mark.parametrize("text, match", [
    ('debug_info: true', "debug_info"),
    ('foo: 1', "foo"),
    ('type: "Nadam"', "type.*Nadam"),
    ('regularization_type: "L3"', "regularization_type"),
    ('iter_size: 0', "iter_size"),
])
def test_unsupported_or_bad_fields_are_named(tmp_path, text, match):
    (tmp_path / "net.prototxt").write_text(INPUT_NET)
    p = tmp_path / "s.prototxt"
    p.write_text(f'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" {text}')
    with pytest.raises(netdef.NetdefError, match=match) as e:
        netdef.get_solver(str(p))
    assert str(p) in str(e.value)


@pytest.mark.parametrize("text, match", [
    ('base_lr: 0.1', "lr_policy.*not set"),
    ('base_lr: 0.1 lr_policy: "cosine"', "lr_policy.*cosine"),
    ('base_lr: 0.1 lr_policy: "step"', "stepsize"),
    ('type: "AdaGrad" momentum: 0.9 lr_policy: "fixed"', "momentum"),
    ('type: "RMSProp" rms_decay: 1 lr_policy: "fixed"', "rms_decay"),
    ('lr_policy: "fixed" test_iter: 1', None),
    ('lr_policy: "fixed" train_net: "net.prototxt"', "more than one train net"),
])
def test_bad_solver_settings(tmp_path, text, match):
    (tmp_path / "net.prototxt").write_text(INPUT_NET)
    p = tmp_path / "s.prototxt"
    p.write_text(f'net: "net.prototxt" {text}')
    if match is None:
        assert len(netdef.get_solver(str(p)).test_nets) == 1
        return
    with pytest.raises(netdef.NetdefError, match=match):
        netdef.get_solver(str(p))


def test_no_train_net_and_test_iter_count(tmp_path):
    (tmp_path / "net.prototxt").write_text(INPUT_NET)
    with pytest.raises(netdef.NetdefError, match="no train net"):
        netdef.get_solver('base_lr: 0.1 lr_policy: "fixed"\n')
    p = tmp_path / "s.prototxt"
    p.write_text('train_net: "net.prototxt" test_net: "net.prototxt" lr_policy: "fixed"')
    with pytest.raises(netdef.NetdefError, match="test_iter must be given for each test net"):
        netdef.get_solver(str(p))


def test_legacy_solver_type_and_paths_relative_to_the_solver(tmp_path, monkeypatch):
    d = tmp_path / "model"
    d.mkdir()
    (d / "net.prototxt").write_text(INPUT_NET)
    (d / "s.prototxt").write_text('net: "net.prototxt" solver_type: NESTEROV lr_policy: "fixed" '
                                  'momentum: 0.9 base_lr: 0.1 max_iter: 1')
    monkeypatch.chdir(tmp_path)
    solver = netdef.get_solver(str(d / "s.prototxt"))
    assert isinstance(solver, netdef.NesterovSolver)
    assert solver.snapshot_prefix == str(d / "s")
    solver.solve(progress=False)
    assert (d / "s_iter_1.caffemodel").exists()
    # a Caffe solverstate (no netdef_state) restores iter, weights and history
    st = pb.SolverState()
    st.ParseFromString((d / "s_iter_1.solverstate").read_bytes())
    st.ClearField("netdef_state")
    (d / "caffe.solverstate").write_bytes(st.SerializeToString())
    again = netdef.get_solver(str(d / "s.prototxt"))
    again.restore(str(d / "caffe.solverstate"))
    assert again.iter == 1
    for a, b in zip(params_of(solver.net), params_of(again.net)):
        np.testing.assert_array_equal(a, b)


def test_weights_field_and_copy_trained_layers(tmp_path):
    s = make_solver(tmp_path, 'base_lr: 0.1 lr_policy: "fixed" max_iter: 2', INPUT_NET)
    s.net.blobs["x"].data[...] = 1
    s.solve(progress=False)
    (tmp_path / "ft.prototxt").write_text('net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" '
                                          'weights: "solver_iter_2.caffemodel"')
    ft = netdef.get_solver(str(tmp_path / "ft.prototxt"), dtype=np.float64)
    for a, b in zip(params_of(s.net), params_of(ft.net)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_gpu_updates_match_cpu(tmp_path):
    finals = []
    for mode in ("cpu", "gpu"):
        getattr(netdef, f"set_mode_{mode}")()
        d = tmp_path / mode
        d.mkdir()
        runs = []
        for rule in RULES:
            s = make_solver(d, f'type: "{rule}" base_lr: 0.05 lr_policy: "fixed" random_seed: 2 '
                            f'weight_decay: 0.01 {RULES[rule]}', rows_net(hidden=True),
                            dtype=np.float32)
            s.step(5)
            runs.append(params_of(s.net))
        finals.append(runs)
    netdef.set_mode_cpu()
    for rc, rg in zip(*finals):
        for a, b in zip(rc, rg):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_average_loss_smooths_the_displayed_loss(tmp_path, caplog):
    solver = make_solver(tmp_path, 'base_lr: 0.05 lr_policy: "fixed" display: 1 average_loss: 3',
                         rows_net())
    with caplog.at_level(logging.INFO, logger="netdef"):
        solver.step(6)
    shown = [float(m.group(1)) for m in re.finditer(r"Iteration \d+, loss = (\S+)", caplog.text)]
    raw = solver.losses
    expect = [np.mean(raw[max(0, k - 2):k + 1]) for k in range(6)]
    np.testing.assert_allclose(shown, expect, rtol=1e-5)
    train = [float(m.group(1)) for m in re.finditer(r"Train net output #0: loss = (\S+)", caplog.text)]
    np.testing.assert_allclose(train, raw, rtol=1e-5)  # the outputs are not smoothed


def test_inline_net_params_and_snapshot_after_train_off(tmp_path):
    body = INPUT_NET.replace('name: "lin"\n', "")
    text = f"""train_net_param {{ name: "inline" {body} }}
        test_net_param {{ {body} }} test_iter: 1 test_interval: 2
        base_lr: 0.1 lr_policy: "fixed" max_iter: 2 snapshot_after_train: false"""
    (tmp_path / "s.prototxt").write_text(text)
    solver = netdef.get_solver(str(tmp_path / "s.prototxt"))
    assert solver.net.name == "inline" and len(solver.test_nets) == 1
    solver.solve(progress=False)
    assert solver.iter == 2
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".caffemodel", ".solverstate"))]


@pytest.mark.gpu
def test_gpu_resume_matches_an_uninterrupted_run(tmp_path):
    netdef.set_mode_gpu()
    try:
        net = rows_net(name="noisy", dropout=True, hidden=True)
        (tmp_path / "snap").mkdir()
        full = make_solver(tmp_path, RESUME_SOLVER.format(rule="SGD"), net, dtype=np.float32)
        assert full.backend.name == "gpu"
        full.solve(progress=False)
        resumed = make_solver(tmp_path, RESUME_SOLVER.format(rule="SGD"), net, dtype=np.float32)
        resumed.solve(str(tmp_path / "snap" / "run_iter_4.solverstate"), progress=False)
        for a, b in zip(params_of(full.net), params_of(resumed.net)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(resumed.losses, full.losses[4:], rtol=1e-6)
    finally:
        netdef.set_mode_cpu()
