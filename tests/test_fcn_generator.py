"""models/fcn.py is the source of the checked-in FCN prototxts: running it as documented
(`python models/fcn.py`, its defaults) reproduces models/*/{train,val,deploy}.prototxt, and
the solver.prototxt of the models trained from scratch on CPUs, byte for byte. It runs here with its output directory pointed at a temporary one, so the test never
writes into the repository."""
import importlib.util
import os
import sys

import pytest

MODELS = os.path.join(os.path.dirname(__file__), "..", "models")
PHASES = ["deploy.prototxt", "train.prototxt", "val.prototxt"]


def _load_generator():
    spec = importlib.util.spec_from_file_location("fcn_generator", os.path.join(MODELS, "fcn.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FCN = _load_generator()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    mp = pytest.MonkeyPatch()
    mp.setattr(FCN, "HERE", str(out))
    mp.setattr(sys, "argv", ["fcn.py"])
    try:
        FCN.main()
    finally:
        mp.undo()
    return out


def test_generator_writes_every_checked_in_model(generated):
    checked_in = sorted(d for d in os.listdir(MODELS) if os.path.isdir(os.path.join(MODELS, d))
                        and any(f in PHASES for f in os.listdir(os.path.join(MODELS, d))))
    assert sorted(os.listdir(generated)) == sorted(FCN.VARIANTS) == checked_in


@pytest.mark.parametrize("variant", sorted(FCN.VARIANTS))
def test_checked_in_prototxts_are_the_generators_output(variant, generated):
    files = sorted(PHASES + (["solver.prototxt"] if FCN.VARIANTS[variant].get("cpu_solver") else []))
    assert sorted(os.listdir(generated / variant)) == files
    for name in files:
        fresh = (generated / variant / name).read_bytes()
        with open(os.path.join(MODELS, variant, name), "rb") as f:
            stored = f.read()
        assert fresh == stored, f"models/{variant}/{name} is not what models/fcn.py writes: " \
                                "edit the generator and rerun `python models/fcn.py`"
