"""The built-in synthetic segmentation set: coloured shapes on textured backgrounds.

Each image is drawn from its own generator, seeded by (data seed, image index), so the set is
the same on every machine. Class 0 is the background; class k >= 1 is one shape kind
(circle, square, triangle, diamond, ring, cross, ellipse, hexagon, then again with other
colours) with a colour of its own, jittered per instance, lit by a soft gradient. Backgrounds
are muted colours with sinusoidal texture and noise. 1 to 4 shapes per image, later ones
occluding earlier ones; in about 60% of the images a 2-pixel band along every class boundary is
labelled 255 (ignore), as in PASCAL VOC.

On disk, in PASCAL VOC's layout (read by the same SegData layer that reads VOC):
    <root>/JPEGImages/<id>.jpg                 the images (RGB JPEG, quality 95)
    <root>/SegmentationClass/<id>.png          palette PNGs of class indices, 255 = ignore
    <root>/ImageSets/Segmentation/{train,val,trainval}.txt
    <root>/dataset.json                        parameters, class names, per-channel BGR mean
where <root> = $NETDEF_DATA_DIR (default ~/.cache/netdef) / synthetic-v1-s<size>-c<classes>-
n<count>-v<val_count>-seed<seed>. It is generated once, on first use, into a temporary
directory beside <root> and renamed into place, so concurrent first uses are safe (the loser of
the race discards its copy).
"""
import colorsys
import json
import os
import shutil

import numpy as np

from .. import tempfiles
from ..errors import NetdefError

VERSION = 1
SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross", "ellipse", "hexagon")
DEFAULTS = dict(size=128, classes=4, count=400, val_count=None, seed=0)


def data_home():
    return os.path.expanduser(os.environ.get("NETDEF_DATA_DIR") or os.path.join("~", ".cache", "netdef"))


def _check(size, classes, count, val_count, seed):
    if not 16 <= size <= 4096:
        raise NetdefError(f"synthetic set: size must be in 16..4096, got {size}")
    if not 2 <= classes <= 255:
        raise NetdefError(f"synthetic set: classes (background included) must be in 2..255, got {classes}")
    if count < 1 or val_count < 1:
        raise NetdefError(f"synthetic set: count and val_count must be >= 1, got {count}, {val_count}")
    if seed < 0:
        raise NetdefError(f"synthetic set: seed must be >= 0, got {seed}")


def params(size=None, classes=None, count=None, val_count=None, seed=None):
    """The full parameter set, defaults filled in (val_count defaults to count // 4, at least 1)."""
    size = DEFAULTS["size"] if size is None else int(size)
    classes = DEFAULTS["classes"] if classes is None else int(classes)
    count = DEFAULTS["count"] if count is None else int(count)
    val_count = max(count // 4, 1) if val_count is None else int(val_count)
    seed = DEFAULTS["seed"] if seed is None else int(seed)
    _check(size, classes, count, val_count, seed)
    return dict(size=size, classes=classes, count=count, val_count=val_count, seed=seed)


def dataset_dir(**kw):
    p = params(**kw)
    name = f"synthetic-v{VERSION}-s{p['size']}-c{p['classes']}-n{p['count']}-v{p['val_count']}-seed{p['seed']}"
    return os.path.join(data_home(), name)


def class_names(classes):
    names = ["background"]
    for k in range(1, classes):
        shape = SHAPES[(k - 1) % len(SHAPES)]
        rnd = (k - 1) // len(SHAPES)
        names.append(shape if rnd == 0 else f"{shape}{rnd + 1}")
    return names


def class_colour(k):
    """A saturated RGB colour per class (golden-ratio hues), darker in later rounds."""
    rnd = (k - 1) // len(SHAPES)
    h = ((k - 1) * 0.61803398875 + 0.07) % 1.0
    v = 0.95 - 0.2 * (rnd % 3)
    return np.array(colorsys.hsv_to_rgb(h, 0.85, v), dtype=np.float32) * 255


# ---- drawing ----------------------------------------------------------------------------------


def _shape_mask(kind, u, v):
    """Mask of a unit-size shape in rotated, radius-normalized coordinates (u, v)."""
    r2 = u * u + v * v
    if kind == "circle":
        return r2 <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == "triangle":  # equilateral, circumradius 1
        m = v >= -0.5
        for a in (np.pi / 6, 5 * np.pi / 6):
            m &= u * np.cos(a) + v * np.sin(a) <= 0.5
        return m
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if kind == "ring":
        return (r2 <= 1.0) & (r2 >= 0.3)
    if kind == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if kind == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    if kind == "hexagon":
        m = np.abs(v) <= 0.866
        for a in (np.pi / 6, -np.pi / 6):
            m &= np.abs(u * np.cos(a) + v * np.sin(a)) <= 0.866
        return m
    raise ValueError(kind)


def render(index, size=128, classes=4, seed=0):
    """Image (size, size, 3) uint8 RGB and label (size, size) uint8 of sample `index`."""
    rng = np.random.default_rng([seed, index, VERSION])
    n = size
    grid = np.arange(n, dtype=np.float32)
    xs, ys = grid[None, :] / n, grid[:, None] / n
    # Background: a muted colour, a few oriented sinusoids, a linear gradient and noise.
    h, s, v = rng.uniform(0, 1), rng.uniform(0.1, 0.35), rng.uniform(0.35, 0.7)
    base = np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255
    tex = np.zeros((n, n), dtype=np.float32)
    for _ in range(3):
        th, f, ph = rng.uniform(0, np.pi), rng.uniform(2, 14), rng.uniform(0, 2 * np.pi)
        k = np.float32(2 * np.pi * f)
        tex += np.float32(rng.uniform(6, 18)) * np.sin(k * np.float32(np.cos(th)) * xs
                                                       + k * np.float32(np.sin(th)) * ys + np.float32(ph))
    tex += np.float32(rng.uniform(-20, 20)) * (xs - 0.5) + np.float32(rng.uniform(-20, 20)) * (ys - 0.5)
    tint = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    img = base + tex[:, :, None] * tint
    label = np.zeros((n, n), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, classes))
        kind = SHAPES[(k - 1) % len(SHAPES)]
        r = rng.uniform(0.1, 0.26) * n
        cx, cy = rng.uniform(0.1, 0.9) * n, rng.uniform(0.1, 0.9) * n
        rot = rng.uniform(0, 2 * np.pi)
        colour = class_colour(k) + rng.uniform(-25, 25, 3).astype(np.float32)
        gu, gv = rng.uniform(-1, 1, 2)
        # Draw within the shape's bounding box only.
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, n)
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, n)
        dx, dy = (grid[None, x0:x1] - cx) / r, (grid[y0:y1, None] - cy) / r
        c, s_ = np.float32(np.cos(rot)), np.float32(np.sin(rot))
        u, v_ = c * dx + s_ * dy, c * dy - s_ * dx
        m = _shape_mask(kind, u, v_)
        shade = (1.0 + 0.15 * (u * gu + v_ * gv))[:, :, None]
        box = img[y0:y1, x0:x1]
        box[m] = (colour * shade)[m]
        label[y0:y1, x0:x1][m] = k
    if rng.random() < 0.6:  # ignore band along the class boundaries
        b = np.zeros_like(label, dtype=bool)
        b[1:, :] |= label[1:, :] != label[:-1, :]
        b[:-1, :] |= label[:-1, :] != label[1:, :]
        b[:, 1:] |= label[:, 1:] != label[:, :-1]
        b[:, :-1] |= label[:, :-1] != label[:, 1:]
        label[b] = 255
    img += (rng.random((n, n, 3), dtype=np.float32) - np.float32(0.5)) * np.float32(17)  # std ~5
    return np.clip(img, 0, 255).astype(np.uint8), label


