"""The built-in synthetic segmentation set: shapes on textured backgrounds, told apart by shape.

Each image is drawn from its own generator, seeded by (data seed, image index, version), so the
set is the same on every machine. Class 0 is the background; class k >= 1 is one shape kind,
SHAPES[k - 1]. The kinds come in pairs that differ only in structure: a disc and a ring (a disc
with a hole), a square and a cross, a filled and a hollow triangle, a frame, a diamond, a
hexagon. Colour carries no information about the class: every instance, and every background,
draws its colour from the same palette (any hue, saturation 0.2-0.9, value 0.3-0.95), so a
per-pixel colour classifier can do no better than guessing (models/colour-only measures it);
a pixel's label is decided by the shape around it, which is what an FCN's receptive field and
skip connections are for. Shapes vary in size (radius 12-28% of the image), aspect ratio (1:2 to 2:1),
rotation and shading (a soft gradient); backgrounds are a palette colour with fine sinusoidal
texture, a gradient and noise. 1 to 4 shapes per image, later ones occluding earlier ones (a
hole shows what lies behind it); in about 60% of the images a 2-pixel band along every class
boundary is labelled 255 (ignore), as in PASCAL VOC.

The number of classes (background included) is 2 .. len(SHAPES) + 1: a class is a shape kind,
and two classes of the same kind could not be told apart.

On disk, in PASCAL VOC's layout (read by the same SegData layer that reads VOC):
    <root>/JPEGImages/<id>.jpg                 the images (RGB JPEG, quality 95)
    <root>/SegmentationClass/<id>.png          palette PNGs of class indices, 255 = ignore
    <root>/ImageSets/Segmentation/{train,val,trainval}.txt
    <root>/dataset.json                        parameters, class names, per-channel BGR mean
where <root> = $NETDEF_DATA_DIR (default ~/.cache/netdef) / synthetic-v<VERSION>-s<size>-
c<classes>-n<count>-v<val_count>-seed<seed>. It is generated once, on first use, into a
temporary directory beside <root> and renamed into place, so concurrent first uses are safe (the
loser of the race discards its copy). Version 1 (each class its own colour) is never reused.
"""
import colorsys
import json
import os
import shutil

import numpy as np

from ..core import tempfiles
from ..errors import NetdefError

VERSION = 2
# Pairs first: the default set (4 classes) holds disc, ring and square.
SHAPES = ("disc", "ring", "square", "cross", "triangle", "hollow_triangle", "frame", "diamond", "hexagon")
DEFAULTS = dict(size=128, classes=4, count=400, val_count=None, seed=0)


def data_home():
    return os.path.expanduser(os.environ.get("NETDEF_DATA_DIR") or os.path.join("~", ".cache", "netdef"))


def _check(size, classes, count, val_count, seed):
    if not 16 <= size <= 4096:
        raise NetdefError(f"synthetic set: size must be in 16..4096, got {size}")
    if not 2 <= classes <= len(SHAPES) + 1:
        raise NetdefError(f"synthetic set: classes (background included) must be in 2..{len(SHAPES) + 1} "
                          f"(one shape kind per class: {', '.join(SHAPES)}), got {classes}")
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
    return ["background"] + list(SHAPES[:classes - 1])


def palette_colour(rng):
    """An RGB colour from the palette every class and every background draws from."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


# ---- drawing ----------------------------------------------------------------------------------


def _triangle(u, v, scale=1.0):
    """Equilateral triangle of circumradius `scale`, pointing up (+v)."""
    m = v >= -0.5 * scale
    for a in (np.pi / 6, 5 * np.pi / 6):
        m &= u * np.cos(a) + v * np.sin(a) <= 0.5 * scale
    return m


def _shape_mask(kind, u, v):
    """Mask of a unit-size shape in rotated, radius-normalized coordinates (u, v). The hollow
    kinds are their filled partner minus the same shape at 0.5 scale (0.55 for the ring), so
    their walls are as wide as a cross's arms: locally a wall looks like its filled partner."""
    r2 = u * u + v * v
    au, av = np.abs(u), np.abs(v)
    if kind == "disc":
        return r2 <= 1.0
    if kind == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55 ** 2)
    if kind == "square":
        return np.maximum(au, av) <= 0.8
    if kind == "cross":
        return ((au <= 0.28) & (av <= 1.0)) | ((av <= 0.28) & (au <= 1.0))
    if kind == "triangle":
        return _triangle(u, v)
    if kind == "hollow_triangle":
        return _triangle(u, v) & ~_triangle(u, v, 0.45)
    if kind == "frame":
        m = np.maximum(au, av)
        return (m <= 0.8) & (m >= 0.4)
    if kind == "diamond":
        return au + av <= 1.0
    if kind == "hexagon":
        m = av <= 0.866
        for a in (np.pi / 6, -np.pi / 6):
            m &= np.abs(u * np.cos(a) + v * np.sin(a)) <= 0.866
        return m
    raise ValueError(kind)


def render(index, size=128, classes=4, seed=0):
    """Image (size, size, 3) uint8 RGB and label (size, size) uint8 of sample `index`."""
    if not 2 <= classes <= len(SHAPES) + 1:
        raise NetdefError(f"synthetic set: classes must be in 2..{len(SHAPES) + 1}, got {classes}")
    rng = np.random.default_rng([seed, index, VERSION])
    n = size
    grid = np.arange(n, dtype=np.float32)
    xs, ys = grid[None, :] / n, grid[:, None] / n
    # Background: a palette colour, a few oriented sinusoids, a linear gradient and noise. The
    # sinusoids are fine (a period of 4-16 pixels at any size) so that "busy vs flat" tells an
    # object from the background locally; which object it is takes the shape around it.
    base = palette_colour(rng)
    tex = np.zeros((n, n), dtype=np.float32)
    for _ in range(3):
        th, f, ph = rng.uniform(0, np.pi), rng.uniform(n / 16, n / 4), rng.uniform(0, 2 * np.pi)
        k = np.float32(2 * np.pi * f)
        tex += np.float32(rng.uniform(6, 18)) * np.sin(k * np.float32(np.cos(th)) * xs
                                                       + k * np.float32(np.sin(th)) * ys + np.float32(ph))
    tex += np.float32(rng.uniform(-20, 20)) * (xs - 0.5) + np.float32(rng.uniform(-20, 20)) * (ys - 0.5)
    tint = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    img = base + tex[:, :, None] * tint
    label = np.zeros((n, n), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(1, classes))
        kind = SHAPES[k - 1]
        r = rng.uniform(0.12, 0.28) * n
        aspect = np.float32(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        cx, cy = rng.uniform(0.1, 0.9) * n, rng.uniform(0.1, 0.9) * n
        rot = rng.uniform(0, 2 * np.pi)
        colour = palette_colour(rng)  # drawn independently of k: colour says nothing of the class
        gu, gv = rng.uniform(-1, 1, 2)
        # Draw within the bounding box of the shape's circumcircle (stretched by the aspect).
        reach = r * max(aspect, 1 / aspect)
        y0, y1 = max(int(cy - reach) - 1, 0), min(int(cy + reach) + 2, n)
        x0, x1 = max(int(cx - reach) - 1, 0), min(int(cx + reach) + 2, n)
        if y0 >= y1 or x0 >= x1:
            continue
        dx, dy = (grid[None, x0:x1] - cx) / r, (grid[y0:y1, None] - cy) / r
        c, s_ = np.float32(np.cos(rot)), np.float32(np.sin(rot))
        u, v_ = (c * dx + s_ * dy) / aspect, (c * dy - s_ * dx) * aspect
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

    from ..fcn.segment import voc_palette

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
