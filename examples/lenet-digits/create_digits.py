"""Caffe's LeNet on real handwritten digits, with no download: scikit-learn's copy of the UCI
digits (1,797 scans of 8x8 pixels, 16 gray levels) upscaled to MNIST's 28x28, written as PNG
files with list files, and converted to LMDB by `netdef convert-imageset`, as Caffe's
examples/mnist/create_mnist.sh makes mnist_{train,test}_lmdb.

    python examples/lenet-digits/create_digits.py       # needs scikit-learn and netdef[lmdb]
    netdef train --solver=examples/lenet-digits/lenet_solver.prototxt

Run both from the repository root, as Caffe's example runs from Caffe's root: the paths in the
prototxts are relative to it.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 28


def load_digits():
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:
        sys.exit("this example needs scikit-learn (pip install scikit-learn): its digits are the data")
    d = sk_load()
    return d.images, d.target


def upscale(image8):
    """An 8x8 scan of values 0..16 (ink high, as MNIST's) as a 28x28 uint8 image, bilinear."""
    from PIL import Image

    im = Image.fromarray(np.round(image8 * (255.0 / 16.0)).astype(np.uint8), mode="L")
    return np.asarray(im.resize((SIZE, SIZE), Image.BILINEAR))


def split(count, n_test, seed):
    """Indices (train, test) of a shuffled split holding n_test scans out."""
    order = np.random.default_rng(seed).permutation(count)
    return order[n_test:], order[:n_test]


def write_images(out, images, labels, indices, name):
    from PIL import Image

    folder = os.path.join(out, "images", name)
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i in indices:
        rel = f"{name}/{i:04d}.png"
        Image.fromarray(upscale(images[i]), mode="L").save(os.path.join(out, "images", rel))
        lines.append(f"{rel} {labels[i]}\n")
    listfile = os.path.join(out, f"{name}.txt")
    with open(listfile, "w") as f:
        f.writelines(lines)
    return listfile


def convert(out, listfile, db):
    """`netdef convert-imageset --gray ROOT LISTFILE DB`, as a user would run it."""
    if os.path.exists(db):
        import shutil

        shutil.rmtree(db)
    subprocess.run([sys.executable, "-m", "netdef", "convert-imageset", "--gray", "--no-progress",
                    os.path.join(out, "images") + "/", listfile, db], check=True)


def create(out=HERE, n_test=300, seed=0, limit=None):
    """Write images/, train.txt, test.txt, digits_train_lmdb and digits_test_lmdb under `out`;
    `limit` keeps only that many scans (for a quick test). Returns (train count, test count)."""
    images, labels = load_digits()
    if limit:
        images, labels = images[:limit], labels[:limit]
    train, test = split(len(labels), n_test, seed)
    for name, idx in (("train", train), ("test", test)):
        listfile = write_images(out, images, labels, idx, name)
        convert(out, listfile, os.path.join(out, f"digits_{name}_lmdb"))
    return len(train), len(test)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=HERE, help="where to write (default: this example's folder)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n_train, n_test = create(a.out, seed=a.seed)
    print(f"{n_train} training and {n_test} test images in {a.out}")
