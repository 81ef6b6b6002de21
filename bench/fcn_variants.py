#!/usr/bin/env python3
"""FCN's skip comparison on the built-in synthetic set: fcn32s-mini, fcn16s-mini and fcn8s-mini
trained on the same budget (each model's own solver.prototxt, which models/fcn.py keeps
identical across the three) with several seeds, then mean IU and the boundary (trimap) mean IU
on the val split, as mean ± half the range over the seeds (the table in models/README.md).

    python bench/fcn_variants.py                                # 3 models x seeds 1701 1702
    python bench/fcn_variants.py --seeds 1701 1702 1703 --jobs 2 --out runs/fcn-variants
    python bench/fcn_variants.py --models fcn8s-mini --seeds 1701   # one run
    python bench/fcn_variants.py --models fcn8s-mini --seeds 1701 1702 1703 --precision bf16

Each run trains with `netdef train` in a subprocess (its log is <out>/<model>-s<seed>/train.log)
from a copy of the model's solver with only random_seed (weights, dropout and data order) and
the paths changed. A run whose final snapshot is already in --out is not trained again, so an
interrupted table resumes. Wall times depend on the machine's load: the table states the load.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

MODELS = os.path.join(HERE, "..", "models")


def _set(text, key, value):
    text, n = re.subn(rf'(?m)^{key}: .*$', f"{key}: {value}", text)
    if n != 1:
        raise SystemExit(f"fcn_variants: the solver has {n} '{key}:' lines, expected 1")
    return text


def prepare(model, seed, out, overrides=(), models=MODELS):
    """Writes <out>/<model>-s<seed>/solver.prototxt (with `overrides`, (key, value) pairs of
    solver fields); returns (run dir, final caffemodel, max_iter)."""
    src = os.path.join(models, model)
    text = open(os.path.join(src, "solver.prototxt")).read()
    run = os.path.abspath(os.path.join(out, f"{model}-s{seed}"))
    os.makedirs(run, exist_ok=True)
    for key, name in (("train_net", "train.prototxt"), ("test_net", "val.prototxt")):
        text = _set(text, key, json.dumps(os.path.abspath(os.path.join(src, name))))
    text = _set(text, "snapshot_prefix", json.dumps(os.path.join(run, model)))
    text = _set(text, "random_seed", seed)
    for key, value in overrides:
        text = _set(text, key, value) if re.search(rf"(?m)^{key}: ", text) else text + f"{key}: {value}\n"
    max_iter = int(re.search(r"(?m)^max_iter: (\d+)", text).group(1))
    with open(os.path.join(run, "solver.prototxt"), "w") as f:
        f.write(text)
    return run, os.path.join(run, f"{model}_iter_{max_iter}.caffemodel"), max_iter


def run(model, seed, out, width, iters, overrides=(), models=MODELS, precision=None):
    """Trains (unless its final snapshot exists) and scores one (model, seed); the scores are
    kept in <run>/scores.json, so a table can be made from whatever runs have finished."""
    run_dir, weights, max_iter = prepare(model, seed, out, overrides, models)
    wall = None
    if not os.path.exists(weights):
        t0 = time.time()
        with open(os.path.join(run_dir, "train.log"), "w") as log:
            rc = subprocess.call([sys.executable, "-m", "netdef", "train", os.path.join(run_dir, "solver.prototxt"),
                                  "--log", "none"] + (["--precision", precision] if precision else []),
                                 stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
        if rc != 0 or not os.path.exists(weights):
            print(f"fcn_variants: training {model} seed {seed} failed (rc {rc}); see {run_dir}/train.log", flush=True)
            return None
        wall = round(time.time() - t0, 1)
        with open(os.path.join(run_dir, "wall.json"), "w") as f:
            json.dump(dict(wall_s=wall, load=os.getloadavg()[0]), f)
    elif os.path.exists(os.path.join(run_dir, "wall.json")):
        wall = json.load(open(os.path.join(run_dir, "wall.json")))["wall_s"]
    scores = os.path.join(run_dir, "scores.json")
    if not os.path.exists(scores):
        subprocess.check_call([sys.executable, os.path.join(HERE, "seg_eval.py"),
                               os.path.join(models, model, "val.prototxt"), weights, "--iters", str(iters),
                               "--width", str(width), "--json", scores], stdout=subprocess.DEVNULL)
    r = dict(model=model, seed=seed, iters=max_iter, wall_s=wall, **json.load(open(scores))[0])
    print(f"{model} seed {seed} ({max_iter} iterations, wall {wall} s): mean IU {r['mean_iu']:.3f}, "
          f"boundary (±{width} px) mean IU {r['boundary_mean_iu']:.3f}, pixel acc. {r['pixel_accuracy']:.3f}",
          flush=True)
    return r


def _mean_spread(xs):
    return sum(xs) / len(xs), (max(xs) - min(xs)) / 2


def table(results):
    lines = ["| model | seeds | mean IU | boundary mean IU | pixel acc. | wall per run (s) |",
             "|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in results):
        rs = [r for r in results if r["model"] == model]
        cells = []
        for key in ("mean_iu", "boundary_mean_iu", "pixel_accuracy"):
            m, s = _mean_spread([r[key] for r in rs])
            cells.append(f"{m:.3f} ± {s:.3f}")
        walls = [r["wall_s"] for r in rs if r["wall_s"] is not None]
        wall = f"{min(walls):.0f}-{max(walls):.0f}" if walls else "(not trained now)"
        lines.append(f"| {model} | {len(rs)} | " + " | ".join(cells) + f" | {wall} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fcn32s-mini", "fcn16s-mini", "fcn8s-mini"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1701, 1702])
    ap.add_argument("--out", default=os.path.join("runs", "fcn-variants"), help="run directories and results.json")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once (each uses OMP_NUM_THREADS threads; on a loaded machine use OMP_NUM_THREADS=1)")
    ap.add_argument("--width", type=int, default=3, help="boundary band half-width in pixels")
    ap.add_argument("--iters", type=int, default=100, help="val images to score")
    ap.add_argument("--models-dir", default=MODELS,
                    help="where the model directories are (default models/; e.g. ones written by models/fcn.py with other data)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a solver field for every run, e.g. --set base_lr=0.002 --set 'lr_policy=\"poly\"'")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                    help="netdef train --precision for every run (scoring stays float32)")
    args = ap.parse_args()
    overrides = []
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[a-z_0-9]+", key):
            ap.error(f"--set takes KEY=VALUE with a solver field name, got {item!r}")
        overrides.append((key, value))

    jobs = [(m, s) for s in args.seeds for m in args.models]
    os.makedirs(args.out, exist_ok=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # threads only wait on the subprocesses
        results = [r for r in pool.map(lambda ms: run(ms[0], ms[1], args.out, args.width, args.iters, overrides, args.models_dir,
                                                   args.precision), jobs) if r]
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
