"""`netdef convert-imageset ROOT LISTFILE DB`: images listed in LISTFILE into a database of Datum
records, as Caffe's convert_imageset tool makes it (and the Data layer reads).

LISTFILE has one line per image, `<path> <integer label>` (the label after the last space, so
paths may hold spaces), the path relative to ROOT. Record i gets the key `%08d_<path>` (Caffe's),
so the database's key order is the list's order (shuffled first with --shuffle). Each record
holds the image as uint8 BGR (C, H, W), or one channel with --gray; --resize_height/width
resize first (bilinear); --encoded stores the image file itself (re-encoded as --encode_type,
or the original bytes when the file already is that type and nothing is resized);
--check_size requires every image to have the first one's size.

Unlike Caffe's tool, an image that cannot be read is an error (naming the file and the line),
not a skipped record, and the database appears under DB only once complete: it is written to a
temporary directory next to DB and renamed at the end.
"""
import argparse
import logging
import os

import numpy as np

from ..data.datum import ENCODE_TYPES, array_to_datum, encode_image, encoded_datum
from ..data.lmdb_data import BACKENDS, write_datums
from ..errors import NetdefError

log = logging.getLogger("netdef")

HELP = "convert a list of images with labels into an LMDB/LevelDB of Datums (Caffe's convert_imageset)"


def add_flag(p, name, help):
    """A gflags boolean: --name, --name=true / --name=false, --noname (and -name through the
    cli). The explicit forms are option strings of their own, so that a bare --name never takes
    the next argument (Caffe's flags come before the positional arguments)."""
    p.add_argument(f"--{name}", f"--{name}=true", f"--{name}=1", dest=name, action="store_true", help=help)
    p.add_argument(f"--{name}=false", f"--{name}=0", f"--no{name}", dest=name, action="store_false",
                   help=argparse.SUPPRESS)


def configure(p):
    p.add_argument("root", help="folder the list's paths are relative to")
    p.add_argument("listfile", help="text file of '<image path> <label>' lines")
    p.add_argument("db", help="the database to create (a directory)")
    add_flag(p, "gray", "read the images as one-channel gray")
    add_flag(p, "shuffle", "shuffle the lines first")
    add_flag(p, "check_size", "require every image to have the first one's size")
    add_flag(p, "encoded", "store the image files (encoded) instead of raw pixels")
    p.add_argument("--encode_type", default="", metavar="TYPE",
                   help=f"with --encoded: re-encode as one of {', '.join(sorted(ENCODE_TYPES))} "
                        "(default: keep each file as it is)")
    p.add_argument("--resize_height", type=int, default=0, metavar="H")
    p.add_argument("--resize_width", type=int, default=0, metavar="W")
    p.add_argument("--backend", default="lmdb", type=str.lower, choices=BACKENDS)
    p.add_argument("--seed", type=int, default=None, help="seed of --shuffle (default: random)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def read_list(path):
    """[(image path, label)] of a list file; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise NetdefError(f"cannot read the list file: {e.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise NetdefError("the list file is not UTF-8 text", file=path) from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        try:
            items.append((parts[0], int(parts[1]), n))
        except (IndexError, ValueError):
            raise NetdefError(f"expected '<image path> <integer label>', got {line[:200]!r}",
                              file=path, line=n) from None
    if not items:
        raise NetdefError("the list file has no lines", file=path)
    return items


def _load(path, gray, resize):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            fmt = (im.format or "").upper()
            mode_ok = (im.mode == "L") if gray else (im.mode == "RGB")
            img = im.convert("L" if gray else "RGB")
    except FileNotFoundError:
        raise NetdefError("image file not found", file=path) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise NetdefError(f"cannot read the image (corrupt or not an image): {e}", file=path) from None
    if resize and img.size != (resize[1], resize[0]):
        img = img.resize((resize[1], resize[0]), Image.BILINEAR)
        mode_ok = False
    a = np.asarray(img, dtype=np.uint8)
    arr = a[np.newaxis] if gray else a[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(arr), fmt, mode_ok


def datums(root, items, gray=False, resize=None, encoded=False, encode_type="", check_size=False):
    """(key, Datum) for each (path, label, line) item, as convert-imageset writes them."""
    first = None
    for i, (rel, label, line) in enumerate(items):
        path = os.path.join(root, rel)
        arr, fmt, unchanged = _load(path, gray, resize)
        if check_size:
            if first is None:
                first = arr.shape
            elif arr.shape != first:
                raise NetdefError(f"--check_size: the image is {arr.shape[1]}x{arr.shape[2]}x{arr.shape[0]} "
                                  f"(HxWxC), the first {first[1]}x{first[2]}x{first[0]} (list line {line})",
                                  file=path)
        if encoded:
            etype = encode_type or os.path.splitext(rel)[1].lstrip(".") or "png"
            if ENCODE_TYPES.get(etype.lower()) is None:
                etype = "png"
            if unchanged and fmt == ENCODE_TYPES[etype.lower()]:
                with open(path, "rb") as f:  # the file already is what was asked for: store it as is
                    datum = encoded_datum(f.read(), label)
            else:
                datum = encoded_datum(encode_image(arr, etype), label)
        else:
            datum = array_to_datum(arr, label)
        yield f"{i:08d}_{rel}", datum


def run(args):
    from tqdm import tqdm

    if args.resize_height < 0 or args.resize_width < 0:
        raise NetdefError("--resize_height and --resize_width must be >= 0")
    if (args.resize_height > 0) != (args.resize_width > 0):
        raise NetdefError(f"give both --resize_height and --resize_width (got {args.resize_height} "
                          f"and {args.resize_width})")
    if args.encode_type and not args.encoded:
        raise NetdefError("--encode_type needs --encoded")
    if args.encode_type and args.encode_type.lower().lstrip(".") not in ENCODE_TYPES:
        raise NetdefError(f"unknown --encode_type '{args.encode_type}'; one of {', '.join(sorted(ENCODE_TYPES))}")
    if os.path.exists(args.db):  # before any work: Caffe's tool refuses an existing database too
        raise NetdefError("the database already exists; remove it first", file=args.db)
    items = read_list(args.listfile)
    if args.shuffle:
        log.info("Shuffling data")
        order = np.random.default_rng(args.seed).permutation(len(items))
        items = [items[i] for i in order]
    log.info("A total of %d images.", len(items))
    resize = (args.resize_height, args.resize_width) if args.resize_height > 0 else None
    bar = tqdm(total=len(items), unit="img", disable=not args.progress, leave=False)

    def counted():
        for n, rec in enumerate(datums(args.root, items, args.gray, resize, args.encoded,
                                       args.encode_type, args.check_size), 1):
            yield rec
            bar.update(1)
            if n % 1000 == 0:
                log.info("Processed %d files.", n)

    try:
        n = write_datums(args.db, counted(), backend=args.backend)
    finally:
        bar.close()
    if n % 1000:
        log.info("Processed %d files.", n)
    log.info("Wrote %s (%s, %d records)", args.db, args.backend.upper(), n)
    return 0