def split_ids(p):
    train = [f"syn_{i:06d}" for i in range(p["count"])]
    val = [f"syn_{i:06d}" for i in range(p["count"], p["count"] + p["val_count"])]
    return train, val


def generate(root, **kw):
    """Write the set into `root` (which must not exist yet); returns the parameters."""
    from PIL import Image

    from ..segment import voc_palette

    palette = voc_palette().reshape(-1).tolist()
    p = params(**kw)
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, "SegmentationClass"))
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    train, val = split_ids(p)
    total = np.zeros(3)
    for i, ident in enumerate(train + val):
        img, label = render(i, p["size"], p["classes"], p["seed"])
        if i < len(train):
            total += img.reshape(-1, 3).mean(axis=0)
        Image.fromarray(img, mode="RGB").save(os.path.join(root, "JPEGImages", ident + ".jpg"), quality=95)
        lab = Image.fromarray(label, mode="P")  # as netdef.segment.save_label_png writes them
        lab.putpalette(palette)
        lab.save(os.path.join(root, "SegmentationClass", ident + ".png"))
    for name, ids in (("train", train), ("val", val), ("trainval", train + val)):
        with open(os.path.join(root, "ImageSets", "Segmentation", name + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    mean_rgb = total / len(train)
    info = dict(generator="netdef synthetic segmentation set", version=VERSION, **p,
                class_names=class_names(p["classes"]), ignore_label=255,
                mean_bgr=[round(float(x), 3) for x in mean_rgb[::-1]])
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(info, f, indent=1)
    return p


def ensure(**kw):
    """The directory of the synthetic set with these parameters, generated on first use."""
    root = dataset_dir(**kw)
    if os.path.isfile(os.path.join(root, "dataset.json")):
        return root
    parent = os.path.dirname(root)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfiles.mkdtemp(parent, f".tmp-{os.path.basename(root)}-")
    except OSError as e:
        raise NetdefError(f"cannot create the synthetic data cache ({e.strerror}); set NETDEF_DATA_DIR "
                          "to a writable directory", file=parent) from None
    try:
        out = os.path.join(tmp, "set")
        generate(out, **kw)
        try:
            os.rename(out, root)
        except OSError:
            if not os.path.isfile(os.path.join(root, "dataset.json")):
                raise NetdefError("synthetic set directory exists but is incomplete (no dataset.json); "
                                  "delete it to regenerate", file=root) from None
            # Another process finished first; its copy is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def read_info(root):
    with open(os.path.join(root, "dataset.json")) as f:
        return json.load(f)
